//! `holdup report incident.rec -o report.html`: the recording and its
//! diagnosis as one self-contained HTML page (holdup-report). The diagnosis
//! is `holdup diagnose FILE`'s: the same call on the same windows.

use anyhow::{bail, Context, Result};
use clap::Args;
use holdup_diagnose::{SplitRequest, TimeRange};
use holdup_record::{ReadStatus, Recording};
use std::path::PathBuf;

/// Arguments of `holdup report`.
#[derive(Args)]
pub struct ReportArgs {
    /// The recording.
    #[arg(value_name = "RECORDING")]
    file: PathBuf,
    /// The HTML file to write.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// The baseline, a time range from the start (e.g. 0s..20s); default: as
    /// `holdup diagnose` chooses.
    #[arg(long, value_name = "RANGE")]
    baseline: Option<String>,
    /// The incident, a time range from the start (e.g. 30s..60s).
    #[arg(long, value_name = "RANGE")]
    incident: Option<String>,
    /// Judge the incident alone, without a baseline.
    #[arg(long, conflicts_with = "baseline")]
    no_baseline: bool,
}

/// Runs `holdup report`.
pub fn run(args: ReportArgs) -> Result<()> {
    let range = |flag: &str, v: &Option<String>| -> Result<Option<TimeRange>> {
        v.as_deref()
            .map(|s| TimeRange::parse(s).map_err(|e| anyhow::anyhow!("--{flag} {s}: {e}")))
            .transpose()
    };
    let split = SplitRequest {
        baseline: range("baseline", &args.baseline)?,
        incident: range("incident", &args.incident)?,
        no_baseline: args.no_baseline,
        ..SplitRequest::default()
    };
    if args.output.extension().is_some_and(|e| e == "rec") {
        bail!(
            "-o {} would overwrite a recording with HTML: name the report e.g. report.html",
            args.output.display()
        );
    }
    let rec = Recording::open(&args.file)
        .with_context(|| format!("cannot read the recording {}", args.file.display()))?;
    if !matches!(rec.status, ReadStatus::Complete) {
        eprintln!("holdup: {}: {}", args.file.display(), rec.status.describe());
    }
    let label = args.file.display().to_string();
    let d = holdup_diagnose::diagnose(&holdup_diagnose::Input {
        target: format!("{} (recorded)", rec.header.target),
        windows: &rec.windows,
        label: &label,
        baseline_windows: None,
        split,
    });
    let html = holdup_report::render(&holdup_report::ReportInput {
        recording: &rec,
        source: &label,
        diagnosis: &d,
    });
    std::fs::write(&args.output, html).with_context(|| {
        format!(
            "cannot write the report to {}: choose another -o path",
            args.output.display()
        )
    })?;
    eprintln!(
        "holdup: wrote {} ({}: {})",
        args.output.display(),
        d.top().kind.title(),
        d.top().summary
    );
    Ok(())
}
