//! The overhead budget of a run, measured from the kernel's own BPF program
//! statistics: the run time of every BPF program held open by the run's
//! process group, over wall-clock time, as a percentage of one CPU.
//!
//! The kernel only counts program run time while statistics are enabled;
//! [`StatsGuard`] keeps them on (via `BPF_ENABLE_STATS`, so they switch off
//! by themselves if the server dies) for as long as any run is active.

use std::collections::HashSet;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Mutex;

/// `BPF_ENABLE_STATS` command of bpf(2).
const BPF_ENABLE_STATS: libc::c_long = 32;
/// `BPF_STATS_RUN_TIME`, the only statistics type.
const BPF_STATS_RUN_TIME: u32 = 0;

/// Number of active guards and the stats fd they share.
static STATS: Mutex<(usize, Option<OwnedFd>)> = Mutex::new((0, None));

/// Keeps BPF run-time statistics enabled while alive.
pub struct StatsGuard(());

impl StatsGuard {
    /// Enables BPF run-time statistics (shared by all active runs). Fails
    /// without CAP_SYS_ADMIN: then no budget can be enforced.
    pub fn enable() -> std::io::Result<StatsGuard> {
        let mut st = STATS.lock().unwrap_or_else(|e| e.into_inner());
        if st.1.is_none() {
            // union bpf_attr { struct { __u32 type; } enable_stats; }
            let attr: [u32; 2] = [BPF_STATS_RUN_TIME, 0];
            // SAFETY: attr is a valid, initialised buffer of the size passed.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_ENABLE_STATS,
                    attr.as_ptr(),
                    std::mem::size_of_val(&attr),
                )
            };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: the kernel just returned this fd to us.
            st.1 = Some(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        st.0 += 1;
        Ok(StatsGuard(()))
    }
}

impl Drop for StatsGuard {
    fn drop(&mut self) {
        let mut st = STATS.lock().unwrap_or_else(|e| e.into_inner());
        st.0 = st.0.saturating_sub(1);
        if st.0 == 0 {
            st.1 = None;
        }
    }
}

/// BPF run time of one process group at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Sum of `run_time_ns` over the distinct programs the group holds.
    pub run_time_ns: u64,
    /// Sum of `run_cnt`.
    pub run_cnt: u64,
    /// Number of distinct programs.
    pub programs: usize,
}

/// Parses one `/proc/PID/fdinfo/FD` text: `(prog_id, run_time_ns, run_cnt)`
/// if the fd is a BPF program.
pub fn parse_prog_fdinfo(text: &str) -> Option<(u32, u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let id = field("prog_id")? as u32;
    Some((id, field("run_time_ns")?, field("run_cnt").unwrap_or(0)))
}

/// Process group of `pid` (field 5 of /proc/PID/stat).
fn pgrp_of(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// The BPF programs held open by every process of group `pgid`, and their
/// run time so far. Each program counts once even if several fds hold it.
pub fn group_stats(pgid: i64) -> GroupStats {
    let mut seen = HashSet::new();
    let mut out = GroupStats::default();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pgrp_of(pid) != Some(pgid) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(text) = std::fs::read_to_string(fd.path()) else {
                continue;
            };
            if let Some((id, ns, cnt)) = parse_prog_fdinfo(&text) {
                if seen.insert(id) {
                    out.run_time_ns += ns;
                    out.run_cnt += cnt;
                    out.programs += 1;
                }
            }
        }
    }
    out
}

/// Judges a run's measured BPF CPU use against its budget, one sample at a
/// time. A run is over budget when two consecutive intervals exceed it, so
/// a single burst (program load, a one-off event storm) is tolerated while a
/// sustained excess is stopped within about two intervals.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Allowed BPF CPU use, percent of one CPU.
    pub limit_percent: f64,
    last: Option<(u64, std::time::Instant)>,
    over_streak: u32,
    /// Highest interval value seen, percent of one CPU.
    pub peak_percent: f64,
}

impl Budget {
    /// A budget of `limit_percent` of one CPU.
    pub fn new(limit_percent: f64) -> Budget {
        Budget {
            limit_percent,
            last: None,
            over_streak: 0,
            peak_percent: 0.0,
        }
    }

    /// Feeds a cumulative run-time reading taken at `at`. Returns the
    /// interval's CPU percent, and whether the run is now over budget.
    pub fn sample(&mut self, run_time_ns: u64, at: std::time::Instant) -> (Option<f64>, bool) {
        let pct = self.last.and_then(|(ns, t)| {
            let wall = at.duration_since(t).as_nanos() as f64;
            (wall > 0.0).then(|| run_time_ns.saturating_sub(ns) as f64 / wall * 100.0)
        });
        self.last = Some((run_time_ns, at));
        if let Some(p) = pct {
            self.peak_percent = self.peak_percent.max(p);
            if p > self.limit_percent {
                self.over_streak += 1;
            } else {
                self.over_streak = 0;
            }
        }
        (pct, self.over_streak >= 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn parses_program_fdinfo_and_ignores_other_fds() {
        let prog = "pos:\t0\nflags:\t02000002\nprog_type:\t5\nprog_id:\t9447\nrun_time_ns:\t1234\nrun_cnt:\t7\n";
        assert_eq!(parse_prog_fdinfo(prog), Some((9447, 1234, 7)));
        let map = "pos:\t0\nflags:\t02\nmap_type:\t1\nmap_id:\t3\n";
        assert_eq!(parse_prog_fdinfo(map), None);
        let file = "pos:\t0\nflags:\t0100002\nmnt_id:\t17\n";
        assert_eq!(parse_prog_fdinfo(file), None);
    }

    #[test]
    fn budget_needs_two_intervals_over_the_limit() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut b = Budget::new(5.0);
        assert_eq!(b.sample(0, t0), (None, false));
        // 100 ms of BPF time in 1 s = 10% of a CPU: over, once.
        let (p, over) = b.sample(100_000_000, t0 + s);
        assert!((p.unwrap() - 10.0).abs() < 1e-9);
        assert!(!over);
        // 1% next: the streak resets.
        assert!(!b.sample(110_000_000, t0 + 2 * s).1);
        // Two in a row over: stop.
        assert!(!b.sample(210_000_000, t0 + 3 * s).1);
        assert!(b.sample(310_000_000, t0 + 4 * s).1);
        assert!((b.peak_percent - 10.0).abs() < 1e-9);
    }

    #[test]
    fn counters_going_backwards_do_not_underflow() {
        // A program unloaded between samples lowers the sum.
        let t0 = Instant::now();
        let mut b = Budget::new(1.0);
        b.sample(500, t0);
        let (p, over) = b.sample(100, t0 + Duration::from_secs(1));
        assert_eq!(p, Some(0.0));
        assert!(!over);
    }

    #[test]
    fn own_process_group_holds_no_programs() {
        // SAFETY: getpgrp has no preconditions.
        let pg = unsafe { libc::getpgrp() } as i64;
        assert_eq!(group_stats(pg).programs, 0);
    }
}
