//! holdup's data model: one typed [`Snapshot`] per window, the unit every
//! sink (live view, recording, diagnosis) consumes. Pure data, no I/O, so a
//! snapshot read back from a recording is indistinguishable from a live one.
//!
//! Why this file is long (~880 lines): it is the one schema of a window,
//! every type a recording stores with its doc line, kept together so that a
//! change to the format is one diff (the metric catalog sits beside them).

#![warn(missing_docs)]

use serde::{Deserialize, Serialize};
use std::fmt;

/// Number of log2 histogram buckets; bucket `i` holds values in `[2^i, 2^(i+1))` µs
/// (bucket 0 also holds everything below 2 µs).
pub const NR_BUCKETS: usize = 32;

/// Version of the snapshot schema, stored in recordings.
pub const SCHEMA_VERSION: u32 = 1;

/// Scheduling state of a thread (metrics 1-5). They add up to the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadState {
    /// Running on a CPU.
    OnCpu,
    /// Runnable, waiting for a CPU.
    RunQueue,
    /// Uninterruptible sleep for I/O (`in_iowait`).
    IoWait,
    /// Other uninterruptible sleep.
    OtherD,
    /// Interruptible sleep.
    Sleep,
}

impl ThreadState {
    /// All states, in the kernel's index order.
    pub const ALL: [ThreadState; 5] = [
        ThreadState::OnCpu,
        ThreadState::RunQueue,
        ThreadState::IoWait,
        ThreadState::OtherD,
        ThreadState::Sleep,
    ];

    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            ThreadState::OnCpu => "cpu",
            ThreadState::RunQueue => "runq",
            ThreadState::IoWait => "iowait",
            ThreadState::OtherD => "D",
            ThreadState::Sleep => "sleep",
        }
    }
}

/// What a blocked thread waited on, from the syscall it slept in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitKind {
    /// futex wait (metrics 6-7).
    Futex,
    /// read family on a non-socket file (metric 9).
    FileRead,
    /// write family or fsync on a non-socket file (metric 10).
    FileWrite,
    /// receive on a socket (metric 11).
    SockRecv,
    /// send on a socket (metric 12).
    SockSend,
    /// accept (metric 13).
    Accept,
    /// connect (metric 13).
    Connect,
    /// epoll/poll/select (metric 14).
    Mux,
    /// another syscall (nanosleep, wait4, ...).
    Other,
}

impl WaitKind {
    /// All kinds in the kernel's index order (index + 1 = kernel value).
    pub const ALL: [WaitKind; 9] = [
        WaitKind::Futex,
        WaitKind::FileRead,
        WaitKind::FileWrite,
        WaitKind::SockRecv,
        WaitKind::SockSend,
        WaitKind::Accept,
        WaitKind::Connect,
        WaitKind::Mux,
        WaitKind::Other,
    ];

    /// From the kernel's `enum wait_kind` value.
    pub fn from_kernel(v: u32) -> Option<WaitKind> {
        if v == 0 {
            return None;
        }
        WaitKind::ALL.get(v as usize - 1).copied()
    }

    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            WaitKind::Futex => "futex",
            WaitKind::FileRead => "file-read",
            WaitKind::FileWrite => "file-write",
            WaitKind::SockRecv => "recv",
            WaitKind::SockSend => "send",
            WaitKind::Accept => "accept",
            WaitKind::Connect => "connect",
            WaitKind::Mux => "poll",
            WaitKind::Other => "other",
        }
    }
}

/// Log2 latency histogram in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// `buckets[i]` counts values in `[2^i, 2^(i+1))` µs; trailing zeros trimmed.
    pub buckets: Vec<u64>,
}

impl Histogram {
    /// Builds a histogram from kernel buckets, trimming trailing zeros.
    pub fn from_buckets(b: &[u64]) -> Histogram {
        let end = b.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
        Histogram {
            buckets: b[..end].to_vec(),
        }
    }

    /// Total count.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Adds another histogram into this one.
    pub fn merge(&mut self, other: &Histogram) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }

    /// Upper bound (µs) of the bucket holding quantile `q` (0..=1), or None if empty.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Some(1u64 << (i + 1));
            }
        }
        Some(1u64 << self.buckets.len())
    }
}

/// Time of one thread in each scheduling state during a window, ns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateTimes {
    /// Metric 1.
    pub on_cpu_ns: u64,
    /// Metric 2.
    pub runq_ns: u64,
    /// Metric 3.
    pub iowait_ns: u64,
    /// Metric 4.
    pub other_d_ns: u64,
    /// Metric 5.
    pub sleep_ns: u64,
}

impl StateTimes {
    /// Time in a state.
    pub fn get(&self, s: ThreadState) -> u64 {
        match s {
            ThreadState::OnCpu => self.on_cpu_ns,
            ThreadState::RunQueue => self.runq_ns,
            ThreadState::IoWait => self.iowait_ns,
            ThreadState::OtherD => self.other_d_ns,
            ThreadState::Sleep => self.sleep_ns,
        }
    }

    /// Sum of all states: the part of the window the thread was observed.
    pub fn total_ns(&self) -> u64 {
        self.on_cpu_ns + self.runq_ns + self.iowait_ns + self.other_d_ns + self.sleep_ns
    }
}

/// Blocked time of one thread on one kind of wait during a window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitTotal {
    /// What it waited on.
    pub kind: WaitKind,
    /// Blocked time, ns.
    pub ns: u64,
    /// Blocking waits that started in the window.
    pub count: u64,
}

/// One target thread in one window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadWindow {
    /// Process id.
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    /// Thread name.
    pub comm: String,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// Metrics 1-5.
    pub states: StateTimes,
    /// Run-queue waits that ended in the window.
    pub runq_count: u64,
    /// Run-queue latency histogram (metric 2).
    pub runq_hist: Histogram,
    /// Run-queue time older than holdup's per-CPU history, so not attributed to a culprit.
    pub runq_unattributed_ns: u64,
    /// Involuntary context switches.
    pub preempted: u64,
    /// Blocked time split by what it waited on.
    pub waits: Vec<WaitTotal>,
    /// The thread exited during the window.
    pub exited: bool,
}

/// A socket's addresses.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SocketAddrs {
    /// "tcp", "udp", "unix", or a protocol number.
    pub proto: String,
    /// Local address:port.
    pub local: String,
    /// Peer address:port ("" when not connected).
    pub peer: String,
}

impl fmt::Display for SocketAddrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.peer.is_empty() {
            write!(f, "{} {}", self.proto, self.local)
        } else {
            write!(f, "{} {}->{}", self.proto, self.local, self.peer)
        }
    }
}

/// The thing a wait is on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Resource {
    /// A private futex (or a shared one in private anonymous memory), keyed as
    /// the kernel keys it: the address space (a process) and the address.
    Futex {
        /// Process whose address space holds it.
        tgid: u32,
        /// User address.
        uaddr: u64,
    },
    /// A shared futex (no `FUTEX_PRIVATE_FLAG`) in file-backed or shared memory,
    /// keyed as the kernel keys it: by its backing object, so a wait in one
    /// process and the wake from another meet on one resource (process-shared
    /// mutexes and semaphores, lock tables in shared memory).
    SharedFutex {
        /// Device of the backing inode (kernel dev_t; shmem's for shared anonymous memory).
        dev: u64,
        /// Backing inode.
        ino: u64,
        /// Byte offset of the futex word in the backing object.
        offset: u64,
    },
    /// A file that is not a socket.
    File {
        /// Device (kernel dev_t).
        dev: u64,
        /// Inode.
        ino: u64,
        /// "file", "pipe", "chr", "dir", "other".
        file_type: String,
        /// Name (last path component, or resolved path when known).
        name: String,
    },
    /// A socket.
    Socket(SocketAddrs),
    /// An epoll instance, or poll/select (instance 0).
    Mux {
        /// Identity of the epoll instance (kernel file address), 0 for poll/select.
        instance: u64,
        /// Syscall name.
        call: String,
    },
}

impl Resource {
    /// The one-u64 name of a shared futex, as [`WakeEdge::resource_id`] carries
    /// it: the collector's BPF computes this same mix of (dev, ino, offset)
    /// (futex.bpf.c, `shared_futex_id`), so a wake edge joins a
    /// [`Resource::SharedFutex`] wait by `resource_id == shared_futex_id(..)`.
    pub fn shared_futex_id(dev: u64, ino: u64, offset: u64) -> u64 {
        let mut x = ino.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(offset);
        x ^= x >> 31;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9).wrapping_add(dev);
        x ^= x >> 29;
        x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 32)
    }

    /// The value a [`WakeEdge::resource_id`] has for a futex wait on this
    /// resource (the address of a private futex; [`Resource::shared_futex_id`]
    /// of a shared one); None for other resources.
    pub fn futex_wake_id(&self) -> Option<u64> {
        match *self {
            Resource::Futex { uaddr, .. } => Some(uaddr),
            Resource::SharedFutex { dev, ino, offset } => {
                Some(Resource::shared_futex_id(dev, ino, offset))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Futex { tgid, uaddr } => write!(f, "futex {uaddr:#x} (pid {tgid})"),
            Resource::SharedFutex { ino, offset, .. } => {
                write!(f, "shared futex inode {ino} +{offset:#x}")
            }
            Resource::File {
                file_type,
                name,
                ino,
                ..
            } => {
                if name.is_empty() {
                    write!(f, "{file_type} inode {ino}")
                } else {
                    write!(f, "{file_type} {name}")
                }
            }
            Resource::Socket(s) => write!(f, "{s}"),
            Resource::Mux { instance, call } => {
                if *instance == 0 {
                    write!(f, "{call}")
                } else {
                    // the low bits of the file address tell instances apart
                    write!(f, "{call} epoll#{:04x}", (instance >> 6) & 0xffff)
                }
            }
        }
    }
}

/// Blocked time of one thread on one resource in a window (metrics 6, 7, 9-14).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceWait {
    /// Process id of the waiting thread.
    pub tgid: u32,
    /// Waiting thread.
    pub tid: u32,
    /// Kind of wait.
    pub kind: WaitKind,
    /// The resource.
    pub resource: Resource,
    /// Blocked time, ns.
    pub wait_ns: u64,
    /// Blocking waits that started in the window.
    pub waits: u64,
    /// Duration histogram of waits that ended in the window.
    pub hist: Histogram,
    /// Socket calls seen (sock_recv_length / sock_send_length), blocking or not.
    pub calls: u64,
    /// Socket bytes moved.
    pub bytes: u64,
}

/// Futex wakes issued by one thread on one futex (metric 8).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FutexWake {
    /// Waker's process.
    pub waker_tgid: u32,
    /// Waker thread.
    pub waker_tid: u32,
    /// The futex.
    pub futex: Resource,
    /// Wake calls that woke at least one target thread.
    pub calls: u64,
    /// Target threads woken.
    pub woken: u64,
}

/// What ended a wait.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Waker {
    /// A thread, from process context.
    Thread {
        /// Process id.
        tgid: u32,
        /// Thread id.
        tid: u32,
        /// Name.
        comm: String,
    },
    /// Data arriving on a socket (metric 15).
    Socket(SocketAddrs),
    /// Interrupt, timer or idle context.
    Kernel,
}

/// Wake-ups of one thread by one waker on one kind of wait (metrics 5, 8, 15).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WakeEdge {
    /// Woken thread's process.
    pub wakee_tgid: u32,
    /// Woken thread.
    pub wakee_tid: u32,
    /// What the wakee waited on (None: not in a classified syscall).
    pub wait_kind: Option<WaitKind>,
    /// Resource id of the wait (futex address, inode, socket) for joining with
    /// [`ResourceWait`]; for a futex, [`Resource::futex_wake_id`] of the wait's resource.
    pub resource_id: u64,
    /// Who or what woke it.
    pub waker: Waker,
    /// Number of wake-ups.
    pub count: u64,
    /// Total length of the sleeps they ended, ns.
    pub sleep_ns: u64,
}

/// A task that held a CPU while a target thread waited for it (metric 2, "who ran instead").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Culprit {
    /// The waiting thread's process.
    pub victim_tgid: u32,
    /// The waiting thread.
    pub victim_tid: u32,
    /// The task that ran: process.
    pub tgid: u32,
    /// The task that ran: thread.
    pub tid: u32,
    /// Its name.
    pub comm: String,
    /// Its cgroup v2 id.
    pub cgroup_id: u64,
    /// Its cgroup path, when resolvable.
    pub cgroup: String,
    /// CPU time it held while the victim waited, ns.
    pub ns: u64,
}

/// Block IO of one submitting thread on one disk (metric 16).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiskIo {
    /// Disk name (e.g. "vda") or "major:minor".
    pub disk: String,
    /// Device number major:minor.
    pub dev: String,
    /// Submitter process (0 when unknown).
    pub tgid: u32,
    /// Submitter thread (0 when unknown, e.g. flushes).
    pub tid: u32,
    /// Submitter name.
    pub comm: String,
    /// The submitter is one of the target's threads.
    pub is_target: bool,
    /// Completed requests.
    pub requests: u64,
    /// Bytes.
    pub bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Sum of request latencies (queue + device), ns.
    pub latency_ns: u64,
    /// Latency histogram.
    pub latency_hist: Histogram,
    /// Share of the disk's bytes in this window, 0..=1.
    pub share: f64,
}

/// What was lost in a window; all zero means nothing was.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loss {
    /// Per-thread entries that did not fit.
    pub thread_map_full: u64,
    /// Per-resource entries that did not fit.
    pub resource_map_full: u64,
    /// Wake edges that did not fit.
    pub wake_map_full: u64,
    /// Culprit entries that did not fit.
    pub culprit_map_full: u64,
    /// Disk entries that did not fit.
    pub disk_map_full: u64,
    /// Threads that could not be tracked at all.
    pub threads_untracked: u64,
    /// In-flight block requests that could not be tracked.
    pub bio_inflight_full: u64,
    /// Ring-buffer records dropped.
    pub ringbuf_drops: u64,
    /// Events for target threads seen before their state was known (accounting starts late).
    pub threads_missed: u64,
}

impl fmt::Display for Loss {
    /// The non-zero counters, or "none".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            (self.thread_map_full, "thread entries (map full)"),
            (self.resource_map_full, "resource entries (map full)"),
            (self.wake_map_full, "wake edges (map full)"),
            (self.culprit_map_full, "culprit entries (map full)"),
            (self.disk_map_full, "disk entries (map full)"),
            (self.threads_untracked, "threads not tracked"),
            (self.bio_inflight_full, "block requests not tracked"),
            (self.ringbuf_drops, "ring-buffer records dropped"),
            (self.threads_missed, "threads picked up late"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if parts.is_empty() {
            write!(f, "none")
        } else {
            write!(f, "{}", parts.join(", "))
        }
    }
}

impl Loss {
    /// Sum of every counter.
    pub fn total(&self) -> u64 {
        self.thread_map_full
            + self.resource_map_full
            + self.wake_map_full
            + self.culprit_map_full
            + self.disk_map_full
            + self.threads_untracked
            + self.bio_inflight_full
            + self.ringbuf_drops
            + self.threads_missed
    }
}

/// Cost of one BPF program during a window, from the kernel's BPF stats.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgCost {
    /// Program name.
    pub name: String,
    /// Runs in the window.
    pub run_cnt: u64,
    /// Time spent running, ns.
    pub run_time_ns: u64,
}

impl ProgCost {
    /// Mean cost per run, ns.
    pub fn ns_per_run(&self) -> f64 {
        if self.run_cnt == 0 {
            0.0
        } else {
            self.run_time_ns as f64 / self.run_cnt as f64
        }
    }
}

/// Time span of a window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowInfo {
    /// 0-based index in the run.
    pub index: u64,
    /// Start, CLOCK_MONOTONIC ns.
    pub start_ns: u64,
    /// End, CLOCK_MONOTONIC ns.
    pub end_ns: u64,
    /// Start, Unix time in ms (for people).
    pub wall_start_ms: u64,
}

impl WindowInfo {
    /// Length, ns.
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// Everything holdup measured in one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When.
    pub window: WindowInfo,
    /// Target threads (metrics 1-5 and wait totals).
    pub threads: Vec<ThreadWindow>,
    /// Per-resource waits (metrics 6, 7, 9-14).
    pub resources: Vec<ResourceWait>,
    /// Futex wakes per waker (metric 8).
    pub futex_wakes: Vec<FutexWake>,
    /// Who woke whom (metrics 5, 15).
    pub wakeups: Vec<WakeEdge>,
    /// Who ran instead (metric 2).
    pub culprits: Vec<Culprit>,
    /// Block IO per thread and disk, all submitters (metric 16).
    pub disks: Vec<DiskIo>,
    /// What was lost.
    pub loss: Loss,
    /// holdup's own cost per BPF program.
    pub overhead: Vec<ProgCost>,
    /// Target processes whose language runtime holdup recognised (absent in
    /// recordings made before holdup looked).
    #[serde(default)]
    pub runtimes: Vec<ProcessRuntime>,
    /// The target processes' cgroups whose CPU quota throttled them in the
    /// window, from each cgroup's `cpu.stat` (absent in older recordings).
    #[serde(default)]
    pub throttles: Vec<CgroupThrottle>,
}

/// CPU throttling of one cgroup in one window: CFS bandwidth control held
/// its runnable tasks off the CPUs because its quota was spent. Read from
/// the cgroup's `cpu.stat`, the kernel's own counters (the scheduler has no
/// tracepoint for throttling).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupThrottle {
    /// The cgroup, as its path below the cpu controller's mount.
    pub cgroup: String,
    /// Target processes in it.
    pub tgids: Vec<u32>,
    /// Enforcement periods that elapsed with runnable tasks.
    pub periods: u64,
    /// Periods in which the quota ran out.
    pub throttled_periods: u64,
    /// Time its run queues spent throttled, summed over CPUs, ns.
    pub throttled_ns: u64,
}

/// A language runtime that changes what a process's waits mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    /// Go: goroutines block in the runtime, not on OS futexes; a thread
    /// waiting on a futex is an idle M parked by the scheduler (contention
    /// on a sync.Mutex does not block threads).
    Go,
}

/// A target process and its recognised runtime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRuntime {
    /// Process.
    pub tgid: u32,
    /// Its runtime.
    pub runtime: Runtime,
}

impl Snapshot {
    /// Total BPF run time in the window, ns.
    pub fn overhead_ns(&self) -> u64 {
        self.overhead.iter().map(|p| p.run_time_ns).sum()
    }

    /// A thread by tid.
    pub fn thread(&self, tid: u32) -> Option<&ThreadWindow> {
        self.threads.iter().find(|t| t.tid == tid)
    }
}

/// What holdup was told to watch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Target {
    /// A process and its threads (and children, when followed).
    Pid {
        /// The pid.
        pid: u32,
    },
    /// Every process in a cgroup v2 subtree.
    Cgroup {
        /// Path.
        path: String,
    },
    /// Processes whose name matches a regular expression.
    Comm {
        /// The expression.
        regex: String,
    },
    /// Every task on the host.
    All,
    /// A command holdup started.
    Command {
        /// argv.
        argv: Vec<String>,
        /// Its pid.
        pid: u32,
    },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Pid { pid } => write!(f, "pid {pid}"),
            Target::Cgroup { path } => write!(f, "cgroup {path}"),
            Target::Comm { regex } => write!(f, "comm /{regex}/"),
            Target::All => write!(f, "all tasks"),
            Target::Command { argv, pid } => write!(f, "command `{}` (pid {pid})", argv.join(" ")),
        }
    }
}

/// One entry of the metric catalog stored in a recording's header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricInfo {
    /// 1-16, as in DESIGN.md.
    pub id: u32,
    /// Kernel subsystem.
    pub subsystem: String,
    /// Name.
    pub name: String,
    /// Where it lives in a [`Snapshot`].
    pub field: String,
}

/// The 16 metrics and where each is found in a snapshot.
pub fn metric_catalog() -> Vec<MetricInfo> {
    let m = |id, subsystem: &str, name: &str, field: &str| MetricInfo {
        id,
        subsystem: subsystem.into(),
        name: name.into(),
        field: field.into(),
    };
    vec![
        m(1, "scheduling", "on-CPU time", "threads[].states.on_cpu_ns"),
        m(
            2,
            "scheduling",
            "run-queue wait, latency histogram, who ran instead",
            "threads[].states.runq_ns, threads[].runq_hist, culprits[]",
        ),
        m(3, "scheduling", "iowait", "threads[].states.iowait_ns"),
        m(
            4,
            "scheduling",
            "other uninterruptible wait",
            "threads[].states.other_d_ns",
        ),
        m(
            5,
            "scheduling",
            "interruptible sleep, who woke me",
            "threads[].states.sleep_ns, wakeups[]",
        ),
        m(
            6,
            "futex",
            "blocked time per futex",
            "resources[kind=futex].wait_ns, .hist",
        ),
        m(
            7,
            "futex",
            "blocking waits per futex",
            "resources[kind=futex].waits",
        ),
        m(8, "futex", "wakes per futex per waker", "futex_wakes[]"),
        m(
            9,
            "vfs",
            "blocked time reading files",
            "resources[kind=file_read]",
        ),
        m(
            10,
            "vfs",
            "blocked time writing / syncing files",
            "resources[kind=file_write]",
        ),
        m(
            11,
            "net",
            "blocked time receiving per socket, calls, bytes",
            "resources[kind=sock_recv]",
        ),
        m(
            12,
            "net",
            "blocked time sending per socket, calls, bytes",
            "resources[kind=sock_send]",
        ),
        m(
            13,
            "net",
            "blocked time in accept / connect",
            "resources[kind=accept|connect]",
        ),
        m(
            14,
            "mux",
            "blocked time in epoll/poll/select per instance",
            "resources[kind=mux]",
        ),
        m(
            15,
            "mux",
            "what ended the wait",
            "wakeups[wait_kind=mux].waker",
        ),
        m(
            16,
            "block",
            "per thread x disk: requests, bytes, latency, share",
            "disks[]",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_trims_and_merges() {
        let mut h = Histogram::from_buckets(&[1, 0, 2, 0, 0]);
        assert_eq!(h.buckets, vec![1, 0, 2]);
        h.merge(&Histogram::from_buckets(&[0, 0, 0, 4]));
        assert_eq!(h.buckets, vec![1, 0, 2, 4]);
        assert_eq!(h.count(), 7);
    }

    #[test]
    fn quantile_picks_the_bucket_upper_bound() {
        let h = Histogram::from_buckets(&[10, 0, 0, 90]);
        assert_eq!(h.quantile_us(0.05), Some(2));
        assert_eq!(h.quantile_us(0.5), Some(16));
        assert_eq!(Histogram::default().quantile_us(0.5), None);
    }

    #[test]
    fn wait_kind_matches_kernel_numbering() {
        assert_eq!(WaitKind::from_kernel(0), None);
        assert_eq!(WaitKind::from_kernel(1), Some(WaitKind::Futex));
        assert_eq!(WaitKind::from_kernel(8), Some(WaitKind::Mux));
        assert_eq!(WaitKind::from_kernel(9), Some(WaitKind::Other));
        assert_eq!(WaitKind::from_kernel(10), None);
    }

    #[test]
    fn loss_lists_only_what_was_lost() {
        assert_eq!(Loss::default().to_string(), "none");
        let l = Loss {
            wake_map_full: 3,
            threads_missed: 1,
            ..Default::default()
        };
        assert_eq!(
            l.to_string(),
            "3 wake edges (map full), 1 threads picked up late"
        );
        assert_eq!(l.total(), 4);
    }

    #[test]
    fn catalog_has_sixteen_metrics() {
        let c = metric_catalog();
        assert_eq!(c.len(), 16);
        assert!(c.iter().enumerate().all(|(i, m)| m.id as usize == i + 1));
    }
}
