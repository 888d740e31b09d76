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

mod breakdown;
mod facts;

pub use breakdown::{breakdown, load_signals, Breakdown, LoadSignals};
pub use facts::SourceFacts;

use holdup_model::Resource;
use serde::Serialize;

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

#[cfg(test)]
mod tests {
    use super::*;
    use holdup_model::SocketAddrs;

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
