//! What a futex wait means, from who wakes whom: a lock among peers of one
//! role (one futex, per-waiter futexes, a shared futex across prefork
//! processes), a hand-off from another role, an idle Go thread; and
//! following a lock to what holds its holders up.

mod common;

use common::*;
use holdup_diagnose::states::{breakdown, Category, FutexKey, FutexUse, SourceFacts};
use holdup_diagnose::verdict::NamedKind;
use holdup_diagnose::{Mode, VerdictKind};
use holdup_model::{ProcessRuntime, Resource, Runtime, Snapshot, WaitKind, Waker};

/// Worker k's own futex (a lock manager's per-waiter semaphore).
fn own_futex(k: u32) -> Resource {
    Resource::Futex {
        tgid: SVC,
        uaddr: 0xa000 + u64::from(k) * 0x40,
    }
}

/// Workers that each sleep on a futex of their own, `lock_ms` a second,
/// released by the next worker (a peer of their role).
fn per_waiter(s: &mut Snapshot, i: u64, lock_ms: u64) {
    pool(
        s,
        i,
        &Pool {
            lock_ms,
            futex: own_futex,
            ..Pool::default()
        },
    );
}

#[test]
fn per_waiter_futexes_woken_by_peers_are_one_lock() {
    let w = run(24, |i, inc, s| per_waiter(s, i, if inc { 400 } else { 0 }));
    let facts = SourceFacts::learn(&w);
    assert!(facts.are_kin(300, 301));
    for k in 0..4 {
        let key = FutexKey::of(&own_futex(k)).unwrap();
        assert_eq!(facts.futex_use.get(&key), Some(&FutexUse::Lock), "{k}");
    }
    let s = &w[20];
    let b = breakdown(s, s.thread(300).unwrap(), &facts);
    assert_eq!(b[Category::FutexLock.index()], 400 * MS);

    let d = diag(&w);
    assert_eq!(top_kind(&d), VerdictKind::LockContention, "{}", render(&d));
    // The group first, then its largest members (one waiter's futex each).
    let futexes = names(&d, NamedKind::Futex);
    assert_eq!(futexes.len(), 4, "{futexes:?}");
    assert!(
        futexes[0].starts_with("4 per-waiter futexes"),
        "{futexes:?}"
    );
    assert!(
        futexes[1..].iter().all(|f| f.starts_with("futex 0x")),
        "{futexes:?}"
    );
    assert_eq!(
        names(&d, NamedKind::Thread),
        vec!["w-0", "w-1", "w-2", "w-3"]
    );
}

#[test]
fn two_futexes_sharing_the_growth_are_not_named_as_per_waiter() {
    // Workers 0 and 1 on one futex, 2 and 3 on another: each carries half
    // of the growth, but fewer than three futexes share it.
    let w = run(24, |i, inc, s| {
        pool(
            s,
            i,
            &Pool {
                lock_ms: if inc { 400 } else { 0 },
                futex: |k| own_futex(k / 2),
                ..Pool::default()
            },
        )
    });
    let d = diag(&w);
    assert_eq!(top_kind(&d), VerdictKind::LockContention, "{}", render(&d));
    let futexes = names(&d, NamedKind::Futex);
    assert_eq!(futexes.len(), 1);
    assert!(
        futexes[0] == "futex 0xa000 (pid 100)" || futexes[0] == "futex 0xa040 (pid 100)",
        "{futexes:?}"
    );
}

#[test]
fn per_waiter_futexes_woken_by_another_role_are_a_handoff() {
    // The same waits, released by a "dispatcher" thread instead of by peers.
    let w = run(24, |i, inc, s| {
        let hand = if inc { 400 } else { 50 + jitter(i, 1) };
        pool(
            s,
            i,
            &Pool {
                lock_ms: hand,
                futex: own_futex,
                waker: |_| (SVC, 800),
                ..Pool::default()
            },
        );
        let mut disp = thread(800, "dispatcher", [150, 10, 0, 0]);
        add_wait(&mut disp, WaitKind::Other, 840, 100);
        s.threads.push(disp);
        for k in 0..4 {
            s.wakeups.push(edge(
                300 + k,
                WaitKind::Futex,
                th(800, "dispatcher"),
                300,
                hand,
            ));
        }
    });
    let facts = SourceFacts::learn(&w);
    assert!(!facts.are_kin(300, 800));
    for k in 0..4 {
        let key = FutexKey::of(&own_futex(k)).unwrap();
        assert_eq!(facts.futex_use.get(&key), Some(&FutexUse::Handoff), "{k}");
    }
    let s = &w[20];
    let b = breakdown(s, s.thread(300).unwrap(), &facts);
    assert_eq!(b[Category::Handoff.index()], 400 * MS);
    assert_eq!(b[Category::FutexLock.index()], 0);

    let d = diag(&w);
    assert_eq!(top_kind(&d), VerdictKind::HandoffStall, "{}", render(&d));
    assert_eq!(d.top().culprits[0].name, "dispatcher");
    assert!(verdict_of(&d, VerdictKind::LockContention).is_none_or(|v| !v.significant));
}

/// The lock word in a shared mapping, as the kernel keys it.
const ROW_LOCK: Resource = Resource::SharedFutex {
    dev: 5,
    ino: 77,
    offset: 0x40,
};

/// Prefork workers "worker-1".."worker-4", one process each (tgid = tid =
/// 1001..1004), taking a row lock in shared memory; worker k is released by
/// the next process.
fn prefork(s: &mut Snapshot, i: u64, lock_ms: u64) {
    pool(
        s,
        i,
        &Pool {
            lock_ms,
            tgid: |k| 1001 + k,
            tid: |k| 1001 + k,
            comm: |k| format!("worker-{}", k + 1),
            futex: |_| ROW_LOCK,
            waker: |k| (1001 + (k + 1) % 4, 1001 + (k + 1) % 4),
            ..Pool::default()
        },
    );
}

#[test]
fn a_shared_futex_across_prefork_processes_is_one_lock() {
    let w = run(24, |i, inc, s| prefork(s, i, if inc { 400 } else { 0 }));
    let facts = SourceFacts::learn(&w);
    assert!(facts.are_kin(1001, 1002), "{:?}", facts.kin);
    let key = FutexKey::of(&ROW_LOCK).unwrap();
    assert_eq!(facts.futex_use.get(&key), Some(&FutexUse::Lock));

    let d = diag(&w);
    assert_eq!(top_kind(&d), VerdictKind::LockContention, "{}", render(&d));
    // one role for the four processes
    assert_eq!(d.entry.len(), 1, "{:?}", d.entry);
    assert_eq!(d.entry[0].role, "worker-*");
    assert_eq!(d.entry[0].threads_incident, 4);
    let futex = d
        .top()
        .culprits
        .iter()
        .find(|c| c.kind == NamedKind::Futex)
        .expect("the lock named");
    assert_eq!(futex.name, "shared futex inode 77 +0x40");
    assert_eq!(futex.ids, vec![1001, 1002, 1003, 1004]);
    assert_eq!(
        names(&d, NamedKind::Thread),
        vec!["worker-1", "worker-2", "worker-3", "worker-4"]
    );
}

#[test]
fn a_shared_futex_judged_alone_is_lock_contention() {
    let w = steady(12, |i, s| prefork(s, i, 400));
    let d = diag_alone(&w, None);
    assert_eq!(d.mode, Mode::IncidentOnly);
    assert_eq!(top_kind(&d), VerdictKind::LockContention, "{}", render(&d));
    assert_eq!(
        names(&d, NamedKind::Futex),
        vec!["shared futex inode 77 +0x40"]
    );
}

#[test]
fn per_waiter_shared_futexes_across_processes_are_one_lock() {
    // A database's lock manager: each backend process sleeps on a semaphore
    // of its own in shared memory; the backend that releases the lock wakes
    // the next one.
    let w = run(24, |i, inc, s| {
        pool(
            s,
            i,
            &Pool {
                lock_ms: if inc { 400 } else { 0 },
                tgid: |k| 1001 + k,
                tid: |k| 1001 + k,
                comm: |k| format!("postgres-{}", k + 1),
                futex: |k| Resource::SharedFutex {
                    dev: 5,
                    ino: 77,
                    offset: 0x1000 + u64::from(k) * 0x80,
                },
                waker: |k| (1001 + (k + 1) % 4, 1001 + (k + 1) % 4),
                ..Pool::default()
            },
        )
    });
    let d = diag(&w);
    assert_eq!(top_kind(&d), VerdictKind::LockContention, "{}", render(&d));
    let futexes = names(&d, NamedKind::Futex);
    assert!(
        futexes.len() == 4 && futexes[0].starts_with("4 per-waiter futexes"),
        "{futexes:?}"
    );
    assert!(
        futexes[1..]
            .iter()
            .all(|f| f.starts_with("shared futex inode 77 +")),
        "{futexes:?}"
    );
    assert_eq!(names(&d, NamedKind::Role), vec!["postgres-*"]);
}

/// Workers serialised on the flush lock 0xaa00; whoever holds it writes the
/// WAL and waits `iowait` ms for the disk, while "fio" keeps the disk busy.
fn flush_lock(s: &mut Snapshot, i: u64, lock_ms: u64, iowait: u64, fio: bool) {
    pool(
        s,
        i,
        &Pool {
            lock_ms,
            iowait: iowait + jitter(i, 3),
            ..Pool::default()
        },
    );
    s.disks
        .push(disk(SVC, "w-0", true, 4, if fio { 1500 } else { 150 }));
    if fio {
        s.disks.push(disk(700, "fio", false, 180, 1600));
    }
}

#[test]
fn a_lock_whose_holders_wait_for_the_disk_is_disk_contention() {
    // The lock wait grows more than the disk wait (0 → 450 ms/s against
    // 45 → 305 ms/s per thread): without following the holders the top
    // verdict would be the lock.
    let w = run(24, |i, inc, s| {
        if inc {
            flush_lock(s, i, 450, 300, true)
        } else {
            flush_lock(s, i, 0, 40, false)
        }
    });
    let d = diag(&w);
    let text = render(&d);
    assert_eq!(top_kind(&d), VerdictKind::DiskContention, "{text}");
    assert_eq!(names(&d, NamedKind::Process), vec!["fio"]);
    assert!(
        d.path.iter().any(|p| p.role.ends_with("(lock holders)")),
        "{:?}",
        d.path
    );
    assert_eq!(d.path[0].leads_to, "the lock's holders", "{:?}", d.path);
    assert!(
        verdict_of(&d, VerdictKind::LockContention).is_some_and(|v| v.significant),
        "{text}"
    );
}

#[test]
fn holders_whose_share_stays_flat_behind_the_lock_still_lead_to_the_disk() {
    // The lock's growth inflates the workers' busy time, so the disk's share
    // of it stays ~26% while its wait per unit of CPU work grows 4.5x: the
    // holders are judged by the latter.
    let w = run(24, |i, inc, s| {
        if inc {
            flush_lock(s, i, 450, 200, true)
        } else {
            flush_lock(s, i, 0, 40, false)
        }
    });
    let d = diag(&w);
    let text = render(&d);
    assert_eq!(top_kind(&d), VerdictKind::DiskContention, "{text}");
    assert_eq!(names(&d, NamedKind::Process), vec!["fio"]);
    assert!(
        d.path.iter().any(|p| p.role.ends_with("(lock holders)")),
        "{:?}",
        d.path
    );
}

#[test]
fn a_lock_whose_holders_wait_for_the_disk_judged_alone_is_disk_contention() {
    let w = steady(12, |i, s| flush_lock(s, i, 400, 400, true));
    let d = diag_alone(&w, None);
    let text = render(&d);
    assert_eq!(d.mode, Mode::IncidentOnly);
    assert_eq!(top_kind(&d), VerdictKind::DiskContention, "{text}");
    assert_eq!(names(&d, NamedKind::Process), vec!["fio"]);
    assert!(
        d.path.iter().any(|p| p.role.ends_with("(lock holders)")),
        "{:?}",
        d.path
    );
}

#[test]
fn a_lock_whose_holders_only_work_stays_lock_contention() {
    // The holders' disk wait does not grow: the lock is the answer.
    let w = run(24, |i, inc, s| {
        flush_lock(s, i, if inc { 450 } else { 0 }, 40, false)
    });
    let d = diag(&w);
    assert_eq!(top_kind(&d), VerdictKind::LockContention, "{}", render(&d));
    assert!(d.path.iter().all(|p| !p.role.ends_with("(lock holders)")));
}

#[test]
fn a_lock_whose_holders_wait_for_a_cpu_is_cpu_contention() {
    let w = run(24, |i, inc, s| {
        pool(
            s,
            i,
            &Pool {
                lock_ms: if inc { 450 } else { 0 },
                runq: if inc { 200 } else { 20 },
                ..Pool::default()
            },
        );
        if inc {
            for k in 0..4 {
                s.culprits
                    .push(culprit(300 + k, 900, 900, "stress-ng-cpu", 180));
            }
        }
    });
    let d = diag(&w);
    assert_eq!(top_kind(&d), VerdictKind::CpuContention, "{}", render(&d));
    assert_eq!(names(&d, NamedKind::Process)[0], "stress-ng-cpu");
    assert!(
        d.path.iter().any(|p| p.role.ends_with("(lock holders)")),
        "{:?}",
        d.path
    );
}

/// Workers on an already contended lock whose run-queue share stays flat:
/// `foreign` ms a second of each one's run-queue wait is spent behind
/// another process (`who`), the rest behind each other.
fn preempted(s: &mut Snapshot, i: u64, lock_ms: u64, foreign: u64, who: &str) {
    pool(
        s,
        i,
        &Pool {
            lock_ms,
            runq: 120,
            ..Pool::default()
        },
    );
    for k in 0..4 {
        s.culprits.push(culprit(
            300 + k,
            900,
            900,
            who,
            foreign + jitter(i, 20 + u64::from(k)) / 4,
        ));
        s.culprits.push(culprit(
            300 + k,
            SVC,
            300 + (k + 1) % 4,
            "w-1",
            120 - foreign,
        ));
    }
}

#[test]
fn holders_preempted_by_another_process_make_a_contended_lock_cpu_contention() {
    // MariaDB under a CPU hog: the lock grows 200 → 450 ms/s, the run-queue
    // share stays flat (waiters sleep on the lock instead of queueing),
    // but the holders' wait behind the hog grows 10 → 90 ms/s.
    let w = run(24, |i, inc, s| {
        if inc {
            preempted(s, i, 450, 90, "stress-ng-cpu")
        } else {
            preempted(s, i, 200, 10, "stress-ng-cpu")
        }
    });
    let d = diag(&w);
    let text = render(&d);
    assert_eq!(top_kind(&d), VerdictKind::CpuContention, "{text}");
    assert_eq!(names(&d, NamedKind::Process)[0], "stress-ng-cpu", "{text}");
    assert!(
        d.path.iter().any(|p| p.role.ends_with("(lock holders)")),
        "{:?}",
        d.path
    );
    assert!(
        d.top().summary.contains("lose the CPU to other processes"),
        "{text}"
    );
}

#[test]
fn a_new_hot_spot_stays_lock_contention_whatever_else_runs() {
    // The lock was hardly waited for before (a hot row appears), while a
    // build on the host takes a little more of the holders' CPU: the lock
    // is the answer.
    let w = run(24, |i, inc, s| {
        if inc {
            preempted(s, i, 450, 40, "rustc")
        } else {
            preempted(s, i, 0, 10, "rustc")
        }
    });
    let d = diag(&w);
    assert_eq!(top_kind(&d), VerdictKind::LockContention, "{}", render(&d));
}

/// A Go service: eight threads "gosvc" that poll client connections in the
/// netpoller and park on futexes 500 ms a second (idle Ms), woken by each
/// other.
fn go_service(s: &mut Snapshot, i: u64, go: bool) {
    pooled_service(s, i, go, "gosvc");
}

/// Eight workers named `comm` that park on futexes of their own, woken by
/// each other, and poll client sockets; in a Go process when `go`.
fn pooled_service(s: &mut Snapshot, i: u64, go: bool, comm: &str) {
    if go {
        s.runtimes.push(ProcessRuntime {
            tgid: SVC,
            runtime: Runtime::Go,
        });
    }
    for k in 0..8u32 {
        let tid = SVC + k;
        let j = jitter(i, u64::from(k));
        let mut t = thread(tid, comm, [200 + j, 10, 0, 0]);
        let fx = Resource::Futex {
            tgid: SVC,
            uaddr: 0xc000_0000 + u64::from(k) * 8,
        };
        add_wait(&mut t, WaitKind::Futex, 500, 200);
        s.resources
            .push(resource(tid, WaitKind::Futex, fx.clone(), 500, 200));
        s.futex_wakes.push(holdup_model::FutexWake {
            waker_tgid: SVC,
            waker_tid: SVC + (k + 1) % 8,
            futex: fx,
            calls: 200,
            woken: 200,
        });
        s.wakeups.push(edge(
            tid,
            WaitKind::Futex,
            th(SVC + (k + 1) % 8, comm),
            200,
            500,
        ));
        let idle = 290 - j;
        add_wait(&mut t, WaitKind::Mux, idle, 300);
        s.resources.push(resource(
            tid,
            WaitKind::Mux,
            Resource::Mux {
                instance: 0xffff_1000,
                call: "epoll_pwait".into(),
            },
            idle,
            300,
        ));
        s.wakeups.push(edge(
            tid,
            WaitKind::Mux,
            Waker::Socket(sock("127.0.0.1:8080", &format!("127.0.0.1:{}", 53000 + k))),
            300,
            idle,
        ));
        s.threads.push(t);
    }
}

#[test]
fn a_go_service_with_parked_threads_is_not_lock_contention() {
    // Without the runtime known, the parked threads look like a lock.
    let plain = steady(12, |i, s| go_service(s, i, false));
    let d = diag_alone(&plain, None);
    assert_eq!(top_kind(&d), VerdictKind::LockContention, "{}", render(&d));

    let w = steady(12, |i, s| go_service(s, i, true));
    let facts = SourceFacts::learn(&w);
    assert!(facts.go_tgids.contains(&SVC));
    let b = breakdown(&w[3], w[3].thread(SVC).unwrap(), &facts);
    assert_eq!(b[Category::WaitForWork.index()], 500 * MS);
    assert_eq!(b[Category::FutexLock.index()], 0);
    let d = diag_alone(&w, None);
    assert_eq!(
        top_kind(&d),
        VerdictKind::NothingHoldsItUp,
        "{}",
        render(&d)
    );
    assert!(verdict_of(&d, VerdictKind::LockContention).is_none());
    // and automatic mode does not find a lock in it either
    let d = diag(&w);
    assert!(
        matches!(
            top_kind(&d),
            VerdictKind::NoSignificantChange | VerdictKind::NothingHoldsItUp
        ),
        "{}",
        render(&d)
    );
}

#[test]
fn tokio_workers_parked_on_futexes_are_idle_not_a_lock() {
    // Same pattern as Go's, in a native process: tokio's default worker
    // name marks a user-space scheduler's idle parking.
    let w = steady(12, |i, s| pooled_service(s, i, false, "tokio-runtime-w"));
    let facts = SourceFacts::learn(&w);
    let b = breakdown(&w[3], w[3].thread(SVC).unwrap(), &facts);
    assert_eq!(b[Category::WaitForWork.index()], 500 * MS);
    let d = diag_alone(&w, None);
    assert_eq!(
        top_kind(&d),
        VerdictKind::NothingHoldsItUp,
        "{}",
        render(&d)
    );
    // the same pool under another name parks on what looks like a lock
    let w = steady(12, |i, s| pooled_service(s, i, false, "app-worker"));
    assert_eq!(top_kind(&diag_alone(&w, None)), VerdictKind::LockContention);
}
