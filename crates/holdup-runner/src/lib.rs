//! One workbench run, bounded: what the workbench server and its agents
//! on other hosts share, with none of the server's HTTP or store.
//!
//! * [`overhead`]: the BPF CPU meter (kernel BPF stats of a process
//!   group's programs) and the two-interval budget rule;
//! * [`RecordCommand`]: `holdup record` from typed arguments;
//! * [`Stop`] and [`Stop::verdict`]: why a run ended, as its status and
//!   reason, the same words on the server and on an agent;
//! * [`run_bounded`]: a blocking runner (the agent's): starts the probe in
//!   its own process group, stops it at its duration, its output bound or
//!   over its budget (or when told to), and returns its output. The server
//!   runs its own probes from an async watcher with live output for
//!   readers, over the same pieces.

mod bounded;
pub mod overhead;
mod record;

pub use bounded::{run_bounded, Outcome, OutputFrom, Progress, Spec};
pub use record::{RecordCommand, RecordTarget};

use holdup_wb_api::RunStatus;
use std::time::Duration;

/// Grace between SIGINT and SIGKILL when a run is stopped.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// How often a run's BPF stats are read.
pub const OVERHEAD_INTERVAL: Duration = Duration::from_secs(1);

/// How often the output bound of a recording file is checked.
pub const OUTPUT_CHECK: Duration = Duration::from_millis(200);

/// Most stderr kept (its start goes into a failed run's reason).
pub const STDERR_KEPT: usize = 8192;

/// What ended a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    /// The approved duration passed.
    Duration,
    /// The output passed its bound.
    Output,
    /// Over the BPF CPU budget for two intervals, at this percent.
    Overhead(f64),
    /// Someone stopped it.
    User(String),
    /// The probe exited by itself, with this code (None: by a signal).
    Exited {
        /// Whether it exited with status 0.
        success: bool,
        /// How, as the OS says it ("exit status: 1").
        how: String,
    },
}

impl Stop {
    /// The run's final status and its reason, given its bounds and the
    /// probe's stderr.
    pub fn verdict(
        &self,
        duration: Duration,
        max_output: usize,
        limit_percent: f64,
        stderr: &str,
    ) -> (RunStatus, String) {
        match self {
            Stop::Duration => (
                RunStatus::StoppedDuration,
                format!("stopped at the approved duration of {} s", duration.as_secs()),
            ),
            Stop::Output => (
                RunStatus::StoppedOutput,
                format!("output exceeded the policy's max_output_bytes ({max_output}); the first {max_output} bytes are kept"),
            ),
            Stop::Overhead(p) => (
                RunStatus::StoppedOverhead,
                format!("its BPF programs used {p:.2}% of a CPU for two consecutive seconds, over the budget of {limit_percent}% (policy overhead_budget_percent)"),
            ),
            Stop::User(who) => (RunStatus::StoppedByUser, format!("stopped by {who}")),
            Stop::Exited { success: true, .. } => {
                (RunStatus::Finished, "exited with status 0".to_string())
            }
            Stop::Exited { how, .. } => (
                RunStatus::Failed,
                format!("exited with {how}; stderr: {stderr}"),
            ),
        }
    }
}

/// Sends `sig` to process group `pgid` (never to group 0 or 1).
pub fn kill_group(pgid: i64, sig: libc::c_int) {
    if pgid > 1 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(-(pgid as libc::pid_t), sig);
        }
    }
}

/// A process's start time (field 22 of `/proc/PID/stat`): with the pid,
/// it names one process (pids get reused).
pub fn proc_start_time(pid: i64) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) may contain spaces and ')': split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state); starttime is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// BPF CPU over a run's life, percent of one CPU.
pub fn average_percent(run_time_ns: u64, elapsed: Duration) -> Option<f64> {
    let s = elapsed.as_secs_f64();
    (s > 0.0).then(|| run_time_ns as f64 / (s * 1e9) * 100.0)
}
