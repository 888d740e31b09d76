//! `holdup triage`: the command-line side of holdup-triage (one run, a
//! rotation of recurring runs, the upload to a workbench incident).

use super::{parse_duration, stop_flag};
use anyhow::{bail, Result};
use clap::Args;
use holdup_triage::rotate::{parse_bytes, reserve_for, Rotation};
use holdup_triage::{Outcome, TriageOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Arguments of `holdup triage`.
#[derive(Args)]
pub struct TriageArgs {
    /// How long to trace the host.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Window length.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// holdup's own BPF CPU budget, as a share of one CPU (e.g. 5%): the
    /// trace stops early, and the report says so, when it is exceeded.
    #[arg(long, default_value = "5%", value_parser = parse_share)]
    max_cpu: f64,
    /// Largest recording (e.g. 64M): the trace stops early when it is reached.
    #[arg(long, default_value = "64M", value_parser = parse_bytes)]
    max_recording: u64,
    /// The bundle to write (tar + zstd) when not in a --dir rotation.
    #[arg(
        short,
        long,
        default_value = "host-triage.tar.zst",
        conflicts_with = "dir"
    )]
    output: PathBuf,
    /// Print the report as JSON (with the bundle's path) instead of text.
    #[arg(long)]
    json: bool,
    /// Run again at this interval (e.g. 1h) until stopped, into --dir.
    #[arg(long, value_parser = parse_duration, requires = "dir")]
    every: Option<Duration>,
    /// Stop after this many runs of --every.
    #[arg(long, requires = "every")]
    runs: Option<u64>,
    /// Keep the bundles in this directory, as a bounded rotation
    /// (triage-<unix ms>.tar.zst; the oldest go first).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Most bundles kept in --dir.
    #[arg(long, default_value_t = 48, requires = "dir")]
    keep: usize,
    /// Most bytes the bundles in --dir may take (e.g. 2G), including a run's
    /// staging files.
    #[arg(long, value_parser = parse_bytes, requires = "dir")]
    max_bytes: Option<u64>,
    /// Send each bundle to this workbench (e.g. http://wb:8080) as an
    /// artifact of --incident.
    #[arg(long, requires_all = ["incident", "token_file"])]
    upload: Option<String>,
    /// The workbench incident the bundle is attached to.
    #[arg(long, requires = "upload")]
    incident: Option<u64>,
    /// A file whose first line is the workbench token (a requester's).
    #[arg(long, requires = "upload")]
    token_file: Option<PathBuf>,
}

/// "5%" or "0.05" as a fraction.
fn parse_share(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = if let Some(p) = t.strip_suffix('%') {
        p.trim().parse::<f64>().map(|v| v / 100.0)
    } else {
        t.parse::<f64>()
    }
    .map_err(|_| format!("{s:?} is not a share of one CPU: write e.g. 5% or 0.05"))?;
    if !(v > 0.0 && v <= 1.0) {
        return Err(format!(
            "{s:?}: the CPU budget must be above 0% and at most 100%"
        ));
    }
    Ok(v)
}

/// Runs `holdup triage`.
pub fn run(args: TriageArgs) -> Result<()> {
    if args.duration < args.interval {
        bail!("--duration must be at least one --interval");
    }
    let token = match &args.token_file {
        Some(f) => Some(holdup_triage::upload::read_token(f)?),
        None => None,
    };
    let stop = stop_flag();
    let argv: Vec<String> = std::env::args().collect();
    let Some(dir) = &args.dir else {
        let opts = options(&args, args.output.clone(), argv);
        let out = one(&opts, &stop, args.json)?;
        return upload(&args, token.as_deref(), &out);
    };
    let rot = Rotation {
        dir: dir.clone(),
        keep: args.keep,
        max_bytes: args.max_bytes,
    };
    rot.check()?;
    // The run's recording bound shrinks so that --keep bundles of that
    // size fit in --max-bytes beside a run's staging files.
    let mut max_recording = args.max_recording;
    if let Some(m) = args.max_bytes {
        let room = m.saturating_sub(reserve_for(0)) / (args.keep as u64 + 1);
        if room < 64 << 10 {
            bail!(
                "--max-bytes {} leaves no room for {} bundles (each run needs at least {} and a bundle at least 64 KiB): raise --max-bytes or lower --keep",
                holdup_format::bytes(m),
                args.keep,
                holdup_format::bytes(reserve_for(64 << 10))
            );
        }
        max_recording = max_recording.min(room);
    }
    let mut n = 0u64;
    loop {
        let started = Instant::now();
        for p in rot.make_room(reserve_for(max_recording))? {
            eprintln!("holdup: removed the old bundle {}", p.display());
        }
        let mut opts = options(&args, rot.next_path(), argv.clone());
        opts.max_recording_bytes = max_recording;
        match one(&opts, &stop, args.json) {
            Ok(out) => {
                if let Err(e) = upload(&args, token.as_deref(), &out) {
                    if args.every.is_none() {
                        return Err(e);
                    }
                    eprintln!("holdup: {e:#}");
                }
            }
            // A recurring run goes on after one failed run (say the disk
            // was full for a while); a single run reports it.
            Err(e) if args.every.is_some() && !stop.load(Ordering::Relaxed) => {
                eprintln!("holdup: this run failed: {e:#}")
            }
            Err(e) => return Err(e),
        }
        rot.prune()?;
        n += 1;
        let Some(every) = args.every else { break };
        if args.runs.is_some_and(|r| n >= r) || stop.load(Ordering::Relaxed) {
            break;
        }
        if !sleep_until(started + every, &stop) {
            break;
        }
    }
    Ok(())
}

fn options(args: &TriageArgs, output: PathBuf, argv: Vec<String>) -> TriageOptions {
    TriageOptions {
        duration: args.duration,
        interval: args.interval,
        max_cpu: args.max_cpu,
        max_recording_bytes: args.max_recording,
        output,
        argv,
    }
}

/// Sleeps until `t` or a stop; false when stopped.
fn sleep_until(t: Instant, stop: &AtomicBool) -> bool {
    while Instant::now() < t {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100).min(t - Instant::now()));
    }
    !stop.load(Ordering::Relaxed)
}

fn one(opts: &TriageOptions, stop: &AtomicBool, json: bool) -> Result<Outcome> {
    eprintln!(
        "holdup: triage of every task on the host for {:?} (BPF budget {}% of one CPU); Ctrl-C stops early",
        opts.duration,
        holdup_format::rate(opts.max_cpu * 100.0)
    );
    let out = holdup_triage::run(opts, stop)?;
    if json {
        let v = serde_json::json!({
            "bundle": out.bundle,
            "bundle_bytes": out.bundle_bytes,
            "report": out.report,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", out.text);
    }
    eprintln!(
        "holdup: wrote the bundle {} ({})",
        out.bundle.display(),
        holdup_format::bytes(out.bundle_bytes)
    );
    Ok(out)
}

fn upload(args: &TriageArgs, token: Option<&str>, out: &Outcome) -> Result<()> {
    let (Some(url), Some(incident), Some(token)) = (&args.upload, args.incident, token) else {
        return Ok(());
    };
    match holdup_triage::upload::upload(url, incident, token, &out.bundle) {
        Ok(name) => {
            eprintln!("holdup: uploaded {name} to incident {incident} at {url}");
            Ok(())
        }
        Err(e) => bail!("{e:#}; the bundle is kept at {}", out.bundle.display()),
    }
}
