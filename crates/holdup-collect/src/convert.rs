//! Kernel records (the structs of holdup.h, generated into the skeleton) to
//! model types.

use holdup_bpf::types;
use holdup_model::{Histogram, Resource, SocketAddrs, WaitKind};
use std::net::{Ipv4Addr, Ipv6Addr};

// The kernel's constants, from the enums of holdup.h as generated into the
// skeleton (never copied here).
/// Kernel `enum res_kind_extra::RES_FUTEX_WAKE`: a waker's futex wakes (metric 8).
pub const RES_FUTEX_WAKE: u32 = types::res_kind_extra::RES_FUTEX_WAKE.0;
/// Kernel `enum wake_cause`: a task woke it.
pub const CAUSE_THREAD: u16 = types::wake_cause::CAUSE_THREAD.0 as u16;
/// Data on a socket ended the wait.
pub const CAUSE_SOCKET: u16 = types::wake_cause::CAUSE_SOCKET.0 as u16;
/// Number of loss counters (`enum loss_kind`).
pub const NR_LOSS: usize = types::loss_kind::NR_LOSS.0 as usize;

/// Reads a plain-old-data kernel record from map bytes.
pub fn pod<T: Copy + Default>(bytes: &[u8]) -> T {
    let mut v = T::default();
    let n = std::mem::size_of::<T>().min(bytes.len());
    // SAFETY: T is a repr(C) plain-data struct generated from BTF (integers and
    // arrays only); any byte pattern is a valid value and we copy at most its size.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), &mut v as *mut T as *mut u8, n);
    }
    v
}

/// A fixed C char array to a String.
pub fn cstr(chars: &[i8]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Histogram from kernel buckets.
pub fn hist(b: &[u64]) -> Histogram {
    Histogram::from_buckets(b)
}

fn proto_name(p: u16, family: u16) -> String {
    match (family, p) {
        (1, _) => "unix".into(),
        (_, 6) => "tcp".into(),
        (_, 17) => "udp".into(),
        (_, 262) => "mptcp".into(),
        (_, p) => format!("proto{p}"),
    }
}

/// Socket description to addresses.
pub fn socket(s: &types::sock_desc) -> SocketAddrs {
    let (local, peer) = match s.family {
        2 => {
            let sa = Ipv4Addr::new(s.saddr[0], s.saddr[1], s.saddr[2], s.saddr[3]);
            let da = Ipv4Addr::new(s.daddr[0], s.daddr[1], s.daddr[2], s.daddr[3]);
            let peer = if s.dport == 0 {
                String::new()
            } else {
                format!("{da}:{}", s.dport)
            };
            (format!("{sa}:{}", s.sport), peer)
        }
        10 => {
            let sa = Ipv6Addr::from(s.saddr);
            let da = Ipv6Addr::from(s.daddr);
            let peer = if s.dport == 0 {
                String::new()
            } else {
                format!("[{da}]:{}", s.dport)
            };
            (format!("[{sa}]:{}", s.sport), peer)
        }
        1 => ("unix".into(), String::new()),
        f => (format!("family {f}"), String::new()),
    };
    SocketAddrs {
        proto: proto_name(s.protocol, s.family),
        local,
        peer,
    }
}

fn file_type(mode: u32) -> &'static str {
    match mode & 0o170000 {
        0o100000 => "file",
        0o010000 => "pipe",
        0o020000 => "chr",
        0o060000 => "blk",
        0o040000 => "dir",
        0o140000 => "socket",
        0 => "anon",
        _ => "other",
    }
}

fn syscall_name(nr: u64) -> &'static str {
    match nr {
        7 => "poll",
        23 => "select",
        270 => "pselect6",
        271 => "ppoll",
        232 => "epoll_wait",
        281 => "epoll_pwait",
        441 => "epoll_pwait2",
        _ => "poll",
    }
}

/// A futex from its kernel description: tgid 0 marks a shared futex keyed
/// by its backing object (futex.bpf.c, futex_key).
pub fn futex(d: &types::res_desc) -> Resource {
    if d.id2 == 0 {
        Resource::SharedFutex {
            dev: u64::from(d.dev),
            ino: d.ino,
            offset: d.offset,
        }
    } else {
        Resource::Futex {
            tgid: d.id2 as u32,
            uaddr: d.id1,
        }
    }
}

/// Names the resource of a wait from its kernel description.
pub fn resource(kind: WaitKind, d: &types::res_desc) -> Resource {
    match kind {
        WaitKind::Futex => futex(d),
        WaitKind::SockRecv | WaitKind::SockSend | WaitKind::Accept | WaitKind::Connect => {
            Resource::Socket(socket(&d.sock))
        }
        WaitKind::Mux => Resource::Mux {
            instance: if matches!(d.id2, 232 | 281 | 441) {
                d.id1
            } else {
                0
            },
            call: syscall_name(d.id2).into(),
        },
        WaitKind::FileRead | WaitKind::FileWrite | WaitKind::Other => Resource::File {
            dev: d.id2,
            ino: d.id1,
            file_type: file_type(d.file_mode).into(),
            name: cstr(&d.name),
        },
    }
}

/// Kernel dev_t (major << 20 | minor) to "major:minor".
pub fn dev_string(dev: u32) -> String {
    format!("{}:{}", dev >> 20, dev & 0xfffff)
}

/// Disk name for a kernel dev_t, from sysfs ("vda"), or "major:minor".
pub fn disk_name(dev: u32) -> String {
    let mm = dev_string(dev);
    std::fs::read_to_string(format!("/sys/dev/block/{mm}/uevent"))
        .ok()
        .and_then(|u| {
            u.lines()
                .find_map(|l| l.strip_prefix("DEVNAME="))
                .map(str::to_string)
        })
        .unwrap_or(mm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_kinds_match_the_kernels() {
        use types::wait_kind as K;
        let pairs = [
            (K::WAIT_FUTEX, WaitKind::Futex),
            (K::WAIT_FILE_READ, WaitKind::FileRead),
            (K::WAIT_FILE_WRITE, WaitKind::FileWrite),
            (K::WAIT_SOCK_RECV, WaitKind::SockRecv),
            (K::WAIT_SOCK_SEND, WaitKind::SockSend),
            (K::WAIT_ACCEPT, WaitKind::Accept),
            (K::WAIT_CONNECT, WaitKind::Connect),
            (K::WAIT_MUX, WaitKind::Mux),
            (K::WAIT_OTHER, WaitKind::Other),
        ];
        for (k, w) in pairs {
            assert_eq!(
                WaitKind::from_kernel(k.0),
                Some(w),
                "kernel wait kind {}",
                k.0
            );
        }
        assert_eq!(WaitKind::from_kernel(K::WAIT_NONE.0), None);
        assert_eq!(pairs.len() + 1, K::NR_WAIT_KINDS.0 as usize);
        // thread_stats carries one slot per kind, indexed by the kernel value
        assert_eq!(
            types::thread_stats::default().wait_ns.len(),
            K::NR_WAIT_KINDS.0 as usize
        );
    }

    #[test]
    fn ipv4_socket_formats_both_ends() {
        let mut s = types::sock_desc {
            family: 2,
            protocol: 6,
            sport: 40000,
            dport: 6379,
            ..Default::default()
        };
        s.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        s.daddr[..4].copy_from_slice(&[127, 0, 0, 2]);
        let a = socket(&s);
        assert_eq!(a.proto, "tcp");
        assert_eq!(a.local, "127.0.0.1:40000");
        assert_eq!(a.peer, "127.0.0.2:6379");
    }

    #[test]
    fn listening_socket_has_no_peer() {
        let s = types::sock_desc {
            family: 2,
            protocol: 6,
            sport: 80,
            ..Default::default()
        };
        assert_eq!(socket(&s).peer, "");
    }

    #[test]
    fn cstr_stops_at_nul() {
        let mut c = [0i8; 16];
        for (i, b) in b"redis".iter().enumerate() {
            c[i] = *b as i8;
        }
        assert_eq!(cstr(&c), "redis");
    }

    #[test]
    fn dev_numbers_split_like_the_kernel() {
        assert_eq!(dev_string((254 << 20) | 3), "254:3");
    }
}
