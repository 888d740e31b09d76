//! How the windows are judged: without a baseline (asked for, or because
//! the watch shows no change), each cause family against its threshold of
//! the entry threads' busy time; idle and ramping stretches are never a
//! baseline; more load needs the service's own work to grow.

mod common;

use common::*;
use holdup_diagnose::model::{Model, Source, WinRef};
use holdup_diagnose::split::{self, SplitMethod};
use holdup_diagnose::states::CauseFamily;
use holdup_diagnose::verdict::{self, alone_threshold, NamedKind};
use holdup_diagnose::{Diagnosis, Mode, VerdictKind};
use holdup_model::Snapshot;

fn assert_alone(d: &Diagnosis) {
    assert_eq!(d.mode, Mode::IncidentOnly, "{}", render(d));
    assert_eq!(d.split.method, SplitMethod::NoBaseline, "{:?}", d.split);
    assert_eq!(d.split.baseline.windows, 0);
}

/// Share of busy time of a wait in a thread with `cpu` ms on-CPU, `wait`
/// ms of that wait and `other` ms of other hold-ups.
fn share(cpu: u64, wait: u64, other: u64) -> f64 {
    wait as f64 / (cpu + wait + other) as f64
}

/// A CPU hog took the event loop's CPU all along: 300 ms run queue a second
/// against 500 ms on-CPU.
fn hogged(i: u64, s: &mut Snapshot) {
    event_loop(s, 500, 300 + jitter(i, 1), 0, 10, 6000);
    s.culprits.push(culprit(SVC, 50, 50, "kworker/0:1", 3));
    s.culprits
        .push(culprit(SVC, 900, 900, "stress-ng-cpu", 280 + jitter(i, 1)));
}

#[test]
fn alone_cpu_contention_names_who_ran_instead() {
    assert!(share(500, 300, 0) > alone_threshold(CauseFamily::Cpu));
    let w = steady(12, hogged);
    let d = diag_alone(&w, None);
    assert_alone(&d);
    assert_eq!(d.split.incident.windows, 12);
    assert_eq!(top_kind(&d), VerdictKind::CpuContention, "{}", render(&d));
    assert!(d.top().significant);
    assert_eq!(names(&d, NamedKind::Process)[0], "stress-ng-cpu");
    // an --incident range narrows what is judged
    let d = diag_alone(&w, Some("4s.."));
    assert_alone(&d);
    assert_eq!(d.split.incident.windows, 8);
    assert_eq!(top_kind(&d), VerdictKind::CpuContention, "{}", render(&d));
}

#[test]
fn alone_healthy_event_loop_is_nothing_holds_it_up_with_its_largest_waits() {
    // 60 ms run queue against 500 ms on-CPU: ~11%, under the 20% threshold.
    assert!(share(500, 70, 0) < alone_threshold(CauseFamily::Cpu));
    let w = steady(12, |i, s| {
        event_loop(s, 500, 60 + jitter(i, 2), 0, 10, 6000);
        s.culprits
            .push(culprit(SVC, 50, 50, "kworker/0:1", 20 + jitter(i, 3)));
    });
    let d = diag_alone(&w, None);
    assert_alone(&d);
    assert_eq!(
        top_kind(&d),
        VerdictKind::NothingHoldsItUp,
        "{}",
        render(&d)
    );
    assert!(d.verdicts.iter().all(|v| !v.significant), "{}", render(&d));
    let ev = &d.top().evidence;
    assert!(
        ev[0].starts_with("svc waiting for a CPU") && ev[0].contains("a cause needs 20%"),
        "{ev:?}"
    );
    assert!(
        d.top()
            .summary
            .contains("largest wait is waiting for a CPU"),
        "{}",
        d.top().summary
    );
}

#[test]
fn alone_disk_contention_names_the_other_submitter() {
    assert!(share(200, 500, 20) > alone_threshold(CauseFamily::Disk));
    let w = steady(12, |i, s| {
        event_loop(s, 200, 20, 500 + jitter(i, 4), 10, 800);
        s.disks.push(disk(SVC, "svc", true, 2, 1500));
        s.disks.push(disk(700, "fio", false, 180, 1600));
    });
    let d = diag_alone(&w, None);
    assert_alone(&d);
    assert_eq!(top_kind(&d), VerdictKind::DiskContention, "{}", render(&d));
    assert_eq!(names(&d, NamedKind::Process), vec!["fio"]);
    assert_eq!(names(&d, NamedKind::Disk), vec!["vda"]);
}

#[test]
fn alone_own_fsyncs_below_the_disk_threshold_are_healthy() {
    // 30% of the busy time in its own writes: under the 35% threshold.
    assert!(share(200, 95, 20) < alone_threshold(CauseFamily::Disk));
    let w = steady(12, |i, s| {
        event_loop(s, 200, 20, 85 + jitter(i, 4), 10, 800);
        s.disks.push(disk(SVC, "svc", true, 2, 150));
    });
    let d = diag_alone(&w, None);
    assert_alone(&d);
    assert_eq!(
        top_kind(&d),
        VerdictKind::NothingHoldsItUp,
        "{}",
        render(&d)
    );
    assert!(
        d.top().evidence[0].contains("waiting for the disk / files"),
        "{:?}",
        d.top().evidence
    );
}

#[test]
fn alone_lock_contention_names_the_futex_and_the_threads() {
    assert!(share(100, 400, 30) > alone_threshold(CauseFamily::Lock));
    let w = steady(12, |i, s| workers(s, i, 400, 0));
    let d = diag_alone(&w, None);
    assert_alone(&d);
    assert_eq!(top_kind(&d), VerdictKind::LockContention, "{}", render(&d));
    assert_eq!(names(&d, NamedKind::Futex), vec!["futex 0xaa00 (pid 100)"]);
    assert_eq!(
        names(&d, NamedKind::Thread),
        vec!["w-0", "w-1", "w-2", "w-3"]
    );
}

#[test]
fn alone_lock_below_its_threshold_is_healthy() {
    // 40 ms of lock waits against 200 ms on-CPU and ~15 ms run queue: ~16%.
    let p = |_| Pool {
        cpu: 200,
        runq: 10,
        lock_ms: 40,
        ..Pool::default()
    };
    assert!(share(200, 40, 20) < alone_threshold(CauseFamily::Lock));
    let w = steady(12, |i, s| pool(s, i, &p(i)));
    let d = diag_alone(&w, None);
    assert_alone(&d);
    assert_eq!(
        top_kind(&d),
        VerdictKind::NothingHoldsItUp,
        "{}",
        render(&d)
    );
    assert!(
        d.top().evidence[0].starts_with("w-* waiting for a lock"),
        "{:?}",
        d.top().evidence
    );
}

#[test]
fn alone_slow_external_service_names_the_peer() {
    // The peer takes ~95% of the busy time.
    assert!(share(30, 900, 10) > alone_threshold(CauseFamily::External));
    let p = Pool {
        cpu: 30,
        runq: 5,
        peer_ms: 900,
        ..Pool::default()
    };
    let w = steady(12, |i, s| pool(s, i, &p));
    let d = diag_alone(&w, None);
    assert_alone(&d);
    assert_eq!(
        top_kind(&d),
        VerdictKind::SlowExternalService,
        "{}",
        render(&d)
    );
    assert_eq!(names(&d, NamedKind::Peer), vec!["10.1.1.1:5432"]);
}

#[test]
fn alone_healthy_proxy_is_not_a_slow_external_service() {
    // A proxy in front of a healthy backend: the peer takes ~80% of its
    // busy time, as designed.
    let p = Pool {
        cpu: 150,
        runq: 5,
        peer_ms: 640,
        ..Pool::default()
    };
    let s = share(150, 640, 10);
    assert!(
        s > 0.78 && s < alone_threshold(CauseFamily::External),
        "{s}"
    );
    let w = steady(12, |i, s| pool(s, i, &p));
    let d = diag_alone(&w, None);
    assert_alone(&d);
    assert_eq!(
        top_kind(&d),
        VerdictKind::NothingHoldsItUp,
        "{}",
        render(&d)
    );
    assert!(
        verdict_of(&d, VerdictKind::SlowExternalService).is_none_or(|v| !v.significant),
        "{}",
        render(&d)
    );
    assert!(
        d.top().evidence[0].starts_with("w-* waiting for a peer service"),
        "{:?}",
        d.top().evidence
    );
}

#[test]
fn alone_handoff_follows_to_the_slow_stage() {
    // front waits 600 ms for stage, against 110 ms of its own work.
    assert!(share(110, 600, 0) > alone_threshold(CauseFamily::Handoff));
    let w = steady(12, |i, s| front_and_stage(s, 600 + jitter(i, 5), 550));
    let d = diag_alone(&w, None);
    assert_alone(&d);
    let text = render(&d);
    let handoff = verdict_of(&d, VerdictKind::HandoffStall).expect(&text);
    assert!(handoff.significant, "{text}");
    assert_eq!(handoff.culprits[0].name, "stage");
    assert!(d.path.len() >= 2, "{text}");
    assert_eq!(d.path[0].role, "front");
    assert_eq!(d.path[1].role, "stage");
    assert!(
        verdict_of(&d, VerdictKind::DiskContention).is_some_and(|v| v.significant),
        "{text}"
    );
    assert!(
        matches!(
            top_kind(&d),
            VerdictKind::HandoffStall | VerdictKind::DiskContention
        ),
        "{text}"
    );
}

#[test]
fn alone_short_handoffs_are_healthy() {
    // 50 ms of hand-off against 110 ms of work: ~31%, under 40%.
    assert!(share(110, 55, 0) < alone_threshold(CauseFamily::Handoff));
    let w = steady(12, |i, s| front_and_stage(s, 50 + jitter(i, 5), 40));
    let d = diag_alone(&w, None);
    assert_alone(&d);
    assert_eq!(
        top_kind(&d),
        VerdictKind::NothingHoldsItUp,
        "{}",
        render(&d)
    );
    assert!(
        d.top().evidence[0].starts_with("front waiting for another thread"),
        "{:?}",
        d.top().evidence
    );
}

/// An event loop with four compute threads of its own that run instead of
/// it, `runq` ms a second.
fn own_threads_queue(s: &mut Snapshot, cpu: u64, runq: u64) {
    event_loop(s, cpu, runq, 0, 10, 6000);
    for k in 0..4u32 {
        s.threads
            .push(thread(200 + k, &format!("compute-{k}"), [700, 200, 0, 0]));
        s.culprits.push(culprit(
            SVC,
            SVC,
            200 + k,
            &format!("compute-{k}"),
            runq / 4,
        ));
    }
}

#[test]
fn alone_own_thread_run_queue_below_its_threshold_is_not_significant() {
    // 200 ms behind its own threads against 500 ms on-CPU: ~29%, above the
    // CPU threshold but below the one for the service's own threads.
    let s = share(500, 200, 0);
    assert!(s > alone_threshold(CauseFamily::Cpu) && s < verdict::cpu::ALONE_OWN_RUNQ);
    let w = steady(12, |i, s| own_threads_queue(s, 500, 200 + jitter(i, 6)));
    let d = diag_alone(&w, None);
    assert_alone(&d);
    assert_eq!(
        top_kind(&d),
        VerdictKind::NothingHoldsItUp,
        "{}",
        render(&d)
    );
    let sat = verdict_of(&d, VerdictKind::CpuSaturation).expect("listed below its threshold");
    assert!(!sat.significant, "{}", render(&d));
}

#[test]
fn alone_own_thread_run_queue_above_its_threshold_is_cpu_saturation() {
    assert!(share(350, 600, 0) > verdict::cpu::ALONE_OWN_RUNQ);
    let w = steady(12, |i, s| own_threads_queue(s, 350, 600 + jitter(i, 6)));
    let d = diag_alone(&w, None);
    assert_alone(&d);
    assert_eq!(top_kind(&d), VerdictKind::CpuSaturation, "{}", render(&d));
    assert!(d.top().significant);
    assert_eq!(names(&d, NamedKind::Process)[0], "compute-*");
}

// verdict::load::ALONE_SATURATED (0.85) is not reachable from outside the
// crate (the `load` module is private): the two tests below sit on either
// side of it.
#[test]
fn alone_entry_threads_on_cpu_nearly_always_are_more_load() {
    let w = steady(12, |i, s| {
        event_loop(s, 900 + jitter(i, 7), 20, 0, 10, 9000)
    });
    let d = diag_alone(&w, None);
    assert_alone(&d);
    assert_eq!(top_kind(&d), VerdictKind::MoreLoad, "{}", render(&d));
    assert!(d.top().significant);
    assert_eq!(names(&d, NamedKind::Clients), vec!["clients"]);
}

#[test]
fn alone_entry_threads_busy_below_saturation_are_healthy() {
    let w = steady(12, |i, s| {
        event_loop(s, 780 + jitter(i, 7), 20, 0, 10, 9000)
    });
    let d = diag_alone(&w, None);
    assert_alone(&d);
    assert_eq!(
        top_kind(&d),
        VerdictKind::NothingHoldsItUp,
        "{}",
        render(&d)
    );
    assert!(verdict_of(&d, VerdictKind::MoreLoad).is_none_or(|v| !v.significant));
}

#[test]
fn automatic_mode_judges_alone_when_the_hold_up_was_there_all_along() {
    let w = steady(24, hogged);
    let d = diag(&w);
    assert_alone(&d);
    assert!(
        d.split.detail.contains("judged alone"),
        "{}",
        d.split.detail
    );
    assert_eq!(top_kind(&d), VerdictKind::CpuContention, "{}", render(&d));
    assert_eq!(names(&d, NamedKind::Process)[0], "stress-ng-cpu");
    // too few windows to split: judged alone as well
    let d = diag(&w[..3]);
    assert_alone(&d);
    assert!(
        d.split.detail.contains("too few windows"),
        "{}",
        d.split.detail
    );
    assert_eq!(top_kind(&d), VerdictKind::CpuContention, "{}", render(&d));
}

#[test]
fn automatic_mode_keeps_no_significant_change_for_a_steady_healthy_run() {
    let w = steady(24, |i, s| {
        event_loop(s, 300 + jitter(i, 9), 30 + jitter(i, 10), 0, 10, 5000);
        s.culprits
            .push(culprit(SVC, 50, 50, "kworker/0:1", 5 + jitter(i, 11)));
    });
    let d = diag(&w);
    assert_eq!(d.mode, Mode::Compare);
    assert_ne!(d.split.method, SplitMethod::NoBaseline);
    assert_eq!(
        top_kind(&d),
        VerdictKind::NoSignificantChange,
        "{}",
        render(&d)
    );
}

/// 6 s idle in epoll, a 3 s ramp, 11 s of steady load, 10 s with a CPU hog,
/// then 3 s idle again.
fn idle_ramp_load_hog_idle(i: u64, s: &mut Snapshot) {
    match i {
        0..=5 | 30.. => event_loop(s, 1, 0, 0, 0, 0),
        6..=8 => event_loop(s, 150, 10, 0, 4, 1000),
        9..=19 => event_loop(s, 550, 30 + jitter(i, 12), 0, 10, 6000),
        _ => {
            event_loop(s, 550, 300 + jitter(i, 12), 0, 10, 6000);
            s.culprits
                .push(culprit(SVC, 900, 900, "stress-ng-cpu", 280));
        }
    }
}

#[test]
fn idle_and_ramping_stretches_are_never_the_baseline() {
    let w = steady(33, idle_ramp_load_hog_idle);
    let d = diag(&w);
    let text = render(&d);
    assert_eq!(d.mode, Mode::Compare, "{text}");
    assert_eq!(top_kind(&d), VerdictKind::CpuContention, "{text}");
    assert_eq!(names(&d, NamedKind::Process)[0], "stress-ng-cpu");
    assert!(
        verdict_of(&d, VerdictKind::MoreLoad).is_none_or(|v| !v.significant),
        "{text}"
    );
    assert!(d.split.detail.contains("idle"), "{}", d.split.detail);
    assert!(d.split.detail.contains("ramping"), "{}", d.split.detail);
    // the baseline is the loaded stretch, the incident the hog's
    assert_eq!(d.split.baseline.windows, 11, "{:?}", d.split);
    assert_eq!(d.split.incident.windows, 10, "{:?}", d.split);
    assert!(
        (d.split.baseline.from_s - 9.0).abs() < 1e-6,
        "{:?}",
        d.split
    );
}

#[test]
fn active_windows_drop_the_idle_start_the_ramp_and_the_idle_end() {
    let w = steady(33, idle_ramp_load_hog_idle);
    let m = Model::build(&[Source {
        label: "synthetic",
        windows: &w,
    }]);
    let all: Vec<WinRef> = (0..w.len()).map(|idx| WinRef { src: 0, idx }).collect();
    let (active, note) = split::active_windows(&m, &all, &m.entry_roles());
    assert_eq!(active.first().map(|w| w.idx), Some(9), "{note}");
    assert_eq!(active.last().map(|w| w.idx), Some(29), "{note}");
    assert_eq!(active.len(), 21);
    assert!(note.contains("idle") && note.contains("ramping"), "{note}");
    assert!(note.contains("idle again"), "{note}");
    // a run that is active throughout is kept whole, with no note
    let busy = steady(10, |i, s| {
        event_loop(s, 500, 30 + jitter(i, 1), 0, 10, 6000)
    });
    let m = Model::build(&[Source {
        label: "busy",
        windows: &busy,
    }]);
    let all: Vec<WinRef> = (0..busy.len()).map(|idx| WinRef { src: 0, idx }).collect();
    let (active, note) = split::active_windows(&m, &all, &m.entry_roles());
    assert_eq!(active.len(), 10);
    assert!(note.is_empty(), "{note}");
}

/// A thread-per-connection server whose cached workers sleep on their
/// condition variable (a futex) until the first client: 5 s like that, then
/// 12 s of load, then 12 s with a CPU hog.
fn cached_workers_then_load_then_hog(i: u64, s: &mut Snapshot) {
    let waiting = Pool {
        cpu: 0,
        runq: 0,
        lock_ms: 985,
        ..Pool::default()
    };
    match i {
        0..=4 => pool(s, i, &waiting),
        5..=16 => pool(s, i, &Pool::default()),
        _ => {
            pool(
                s,
                i,
                &Pool {
                    runq: 300,
                    ..Pool::default()
                },
            );
            for k in 0..4 {
                s.culprits
                    .push(culprit(300 + k, 900, 900, "stress-ng-cpu", 250));
            }
        }
    }
}

#[test]
fn workers_waiting_for_their_first_client_are_idle_not_locked() {
    let w = steady(29, cached_workers_then_load_then_hog);
    let d = diag(&w);
    let text = render(&d);
    assert!(d.split.detail.contains("idle"), "{}", d.split.detail);
    assert!(
        (d.split.baseline.from_s - 5.0).abs() < 1e-6,
        "{:?}",
        d.split
    );
    assert_eq!(top_kind(&d), VerdictKind::CpuContention, "{text}");
    assert_eq!(names(&d, NamedKind::Process)[0], "stress-ng-cpu");
    assert!(
        verdict_of(&d, VerdictKind::MoreLoad).is_none_or(|v| !v.significant),
        "{text}"
    );
}

#[test]
fn more_client_connections_with_flat_work_are_not_more_load() {
    // Clients churn 5 → 50 connections; the CPU use and the idle time stay.
    let w = run(24, |i, inc, s| {
        event_loop(s, 300 + jitter(i, 8), 30, 0, if inc { 50 } else { 5 }, 8000);
    });
    let d = diag(&w);
    let text = render(&d);
    assert!(
        verdict_of(&d, VerdictKind::MoreLoad).is_none_or(|v| !v.significant),
        "{text}"
    );
    assert_eq!(top_kind(&d), VerdictKind::NoSignificantChange, "{text}");
    assert_eq!(d.mode, Mode::Compare);
}

/// A watch that starts during a CPU hog, which goes away after `hog_secs`:
/// the event loop gets `cpu` ms and waits `runq` ms per second meanwhile
/// (the hog holding the CPU `hog_ms`), then 550 and 30, over 24 windows.
/// The slow stretch is the incident, whichever comes first, and it names
/// the hog.
fn diagnose_a_hog_that_goes_away(hog_secs: u64, cpu: u64, runq: u64, hog_ms: u64) -> Diagnosis {
    let w = steady(24, |i, s| {
        if i < hog_secs {
            event_loop(s, cpu, runq + jitter(i, 12), 0, 10, 6 * cpu);
            s.culprits
                .push(culprit(SVC, 900, 900, "stress-ng-cpu", hog_ms));
        } else {
            event_loop(s, 550, 30 + jitter(i, 12), 0, 10, 6000);
        }
    });
    let d = diag(&w);
    let text = render(&d);
    assert_eq!(top_kind(&d), VerdictKind::CpuContention, "{text}");
    assert_eq!(names(&d, NamedKind::Process)[0], "stress-ng-cpu");
    d
}

#[test]
fn an_incident_that_ends_during_the_watch_is_still_the_incident() {
    let d = diagnose_a_hog_that_goes_away(12, 550, 300, 280);
    assert_eq!(d.mode, Mode::Compare, "{}", render(&d));
    assert!(d.split.incident.from_s < 1.0, "{:?}", d.split);
}

/// Starved from the start (under 5% of its later CPU work): not idle.
#[test]
fn a_service_starved_from_the_start_is_the_incident_not_idle() {
    let d = diagnose_a_hog_that_goes_away(10, 20, 900, 880);
    assert!(!d.split.detail.contains("idle"), "{}", d.split.detail);
}
