//! `holdup diagnose`: what is holding the service up, and who causes it.
//!
//! Gets window snapshots either live (the collector, for `--duration`) or
//! from a recording, then hands them to `holdup_diagnose::diagnose`, which
//! does not know where they came from: one analysis for both.

use super::{parse_duration, stop_flag, TargetArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use holdup_collect::windows::End;
use holdup_collect::Collector;
use holdup_diagnose::{SloSeries, SplitRequest, TimeRange};
use holdup_model::Snapshot;
use holdup_record::{ReadStatus, Recorder, Recording, RecordingHeader};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Live collection length when `--duration` is not given.
const DEFAULT_LIVE: Duration = Duration::from_secs(60);

/// Arguments of `holdup diagnose`.
#[derive(Args)]
pub struct DiagnoseArgs {
    /// A recording to diagnose (instead of watching a live target).
    #[arg(value_name = "RECORDING")]
    file: Option<PathBuf>,
    #[command(flatten)]
    target: TargetArgs,
    /// How long to watch a live target (default 60s; Ctrl-C stops early and
    /// diagnoses what was collected).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// The baseline: a time range from the start (e.g. 0s..20s), or a
    /// recording of normal operation (e.g. base.rec).
    #[arg(long, value_name = "RANGE|RECORDING")]
    baseline: Option<String>,
    /// The incident: a time range from the start (e.g. 30s..60s). Without
    /// --baseline/--incident holdup finds the change point itself.
    #[arg(long, value_name = "RANGE")]
    incident: Option<String>,
    /// An SLO series that says when the service was bad: one value per line
    /// (one per second from the start), or "UNIX_SECONDS VALUE" lines, higher
    /// is worse (e.g. p99 latency). Used to split baseline and incident.
    #[arg(long, value_name = "FILE")]
    slo: Option<PathBuf>,
    /// Judge the incident alone, without a baseline ("it is slow right
    /// now"): the --incident range, or every window the service was active
    /// in. Each hold-up's share of the entry threads' busy time is held
    /// against a stated threshold (docs/DIAGNOSE.md). Without this flag
    /// holdup does the same by itself when the watch shows no change.
    #[arg(long, conflicts_with = "baseline")]
    no_baseline: bool,
    /// Print the diagnosis as JSON.
    #[arg(long)]
    json: bool,
    /// Write the thread dependency graph (who wakes whom) as Graphviz DOT.
    #[arg(long, value_name = "FILE")]
    dot: Option<PathBuf>,
    /// Also record the live windows to this file (for a later `holdup diagnose FILE`).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
}

fn has_live_target(t: &TargetArgs) -> bool {
    t.pid.is_some() || t.cgroup.is_some() || t.comm.is_some() || t.all || !t.command.is_empty()
}

fn open_recording(path: &Path) -> Result<Recording> {
    let rec = Recording::open(path)
        .with_context(|| format!("cannot read the recording {}", path.display()))?;
    if !matches!(rec.status, ReadStatus::Complete) {
        eprintln!("holdup: {}: {}", path.display(), rec.status.describe());
    }
    Ok(rec)
}

/// Runs `holdup diagnose`.
pub fn run(args: DiagnoseArgs) -> Result<()> {
    let live = has_live_target(&args.target);
    if live && args.file.is_some() {
        bail!("give either a recording or a live target (--pid, --cgroup, --comm, --all, -- COMMAND), not both");
    }
    if !live && args.file.is_none() {
        bail!("say what to diagnose: a recording (holdup diagnose incident.rec) or a live target (holdup diagnose --pid PID --duration 60s)");
    }
    if !live && args.record.is_some() {
        bail!("--record saves live windows; it does not apply to a recording");
    }
    let mut split = SplitRequest {
        no_baseline: args.no_baseline,
        ..SplitRequest::default()
    };
    if args.no_baseline && args.slo.is_some() {
        bail!("--no-baseline judges the incident alone; an SLO series only chooses a baseline and an incident: give one or the other");
    }
    let mut baseline_rec = None;
    if let Some(b) = &args.baseline {
        match TimeRange::parse(b) {
            Ok(r) => split.baseline = Some(r),
            Err(range_err) => {
                let p = PathBuf::from(b);
                if p.exists() {
                    baseline_rec = Some((open_recording(&p)?, b.clone()));
                } else if b.contains("..") {
                    bail!("--baseline {b}: {range_err}");
                } else {
                    bail!("--baseline {b:?} is neither a time range (e.g. 0s..20s) nor an existing recording file");
                }
            }
        }
    }
    if let Some(i) = &args.incident {
        split.incident =
            Some(TimeRange::parse(i).map_err(|e| anyhow::anyhow!("--incident {i}: {e}"))?);
    }
    if let Some(p) = &args.slo {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("cannot read the SLO series {}", p.display()))?;
        split.slo =
            Some(SloSeries::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?);
    }
    if let Some(d) = &args.dot {
        std::fs::File::create(d).with_context(|| {
            format!(
                "cannot write the graph to {}: choose another --dot path",
                d.display()
            )
        })?;
    }

    let (windows, target, label) = if let Some(file) = &args.file {
        let rec = open_recording(file)?;
        let label = file.display().to_string();
        (
            rec.windows,
            format!("{} (recorded)", rec.header.target),
            label,
        )
    } else {
        let (w, t) = collect(&args)?;
        (w, t, "live".to_string())
    };

    let input = holdup_diagnose::Input {
        target,
        windows: &windows,
        label: &label,
        baseline_windows: baseline_rec
            .as_ref()
            .map(|(r, l)| (r.windows.as_slice(), l.as_str())),
        split,
    };
    let d = holdup_diagnose::diagnose(&input);
    if let Some(p) = &args.dot {
        std::fs::write(p, d.graph.to_dot())
            .with_context(|| format!("cannot write the graph to {}", p.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!("{}", holdup_diagnose::text::render(&d));
    }
    Ok(())
}

/// Collects live windows for the requested duration.
fn collect(args: &DiagnoseArgs) -> Result<(Vec<Snapshot>, String)> {
    let opts = args.target.options()?;
    let interval = opts.interval;
    if let Some(p) = &args.record {
        std::fs::File::create(p).with_context(|| {
            format!(
                "cannot write the recording to {}: choose another --record path",
                p.display()
            )
        })?;
    }
    let duration = args.duration.unwrap_or(DEFAULT_LIVE);
    let mut c = Collector::start(opts)?;
    let mut rec = match &args.record {
        Some(p) => {
            let header = RecordingHeader::new(
                c.target().clone(),
                interval.as_millis() as u64,
                std::env::args().collect(),
            );
            Some(Recorder::create(p, &header)?)
        }
        None => None,
    };
    let stop = stop_flag();
    eprintln!(
        "holdup: watching {} for {:?} (windows of {:?}); Ctrl-C stops early and diagnoses what was collected",
        c.target(),
        duration,
        interval
    );
    let mut windows: Vec<Snapshot> = Vec::new();
    let end = match rec.as_mut() {
        Some(r) => crate::sink::drive(&mut c, &stop, Some(duration), &mut [&mut windows, r])?,
        None => crate::sink::drive(&mut c, &stop, Some(duration), &mut [&mut windows])?,
    };
    if end == End::TargetExited {
        eprintln!(
            "holdup: the target {} exited; diagnosing what was collected",
            c.target()
        );
    }
    let target = c.target().to_string();
    if let Some(r) = rec {
        let n = r.finish()?;
        if let Some(p) = &args.record {
            eprintln!("holdup: wrote {n} windows to {}", p.display());
        }
    }
    Ok((windows, target))
}
