//! Pure CPU and pure sleep: `spin`, `runq`, `idle`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::obj;
use crate::sys::{pin_to_cpu, spin_until, Result};
use crate::worker::{spawn_worker, Part};

/// One thread that busy-loops until the deadline, making no syscalls.
pub fn spin(name: &'static str) -> Result<Part> {
    let iterations = Arc::new(AtomicU64::new(0));
    let it = Arc::clone(&iterations);
    let w = spawn_worker(name, move |deadline| {
        it.store(spin_until(deadline), Ordering::Relaxed);
        Ok(())
    })?;
    Ok(Part {
        workers: vec![w],
        info: obj! {},
        finish: Box::new(move || {
            obj! { "spin_iterations" => iterations.load(Ordering::Relaxed) }
        }),
    })
}

/// Two busy-looping threads pinned to the same CPU: each should get ~50%
/// on-CPU and ~50% run-queue wait, preempted by the other.
pub fn runq(cpu: usize) -> Result<Part> {
    const NAMES: [&str; 2] = ["hw-runq-a", "hw-runq-b"];
    let counts: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let mut workers = Vec::new();
    for (i, name) in NAMES.into_iter().enumerate() {
        let c = Arc::clone(&counts);
        let w = spawn_worker(name, move |deadline| {
            c[i].store(spin_until(deadline), Ordering::Relaxed);
            Ok(())
        })?;
        // The thread is parked on its start gate; pin it before it runs.
        pin_to_cpu(w.tid(), cpu)?;
        workers.push(w);
    }
    Ok(Part {
        workers,
        info: obj! { "cpu" => cpu },
        finish: Box::new(move || {
            obj! {
                "spin_iterations" => obj! {
                    NAMES[0] => counts[0].load(Ordering::Relaxed),
                    NAMES[1] => counts[1].load(Ordering::Relaxed),
                }
            }
        }),
    })
}

/// One thread that sleeps (nanosleep) in 100 ms steps until the deadline.
pub fn idle() -> Result<Part> {
    const STEP: Duration = Duration::from_millis(100);
    let sleeps = Arc::new(AtomicU64::new(0));
    let s = Arc::clone(&sleeps);
    let w = spawn_worker("hw-idle", move |deadline| {
        let mut n = 0;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::sleep(STEP.min(deadline - now));
            n += 1;
        }
        s.store(n, Ordering::Relaxed);
        Ok(())
    })?;
    Ok(Part {
        workers: vec![w],
        info: obj! { "sleep_step_ms" => 100 },
        finish: Box::new(move || obj! { "sleeps" => sleeps.load(Ordering::Relaxed) }),
    })
}
