//! Builders of synthetic windows with known behaviour, shared by the
//! diagnosis tests: a service's threads, their waits and resources, who woke
//! them, who ran instead, disk submitters, and runs of windows.

// Each test file uses a subset of the builders.
#![allow(dead_code)]

use holdup_diagnose::verdict::NamedKind;
use holdup_diagnose::{diagnose, Diagnosis, Input, SplitRequest, TimeRange, VerdictKind};
use holdup_model::{
    Culprit, DiskIo, FutexWake, Histogram, Loss, Resource, ResourceWait, Snapshot, SocketAddrs,
    StateTimes, ThreadWindow, WaitKind, WaitTotal, WakeEdge, Waker, WindowInfo,
};

/// One millisecond in ns.
pub const MS: u64 = 1_000_000;
/// The service's pid (and its main thread's tid).
pub const SVC: u32 = 100;

/// A small deterministic wobble (0..=10 ms) so no series is constant.
pub fn jitter(i: u64, salt: u64) -> u64 {
    (i * 37 + salt * 11) % 11
}

pub fn snap(i: u64) -> Snapshot {
    Snapshot {
        window: WindowInfo {
            index: i,
            start_ns: i * 1000 * MS,
            end_ns: (i + 1) * 1000 * MS,
            wall_start_ms: 1_700_000_000_000 + i * 1000,
        },
        threads: Vec::new(),
        resources: Vec::new(),
        futex_wakes: Vec::new(),
        wakeups: Vec::new(),
        culprits: Vec::new(),
        disks: Vec::new(),
        loss: Loss::default(),
        overhead: Vec::new(),
        runtimes: Vec::new(),
        throttles: Vec::new(),
    }
}

/// A thread with states in ms: [cpu, runq, iowait, D]; the rest of the
/// second is sleep.
pub fn thread(tid: u32, comm: &str, st: [u64; 4]) -> ThreadWindow {
    let used: u64 = st.iter().sum();
    ThreadWindow {
        tgid: SVC,
        tid,
        comm: comm.into(),
        cgroup_id: 1,
        states: StateTimes {
            on_cpu_ns: st[0] * MS,
            runq_ns: st[1] * MS,
            iowait_ns: st[2] * MS,
            other_d_ns: st[3] * MS,
            sleep_ns: (1000 - used) * MS,
        },
        runq_count: 100,
        runq_hist: Histogram::from_buckets(&[10, 20, 5]),
        runq_unattributed_ns: 0,
        preempted: 0,
        waits: Vec::new(),
        exited: false,
    }
}

pub fn add_wait(t: &mut ThreadWindow, kind: WaitKind, ms: u64, count: u64) {
    t.waits.push(WaitTotal {
        kind,
        ns: ms * MS,
        count,
    });
}

pub fn sock(local: &str, peer: &str) -> SocketAddrs {
    SocketAddrs {
        proto: "tcp".into(),
        local: local.into(),
        peer: peer.into(),
    }
}

pub fn resource(tid: u32, kind: WaitKind, r: Resource, ms: u64, waits: u64) -> ResourceWait {
    ResourceWait {
        tgid: SVC,
        tid,
        kind,
        resource: r,
        wait_ns: ms * MS,
        waits,
        hist: Histogram::from_buckets(&[0, 0, waits]),
        calls: 0,
        bytes: 0,
    }
}

pub fn edge(wakee: u32, kind: WaitKind, waker: Waker, count: u64, ms: u64) -> WakeEdge {
    WakeEdge {
        wakee_tgid: SVC,
        wakee_tid: wakee,
        wait_kind: Some(kind),
        resource_id: 0,
        waker,
        count,
        sleep_ns: ms * MS,
    }
}

pub fn culprit(victim: u32, tgid: u32, tid: u32, comm: &str, ms: u64) -> Culprit {
    Culprit {
        victim_tgid: SVC,
        victim_tid: victim,
        tgid,
        tid,
        comm: comm.into(),
        cgroup_id: 2,
        cgroup: "/".into(),
        ns: ms * MS,
    }
}

pub fn disk(tgid: u32, comm: &str, target: bool, mib: u64, lat_us: u64) -> DiskIo {
    let requests = mib * 16 + 1;
    DiskIo {
        disk: "vda".into(),
        dev: "254:0".into(),
        tgid,
        tid: tgid,
        comm: comm.into(),
        is_target: target,
        requests,
        bytes: mib << 20,
        write_bytes: mib << 20,
        latency_ns: requests * lat_us * 1000,
        latency_hist: Histogram::from_buckets(&[0, 0, 0, 0, 0, 0, 0, requests]),
        share: 0.0,
    }
}

/// An event loop "svc" (tid 100) on epoll over `clients` client
/// connections, with `cpu`, `runq`, `iowait` ms; the rest idle in epoll_wait.
pub fn event_loop(s: &mut Snapshot, cpu: u64, runq: u64, iowait: u64, clients: u32, wakeups: u64) {
    let mut t = thread(SVC, "svc", [cpu, runq, iowait, 0]);
    let idle = 1000 - cpu - runq - iowait;
    add_wait(&mut t, WaitKind::Mux, idle, wakeups);
    if iowait > 0 {
        add_wait(&mut t, WaitKind::FileWrite, iowait, wakeups / 2);
        s.resources.push(resource(
            SVC,
            WaitKind::FileWrite,
            Resource::File {
                dev: 254 << 20,
                ino: 12,
                file_type: "file".into(),
                name: "appendonly.aof".into(),
            },
            iowait,
            wakeups / 2,
        ));
    }
    s.threads.push(t);
    s.resources.push(resource(
        SVC,
        WaitKind::Mux,
        Resource::Mux {
            instance: 0xffff_0000,
            call: "epoll_wait".into(),
        },
        idle,
        wakeups,
    ));
    for c in 0..clients {
        s.wakeups.push(edge(
            SVC,
            WaitKind::Mux,
            Waker::Socket(sock("127.0.0.1:6379", &format!("127.0.0.1:{}", 50000 + c))),
            wakeups / u64::from(clients),
            idle / u64::from(clients),
        ));
    }
    // An idle background thread, like Redis's.
    let mut bg = thread(SVC + 1, "bio_close_file", [0, 0, 0, 0]);
    add_wait(&mut bg, WaitKind::Futex, 1000, 0);
    s.threads.push(bg);
    s.resources.push(resource(
        SVC + 1,
        WaitKind::Futex,
        Resource::Futex {
            tgid: SVC,
            uaddr: 0xbb00,
        },
        1000,
        0,
    ));
}

pub fn run(n: u64, build: impl Fn(u64, bool, &mut Snapshot)) -> Vec<Snapshot> {
    (0..n)
        .map(|i| {
            let mut s = snap(i);
            build(i, i >= n / 2, &mut s);
            s
        })
        .collect()
}

pub fn diag(windows: &[Snapshot]) -> Diagnosis {
    diagnose(&Input {
        target: "pid 100".into(),
        windows,
        label: "synthetic",
        baseline_windows: None,
        split: SplitRequest::default(),
    })
}

pub fn top_kind(d: &Diagnosis) -> VerdictKind {
    d.top().kind
}

pub fn names(d: &Diagnosis, kind: NamedKind) -> Vec<String> {
    d.top()
        .culprits
        .iter()
        .filter(|c| c.kind == kind)
        .map(|c| c.name.clone())
        .collect()
}

/// Thread-per-connection workers "w-0".."w-3" that receive on client
/// sockets; `lock_ms` of their time waits on the futex 0xaa00 they all take.
pub fn workers(s: &mut Snapshot, i: u64, lock_ms: u64, peer_ms: u64) {
    pool(
        s,
        i,
        &Pool {
            lock_ms,
            peer_ms,
            ..Pool::default()
        },
    );
}

/// Four workers that each receive on a client socket (ms per window; each
/// worker's run queue gets a jitter on top and the rest of the second is
/// spent receiving from its client). The defaults are [`workers`]'.
pub struct Pool {
    /// On-CPU.
    pub cpu: u64,
    /// Run queue (before the jitter).
    pub runq: u64,
    /// iowait, writing the file "wal".
    pub iowait: u64,
    /// Futex wait.
    pub lock_ms: u64,
    /// Wait for the peer 10.1.1.1:5432.
    pub peer_ms: u64,
    /// Process of worker k.
    pub tgid: fn(u32) -> u32,
    /// Thread id of worker k.
    pub tid: fn(u32) -> u32,
    /// Thread name of worker k.
    pub comm: fn(u32) -> String,
    /// The futex worker k waits on.
    pub futex: fn(u32) -> Resource,
    /// (tgid, tid) of the thread that wakes worker k from its futex.
    pub waker: fn(u32) -> (u32, u32),
}

impl Default for Pool {
    fn default() -> Pool {
        Pool {
            cpu: 100,
            runq: 20,
            iowait: 0,
            lock_ms: 0,
            peer_ms: 0,
            tgid: |_| SVC,
            tid: |k| 300 + k,
            comm: |k| format!("w-{k}"),
            futex: |_| Resource::Futex {
                tgid: SVC,
                uaddr: 0xaa00,
            },
            waker: |k| (SVC, 300 + (k + 1) % 4),
        }
    }
}

/// Adds a [`Pool`]'s four workers to a window.
pub fn pool(s: &mut Snapshot, i: u64, p: &Pool) {
    for k in 0..4u32 {
        let (tgid, tid) = ((p.tgid)(k), (p.tid)(k));
        let j = jitter(i, u64::from(k));
        let mut t = thread(tid, &(p.comm)(k), [p.cpu, p.runq + j, p.iowait, 0]);
        t.tgid = tgid;
        let mut push = |r: ResourceWait| s.resources.push(ResourceWait { tgid, ..r });
        let client = 1000 - p.cpu - p.runq - j - p.iowait - p.lock_ms - p.peer_ms;
        add_wait(&mut t, WaitKind::SockRecv, client + p.peer_ms, 500);
        let cs = sock("127.0.0.1:8080", &format!("127.0.0.1:{}", 51000 + k));
        push(resource(
            tid,
            WaitKind::SockRecv,
            Resource::Socket(cs),
            client,
            500,
        ));
        if p.peer_ms > 0 {
            let ps = sock(&format!("127.0.0.1:{}", 41000 + k), "10.1.1.1:5432");
            push(resource(
                tid,
                WaitKind::SockRecv,
                Resource::Socket(ps),
                p.peer_ms,
                400,
            ));
        }
        if p.iowait > 0 {
            add_wait(&mut t, WaitKind::FileWrite, p.iowait, 200);
            push(resource(
                tid,
                WaitKind::FileWrite,
                Resource::File {
                    dev: 254 << 20,
                    ino: 13,
                    file_type: "file".into(),
                    name: "wal".into(),
                },
                p.iowait,
                200,
            ));
        }
        if p.lock_ms > 0 {
            add_wait(&mut t, WaitKind::Futex, p.lock_ms, 300);
            push(resource(tid, WaitKind::Futex, (p.futex)(k), p.lock_ms, 300));
            let (waker_tgid, waker_tid) = (p.waker)(k);
            s.futex_wakes.push(FutexWake {
                waker_tgid,
                waker_tid,
                futex: (p.futex)(k),
                calls: 300,
                woken: 300,
            });
        }
        s.threads.push(t);
    }
}

/// A waker that is one of the service's threads.
pub fn th(tid: u32, comm: &str) -> Waker {
    Waker::Thread {
        tgid: SVC,
        tid,
        comm: comm.into(),
    }
}

/// A two-stage pipeline: the entry thread "front" (tid 600) receives client
/// requests, hands each to "stage" (tid 700) and waits `hand` ms on futex
/// 0xee00 until stage signals; stage reads data.db, `io` ms in iowait.
pub fn front_and_stage(s: &mut Snapshot, hand: u64, io: u64) {
    let mut f = thread(600, "front", [100, 10, 0, 0]);
    add_wait(&mut f, WaitKind::Futex, hand, 200);
    add_wait(&mut f, WaitKind::SockRecv, 890 - hand, 200);
    s.resources.push(resource(
        600,
        WaitKind::Futex,
        Resource::Futex {
            tgid: SVC,
            uaddr: 0xee00,
        },
        hand,
        200,
    ));
    s.resources.push(resource(
        600,
        WaitKind::SockRecv,
        Resource::Socket(sock("127.0.0.1:8080", "127.0.0.1:52000")),
        890 - hand,
        200,
    ));
    s.futex_wakes.push(FutexWake {
        waker_tgid: SVC,
        waker_tid: 700,
        futex: Resource::Futex {
            tgid: SVC,
            uaddr: 0xee00,
        },
        calls: 200,
        woken: 200,
    });
    s.wakeups
        .push(edge(600, WaitKind::Futex, th(700, "stage"), 200, hand));
    s.threads.push(f);
    let mut st = thread(700, "stage", [80, 10, io, 0]);
    add_wait(&mut st, WaitKind::FileRead, io, 100);
    add_wait(&mut st, WaitKind::Futex, 910 - io, 200);
    s.resources.push(resource(
        700,
        WaitKind::FileRead,
        Resource::File {
            dev: 1,
            ino: 2,
            file_type: "file".into(),
            name: "data.db".into(),
        },
        io,
        100,
    ));
    s.wakeups
        .push(edge(700, WaitKind::Futex, th(600, "front"), 200, 910 - io));
    s.threads.push(st);
}

/// Windows `0..n`, each built by `build(i, s)` (no baseline/incident halves).
pub fn steady(n: u64, build: impl Fn(u64, &mut Snapshot)) -> Vec<Snapshot> {
    (0..n)
        .map(|i| {
            let mut s = snap(i);
            build(i, &mut s);
            s
        })
        .collect()
}

/// Diagnoses with no baseline: the `incident` range, or every active window.
pub fn diag_alone(windows: &[Snapshot], incident: Option<&str>) -> Diagnosis {
    diagnose(&Input {
        target: "pid 100".into(),
        windows,
        label: "synthetic",
        baseline_windows: None,
        split: SplitRequest {
            no_baseline: true,
            incident: incident.map(|r| TimeRange::parse(r).unwrap()),
            ..Default::default()
        },
    })
}

/// The report as text, for assertion messages.
pub fn render(d: &Diagnosis) -> String {
    holdup_diagnose::text::render(d)
}

/// The verdict of a kind, if listed.
pub fn verdict_of(d: &Diagnosis, kind: VerdictKind) -> Option<&holdup_diagnose::Verdict> {
    d.verdicts.iter().find(|v| v.kind == kind)
}
