//! Local peers: a target that waits on a connection to a socket listening on
//! this host (an app behind nginx, a local Redis or PgBouncer, a sidecar) is
//! held up by whatever holds that process up. The collector follows such a
//! peer into the process that listens there, so the diagnosis can say why
//! the peer is slow, not only that it is.
//!
//! Looked up in user space from /proc (the listening sockets, then the
//! process holding the socket's inode), once per peer address: nothing runs
//! in the kernel for it.

use holdup_model::{Resource, ResourceWait, WaitKind, WakeEdge, Waker};
use procfs::net::TcpState;
use procfs::process::FDTarget;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

/// An address not found listening is looked up again after this many windows
/// (the peer may start later).
const RETRY_WINDOWS: u64 = 30;

/// Addresses remembered at most (then those without an owner are dropped).
const MAX_KNOWN: usize = 4096;

/// Looks up the processes behind the targets' local peers.
#[derive(Default)]
pub struct LocalPeers {
    /// Peer address → the process listening there (None: none found), and
    /// the window it was looked up in.
    known: HashMap<SocketAddr, (Option<u32>, u64)>,
}

impl LocalPeers {
    /// Processes listening on a loopback address that a target waited on
    /// (outgoing waits, and epoll wake-ups by such a socket) and that were
    /// not reported before: (tgid, the address).
    pub fn new_owners(
        &mut self,
        window: u64,
        resources: &[ResourceWait],
        wakeups: &[WakeEdge],
    ) -> Vec<(u32, SocketAddr)> {
        let waited = resources
            .iter()
            .filter(|r| {
                matches!(
                    r.kind,
                    WaitKind::SockRecv | WaitKind::SockSend | WaitKind::Connect
                )
            })
            .filter_map(|r| match &r.resource {
                Resource::Socket(s) => Some(s.peer.as_str()),
                _ => None,
            })
            .chain(wakeups.iter().filter_map(|e| match &e.waker {
                Waker::Socket(s) => Some(s.peer.as_str()),
                _ => None,
            }));
        let fresh: HashSet<SocketAddr> = waited
            .filter_map(|p| p.parse::<SocketAddr>().ok())
            .filter(|a| a.ip().is_loopback())
            .filter(|a| {
                self.known
                    .get(a)
                    .is_none_or(|(owner, at)| owner.is_none() && window >= at + RETRY_WINDOWS)
            })
            .collect();
        if fresh.is_empty() {
            return Vec::new();
        }
        // Clients' addresses (a server's connections) are never peers and
        // keep coming: forget them before the table grows without bound.
        if self.known.len() > MAX_KNOWN {
            self.known.retain(|_, (owner, _)| owner.is_some());
        }
        let listening = listening_inodes();
        let mut out = Vec::new();
        for addr in fresh {
            let owner = listening
                .iter()
                .find(|(l, _)| {
                    l.port() == addr.port() && (l.ip() == addr.ip() || l.ip().is_unspecified())
                })
                .and_then(|(_, inode)| owner_of_socket(*inode));
            self.known.insert(addr, (owner, window));
            if let Some(tgid) = owner {
                out.push((tgid, addr));
            }
        }
        out
    }
}

/// Listening TCP sockets of this network namespace: (address, inode).
fn listening_inodes() -> Vec<(SocketAddr, u64)> {
    let v4 = procfs::net::tcp().unwrap_or_default();
    let v6 = procfs::net::tcp6().unwrap_or_default();
    v4.into_iter()
        .chain(v6)
        .filter(|e| e.state == TcpState::Listen)
        .map(|e| (unmap_v4(e.local_address), e.inode))
        .collect()
}

/// `[::ffff:127.0.0.1]:80` is 127.0.0.1:80.
fn unmap_v4(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

/// The process that holds the socket with this inode (the first found).
/// Never holdup itself, nor a process of holdup's own executable (the
/// lab's generators and delay proxy are instruments, not the service).
fn owner_of_socket(inode: u64) -> Option<u32> {
    let me = std::process::id();
    let own_exe = std::fs::read_link("/proc/self/exe").ok();
    procfs::process::all_processes()
        .ok()?
        .filter_map(Result::ok)
        .filter(|p| p.pid as u32 != me)
        .filter(|p| own_exe.is_none() || p.exe().ok() != own_exe)
        .find(|p| {
            p.fd().is_ok_and(|fds| {
                fds.filter_map(Result::ok)
                    .any(|fd| matches!(fd.target, FDTarget::Socket(i) if i == inode))
            })
        })
        .map(|p| p.pid as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdup_model::SocketAddrs;

    fn wait_on(peer: &str) -> ResourceWait {
        ResourceWait {
            tgid: 1,
            tid: 1,
            kind: WaitKind::SockRecv,
            resource: Resource::Socket(SocketAddrs {
                proto: "tcp".into(),
                local: "127.0.0.1:40000".into(),
                peer: peer.into(),
            }),
            wait_ns: 1,
            waits: 1,
            hist: Default::default(),
            calls: 0,
            bytes: 0,
        }
    }

    #[test]
    fn a_listener_of_this_process_is_not_followed_but_a_childs_is() {
        // This test process listens; holdup never follows itself.
        let own = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = own.local_addr().unwrap();
        let mut peers = LocalPeers::default();
        assert!(peers
            .new_owners(0, &[wait_on(&addr.to_string())], &[])
            .is_empty());

        // A child that listens is found by its socket.
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import socket,sys,time\ns=socket.socket(); s.bind(('127.0.0.1',0)); s.listen()\nprint(s.getsockname()[1], flush=True); time.sleep(30)",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let port: u16 = line.trim().parse().unwrap();
        let peer = format!("127.0.0.1:{port}");
        let found = peers.new_owners(1, &[wait_on(&peer)], &[]);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, vec![(child.id(), peer.parse().unwrap())]);
        // Reported once.
        assert!(peers.new_owners(2, &[wait_on(&peer)], &[]).is_empty());
        // Not loopback: never looked up.
        assert!(peers
            .new_owners(3, &[wait_on("10.1.2.3:80")], &[])
            .is_empty());
    }
}
