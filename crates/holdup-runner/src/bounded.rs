//! The blocking bounded runner an agent uses: one probe process, its
//! duration, output and BPF CPU budget enforced here, on its own host.

use crate::overhead::{self, Budget, GroupStats};
use crate::{kill_group, Stop, KILL_GRACE, OUTPUT_CHECK, OVERHEAD_INTERVAL, STDERR_KEPT};
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a probe's output is.
#[derive(Debug, Clone)]
pub enum OutputFrom {
    /// Its stdout (bpftrace).
    Stdout,
    /// A file it writes (`holdup record -o`).
    File(PathBuf),
}

/// One probe to run, with its bounds.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Where its output is.
    pub output: OutputFrom,
    /// Stopped after this long.
    pub duration: Duration,
    /// Stopped past this much output; this much is kept.
    pub max_output: usize,
    /// BPF CPU budget, percent of one CPU.
    pub budget_percent: f64,
}

/// What a run looks like at one of its meter ticks.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// The probe's pid (and process group).
    pub pid: i64,
    /// BPF run time of its programs so far.
    pub bpf_run_time_ns: u64,
    /// Output so far.
    pub output_bytes: u64,
}

/// How a bounded run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What stopped it.
    pub stop: Stop,
    /// Its exit code, if it exited with one.
    pub exit_code: Option<i64>,
    /// Its output, at most `max_output` bytes.
    pub output: Vec<u8>,
    /// The start of its stderr.
    pub stderr: String,
    /// Its programs at the last reading that saw them.
    pub bpf: GroupStats,
    /// Average BPF CPU over its life.
    pub cpu_percent: Option<f64>,
    /// Highest one-interval BPF CPU.
    pub peak_percent: f64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Reads `r` to its end, keeping at most `max` bytes; sets `over` once
/// more came.
fn drain(mut r: impl Read, max: usize, kept: &Mutex<Vec<u8>>, over: &AtomicBool) {
    let mut chunk = [0u8; 16384];
    while let Ok(n) = r.read(&mut chunk) {
        if n == 0 {
            break;
        }
        let mut k = kept.lock().unwrap_or_else(|e| e.into_inner());
        let room = max.saturating_sub(k.len());
        k.extend_from_slice(&chunk[..n.min(room)]);
        if n > room {
            over.store(true, Ordering::Relaxed);
        }
    }
}

/// Runs `spec` to its end, in its own process group (killed with the
/// calling thread if that dies: `PR_SET_PDEATHSIG`). Once a meter
/// interval, `tick` sees its progress and may return who stops it. Needs
/// BPF stats on ([`overhead::StatsGuard`]) for the budget to be measured.
pub fn run_bounded(
    spec: &Spec,
    mut tick: impl FnMut(&Progress) -> Option<String>,
) -> std::io::Result<Outcome> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let pid = i64::from(child.id());
    let stdout_kept = Arc::new(Mutex::new(Vec::new()));
    let stdout_over = Arc::new(AtomicBool::new(false));
    let stderr_kept = Arc::new(Mutex::new(Vec::new()));
    let readers = {
        let out = child.stdout.take();
        let err = child.stderr.take();
        let (ok, oo, ek) = (
            stdout_kept.clone(),
            stdout_over.clone(),
            stderr_kept.clone(),
        );
        let max = match spec.output {
            OutputFrom::Stdout => spec.max_output,
            // A recording's stdout is holdup's progress text: keep a little.
            OutputFrom::File(_) => STDERR_KEPT,
        };
        [
            std::thread::spawn(move || {
                if let Some(o) = out {
                    drain(o, max, &ok, &oo)
                }
            }),
            std::thread::spawn(move || {
                if let Some(e) = err {
                    drain(e, STDERR_KEPT, &ek, &AtomicBool::new(false))
                }
            }),
        ]
    };
    let mut budget = Budget::new(spec.budget_percent);
    let mut bpf = GroupStats::default();
    let mut next_meter = started;
    let output_len = |kept: &Mutex<Vec<u8>>| match &spec.output {
        OutputFrom::Stdout => kept.lock().unwrap_or_else(|e| e.into_inner()).len(),
        OutputFrom::File(f) => std::fs::metadata(f).map_or(0, |m| m.len() as usize),
    };
    let stop = loop {
        if let Some(st) = child.try_wait()? {
            break Stop::Exited {
                success: st.success(),
                how: st.to_string(),
            };
        }
        if started.elapsed() >= spec.duration {
            break Stop::Duration;
        }
        let len = output_len(&stdout_kept);
        let over = match spec.output {
            OutputFrom::Stdout => stdout_over.load(Ordering::Relaxed),
            OutputFrom::File(_) => len > spec.max_output,
        };
        if over {
            break Stop::Output;
        }
        let now = Instant::now();
        if now >= next_meter {
            next_meter = now + OVERHEAD_INTERVAL;
            let stats = overhead::group_stats(pid);
            // Programs are unloaded when the probe exits; keep the last
            // reading that still saw them.
            if stats.programs > 0 {
                bpf = stats;
            }
            let (pct, over) = budget.sample(stats.run_time_ns, now);
            if over {
                break Stop::Overhead(pct.unwrap_or(0.0));
            }
            let progress = Progress {
                pid,
                bpf_run_time_ns: bpf.run_time_ns,
                output_bytes: len as u64,
            };
            if let Some(who) = tick(&progress) {
                break Stop::User(who);
            }
        }
        std::thread::sleep(OUTPUT_CHECK);
    };
    let status = match &stop {
        Stop::Exited { .. } => child.try_wait()?,
        _ => {
            kill_group(pid, libc::SIGINT);
            let grace = Instant::now() + KILL_GRACE;
            loop {
                if let Some(s) = child.try_wait()? {
                    break Some(s);
                }
                if Instant::now() >= grace {
                    kill_group(pid, libc::SIGKILL);
                    break child.wait().ok();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let elapsed = started.elapsed();
    for r in readers {
        let _ = r.join();
    }
    let output = match &spec.output {
        OutputFrom::Stdout => {
            std::mem::take(&mut *stdout_kept.lock().unwrap_or_else(|e| e.into_inner()))
        }
        OutputFrom::File(f) => {
            let mut data = Vec::new();
            if let Ok(file) = std::fs::File::open(f) {
                let _ = file.take(spec.max_output as u64).read_to_end(&mut data);
            }
            data
        }
    };
    let stderr = String::from_utf8_lossy(&stderr_kept.lock().unwrap_or_else(|e| e.into_inner()))
        .trim()
        .to_string();
    Ok(Outcome {
        stop,
        exit_code: status.and_then(|s| s.code()).map(i64::from),
        output,
        stderr,
        cpu_percent: crate::average_percent(bpf.run_time_ns, elapsed),
        bpf,
        peak_percent: budget.peak_percent,
        elapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, duration: Duration, max_output: usize) -> Outcome {
        let spec = Spec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            output: OutputFrom::Stdout,
            duration,
            max_output,
            budget_percent: 100.0,
        };
        run_bounded(&spec, |_| None).unwrap()
    }

    #[test]
    fn a_probe_is_stopped_at_its_duration() {
        let o = sh("echo hi; exec sleep 30", Duration::from_millis(600), 1000);
        assert_eq!(o.stop, Stop::Duration);
        assert_eq!(o.output, b"hi\n");
        assert!(o.elapsed < Duration::from_secs(5), "{:?}", o.elapsed);
    }

    #[test]
    fn output_past_its_bound_stops_the_probe_and_is_cut() {
        let o = sh("yes", Duration::from_secs(20), 300);
        assert_eq!(o.stop, Stop::Output);
        assert_eq!(o.output.len(), 300);
    }

    #[test]
    fn an_exit_is_reported_with_stderr() {
        let o = sh("echo bad >&2; exit 3", Duration::from_secs(20), 300);
        assert_eq!(o.exit_code, Some(3));
        let (status, reason) = o.stop.verdict(Duration::from_secs(20), 300, 1.0, &o.stderr);
        assert_eq!(status, holdup_wb_api::RunStatus::Failed);
        assert!(reason.contains("stderr: bad"), "{reason}");
    }

    #[test]
    fn the_tick_can_stop_a_run() {
        let spec = Spec {
            program: "/bin/sleep".into(),
            args: vec!["30".into()],
            output: OutputFrom::Stdout,
            duration: Duration::from_secs(20),
            max_output: 10,
            budget_percent: 100.0,
        };
        let mut ticks = 0;
        let o = run_bounded(&spec, |p| {
            assert!(p.pid > 1);
            ticks += 1;
            (ticks == 2).then(|| "alice".to_string())
        })
        .unwrap();
        assert_eq!(o.stop, Stop::User("alice".into()));
    }
}
