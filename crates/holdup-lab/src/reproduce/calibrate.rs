//! The closed loop that keeps the lab's CPU contention at the recorded
//! strength. How much a spinning hog holds a service up depends on more
//! than its CPU share: the scheduler favours a task that wakes (the
//! service, waking for each request) over one that never sleeps, and how
//! much depends on the kernel, the load and whatever else runs on the host.
//! So the hogs' strength is not computed once: the service's run-queue
//! share is measured from the scheduler's own accounting
//! (`/proc/PID/task/*/schedstat`, no BPF needed) every step, and the hogs'
//! CPU weight is moved toward the share the incident recorded; when the
//! weight is at the kernel's maximum and the share still short, their CPU
//! quota is raised (up to a whole CPU each).

use super::cgroup::CpuKnobs;
use serde::Serialize;
use std::collections::BTreeMap;

/// The service's threads' on-CPU and run-queue time since the last sample.
pub struct RunqMeter {
    pid: u32,
    last: BTreeMap<u32, (u64, u64)>,
}

/// (on-CPU ns, run-queue ns) of each thread of `pid`.
fn thread_times(pid: u32) -> BTreeMap<u32, (u64, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
            continue;
        };
        // "on-CPU ns, run-queue wait ns, timeslices" (CONFIG_SCHED_INFO).
        let Ok(s) = std::fs::read_to_string(e.path().join("schedstat")) else {
            continue;
        };
        let mut f = s.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
        if let (Some(run), Some(wait)) = (f.next(), f.next()) {
            out.insert(tid, (run, wait));
        }
    }
    out
}

impl RunqMeter {
    /// Starts measuring `pid`'s threads.
    pub fn new(pid: u32) -> RunqMeter {
        RunqMeter {
            pid,
            last: thread_times(pid),
        }
    }

    /// Whether the kernel keeps the accounting this needs.
    pub fn available(pid: u32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}/schedstat")).exists()
    }

    /// On-CPU and run-queue ns of the service's threads since the last
    /// sample (threads that started since count from zero, those that
    /// ended are left out).
    pub fn sample(&mut self) -> (u64, u64) {
        let now = thread_times(self.pid);
        let (mut run, mut wait) = (0u64, 0u64);
        for (tid, (r, w)) in &now {
            let (r0, w0) = self.last.get(tid).copied().unwrap_or((0, 0));
            run += r.saturating_sub(r0);
            wait += w.saturating_sub(w0);
        }
        self.last = now;
        (run, wait)
    }
}

/// The run-queue share of on-CPU plus run-queue time (what the diagnosis's
/// CPU hold-up is for a service that does not block on anything else while
/// it has work).
pub fn runq_share(on_cpu_ns: u64, runq_ns: u64) -> f64 {
    let busy = on_cpu_ns + runq_ns;
    if busy == 0 {
        0.0
    } else {
        runq_ns as f64 / busy as f64
    }
}

/// One step of the loop, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct CpuStep {
    /// Seconds since the loop started.
    pub at_s: f64,
    /// The service's measured run-queue share in the step.
    pub measured: f64,
    /// The hogs' weight after the step (kernel units, 1024 = nice 0).
    pub weight: u64,
    /// Each hog's quota after the step, CPUs.
    pub quota: f64,
}

/// Within this relative distance of the target the weight is left alone
/// (the measured share of one step is noisy by about this much).
const DEAD_BAND: f64 = 0.12;
/// Most a step multiplies or divides the weight by: a few steps span the
/// whole range, and one noisy step cannot swing it far.
const MAX_STEP: f64 = 3.0;

/// Moves the hogs' CPU weight (and quota) so the service's run-queue
/// share reaches the recorded one.
pub struct CpuController {
    target: f64,
    weight: u64,
    quota: f64,
    knobs: Vec<CpuKnobs>,
    meter: RunqMeter,
    started: std::time::Instant,
    /// Every step so far.
    pub steps: Vec<CpuStep>,
}

impl CpuController {
    /// A loop toward `target` (the recorded run-queue share) for the
    /// service `pid`, starting at `weight` and `quota` in the hogs' `knobs`.
    pub fn new(
        pid: u32,
        target: f64,
        weight: u64,
        quota: f64,
        knobs: Vec<CpuKnobs>,
    ) -> CpuController {
        CpuController {
            target,
            weight,
            quota,
            knobs,
            meter: RunqMeter::new(pid),
            started: std::time::Instant::now(),
            steps: Vec::new(),
        }
    }

    /// The share it aims at.
    pub fn target(&self) -> f64 {
        self.target
    }

    /// The hogs' weight now.
    pub fn weight(&self) -> u64 {
        self.weight
    }

    /// Each hog's quota now, CPUs.
    pub fn quota(&self) -> f64 {
        self.quota
    }

    /// Whether the last step's share was within the dead band.
    pub fn settled(&self) -> bool {
        self.steps
            .last()
            .is_some_and(|s| (s.measured - self.target).abs() <= DEAD_BAND * self.target)
    }

    /// Measures the share since the last step and moves the knobs.
    pub fn step(&mut self) -> CpuStep {
        let (run, wait) = self.meter.sample();
        let measured = runq_share(run, wait);
        let max = self
            .knobs
            .iter()
            .map(CpuKnobs::max_weight)
            .min()
            .unwrap_or(1024);
        let next = next_weight(self.weight, measured, self.target, max);
        if next != self.weight {
            for k in &self.knobs {
                let _ = k.set_weight(next);
            }
        } else if next == max
            && measured < self.target * (1.0 - DEAD_BAND)
            && self.quota < 1.0
            && self.knobs.iter().all(CpuKnobs::has_quota)
        {
            self.quota = (self.quota * 1.25).min(1.0);
            for k in &self.knobs {
                let _ = k.set_quota(self.quota);
            }
        }
        self.weight = next;
        let s = CpuStep {
            at_s: self.started.elapsed().as_secs_f64(),
            measured,
            weight: self.weight,
            quota: self.quota,
        };
        self.steps.push(s.clone());
        s
    }
}

/// The weight after a step that measured `measured` against `target`: the
/// ratio of the two, limited to [`MAX_STEP`] either way (the share grows
/// with the weight, less than in proportion).
pub fn next_weight(weight: u64, measured: f64, target: f64, max: u64) -> u64 {
    if target <= 0.0 || (measured - target).abs() <= DEAD_BAND * target {
        return weight;
    }
    let ratio = (target / measured.max(0.01)).clamp(1.0 / MAX_STEP, MAX_STEP);
    ((weight as f64 * ratio).round() as u64).clamp(2, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weight_moves_toward_the_target_and_rests_near_it() {
        // Too little contention: more weight, at most MAX_STEP at once.
        assert_eq!(next_weight(1000, 0.1, 0.5, 262_144), 3000);
        assert_eq!(next_weight(1000, 0.4, 0.5, 262_144), 1250);
        // Too much: less.
        assert_eq!(next_weight(1000, 0.9, 0.3, 262_144), 333);
        // Close enough: left alone.
        assert_eq!(next_weight(1000, 0.52, 0.5, 262_144), 1000);
        // Within the kernel's range.
        assert_eq!(next_weight(200_000, 0.0, 0.5, 262_144), 262_144);
        assert_eq!(next_weight(3, 1.0, 0.1, 262_144), 2);
    }

    #[test]
    fn the_share_is_of_on_cpu_and_run_queue_time() {
        assert_eq!(runq_share(0, 0), 0.0);
        assert!((runq_share(300, 100) - 0.25).abs() < 1e-9);
    }
}
