//! What a source's windows say about the service as a whole: its
//! processes and ports, which futexes are locks, who its peers and entry
//! threads are.

use super::{name_pattern, port_of, Direction, FutexKey, FutexUse, Kin};
use holdup_model::{Resource, Runtime, Snapshot, SocketAddrs, WaitKind, Waker};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

fn is_ephemeral(port: u16) -> bool {
    // Linux's default net.ipv4.ip_local_port_range.
    (32768..=60999).contains(&port)
}

/// Facts about one source of windows (a live run or a recording), learned
/// from all of its windows: they do not depend on the baseline/incident split.
#[derive(Clone, Debug, Default)]
pub struct SourceFacts {
    /// Processes of the service (every tgid seen among the target threads).
    pub tgids: BTreeSet<u32>,
    /// Process name per tgid (its main thread's name when seen).
    pub process_names: HashMap<u32, String>,
    /// Local ports the service accepts connections on.
    pub listen_ports: BTreeSet<u16>,
    /// Peers the service connected to (from connect waits).
    pub connect_peers: BTreeSet<String>,
    /// Local ports shared by several connections (accepted connections share
    /// the listening port).
    pub shared_local_ports: BTreeSet<u16>,
    /// Peer addresses shared by several connections of the service (one
    /// server called over several connections).
    pub shared_peers: BTreeSet<String>,
    /// How each futex is used.
    pub futex_use: HashMap<FutexKey, FutexUse>,
    /// Role kinship of every thread seen (target threads and wakers).
    pub kin: HashMap<u32, Kin>,
    /// Processes running on the Go runtime: their threads wait on futexes
    /// when idle (goroutines block in the runtime, not on futexes).
    pub go_tgids: BTreeSet<u32>,
    /// Entry-point threads (tid) and why.
    pub entry_threads: BTreeMap<u32, String>,
    /// Every connected socket seen, as (local, peer).
    pub sockets: HashSet<(String, String)>,
    /// Whether per-call socket counting was on (some recv/send calls seen).
    pub socket_calls: bool,
}

impl SourceFacts {
    /// Learns the facts from every window of a source.
    pub fn learn(windows: &[Snapshot]) -> SourceFacts {
        let mut f = SourceFacts::default();
        let mut local_peers: HashMap<u16, BTreeSet<String>> = HashMap::new();
        let mut peer_locals: HashMap<String, BTreeSet<String>> = HashMap::new();
        let mut note_socket = |s: &SocketAddrs, f: &mut SourceFacts| {
            if s.peer.is_empty() {
                if let Some(p) = port_of(&s.local) {
                    f.listen_ports.insert(p);
                }
                return;
            }
            f.sockets.insert((s.local.clone(), s.peer.clone()));
            if let Some(p) = port_of(&s.local) {
                local_peers.entry(p).or_default().insert(s.peer.clone());
            }
            peer_locals
                .entry(s.peer.clone())
                .or_default()
                .insert(s.local.clone());
        };
        // futex -> waiting tids; and woken counts per waker tid
        let mut futex_waiters: HashMap<FutexKey, HashSet<u32>> = HashMap::new();
        let mut futex_wakers: HashMap<FutexKey, HashMap<u32, u64>> = HashMap::new();
        // tid -> (tgid, comm), for the kinship of waiters and wakers
        let mut comm_of: HashMap<u32, (u32, String)> = HashMap::new();
        for s in windows {
            for p in &s.runtimes {
                if p.runtime == Runtime::Go {
                    f.go_tgids.insert(p.tgid);
                }
            }
            for t in &s.threads {
                f.tgids.insert(t.tgid);
                if t.tid == t.tgid {
                    f.process_names.insert(t.tgid, t.comm.clone());
                }
                comm_of
                    .entry(t.tid)
                    .or_insert_with(|| (t.tgid, t.comm.clone()));
            }
            for r in &s.resources {
                if r.calls > 0 {
                    f.socket_calls = true;
                }
                match &r.resource {
                    Resource::Socket(sock) => {
                        if r.kind == WaitKind::Accept {
                            if let Some(p) = port_of(&sock.local) {
                                f.listen_ports.insert(p);
                            }
                        } else if r.kind == WaitKind::Connect && !sock.peer.is_empty() {
                            f.connect_peers.insert(sock.peer.clone());
                        }
                        note_socket(sock, &mut f);
                    }
                    other if r.kind == WaitKind::Futex => {
                        if let Some(key) = FutexKey::of(other) {
                            futex_waiters.entry(key).or_default().insert(r.tid);
                        }
                    }
                    _ => {}
                }
            }
            for w in &s.futex_wakes {
                if let Some(key) = FutexKey::of(&w.futex) {
                    *futex_wakers
                        .entry(key)
                        .or_default()
                        .entry(w.waker_tid)
                        .or_default() += w.woken.max(w.calls);
                }
            }
            for e in &s.wakeups {
                match &e.waker {
                    Waker::Socket(sock) => note_socket(sock, &mut f),
                    Waker::Thread { tgid, tid, comm } => {
                        comm_of.entry(*tid).or_insert_with(|| (*tgid, comm.clone()));
                    }
                    Waker::Kernel => {}
                }
            }
        }
        for t in windows.iter().flat_map(|s| &s.threads) {
            f.process_names
                .entry(t.tgid)
                .or_insert_with(|| t.comm.clone());
        }
        f.shared_local_ports = local_peers
            .into_iter()
            .filter(|(_, peers)| peers.len() >= 2)
            .map(|(p, _)| p)
            .collect();
        f.shared_peers = peer_locals
            .into_iter()
            .filter(|(_, locals)| locals.len() >= 2)
            .map(|(p, _)| p)
            .collect();
        for (tid, (tgid, comm)) in &comm_of {
            let process = f
                .process_names
                .get(tgid)
                .cloned()
                .unwrap_or_else(|| format!("pid {tgid}"));
            f.kin
                .insert(*tid, (name_pattern(&process), name_pattern(comm)));
        }
        // A futex is a lock when most of its wake-ups come from peers of its
        // waiters' roles (or from its waiters themselves).
        for (key, waiters) in &futex_waiters {
            let wakers = futex_wakers.get(key);
            let waiter_kin: HashSet<&Kin> = waiters.iter().filter_map(|t| f.kin.get(t)).collect();
            let (mut own, mut other) = (0u64, 0u64);
            for (tid, n) in wakers.into_iter().flatten() {
                let kin = f.kin.get(tid).is_some_and(|k| waiter_kin.contains(k));
                if waiters.contains(tid) || kin {
                    own += n;
                } else {
                    other += n;
                }
            }
            let usage = if own > 0 && own >= other {
                FutexUse::Lock
            } else {
                FutexUse::Handoff
            };
            f.futex_use.insert(*key, usage);
        }
        f.entry_threads = find_entry_threads(windows, &f);
        f
    }

    /// Which way a connection goes, seen from the service.
    pub fn direction(&self, s: &SocketAddrs) -> Direction {
        if s.peer.is_empty() {
            return Direction::Inbound;
        }
        if self.connect_peers.contains(&s.peer) {
            return Direction::Outbound;
        }
        let lp = port_of(&s.local);
        let pp = port_of(&s.peer);
        if lp.is_some_and(|p| self.listen_ports.contains(&p)) {
            return Direction::Inbound;
        }
        if lp.is_some_and(|p| self.shared_local_ports.contains(&p)) {
            return Direction::Inbound;
        }
        if self.shared_peers.contains(&s.peer) {
            return Direction::Outbound;
        }
        match (lp, pp) {
            (Some(l), Some(p)) => {
                // We called a well-known port from an ephemeral one; else
                // the lower port is the server's.
                let called_out = if is_ephemeral(l) != is_ephemeral(p) {
                    is_ephemeral(l)
                } else {
                    l > p
                };
                if called_out {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                }
            }
            _ => Direction::Inbound,
        }
    }

    /// Whether both ends of a connection are watched (a local peer the
    /// collector followed, or two watched services): its requests come from
    /// the service itself, not from a client.
    pub fn is_internal(&self, s: &SocketAddrs) -> bool {
        !s.peer.is_empty() && self.sockets.contains(&(s.peer.clone(), s.local.clone()))
    }

    /// Whether two threads are peers of one role (same process name and
    /// thread-name pattern).
    pub fn are_kin(&self, a: u32, b: u32) -> bool {
        match (self.kin.get(&a), self.kin.get(&b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        }
    }

    /// Whether a thread is an entry point.
    pub fn is_entry(&self, tid: u32) -> bool {
        self.entry_threads.contains_key(&tid)
    }

    /// The process name of a thread's process.
    pub fn process_name(&self, tgid: u32) -> String {
        self.process_names
            .get(&tgid)
            .cloned()
            .unwrap_or_else(|| format!("pid {tgid}"))
    }
}

/// Entry-point threads: those that accept, receive on client sockets, or
/// multiplex over client sockets.
fn find_entry_threads(windows: &[Snapshot], f: &SourceFacts) -> BTreeMap<u32, String> {
    #[derive(Default)]
    struct Seen {
        accepts: u64,
        recv: u64,
        polled: u64,
        listen: BTreeSet<String>,
    }
    let mut seen: BTreeMap<u32, Seen> = BTreeMap::new();
    for s in windows {
        for r in &s.resources {
            let Resource::Socket(sock) = &r.resource else {
                continue;
            };
            match r.kind {
                WaitKind::Accept => {
                    let e = seen.entry(r.tid).or_default();
                    e.accepts += r.waits.max(1);
                    e.listen.insert(sock.local.clone());
                }
                WaitKind::SockRecv
                    if f.direction(sock) == Direction::Inbound && !f.is_internal(sock) =>
                {
                    let e = seen.entry(r.tid).or_default();
                    e.recv += r.waits.max(r.calls).max(1);
                    if sock.peer.is_empty() {
                        e.listen.insert(sock.local.clone());
                    }
                }
                _ => {}
            }
        }
        for e in &s.wakeups {
            if e.wait_kind != Some(WaitKind::Mux) {
                continue;
            }
            if let Waker::Socket(sock) = &e.waker {
                if f.direction(sock) == Direction::Inbound && !f.is_internal(sock) {
                    let x = seen.entry(e.wakee_tid).or_default();
                    x.polled += e.count;
                    if sock.peer.is_empty() {
                        x.listen.insert(sock.local.clone());
                    }
                }
            }
        }
    }
    seen.into_iter()
        .filter(|(_, s)| s.accepts + s.recv + s.polled > 0)
        .map(|(tid, s)| {
            let mut how = Vec::new();
            if s.accepts > 0 {
                how.push(format!(
                    "accepts on {}",
                    s.listen.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            if s.recv > 0 {
                how.push("receives on client connections".to_string());
            }
            if s.polled > 0 {
                how.push("polls client connections".to_string());
            }
            (tid, how.join("; "))
        })
        .collect()
}
