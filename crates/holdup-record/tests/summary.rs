//! `holdup inspect` summary totals.

mod common;

use common::{build, header, snapshot, WINDOW_NS};
use holdup_model::{ThreadState, WaitKind};
use holdup_record::summary::summarize;
use holdup_record::{ReadStatus, Recording};

#[test]
fn totals_add_up_over_windows() {
    let windows: Vec<_> = (0..4).map(snapshot).collect();
    let s = summarize(&header(), &windows);

    assert_eq!(s.windows, 4);
    assert_eq!((s.first_window, s.last_window), (Some(0), Some(3)));
    assert_eq!(s.span_ns, 4 * WINDOW_NS);
    assert_eq!(s.target, "pid 100");

    // Threads: sorted by time not sleeping; main (600 ms busy per window)
    // before worker (400 ms + i).
    assert_eq!(s.thread_count, 2);
    let worker = &s.threads[1];
    assert_eq!((worker.tid, worker.comm.as_str()), (102, "worker"));
    assert_eq!(worker.states.on_cpu_ns, 4 * 100_000_000 + (1 + 2 + 3));
    assert_eq!(worker.states.iowait_ns, 4 * 200_000_000);
    assert_eq!(worker.states.sleep_ns, 4 * 600_000_000 - (1 + 2 + 3));
    assert_eq!(worker.observed_ns, 4 * WINDOW_NS);
    assert_eq!(worker.windows, 4);
    assert!((worker.percent(ThreadState::IoWait) - 20.0).abs() < 1e-9);
    assert_eq!(worker.busy_ns(), 4 * 400_000_000 + 6);
    let main = &s.threads[0];
    assert_eq!(main.tid, 101);
    assert_eq!(main.busy_ns(), 4 * 600_000_000);
    assert!((main.percent(ThreadState::OnCpu) - 50.0).abs() < 1e-9);

    // Resources: the futex is shared by two threads and adds up across them.
    assert_eq!(s.resource_count, 2);
    // The socket (70 ms per window) before the futex (50 ms + i).
    let futex = &s.resources[1];
    assert_eq!(futex.kind, WaitKind::Futex);
    assert_eq!(futex.wait_ns, 4 * 50_000_000 + (1 + 2 + 3));
    assert_eq!(futex.waits, 4 * 5);
    assert_eq!(futex.threads, 2);
    assert_eq!(s.resources[0].kind, WaitKind::SockRecv);
    assert_eq!(s.resources[0].wait_ns, 4 * 70_000_000);

    // Culprits.
    assert_eq!(s.culprit_count, 2);
    assert_eq!(
        (s.culprits[0].comm.as_str(), s.culprits[0].ns),
        ("noisy", 4 * 60_000_000)
    );
    assert_eq!(
        (s.culprits[1].comm.as_str(), s.culprits[1].ns),
        ("cron", 4 * 10_000_000 + 6)
    );

    // Disks: share is recomputed over the whole recording.
    assert_eq!(s.disk_count, 2);
    assert_eq!(
        (s.disks[0].comm.as_str(), s.disks[0].bytes),
        ("worker", 12_000)
    );
    assert!((s.disks[0].share - 0.75).abs() < 1e-9);
    assert!((s.disks[1].share - 0.25).abs() < 1e-9);
    assert!(s.disks[0].is_target && !s.disks[1].is_target);

    // Loss: ringbuf_drops is i % 2.
    assert_eq!(s.loss.ringbuf_drops, 2);
    assert_eq!(s.loss.total(), 2);

    // Overhead: (200_000 + i) + 50_000 per window.
    let total = 4 * 250_000 + 6;
    assert_eq!(s.overhead.total_run_time_ns, total);
    assert_eq!(s.overhead.mean_ns_per_window, total / 4);
    assert!((s.overhead.cpu_fraction - total as f64 / (4 * WINDOW_NS) as f64).abs() < 1e-12);
    assert_eq!(s.overhead.programs[0].name, "handle_switch");
    assert!((s.overhead.programs[0].ns_per_run - (800_006.0 / 4000.0)).abs() < 1e-9);

    let text = s.to_string();
    for want in [
        "holdup recording: 4 windows of 1000 ms (windows 0-3) spanning 4.0 s, started 2023-11-14 22:13:20 UTC",
        "target:  pid 100",
        "host:    testhost, kernel 6.1.0-test, holdup 0.1.0-test",
        "threads: 2 seen",
        "futex 0x1000 (pid 100)",
        "tcp 127.0.0.1:80->127.0.0.1:5000",
        "noisy",
        "75.0%",
        "loss: 2 (ringbuf_drops 2)",
        "BPF overhead: 250.0 µs per window",
        "handle_switch",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains('\x1b'), "no colors");
}

#[test]
fn summary_of_a_recording_carries_its_status_and_serializes() {
    let b = build(3, false);
    let r = Recording::from_bytes(&b.bytes).unwrap();
    let s = r.summary();
    assert_eq!(
        s.status,
        Some(ReadStatus::Truncated {
            complete_windows: 3,
            trailing_bytes: 0
        })
    );
    assert!(
        s.to_string().contains("status:  recording ended early"),
        "{s}"
    );
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["windows"], 3);
    assert_eq!(json["status"]["status"], "truncated");
}

#[test]
fn empty_summary_is_sane() {
    let s = summarize(&header(), &[]);
    assert_eq!(s.windows, 0);
    assert_eq!(s.overhead.mean_ns_per_window, 0);
    let text = s.to_string();
    assert!(
        text.contains("threads: none seen") && text.contains("loss: none"),
        "{text}"
    );
}

#[test]
fn top_threads_are_capped() {
    let mut w = snapshot(0);
    let t = w.threads[0].clone();
    w.threads = (0..40)
        .map(|i| {
            let mut t = t.clone();
            t.tid = 1000 + i;
            t.states.on_cpu_ns = u64::from(i) * 1000;
            t
        })
        .collect();
    let s = summarize(&header(), &[w]);
    assert_eq!(s.thread_count, 40);
    assert_eq!(s.threads.len(), holdup_record::summary::TOP_THREADS);
    assert_eq!(s.threads[0].tid, 1039);
}
