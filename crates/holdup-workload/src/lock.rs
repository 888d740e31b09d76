//! `futex`: K threads contending for one [`FutexMutex`] whose address is known.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::futex::{FutexMutex, LockStats};
use crate::obj;
use crate::sys::{spin_for, IoContext, Result};
use crate::worker::{spawn_worker, Part};

pub struct FutexParams {
    pub threads: u32,
    pub hold: Duration,
    pub pause: Duration,
}

fn stats_json(st: &LockStats) -> Value {
    serde_json::json!({
        "acquisitions": st.acquisitions,
        "wake_calls": st.wake_calls,
        "woken": st.woken,
        "wait_blocked": st.wait_blocked,
        "wait_eagain": st.wait_eagain,
        "wait_eintr": st.wait_eintr,
    })
}

/// Threads `hw-lock-0..K-1` loop: lock; spin `hold` while holding; unlock;
/// spin `pause` outside the lock (busy, so the only off-CPU state is the
/// futex wait; the pause lets a just-woken waiter take the lock instead of the
/// releaser barging back in).
pub fn futex(p: &FutexParams) -> Result<Part> {
    let mutex = Arc::new(FutexMutex::new());
    let names: Vec<String> = (0..p.threads).map(|i| format!("hw-lock-{i}")).collect();
    let results = Arc::new(Mutex::new(vec![LockStats::default(); names.len()]));
    let mut workers = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (m, res) = (Arc::clone(&mutex), Arc::clone(&results));
        let (hold, pause) = (p.hold, p.pause);
        workers.push(spawn_worker(name, move |deadline| {
            let mut st = LockStats::default();
            while Instant::now() < deadline {
                m.lock(&mut st).ctx("futex(FUTEX_WAIT_PRIVATE)")?;
                spin_for(hold);
                m.unlock(&mut st).ctx("futex(FUTEX_WAKE_PRIVATE)")?;
                if !pause.is_zero() {
                    spin_for(pause);
                }
            }
            res.lock().unwrap_or_else(|e| e.into_inner())[i] = st;
            Ok(())
        })?);
    }
    let addr = mutex.addr();
    Ok(Part {
        workers,
        info: obj! {
            "futex_addr" => addr,
            "futex_addr_hex" => format!("{addr:#x}"),
            "futex_threads" => p.threads,
            "hold_us" => p.hold.as_micros() as u64,
            "pause_us" => p.pause.as_micros() as u64,
        },
        finish: Box::new(move || {
            // Keep the mutex (and so its address) alive until the end.
            drop(mutex);
            let per = results.lock().unwrap_or_else(|e| e.into_inner());
            let mut total = LockStats::default();
            let mut acq = Map::new();
            let mut per_thread = Map::new();
            for (name, st) in names.iter().zip(per.iter()) {
                total.add(st);
                acq.insert(name.clone(), st.acquisitions.into());
                per_thread.insert(name.clone(), stats_json(st));
            }
            obj! {
                "acquisitions" => acq,
                "acquisitions_total" => total.acquisitions,
                "futex_wake_calls" => total.wake_calls,
                "futex_woken" => total.woken,
                "futex_wait_blocked" => total.wait_blocked,
                "futex_wait_eagain" => total.wait_eagain,
                "futex_wait_eintr" => total.wait_eintr,
                "futex_per_thread" => per_thread,
            }
        }),
    })
}
