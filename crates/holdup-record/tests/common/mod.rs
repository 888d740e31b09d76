//! Synthetic windows and recordings shared by the integration tests.
#![allow(dead_code)]

use holdup_model::{
    Culprit, DiskIo, FutexWake, Histogram, Loss, ProgCost, Resource, ResourceWait, Snapshot,
    SocketAddrs, StateTimes, Target, ThreadWindow, WaitKind, WaitTotal, WakeEdge, Waker,
    WindowInfo,
};
use holdup_record::{Recorder, RecordingHeader};
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

pub const WINDOW_NS: u64 = 1_000_000_000;

/// A fixed header (no host lookups, so tests are reproducible).
pub fn header() -> RecordingHeader {
    RecordingHeader {
        format_version: holdup_record::FORMAT_VERSION,
        schema_version: holdup_model::SCHEMA_VERSION,
        holdup_version: "0.1.0-test".into(),
        host: "testhost".into(),
        kernel: "6.1.0-test".into(),
        started_unix_ms: 1_700_000_000_000,
        interval_ms: 1000,
        target: Target::Pid { pid: 100 },
        argv: vec!["holdup".into(), "record".into(), "-p".into(), "100".into()],
        metrics: holdup_model::metric_catalog(),
    }
}

pub fn thread(tid: u32, comm: &str, states: StateTimes) -> ThreadWindow {
    ThreadWindow {
        tgid: 100,
        tid,
        comm: comm.into(),
        cgroup_id: 7,
        states,
        runq_count: 3,
        runq_hist: Histogram::from_buckets(&[1, 2, 0, 4]),
        runq_unattributed_ns: 0,
        preempted: 1,
        waits: vec![WaitTotal {
            kind: WaitKind::Futex,
            ns: states.other_d_ns,
            count: 2,
        }],
        exited: false,
    }
}

pub fn futex(uaddr: u64) -> Resource {
    Resource::Futex { tgid: 100, uaddr }
}

pub fn sock() -> Resource {
    Resource::Socket(SocketAddrs {
        proto: "tcp".into(),
        local: "127.0.0.1:80".into(),
        peer: "127.0.0.1:5000".into(),
    })
}

pub fn wait(
    tid: u32,
    kind: WaitKind,
    resource: Resource,
    wait_ns: u64,
    waits: u64,
) -> ResourceWait {
    ResourceWait {
        tgid: 100,
        tid,
        kind,
        resource,
        wait_ns,
        waits,
        hist: Histogram::from_buckets(&[0, 1]),
        calls: 0,
        bytes: 0,
    }
}

pub fn culprit(victim_tid: u32, tgid: u32, comm: &str, ns: u64) -> Culprit {
    Culprit {
        victim_tgid: 100,
        victim_tid,
        tgid,
        tid: tgid,
        comm: comm.into(),
        cgroup_id: 9,
        cgroup: "/system.slice/x".into(),
        ns,
    }
}

pub fn disk(disk: &str, tgid: u32, comm: &str, bytes: u64, requests: u64) -> DiskIo {
    DiskIo {
        disk: disk.into(),
        dev: "254:0".into(),
        tgid,
        tid: tgid,
        comm: comm.into(),
        is_target: tgid == 100,
        requests,
        bytes,
        write_bytes: bytes / 2,
        latency_ns: requests * 1000,
        latency_hist: Histogram::from_buckets(&[requests]),
        share: 0.5,
    }
}

/// Window `i`: a few threads, resources, wake-ups, culprits, disks, all
/// varying with `i` so no two windows are equal.
pub fn snapshot(i: u64) -> Snapshot {
    let start = 5 * WINDOW_NS + i * WINDOW_NS;
    Snapshot {
        window: WindowInfo {
            index: i,
            start_ns: start,
            end_ns: start + WINDOW_NS,
            wall_start_ms: 1_700_000_000_000 + i * 1000,
        },
        threads: vec![
            thread(
                101,
                "main",
                StateTimes {
                    on_cpu_ns: 500_000_000,
                    runq_ns: 100_000_000,
                    iowait_ns: 0,
                    other_d_ns: 0,
                    sleep_ns: 400_000_000,
                },
            ),
            thread(
                102,
                "worker",
                StateTimes {
                    on_cpu_ns: 100_000_000 + i,
                    runq_ns: 50_000_000,
                    iowait_ns: 200_000_000,
                    other_d_ns: 50_000_000,
                    sleep_ns: 600_000_000 - i,
                },
            ),
        ],
        resources: vec![
            wait(101, WaitKind::Futex, futex(0x1000), 30_000_000 + i, 3),
            wait(102, WaitKind::Futex, futex(0x1000), 20_000_000, 2),
            wait(102, WaitKind::SockRecv, sock(), 70_000_000, 1),
        ],
        futex_wakes: vec![FutexWake {
            waker_tgid: 100,
            waker_tid: 101,
            futex: futex(0x1000),
            calls: 4,
            woken: 4,
        }],
        wakeups: vec![WakeEdge {
            wakee_tgid: 100,
            wakee_tid: 102,
            wait_kind: Some(WaitKind::Futex),
            resource_id: 0x1000,
            waker: Waker::Thread {
                tgid: 100,
                tid: 101,
                comm: "main".into(),
            },
            count: 4,
            sleep_ns: 1_000 + i,
        }],
        culprits: vec![
            culprit(101, 200, "noisy", 60_000_000),
            culprit(102, 300, "cron", 10_000_000 + i),
        ],
        disks: vec![
            disk("vda", 100, "worker", 3000, 3),
            disk("vda", 400, "kworker", 1000, 1),
        ],
        loss: Loss {
            ringbuf_drops: i % 2,
            ..Loss::default()
        },
        overhead: vec![
            ProgCost {
                name: "handle_switch".into(),
                run_cnt: 1000,
                run_time_ns: 200_000 + i,
            },
            ProgCost {
                name: "handle_wakeup".into(),
                run_cnt: 500,
                run_time_ns: 50_000,
            },
        ],
        runtimes: Vec::new(),
        throttles: Vec::new(),
    }
}

/// A `Write` shared with the test, so it can look at the bytes.
#[derive(Clone, Default)]
pub struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A recording of `n` windows in memory, with where each block ends.
pub struct Built {
    pub bytes: Vec<u8>,
    /// End of the header (= start of window block 0).
    pub header_end: usize,
    /// End of each window block.
    pub window_ends: Vec<usize>,
    pub windows: Vec<Snapshot>,
    /// Whether an end marker follows the last window.
    pub finished: bool,
}

impl Built {
    /// Start offset of window block `k`.
    pub fn block_start(&self, k: usize) -> usize {
        if k == 0 {
            self.header_end
        } else {
            self.window_ends[k - 1]
        }
    }
}

pub fn build(n: u64, finish: bool) -> Built {
    let buf = SharedBuf::default();
    let mut rec = Recorder::from_writer(buf.clone(), "memory", &header()).unwrap();
    let header_end = buf.0.lock().unwrap().len();
    let mut window_ends = Vec::new();
    let mut windows = Vec::new();
    for i in 0..n {
        let s = snapshot(i);
        rec.write_window(&s).unwrap();
        window_ends.push(buf.0.lock().unwrap().len());
        windows.push(s);
    }
    assert_eq!(rec.windows_written(), n);
    if finish {
        assert_eq!(rec.finish().unwrap(), n);
    } else {
        drop(rec);
    }
    let bytes = buf.0.lock().unwrap().clone();
    Built {
        bytes,
        header_end,
        window_ends,
        windows,
        finished: finish,
    }
}
