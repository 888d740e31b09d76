//! Thread-state analysis: what every thread did with each window, split into
//! [`Category`]s that add up to the time it was observed.
//!
//! The collector gives five scheduling states per thread (on-CPU, run-queue,
//! iowait, other D, sleep) and, for the blocked part, the syscall it slept in
//! and on which resource. This module refines the sleep into what it means
//! for a service: a lock, a hand-off from another thread, a client socket
//! (idle: waiting for requests), a peer the service called (an external
//! service), a file, and so on. The facts it needs from the whole run (which
//! ports the service listens on, which futexes are locks, which threads are
//! entry points) are in [`SourceFacts`].

use holdup_model::{Resource, Runtime, Snapshot, SocketAddrs, ThreadWindow, WaitKind, Waker};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// What a thread's time went to. The categories of one thread in one window
/// add up to the time the thread was observed in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Running on a CPU: the service's own work.
    OnCpu,
    /// Runnable, waiting for a CPU.
    RunQueue,
    /// Uninterruptible sleep for I/O.
    IoWait,
    /// Other uninterruptible sleep.
    OtherD,
    /// Interruptible sleep reading or writing a file (not a pipe).
    Vfs,
    /// futex wait on a lock: the threads that wait on it also wake it.
    FutexLock,
    /// Waiting for another thread's signal (futex, pipe or eventfd) on the
    /// request path.
    Handoff,
    /// A worker waiting for work from an entry thread (idle).
    WaitForWork,
    /// Receiving on a client socket (idle: waiting for a request).
    RecvClient,
    /// Receiving on a socket the service opened to a peer: an external service.
    RecvPeer,
    /// Blocked sending on a socket.
    Send,
    /// Blocked in accept (idle).
    Accept,
    /// Blocked in connect to a peer.
    Connect,
    /// epoll/poll/select ended by client data or a timeout (idle).
    PollClient,
    /// epoll/poll/select ended by data from a peer the service called.
    PollPeer,
    /// Any other sleep (nanosleep, wait4, unclassified).
    OtherSleep,
}

/// Number of [`Category`] values.
pub const NCAT: usize = 16;

impl Category {
    /// Every category, in table order.
    pub const ALL: [Category; NCAT] = [
        Category::OnCpu,
        Category::RunQueue,
        Category::IoWait,
        Category::OtherD,
        Category::Vfs,
        Category::FutexLock,
        Category::Handoff,
        Category::WaitForWork,
        Category::RecvClient,
        Category::RecvPeer,
        Category::Send,
        Category::Accept,
        Category::Connect,
        Category::PollClient,
        Category::PollPeer,
        Category::OtherSleep,
    ];

    /// Index into per-category arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Category::OnCpu => "cpu",
            Category::RunQueue => "runq",
            Category::IoWait => "iowait",
            Category::OtherD => "D",
            Category::Vfs => "file",
            Category::FutexLock => "lock",
            Category::Handoff => "hand-off",
            Category::WaitForWork => "wait-work",
            Category::RecvClient => "recv-client",
            Category::RecvPeer => "recv-peer",
            Category::Send => "send",
            Category::Accept => "accept",
            Category::Connect => "connect",
            Category::PollClient => "poll-client",
            Category::PollPeer => "poll-peer",
            Category::OtherSleep => "other",
        }
    }

    /// Plain words for reports.
    pub fn words(self) -> &'static str {
        match self {
            Category::OnCpu => "running on a CPU",
            Category::RunQueue => "waiting for a CPU (run queue)",
            Category::IoWait => "waiting for disk I/O (iowait)",
            Category::OtherD => "uninterruptible sleep (not I/O)",
            Category::Vfs => "reading or writing files",
            Category::FutexLock => "waiting for a lock",
            Category::Handoff => "waiting for another thread to hand back work",
            Category::WaitForWork => "waiting for work (idle)",
            Category::RecvClient => "waiting for client requests (idle)",
            Category::RecvPeer => "waiting for a reply from a peer service",
            Category::Send => "blocked sending on a socket",
            Category::Accept => "waiting for new connections (idle)",
            Category::Connect => "connecting to a peer",
            Category::PollClient => "polling client sockets (idle)",
            Category::PollPeer => "polling for a peer service's reply",
            Category::OtherSleep => "sleeping in other system calls",
        }
    }

    /// Time that is not a hold-up: the thread waits for something to do.
    pub fn is_idle(self) -> bool {
        matches!(
            self,
            Category::WaitForWork | Category::RecvClient | Category::Accept | Category::PollClient
        )
    }

    /// The kind of cause a growth of this category points to (None: work or idle).
    pub fn cause(self) -> Option<CauseFamily> {
        Some(match self {
            Category::RunQueue => CauseFamily::Cpu,
            Category::IoWait | Category::OtherD | Category::Vfs => CauseFamily::Disk,
            Category::FutexLock => CauseFamily::Lock,
            Category::Handoff => CauseFamily::Handoff,
            Category::RecvPeer | Category::Send | Category::Connect | Category::PollPeer => {
                CauseFamily::External
            }
            Category::OtherSleep => CauseFamily::OtherSleep,
            _ => return None,
        })
    }
}

/// Groups of hold-up categories that point to one kind of cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseFamily {
    /// Run-queue wait.
    Cpu,
    /// iowait, other D, file waits.
    Disk,
    /// Lock waits.
    Lock,
    /// Waits for another thread's hand-off.
    Handoff,
    /// Waits on peers the service called.
    External,
    /// Other sleeps.
    OtherSleep,
}

impl CauseFamily {
    /// Every family.
    pub const ALL: [CauseFamily; 6] = [
        CauseFamily::Cpu,
        CauseFamily::Disk,
        CauseFamily::Lock,
        CauseFamily::Handoff,
        CauseFamily::External,
        CauseFamily::OtherSleep,
    ];

    /// The categories in this family.
    pub fn categories(self) -> impl Iterator<Item = Category> {
        Category::ALL
            .into_iter()
            .filter(move |c| c.cause() == Some(self))
    }

    /// Plain words.
    pub fn words(self) -> &'static str {
        match self {
            CauseFamily::Cpu => "waiting for a CPU",
            CauseFamily::Disk => "waiting for the disk / files",
            CauseFamily::Lock => "waiting for a lock",
            CauseFamily::Handoff => "waiting for another thread",
            CauseFamily::External => "waiting for a peer service",
            CauseFamily::OtherSleep => "sleeping in other system calls",
        }
    }
}

/// Direction of a TCP/UDP/unix connection seen from the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A client connected to the service (or a listening/unconnected socket).
    Inbound,
    /// The service connected to a peer.
    Outbound,
}

/// How a futex is used, from who waits on it and who wakes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FutexUse {
    /// Its waiters are woken by peers of their own role (threads or
    /// processes doing the same job): contention for something they share.
    /// Covers mutexes (waiters and wakers are the same threads) and locks
    /// that put each waiter on its own semaphore or condition variable,
    /// signalled by the holder when it releases.
    Lock,
    /// A different role (or another process) wakes the waiters: a
    /// condition/event, a hand-off of work between pipeline stages.
    Handoff,
}

/// A futex as the kernel keys it: a private one by address space and
/// address, a shared one by its backing object, so that a wait in one
/// process and the wake from another meet on one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FutexKey {
    /// Private (or in private anonymous memory): process and address.
    Private {
        /// Process.
        tgid: u32,
        /// Address.
        uaddr: u64,
    },
    /// Shared, in file-backed or shared memory.
    Shared {
        /// Device of the backing inode.
        dev: u64,
        /// Backing inode.
        ino: u64,
        /// Offset in it.
        offset: u64,
    },
}

impl FutexKey {
    /// The key of a futex resource (None for other resources).
    pub fn of(r: &Resource) -> Option<FutexKey> {
        match *r {
            Resource::Futex { tgid, uaddr } => Some(FutexKey::Private { tgid, uaddr }),
            Resource::SharedFutex { dev, ino, offset } => {
                Some(FutexKey::Shared { dev, ino, offset })
            }
            _ => None,
        }
    }
}

/// A thread's role before roles are built: its process name and thread-name
/// pattern (see [`name_pattern`]). Peers of one role share it.
pub type Kin = (String, String);

/// Port of "addr:port" (also "[v6]:port").
pub fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

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
                WaitKind::SockRecv if f.direction(sock) == Direction::Inbound => {
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
                if f.direction(sock) == Direction::Inbound {
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

/// Per-category time of one thread in one window, ns.
pub type Breakdown = [u64; NCAT];

/// Splits a thread's window into categories. `entry_tids` are the entry
/// threads of the source (used to tell "waiting for work" from a hand-off).
pub fn breakdown(s: &Snapshot, t: &ThreadWindow, f: &SourceFacts) -> Breakdown {
    let mut b = [0u64; NCAT];
    let st = &t.states;
    b[Category::OnCpu.index()] = st.on_cpu_ns;
    b[Category::RunQueue.index()] = st.runq_ns;
    b[Category::IoWait.index()] = st.iowait_ns;
    b[Category::OtherD.index()] = st.other_d_ns;
    let is_entry = f.is_entry(t.tid);

    // Wake-ups of this thread, by what it waited on.
    let edges: Vec<_> = s.wakeups.iter().filter(|e| e.wakee_tid == t.tid).collect();
    let waker_of = |w: &Waker| match w {
        // A peer of its own role signals it: it waited for something they
        // share (a lock, or a latch a lock manager sets on release).
        Waker::Thread { tid, .. } if f.are_kin(*tid, t.tid) => WakerRole::Kin,
        Waker::Thread { tid, .. } if f.is_entry(*tid) => WakerRole::Upstream,
        _ => WakerRole::Other,
    };

    // The sleeping part (interruptible) to distribute.
    let mut sleep_parts = [0u64; NCAT];
    let d_time = st.iowait_ns + st.other_d_ns;
    let mut file_ns = 0u64;
    for w in &t.waits {
        match w.kind {
            WaitKind::Futex
                if f.go_tgids.contains(&t.tgid) || parks_for_a_task_scheduler(&t.comm) =>
            {
                // An idle worker parked by a user-space scheduler (Go's Ms,
                // tokio, ForkJoin): tasks that wait (for a lock, a channel,
                // the network) do not block threads.
                sleep_parts[Category::WaitForWork.index()] += w.ns;
            }
            WaitKind::Futex => {
                let (mut lock, mut other) = (0u64, 0u64);
                for r in s
                    .resources
                    .iter()
                    .filter(|r| r.tid == t.tid && r.kind == WaitKind::Futex)
                {
                    let usage =
                        FutexKey::of(&r.resource).and_then(|k| f.futex_use.get(&k).copied());
                    if usage == Some(FutexUse::Lock) {
                        lock += r.wait_ns;
                    } else {
                        other += r.wait_ns;
                    }
                }
                let (lock, other) = scale_pair(lock, other, w.ns);
                sleep_parts[Category::FutexLock.index()] += lock;
                // Wakes by its own role are the lock futexes', counted above.
                let fedges: Vec<_> = edges
                    .iter()
                    .filter(|e| {
                        e.wait_kind == Some(WaitKind::Futex) && waker_of(&e.waker) != WakerRole::Kin
                    })
                    .collect();
                split_handoff(
                    other,
                    is_entry,
                    fedges.iter().map(|e| (waker_of(&e.waker), e.sleep_ns)),
                    &mut sleep_parts,
                );
            }
            WaitKind::FileRead | WaitKind::FileWrite => {
                let (mut pipe, mut file) = (0u64, 0u64);
                for r in s
                    .resources
                    .iter()
                    .filter(|r| r.tid == t.tid && r.kind == w.kind)
                {
                    match &r.resource {
                        Resource::File { file_type, .. } if file_type == "pipe" => {
                            pipe += r.wait_ns
                        }
                        _ => file += r.wait_ns,
                    }
                }
                let (pipe, file) = scale_pair(pipe, file, w.ns);
                file_ns += file;
                let pedges: Vec<_> = edges
                    .iter()
                    .filter(|e| e.wait_kind == Some(w.kind))
                    .collect();
                split_handoff(
                    pipe,
                    is_entry,
                    pedges.iter().map(|e| (waker_of(&e.waker), e.sleep_ns)),
                    &mut sleep_parts,
                );
            }
            WaitKind::SockRecv => {
                let (mut client, mut peer) = (0u64, 0u64);
                for r in s
                    .resources
                    .iter()
                    .filter(|r| r.tid == t.tid && r.kind == WaitKind::SockRecv)
                {
                    match &r.resource {
                        Resource::Socket(sock) if f.direction(sock) == Direction::Outbound => {
                            peer += r.wait_ns
                        }
                        _ => client += r.wait_ns,
                    }
                }
                let (client, peer) = scale_pair(client, peer, w.ns);
                sleep_parts[Category::RecvClient.index()] += client;
                sleep_parts[Category::RecvPeer.index()] += peer;
            }
            WaitKind::SockSend => sleep_parts[Category::Send.index()] += w.ns,
            WaitKind::Accept => sleep_parts[Category::Accept.index()] += w.ns,
            WaitKind::Connect => sleep_parts[Category::Connect.index()] += w.ns,
            WaitKind::Mux => {
                let (mut client, mut peer, mut thread_up, mut thread_other, mut kin) =
                    (0, 0, 0, 0, 0);
                for e in edges.iter().filter(|e| e.wait_kind == Some(WaitKind::Mux)) {
                    match &e.waker {
                        Waker::Socket(sock) => {
                            if f.direction(sock) == Direction::Outbound {
                                peer += e.sleep_ns
                            } else {
                                client += e.sleep_ns
                            }
                        }
                        Waker::Thread { tgid, tid, .. } => {
                            if !f.tgids.contains(tgid) {
                                // A client process writing to us over loopback.
                                client += e.sleep_ns
                            } else if f.are_kin(*tid, t.tid) {
                                kin += e.sleep_ns
                            } else if f.is_entry(*tid) {
                                thread_up += e.sleep_ns
                            } else {
                                thread_other += e.sleep_ns
                            }
                        }
                        Waker::Kernel => client += e.sleep_ns,
                    }
                }
                let total = client + peer + thread_up + thread_other + kin;
                if total == 0 {
                    sleep_parts[Category::PollClient.index()] += w.ns;
                } else {
                    let part = |x: u64| ((w.ns as u128 * x as u128) / total as u128) as u64;
                    let (p, tu, to, k) =
                        (part(peer), part(thread_up), part(thread_other), part(kin));
                    sleep_parts[Category::PollPeer.index()] += p;
                    sleep_parts[Category::FutexLock.index()] += k;
                    if is_entry {
                        sleep_parts[Category::Handoff.index()] += tu + to;
                    } else {
                        sleep_parts[Category::WaitForWork.index()] += tu;
                        sleep_parts[Category::Handoff.index()] += to;
                    }
                    sleep_parts[Category::PollClient.index()] += w.ns - p - tu - to - k;
                }
            }
            WaitKind::Other => sleep_parts[Category::OtherSleep.index()] += w.ns,
        }
    }
    // File waits overlap with iowait / D time, already counted as states.
    sleep_parts[Category::Vfs.index()] += file_ns.saturating_sub(d_time);

    // The parts cannot exceed the sleep time; what is left is other sleep.
    let claimed: u64 = sleep_parts.iter().sum();
    if claimed > st.sleep_ns && claimed > 0 {
        let mut given = 0u64;
        for (i, v) in sleep_parts.iter_mut().enumerate() {
            *v = ((*v as u128 * st.sleep_ns as u128) / claimed as u128) as u64;
            given += *v;
            b[i] += *v;
        }
        b[Category::OtherSleep.index()] += st.sleep_ns - given;
    } else {
        for (i, v) in sleep_parts.iter().enumerate() {
            b[i] += v;
        }
        b[Category::OtherSleep.index()] += st.sleep_ns - claimed;
    }
    b
}

/// Scales (a, b) so that they add up to `total` (keeps the ratio; all to `b`... no:
/// when both are zero, everything goes to `b`).
fn scale_pair(a: u64, b: u64, total: u64) -> (u64, u64) {
    if a + b == 0 {
        return (0, total);
    }
    let sa = ((total as u128 * a as u128) / (a + b) as u128) as u64;
    (sa, total - sa)
}

/// Splits hand-off time into "waiting for work" (woken by an entry thread,
/// for a non-entry thread) and a hand-off on the request path.
fn split_handoff(
    ns: u64,
    is_entry: bool,
    edges: impl Iterator<Item = (WakerRole, u64)>,
    out: &mut [u64; NCAT],
) {
    if ns == 0 {
        return;
    }
    let (mut up, mut kin, mut other) = (0u64, 0u64, 0u64);
    for (role, sleep) in edges {
        match role {
            WakerRole::Upstream => up += sleep,
            WakerRole::Kin => kin += sleep,
            WakerRole::Other => other += sleep,
        }
    }
    // Woken by its own role's peers: a lock (or latch); the rest as before.
    let (k, ns) = scale_pair(kin, up + other, ns);
    out[Category::FutexLock.index()] += k;
    if ns == 0 {
        return;
    }
    if is_entry {
        out[Category::Handoff.index()] += ns;
        return;
    }
    if up + other == 0 {
        // Blocked all window with nobody waking it: an idle worker.
        out[Category::WaitForWork.index()] += ns;
        return;
    }
    let (w, h) = scale_pair(up, other, ns);
    out[Category::WaitForWork.index()] += w;
    out[Category::Handoff.index()] += h;
}

/// Who signalled a thread, relative to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WakerRole {
    /// A peer of its own role.
    Kin,
    /// An entry thread of another role (work handed down).
    Upstream,
    /// Anyone else.
    Other,
}

/// Worker threads of user-space task schedulers, by their default names (as
/// the kernel keeps them: 15 characters): they park on a futex when out of
/// work and are woken by their peers when work arrives, and a task waiting
/// for an async lock never blocks one of them.
pub const TASK_SCHEDULER_WORKERS: &[&str] = &[
    "tokio-runtime-w", // tokio
    "ForkJoinPool",    // Java's fork/join and virtual-thread carriers
    "rayon-",          // rayon
    "actix-rt",        // actix
    "async-std",       // async-std
];

/// Whether a thread is a worker of a user-space task scheduler.
pub fn parks_for_a_task_scheduler(comm: &str) -> bool {
    TASK_SCHEDULER_WORKERS.iter().any(|p| comm.starts_with(p))
}

/// Thread name with digit runs replaced by `*`: the pattern shared by a pool.
pub fn name_pattern(comm: &str) -> String {
    let mut out = String::with_capacity(comm.len());
    let mut in_digits = false;
    for c in comm.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('*');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// Request-rate evidence of one thread in one window.
#[derive(Clone, Debug, Default)]
pub struct LoadSignals {
    /// Wake-ups by client data, accepts and blocking receives on client sockets.
    pub requests: u64,
    /// Receive calls on client sockets (only with per-call socket counting).
    pub recv_calls: u64,
    /// Client connections seen (peer addresses).
    pub clients: BTreeSet<String>,
}

/// Request-rate evidence of a thread in a window.
pub fn load_signals(s: &Snapshot, tid: u32, f: &SourceFacts) -> LoadSignals {
    let mut l = LoadSignals::default();
    for r in s.resources.iter().filter(|r| r.tid == tid) {
        let Resource::Socket(sock) = &r.resource else {
            continue;
        };
        if f.direction(sock) != Direction::Inbound {
            continue;
        }
        match r.kind {
            WaitKind::Accept => l.requests += r.waits,
            WaitKind::SockRecv => {
                l.requests += r.waits;
                l.recv_calls += r.calls;
                if !sock.peer.is_empty() {
                    l.clients.insert(sock.peer.clone());
                }
            }
            WaitKind::SockSend if !sock.peer.is_empty() => {
                l.clients.insert(sock.peer.clone());
            }
            _ => {}
        }
    }
    for e in s.wakeups.iter().filter(|e| e.wakee_tid == tid) {
        if let Waker::Socket(sock) = &e.waker {
            if f.direction(sock) == Direction::Inbound && e.wait_kind == Some(WaitKind::Mux) {
                l.requests += e.count;
                // One wake-up may be a neighbour's socket credited by the
                // collector's "data ready on this CPU" heuristic; a client
                // sends more than one request a window.
                if !sock.peer.is_empty() && e.count >= 2 {
                    l.clients.insert(sock.peer.clone());
                }
            }
        }
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(local: &str, peer: &str) -> SocketAddrs {
        SocketAddrs {
            proto: "tcp".into(),
            local: local.into(),
            peer: peer.into(),
        }
    }

    #[test]
    fn pool_names_share_a_pattern() {
        assert_eq!(name_pattern("hw-kn-w-12"), "hw-kn-w-*");
        assert_eq!(name_pattern("hw-kn-w-3"), "hw-kn-w-*");
        assert_eq!(name_pattern("redis-server"), "redis-server");
        assert_eq!(name_pattern("kworker/u8:5"), "kworker/u*:*");
    }

    #[test]
    fn direction_uses_listen_ports_then_sharing_then_port_ranges() {
        let mut f = SourceFacts::default();
        // well-known local port, ephemeral peer: a client of ours
        assert_eq!(
            f.direction(&sock("127.0.0.1:6379", "127.0.0.1:50000")),
            Direction::Inbound
        );
        // ephemeral local port, well-known peer: we called it
        assert_eq!(
            f.direction(&sock("10.0.0.1:40000", "10.0.0.2:5432")),
            Direction::Outbound
        );
        // both ephemeral: the local port we listen on decides
        f.listen_ports.insert(45000);
        assert_eq!(
            f.direction(&sock("127.0.0.1:45000", "127.0.0.1:33000")),
            Direction::Inbound
        );
        f.shared_peers.insert("127.0.0.1:42000".into());
        assert_eq!(
            f.direction(&sock("127.0.0.1:34000", "127.0.0.1:42000")),
            Direction::Outbound
        );
        assert_eq!(f.direction(&sock("0.0.0.0:80", "")), Direction::Inbound);
    }
}
