//! The analysis on synthetic windows with known behaviour: change-point
//! detection, role grouping, the lock vs hand-off split, each verdict's
//! rule, the "no change" case and the messages for weak evidence.

mod common;

use common::*;
use holdup_diagnose::states::{breakdown, Category, SourceFacts};
use holdup_diagnose::verdict::NamedKind;
use holdup_diagnose::{diagnose, Input, SplitRequest, TimeRange, VerdictKind};
use holdup_model::{CgroupThrottle, FutexWake, Resource, Snapshot, WaitKind, Waker};

#[test]
fn automatic_split_finds_the_change_point() {
    let w = run(30, |i, _, s| {
        let hog = i >= 18;
        event_loop(
            s,
            300,
            if hog { 250 } else { 20 + jitter(i, 1) },
            0,
            10,
            5000,
        );
        if hog {
            s.culprits
                .push(culprit(SVC, 900, 900, "stress-ng-cpu", 230));
        }
    });
    let d = diag(&w);
    assert_eq!(d.split.baseline.windows, 18, "{:?}", d.split);
    assert_eq!(d.split.incident.windows, 12);
    assert!((d.split.incident.from_s - 18.0).abs() < 1e-6);
}

#[test]
fn cpu_contention_names_who_ran_instead() {
    let w = run(24, |i, inc, s| {
        let runq = if inc {
            250 + jitter(i, 2)
        } else {
            20 + jitter(i, 2)
        };
        event_loop(s, 600, runq, 0, 10, 6000);
        s.culprits.push(culprit(SVC, 50, 50, "kworker/0:1", 5));
        if inc {
            s.culprits
                .push(culprit(SVC, 900, 900, "stress-ng-cpu", 230));
        }
    });
    let d = diag(&w);
    assert_eq!(
        top_kind(&d),
        VerdictKind::CpuContention,
        "{}",
        holdup_diagnose::text::render(&d)
    );
    assert_eq!(names(&d, NamedKind::Process)[0], "stress-ng-cpu");
    assert!(d.top().significant && d.top().score > 0.7);
    assert_eq!(d.entry.len(), 1);
    assert_eq!(d.entry[0].role, "svc");
    assert!(d.path[0].leads_to.contains("stress-ng-cpu"), "{:?}", d.path);
}

#[test]
fn cpu_saturation_when_the_service_own_threads_ran_instead() {
    let w = run(24, |i, inc, s| {
        let runq = if inc { 300 } else { 20 + jitter(i, 3) };
        event_loop(s, 500, runq, 0, 10, 6000);
        // a pool of the service's own compute threads
        for k in 0..4u32 {
            s.threads.push(thread(
                200 + k,
                &format!("compute-{k}"),
                [if inc { 700 } else { 100 }, 200, 0, 0],
            ));
        }
        if inc {
            for k in 0..4u32 {
                s.culprits
                    .push(culprit(SVC, SVC, 200 + k, &format!("compute-{k}"), 70));
            }
        }
    });
    let d = diag(&w);
    assert_eq!(
        top_kind(&d),
        VerdictKind::CpuSaturation,
        "{}",
        holdup_diagnose::text::render(&d)
    );
    // one role for the pool of four
    let pool = d
        .roles
        .iter()
        .find(|r| r.role == "compute-*")
        .expect("pool role");
    assert_eq!(pool.threads_incident, 4);
}

#[test]
fn disk_contention_names_the_other_submitter_and_the_shares() {
    let w = run(24, |i, inc, s| {
        let iowait = if inc {
            600 + jitter(i, 4)
        } else {
            100 + jitter(i, 4)
        };
        event_loop(s, 200, 50, iowait, 10, 800);
        s.disks
            .push(disk(SVC, "svc", true, 2, if inc { 1500 } else { 150 }));
        if inc {
            s.disks.push(disk(700, "fio", false, 180, 1600));
        }
    });
    let d = diag(&w);
    assert_eq!(
        top_kind(&d),
        VerdictKind::DiskContention,
        "{}",
        holdup_diagnose::text::render(&d)
    );
    assert_eq!(names(&d, NamedKind::Process), vec!["fio"]);
    assert_eq!(names(&d, NamedKind::Disk), vec!["vda"]);
    let ev = d.top().evidence.join("\n");
    assert!(ev.contains("share of its bytes 100% → 1%"), "{ev}");
    assert!(ev.contains("appendonly.aof"), "{ev}");
}

#[test]
fn lock_contention_names_the_futex_and_its_threads() {
    let w = run(24, |i, inc, s| workers(s, i, if inc { 400 } else { 0 }, 0));
    let d = diag(&w);
    assert_eq!(
        top_kind(&d),
        VerdictKind::LockContention,
        "{}",
        holdup_diagnose::text::render(&d)
    );
    assert_eq!(names(&d, NamedKind::Futex), vec!["futex 0xaa00 (pid 100)"]);
    let threads = names(&d, NamedKind::Thread);
    assert_eq!(threads, vec!["w-0", "w-1", "w-2", "w-3"]);
    assert_eq!(names(&d, NamedKind::Role), vec!["w-*"]);
    assert!(d
        .top()
        .evidence
        .iter()
        .any(|e| e.contains("the same threads")));
}

#[test]
fn lock_and_handoff_futexes_are_told_apart() {
    let mut s = snap(0);
    workers(&mut s, 0, 200, 0);
    // A dispatcher (entry, tid 400) waits on futex 0xcc00 that worker 500
    // signals; worker 500 waits on 0xdd00 that the dispatcher signals.
    let mut disp = thread(400, "dispatch", [100, 0, 0, 0]);
    add_wait(&mut disp, WaitKind::Futex, 500, 100);
    add_wait(&mut disp, WaitKind::Accept, 400, 10);
    let mut work = thread(500, "crunch", [300, 0, 0, 0]);
    add_wait(&mut work, WaitKind::Futex, 700, 100);
    let fx = |a| Resource::Futex {
        tgid: SVC,
        uaddr: a,
    };
    s.resources
        .push(resource(400, WaitKind::Futex, fx(0xcc00), 500, 100));
    s.resources.push(resource(
        400,
        WaitKind::Accept,
        Resource::Socket(sock("0.0.0.0:9000", "")),
        400,
        10,
    ));
    s.resources
        .push(resource(500, WaitKind::Futex, fx(0xdd00), 700, 100));
    for (waker, f) in [(500, 0xcc00), (400, 0xdd00)] {
        s.futex_wakes.push(FutexWake {
            waker_tgid: SVC,
            waker_tid: waker,
            futex: fx(f),
            calls: 100,
            woken: 100,
        });
    }
    let th = |tid, comm: &str| Waker::Thread {
        tgid: SVC,
        tid,
        comm: comm.into(),
    };
    s.wakeups
        .push(edge(400, WaitKind::Futex, th(500, "crunch"), 100, 500));
    s.wakeups
        .push(edge(500, WaitKind::Futex, th(400, "dispatch"), 100, 700));
    s.threads.push(disp);
    s.threads.push(work);
    let windows = vec![s];
    let facts = SourceFacts::learn(&windows);
    let s = &windows[0];
    let get = |tid: u32| breakdown(s, s.thread(tid).unwrap(), &facts);
    // workers: lock
    assert_eq!(get(300)[Category::FutexLock.index()], 200 * MS);
    // the entry thread waiting for the worker's result: hand-off
    assert!(facts.is_entry(400));
    assert_eq!(get(400)[Category::Handoff.index()], 500 * MS);
    assert_eq!(get(400)[Category::Accept.index()], 400 * MS);
    // the worker waiting for the dispatcher: waiting for work (idle)
    assert!(!facts.is_entry(500));
    assert_eq!(get(500)[Category::WaitForWork.index()], 700 * MS);
    // categories add up to the window
    for tid in [300, 400, 500] {
        assert_eq!(get(tid).iter().sum::<u64>(), 1000 * MS, "thread {tid}");
    }
}

#[test]
fn handoff_stall_follows_to_the_slow_stage() {
    let w = run(24, |i, inc, s| {
        // Entry "front" hands each request to "stage" and waits for it; in
        // the incident the stage waits for the disk.
        let hand = if inc { 600 } else { 100 + jitter(i, 5) };
        let io = if inc { 550 } else { 50 + jitter(i, 6) };
        front_and_stage(s, hand, io);
    });
    let d = diag(&w);
    let text = holdup_diagnose::text::render(&d);
    let kinds: Vec<VerdictKind> = d.verdicts.iter().map(|v| v.kind).collect();
    assert!(kinds.contains(&VerdictKind::HandoffStall), "{text}");
    let handoff = d
        .verdicts
        .iter()
        .find(|v| v.kind == VerdictKind::HandoffStall)
        .unwrap();
    assert_eq!(handoff.culprits[0].name, "stage");
    // the tracking went on to the stage and found the disk
    assert!(d.path.len() >= 2, "{text}");
    assert_eq!(d.path[1].role, "stage");
    assert!(kinds.contains(&VerdictKind::DiskContention), "{text}");
}

#[test]
fn slow_external_service_names_the_peer() {
    let w = run(24, |i, inc, s| {
        workers(s, i, 0, if inc { 600 } else { 50 + jitter(i, 7) })
    });
    let d = diag(&w);
    assert_eq!(
        top_kind(&d),
        VerdictKind::SlowExternalService,
        "{}",
        holdup_diagnose::text::render(&d)
    );
    assert_eq!(names(&d, NamedKind::Peer), vec!["10.1.1.1:5432"]);
    assert!(d.top().summary.contains("per request"));
}

#[test]
fn more_load_is_not_contention() {
    let w = run(24, |i, inc, s| {
        let (cpu, clients) = if inc { (750, 50) } else { (300, 5) };
        event_loop(s, cpu + jitter(i, 8), 30, 0, clients, 8000);
    });
    let d = diag(&w);
    assert_eq!(
        top_kind(&d),
        VerdictKind::MoreLoad,
        "{}",
        holdup_diagnose::text::render(&d)
    );
    assert!(
        d.top().summary.contains("client connections 5 → 50"),
        "{}",
        d.top().summary
    );
    assert!(d
        .verdicts
        .iter()
        .all(|v| v.kind == VerdictKind::MoreLoad || !v.significant));
}

#[test]
fn steady_run_is_no_significant_change() {
    let w = run(30, |i, _, s| {
        event_loop(s, 300 + jitter(i, 9), 30 + jitter(i, 10), 0, 10, 5000);
        s.culprits
            .push(culprit(SVC, 50, 50, "kworker/0:1", 5 + jitter(i, 11)));
    });
    let d = diag(&w);
    assert_eq!(
        top_kind(&d),
        VerdictKind::NoSignificantChange,
        "{}",
        holdup_diagnose::text::render(&d)
    );
    assert!(d.verdicts.iter().all(|v| !v.significant));
}

#[test]
fn too_few_windows_says_what_is_missing() {
    // Three windows are too few to compare, but are judged alone (a short
    // attach during an incident); one window is not enough for either.
    let w = run(3, |_, _, s| event_loop(s, 300, 30, 0, 10, 5000));
    let d = diag(&w);
    assert_eq!(top_kind(&d), VerdictKind::NothingHoldsItUp);
    assert_eq!(d.mode, holdup_diagnose::Mode::IncidentOnly);
    let w = run(1, |_, _, s| event_loop(s, 300, 30, 0, 10, 5000));
    let d = diag(&w);
    assert_eq!(top_kind(&d), VerdictKind::InsufficientData);
    assert!(
        d.missing.iter().any(|m| m.contains("at least 2 windows")),
        "{:?}",
        d.missing
    );
    let d = diag(&[]);
    assert_eq!(top_kind(&d), VerdictKind::InsufficientData);
    assert!(!d.verdicts.is_empty());
}

#[test]
fn no_entry_threads_is_said_and_every_thread_examined() {
    let w = run(20, |i, inc, s| {
        let mut t = thread(
            SVC,
            "batch",
            [500, if inc { 400 } else { 20 + jitter(i, 12) }, 0, 0],
        );
        add_wait(&mut t, WaitKind::Other, 0, 0);
        s.threads.push(t);
        if inc {
            s.culprits.push(culprit(SVC, 900, 900, "hog", 380));
        }
    });
    let d = diag(&w);
    assert!(d.entry.is_empty());
    assert!(
        d.missing.iter().any(|m| m.contains("no entry thread")),
        "{:?}",
        d.missing
    );
    assert_eq!(top_kind(&d), VerdictKind::CpuContention);
    assert_eq!(names(&d, NamedKind::Process), vec!["hog"]);
}

#[test]
fn explicit_ranges_and_two_recordings_give_the_periods() {
    let w = run(30, |i, _, s| {
        event_loop(s, 300, if i >= 20 { 300 } else { 30 }, 0, 10, 5000);
        if i >= 20 {
            s.culprits.push(culprit(SVC, 900, 900, "hog", 260));
        }
    });
    let d = diagnose(&Input {
        target: "t".into(),
        windows: &w,
        label: "x",
        baseline_windows: None,
        split: SplitRequest {
            baseline: Some(TimeRange::parse("0s..10s").unwrap()),
            incident: Some(TimeRange::parse("25s..").unwrap()),
            slo: None,
            no_baseline: false,
        },
    });
    assert_eq!(d.split.baseline.windows, 10);
    assert_eq!(d.split.incident.windows, 5);
    assert_eq!(top_kind(&d), VerdictKind::CpuContention);

    let d = diagnose(&Input {
        target: "t".into(),
        windows: &w[20..],
        label: "incident.rec",
        baseline_windows: Some((&w[..20], "base.rec")),
        split: SplitRequest::default(),
    });
    assert_eq!(d.split.baseline.source, "base.rec");
    assert_eq!(d.split.baseline.windows, 20);
    assert_eq!(d.split.incident.windows, 10);
    assert_eq!(top_kind(&d), VerdictKind::CpuContention);
}

#[test]
fn slo_series_chooses_the_bad_windows() {
    // The state change is at 10 s, but the SLO says the bad part is 20-30 s.
    let w = run(30, |i, _, s| {
        event_loop(
            s,
            300,
            if i >= 20 { 300 } else { 30 + jitter(i, 13) },
            0,
            10,
            5000,
        );
    });
    let text: String = (0..30)
        .map(|i| format!("{}\n", if i >= 20 { 9000 } else { 900 + i }))
        .collect();
    let d = diagnose(&Input {
        target: "t".into(),
        windows: &w,
        label: "x",
        baseline_windows: None,
        split: SplitRequest {
            slo: Some(holdup_diagnose::SloSeries::parse(&text).unwrap()),
            ..Default::default()
        },
    });
    assert_eq!(d.split.incident.windows, 10, "{:?}", d.split);
    assert!(d.split.slo.as_ref().unwrap().incident.p50 >= 9000.0);
}

#[test]
fn graph_and_json_export() {
    let w = run(20, |i, inc, s| workers(s, i, if inc { 300 } else { 0 }, 0));
    let mut w = w;
    for s in &mut w {
        s.wakeups.push(edge(
            300,
            WaitKind::Futex,
            Waker::Thread {
                tgid: SVC,
                tid: 301,
                comm: "w-1".into(),
            },
            100,
            if s.window.index >= 10 { 300 } else { 1 },
        ));
    }
    let d = diag(&w);
    let e = d
        .graph
        .edges
        .iter()
        .find(|e| e.resource == "futex")
        .expect("futex edge");
    assert_eq!(e.waker, "role:w-*");
    assert_eq!(e.wakee, "role:w-*");
    assert!(
        e.incident_ms_per_s > 250.0 && e.baseline_ms_per_s < 5.0,
        "{e:?}"
    );
    let dot = d.graph.to_dot();
    assert!(dot.starts_with("digraph holdup {") && dot.contains("\"role:w-*\" -> \"role:w-*\""));
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["verdicts"][0]["kind"], "lock_contention");
    assert!(!json["graph"]["edges"].as_array().unwrap().is_empty());
    assert_eq!(json["timeline"].as_array().unwrap().len(), 20);
}

#[test]
fn runnable_while_nobody_ran_is_throttled_by_its_own_limit() {
    // The run queue grows and no task held the CPU meanwhile (the per-CPU
    // history covers the wait): a CPU quota, not a neighbour.
    let w = run(24, |i, inc, s| {
        event_loop(
            s,
            300,
            if inc { 500 } else { 30 + jitter(i, 5) },
            0,
            10,
            5000,
        );
    });
    let d = diag(&w);
    assert_eq!(
        top_kind(&d),
        VerdictKind::CpuThrottled,
        "{}",
        holdup_diagnose::text::render(&d)
    );
    assert_eq!(names(&d, NamedKind::Cgroup), vec!["cgroup 1"]);
    // the same wait with a hog running is contention
    let w = run(24, |i, inc, s| {
        event_loop(
            s,
            300,
            if inc { 500 } else { 30 + jitter(i, 5) },
            0,
            10,
            5000,
        );
        if inc {
            s.culprits.push(culprit(SVC, 900, 900, "hog", 450));
        }
    });
    assert_eq!(top_kind(&diag(&w)), VerdictKind::CpuContention);
}

#[test]
fn a_spent_quota_is_throttling_even_while_others_ran() {
    // On a busy host the throttled wait is credited to whoever ran
    // meanwhile ("build" here); the cgroup's cpu.stat says the quota held
    // the service off the CPUs for most of it.
    let w = run(24, |i, inc, s| {
        event_loop(
            s,
            300,
            if inc { 500 } else { 30 + jitter(i, 5) },
            0,
            10,
            5000,
        );
        if inc {
            s.culprits.push(culprit(SVC, 900, 900, "build", 300));
            s.throttles.push(CgroupThrottle {
                cgroup: "/limited".into(),
                tgids: vec![SVC],
                periods: 10,
                throttled_periods: 9,
                throttled_ns: 420_000_000,
            });
        }
    });
    let d = diag(&w);
    let text = holdup_diagnose::text::render(&d);
    assert_eq!(top_kind(&d), VerdictKind::CpuThrottled, "{text}");
    assert_eq!(names(&d, NamedKind::Cgroup), vec!["/limited"], "{text}");
    assert!(d.top().summary.contains("quota"), "{text}");
    // Throttling of another process's cgroup is not the service's.
    let w = run(24, |i, inc, s| {
        event_loop(
            s,
            300,
            if inc { 500 } else { 30 + jitter(i, 5) },
            0,
            10,
            5000,
        );
        if inc {
            s.culprits.push(culprit(SVC, 900, 900, "build", 300));
            s.throttles.push(CgroupThrottle {
                cgroup: "/other".into(),
                tgids: vec![4242],
                periods: 10,
                throttled_periods: 9,
                throttled_ns: 420_000_000,
            });
        }
    });
    assert_eq!(top_kind(&diag(&w)), VerdictKind::CpuContention);
}

#[test]
fn impossible_durations_are_ignored_and_reported() {
    let mut w = run(20, |i, inc, s| {
        event_loop(
            s,
            300,
            if inc { 300 } else { 30 + jitter(i, 14) },
            0,
            10,
            5000,
        );
        if inc {
            s.culprits.push(culprit(SVC, 900, 900, "hog", 260));
        }
    });
    // A negative time difference stored unsigned, as a collector glitch.
    w[5].wakeups[0].sleep_ns = u64::MAX - 30;
    let (fixed, n) = holdup_diagnose::sanitize(&w).expect("a glitch to fix");
    assert_eq!(n, 1);
    assert_eq!(fixed[5].wakeups[0].sleep_ns, 0);
    let d = diag(&w);
    assert!(
        d.missing.iter().any(|m| m.contains("impossible")),
        "{:?}",
        d.missing
    );
    assert_eq!(top_kind(&d), VerdictKind::CpuContention);
    assert!(holdup_diagnose::sanitize(&fixed).is_none());
}

/// The event loop's writes wait 100 → 900 ms/s while its own requests
/// spend 66 ms/s → 5 ms/s at the device, and a build writes beside it: the
/// I/O is held before the disk (a cgroup's write limit), nobody's disk use.
fn io_limited(i: u64, inc: bool, s: &mut Snapshot) {
    let iowait = if inc { 900 } else { 100 } + jitter(i, 5) / 4;
    event_loop(s, 60, 10, iowait, 10, 800);
    s.disks.push(if inc {
        disk(SVC, "svc", true, 0, 5000)
    } else {
        disk(SVC, "svc", true, 2, 2000)
    });
    if inc {
        s.disks.push(disk(700, "cargo", false, 40, 300));
    }
}

#[test]
fn io_held_before_the_disk_is_disk_throttled() {
    let d = diag(&run(24, io_limited));
    let text = holdup_diagnose::text::render(&d);
    assert_eq!(top_kind(&d), VerdictKind::DiskThrottled, "{text}");
    assert!(names(&d, NamedKind::Process).is_empty(), "{text}");
    assert!(!names(&d, NamedKind::Cgroup).is_empty(), "{text}");
    assert!(
        d.top().evidence.iter().any(|e| e.contains("at the device")),
        "{text}"
    );
}

#[test]
fn io_held_before_the_disk_judged_alone_is_disk_throttled() {
    let w = steady(12, |i, s| io_limited(i, true, s));
    let d = diag_alone(&w, None);
    assert_eq!(
        top_kind(&d),
        VerdictKind::DiskThrottled,
        "{}",
        holdup_diagnose::text::render(&d)
    );
}
