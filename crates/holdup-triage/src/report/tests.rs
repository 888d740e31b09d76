use super::*;

use holdup_model::{Culprit, Loss, StateTimes, ThreadWindow, WindowInfo};

fn thread(tgid: u32, tid: u32, comm: &str, runq_ns: u64) -> ThreadWindow {
    ThreadWindow {
        tgid,
        tid,
        comm: comm.into(),
        cgroup_id: 0,
        states: StateTimes {
            on_cpu_ns: 1_000_000_000 - runq_ns,
            runq_ns,
            ..StateTimes::default()
        },
        runq_count: 10,
        runq_hist: Histogram::from_buckets(&[0, 0, 0, 0, 0, 0, 10]),
        runq_unattributed_ns: 0,
        preempted: 10,
        waits: Vec::new(),
        exited: false,
    }
}

fn window(i: u64) -> Snapshot {
    Snapshot {
        window: WindowInfo {
            index: i,
            start_ns: i * 1_000_000_000,
            end_ns: (i + 1) * 1_000_000_000,
            wall_start_ms: i * 1000,
        },
        threads: vec![
            thread(10, 10, "svc", 600_000_000),
            thread(20, 20, "hog", 1_000),
        ],
        resources: Vec::new(),
        futex_wakes: Vec::new(),
        wakeups: Vec::new(),
        culprits: vec![
            Culprit {
                victim_tgid: 10,
                victim_tid: 10,
                tgid: 20,
                tid: 20,
                comm: "hog".into(),
                cgroup_id: 0,
                cgroup: String::new(),
                ns: 550_000_000,
            },
            Culprit {
                victim_tgid: 20,
                victim_tid: 20,
                tgid: 10,
                tid: 10,
                comm: "svc".into(),
                cgroup_id: 0,
                cgroup: String::new(),
                ns: 1_000,
            },
        ],
        disks: Vec::new(),
        loss: Loss::default(),
        overhead: Vec::new(),
        runtimes: Vec::new(),
        throttles: Vec::new(),
    }
}

#[test]
fn one_process_is_cut_out_of_a_host_wide_window() {
    let w = only_process(&[window(0)], 10);
    assert_eq!(w[0].threads.len(), 1);
    assert_eq!(w[0].threads[0].tgid, 10);
    assert_eq!(w[0].culprits.len(), 1);
    assert_eq!(w[0].culprits[0].tgid, 20);
}

#[test]
fn the_held_up_process_comes_first_with_who_ran_instead() {
    let windows: Vec<Snapshot> = (0..6).map(window).collect();
    let facts = HostFacts::default();
    let c = Counters::default();
    let r = build(&Inputs {
        windows: &windows,
        facts: &facts,
        before: &c,
        after: &c,
        duration_s: 6.0,
        started_unix_ms: 0,
        stopped_early: None,
        budget: 0.05,
        recording_bytes: 0,
    });
    let p = &r.processes[0];
    assert_eq!((p.pid, p.comm.as_str()), (10, "svc"), "{r:?}");
    assert_eq!(p.ran_instead[0].name, "hog");
    assert!(
        p.findings
            .iter()
            .any(|f| f.significant && f.kind == VerdictKind::CpuContention),
        "{:?}",
        p.findings
    );
    assert_eq!(r.cpu.runq_p50_us, Some(128));
    assert!(crate::text::render(&r).contains("svc (10) HELD UP"));
}

#[test]
fn ports_parse() {
    assert_eq!(port("127.0.0.1:6379"), Some(6379));
    assert_eq!(port("[::1]:80"), Some(80));
    assert_eq!(port("nope"), None);
}
