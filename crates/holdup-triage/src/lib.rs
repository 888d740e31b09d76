//! `holdup triage`: a bounded host-wide look.
//!
//! One run traces every task on the host (the collector's "all" target) for
//! a fixed time, bounded in time, in recording size and in holdup's own BPF
//! CPU time (it stops early, and says so, when either bound is reached),
//! then writes a first look (which processes are held up most, by what, and
//! who causes it; per-CPU run-queue wait, throttling, pressure, disks,
//! locks, peers, holdup's own cost) and a bundle (tar + zstd) holding the
//! recording, the report as text and JSON and the host's facts. Recurring
//! runs keep a bounded rotation of bundles ([`rotate`]); a bundle can be
//! sent to a workbench incident ([`upload`]).

#![warn(missing_docs)]

pub mod bundle;
pub mod host;
pub mod report;
pub mod rotate;
pub mod text;
pub mod upload;

use anyhow::{bail, Context, Result};
use holdup_collect::{Collector, Options, TargetSpec};
use holdup_model::Snapshot;
use holdup_record::{Recorder, RecordingHeader};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How one triage run is bounded and where it goes.
#[derive(Clone, Debug)]
pub struct TriageOptions {
    /// How long to trace.
    pub duration: Duration,
    /// Window length.
    pub interval: Duration,
    /// Largest share of one CPU holdup's BPF programs may use (0.05 = 5%).
    pub max_cpu: f64,
    /// Largest recording, bytes: the run stops when it reaches this.
    pub max_recording_bytes: u64,
    /// The bundle to write (tar + zstd).
    pub output: PathBuf,
    /// holdup's command line, for the recording header.
    pub argv: Vec<String>,
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The report.
    pub report: report::Report,
    /// Its text.
    pub text: String,
    /// Where the bundle is.
    pub bundle: PathBuf,
    /// Its size, bytes.
    pub bundle_bytes: u64,
}

/// Checks that `path` can be written, before anything is loaded, and says
/// how to fix it when not.
pub fn check_writable(path: &Path, what: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        bail!(
            "cannot write the {what} to {}: {} is not a directory; create it or choose another path",
            path.display(),
            dir.display()
        );
    }
    let probe = dir.join(format!(".holdup-write-test-{}", std::process::id()));
    match std::fs::write(&probe, b"x") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => bail!(
            "cannot write the {what} to {}: {} ({}); choose a writable path with free space",
            path.display(),
            e,
            dir.display()
        ),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs one triage: traces the host, writes the bundle, returns the report.
/// `stop` (SIGINT/SIGTERM) ends the trace early; what was traced is kept.
pub fn run(opts: &TriageOptions, stop: &AtomicBool) -> Result<Outcome> {
    if !(opts.max_cpu > 0.0 && opts.max_cpu <= 1.0) {
        bail!(
            "--max-cpu must be above 0% and at most 100% of one CPU (got {})",
            opts.max_cpu
        );
    }
    check_writable(&opts.output, "triage bundle")?;
    let staging = PathBuf::from(format!("{}.part.d", opts.output.display()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging)
        .with_context(|| format!("cannot create the staging directory {}", staging.display()))?;
    let result = run_staged(opts, stop, &staging);
    let _ = std::fs::remove_dir_all(&staging);
    result
}

fn run_staged(opts: &TriageOptions, stop: &AtomicBool, staging: &Path) -> Result<Outcome> {
    let rec_path = staging.join(bundle::RECORDING);
    let before = report::Counters::read();
    let mut c = Collector::start(Options {
        target: TargetSpec::All,
        interval: opts.interval,
        follow_children: true,
        socket_calls: false,
        sched_only: false,
    })?;
    let started_unix_ms = unix_ms();
    let header = RecordingHeader::new(
        c.target().clone(),
        opts.interval.as_millis() as u64,
        opts.argv.clone(),
    );
    let mut rec = Recorder::create(&rec_path, &header)?;
    let t0 = Instant::now();
    let mut windows: Vec<Snapshot> = Vec::new();
    let mut bpf_ns = 0u64;
    let mut stopped_early = None;
    {
        let mut it = c.windows(stop, Some(opts.duration));
        for snap in it.by_ref() {
            let snap = snap?;
            rec.write_window(&snap)?;
            bpf_ns += snap.overhead_ns();
            windows.push(snap);
            let elapsed = t0.elapsed().as_secs_f64().max(1e-3);
            let cost = bpf_ns as f64 / (elapsed * 1e9);
            if cost > opts.max_cpu {
                stopped_early = Some(format!(
                    "holdup's own BPF cost reached {}% of one CPU after {:.1} s, over the budget of {}% (--max-cpu)",
                    holdup_format::rate(cost * 100.0),
                    elapsed,
                    holdup_format::rate(opts.max_cpu * 100.0)
                ));
                break;
            }
            let size = std::fs::metadata(&rec_path).map_or(0, |m| m.len());
            if size >= opts.max_recording_bytes {
                stopped_early = Some(format!(
                    "the recording reached {} after {:.1} s, the bound of --max-bytes {}",
                    holdup_format::bytes(size),
                    elapsed,
                    holdup_format::bytes(opts.max_recording_bytes)
                ));
                break;
            }
        }
        if stopped_early.is_none() && it.end() == Some(holdup_collect::windows::End::Stopped) {
            stopped_early = Some("stopped by a signal".to_string());
        }
    }
    let duration_s = t0.elapsed().as_secs_f64();
    rec.finish()?;
    drop(c);
    let after = report::Counters::read();
    let facts = host::read_facts();
    let recording_bytes = std::fs::metadata(&rec_path).map_or(0, |m| m.len());
    let report = report::build(&report::Inputs {
        windows: &windows,
        facts: &facts,
        before: &before,
        after: &after,
        duration_s,
        started_unix_ms,
        stopped_early,
        budget: opts.max_cpu,
        recording_bytes,
    });
    let text = text::render(&report);
    let bundle_bytes = bundle::write(&opts.output, &rec_path, &report, &text, &facts)?;
    Ok(Outcome {
        report,
        text,
        bundle: opts.output.clone(),
        bundle_bytes,
    })
}
