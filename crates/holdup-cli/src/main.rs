//! `holdup`: what is holding your threads up, and who is causing it.

#![warn(missing_docs)]

mod agent;
mod diagnose;
mod export;
mod lab;
mod report;
mod ring;
mod sink;
mod top;
mod triage;
#[cfg(feature = "workbench")]
mod wb;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use holdup_collect::windows::End;
use holdup_collect::{Collector, Options, TargetSpec};
use holdup_record::{Recorder, Recording, RecordingHeader};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "holdup",
    version,
    about = "What is holding your threads up, and who is causing it (eBPF)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Live view of the target's threads, refreshed every window.
    Top {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        replay: top::ReplayArgs,
        /// Print one JSON object per window instead of the terminal view.
        #[arg(long)]
        json: bool,
        /// Stop after this long (e.g. 30s, 2m); default: until Ctrl-C or the target exits.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Threads to show.
        #[arg(long, default_value_t = 20)]
        rows: usize,
    },
    /// Record windows to a file, one checksummed block per window.
    Record {
        #[command(flatten)]
        target: TargetArgs,
        /// Output file (or --ring and --dir for a flight recorder).
        #[arg(short, long, required_unless_present = "ring")]
        output: Option<PathBuf>,
        /// Stop after this long (e.g. 10s, 5m); default: until Ctrl-C or the target exits.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Print a summary of the recording when done.
        #[arg(long)]
        summary: bool,
        #[command(flatten)]
        ring: ring::RingArgs,
    },
    /// Say what holds the target up and who causes it: ranked causes with
    /// evidence, live (`--pid P --duration 60s`) or from a recording.
    Diagnose(diagnose::DiagnoseArgs),
    /// Write a recording and its diagnosis as one self-contained HTML page
    /// (`holdup report incident.rec -o report.html`).
    Report(report::ReportArgs),
    /// A bounded host-wide first look: who is held up most, by what, and
    /// who causes it; writes a bundle (recording, report, host facts).
    Triage(triage::TriageArgs),
    /// The governed-probes server: catalog, review, approval, policy, audit.
    #[cfg(feature = "workbench")]
    Workbench {
        #[command(subcommand)]
        cmd: wb::WorkbenchCmd,
    },
    /// The workbench client: incidents, scripts, requests, approval, runs,
    /// audit (`--server`/HOLDUP_WB_URL, `--token`/HOLDUP_WB_TOKEN).
    #[cfg(feature = "workbench")]
    Wb(wb::WbArgs),
    /// Compare a baseline and an incident per role and resource:
    /// `holdup diff base.rec incident.rec` or `holdup diff x.rec --base 0s..60s --incident 60s..120s`.
    Diff(lab::DiffArgs),
    /// Rank earlier incidents by how much they look like this one:
    /// `holdup match incident.rec --library DIR` (or `--workbench URL`).
    Match(lab::MatchArgs),
    /// Regenerate a recorded incident's contention against a lab copy:
    /// `holdup reproduce incident.rec --load 'CMD' -- COMMAND` (or `--pid P`).
    Reproduce(lab::ReproduceArgs),
    /// The per-host daemon: watches services continuously and serves
    /// Prometheus/OpenMetrics on /metrics (docs/AGENT.md).
    Agent(agent::AgentArgs),
    /// Write a recording's tables as Parquet or JSON Lines (docs/EXPORT.md).
    Export(export::ExportArgs),
    /// Summarise a recording.
    Inspect {
        /// The recording.
        file: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Clone)]
struct TargetArgs {
    /// Watch this process: all its threads, and children it starts.
    #[arg(long, group = "tgt")]
    pid: Option<u32>,
    /// Watch every process in this cgroup v2 directory (and below).
    #[arg(long, group = "tgt")]
    cgroup: Option<PathBuf>,
    /// Watch processes whose name matches this regular expression.
    #[arg(long, group = "tgt")]
    comm: Option<String>,
    /// Watch every task on the host.
    #[arg(long, group = "tgt")]
    all: bool,
    /// Window length (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// Do not follow processes the target starts.
    #[arg(long)]
    no_follow: bool,
    /// Also count every socket call and its bytes, per socket (costs a busy
    /// network service a few percent: every socket call on the host is traced).
    #[arg(long)]
    socket_calls: bool,
    /// Attach only the scheduler tracepoints (no block-device or socket
    /// tracepoints): the cheapest set; disk and socket wake-ups are not told
    /// apart and per-disk I/O is not collected.
    #[arg(long, conflicts_with = "socket_calls")]
    sched_only: bool,
    /// Start this command and watch it: `holdup record -o x.rec -- ./server --port 80`.
    #[arg(last = true, group = "tgt")]
    command: Vec<String>,
}

impl TargetArgs {
    fn spec(&self) -> Result<TargetSpec> {
        Ok(if let Some(pid) = self.pid {
            TargetSpec::Pid(pid)
        } else if let Some(c) = &self.cgroup {
            TargetSpec::Cgroup(c.clone())
        } else if let Some(re) = &self.comm {
            TargetSpec::Comm(
                regex::Regex::new(re)
                    .with_context(|| format!("--comm {re:?} is not a valid regular expression"))?,
            )
        } else if self.all {
            TargetSpec::All
        } else if !self.command.is_empty() {
            TargetSpec::Command(self.command.clone())
        } else {
            bail!("say what to watch: --pid PID, --cgroup PATH, --comm REGEX, --all, or -- COMMAND ARGS...")
        })
    }

    fn options(&self) -> Result<Options> {
        if self.interval < Duration::from_millis(10) {
            bail!("--interval must be at least 10ms");
        }
        Ok(Options {
            target: self.spec()?,
            interval: self.interval,
            follow_children: !self.no_follow,
            socket_calls: self.socket_calls,
            sched_only: self.sched_only,
        })
    }
}

/// Parses "10s", "500ms", "2m", "1h" or a plain number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    holdup_format::parse_duration(s)
}

/// A flag set by SIGINT or SIGTERM: long runs stop cleanly and keep what they collected.
fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Every flag registered fires: a second call gets a working flag too.
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    stop
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOLDUP_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("holdup: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Top {
            target,
            replay,
            json,
            duration,
            rows,
        } => {
            let stop = stop_flag();
            let r = match replay.file.is_some() {
                true => top::replay(&replay, &stop, json, duration, rows),
                false => Collector::start(target.options()?)
                    .map_err(Into::into)
                    .and_then(|mut c| top::run(&mut c, &stop, json, duration, rows)),
            };
            match r {
                Err(e) if is_broken_pipe(&e) => Ok(()),
                other => other,
            }
        }
        Cmd::Record {
            target,
            output,
            duration,
            summary,
            ring,
        } => match output {
            Some(output) => record(target, output, duration, summary),
            None => ring::run(target, ring, duration),
        },
        Cmd::Inspect { file, json } => inspect(&file, json),
        Cmd::Diagnose(args) => diagnose::run(args),
        Cmd::Report(args) => report::run(args),
        Cmd::Diff(args) => lab::diff(args),
        Cmd::Match(args) => lab::matches(args),
        Cmd::Reproduce(args) => lab::reproduce(args),
        Cmd::Triage(args) => triage::run(args),
        Cmd::Agent(args) => agent::run(args),
        Cmd::Export(args) => export::run(args),
        #[cfg(feature = "workbench")]
        Cmd::Wb(args) => wb::run(args),
        #[cfg(feature = "workbench")]
        Cmd::Workbench { cmd } => wb::workbench(cmd),
    }
}

fn record(
    target: TargetArgs,
    output: PathBuf,
    duration: Option<Duration>,
    summary: bool,
) -> Result<()> {
    let opts = target.options()?;
    // A bad output path should fail before anything is loaded, without
    // truncating an existing file: that happens only once collection started.
    let existed = output.exists();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&output)
        .with_context(|| {
            format!(
                "cannot write the recording to {}: choose another -o path",
                output.display()
            )
        })?;
    let interval = opts.interval;
    let mut c = match Collector::start(opts) {
        Ok(c) => c,
        Err(e) => {
            if !existed {
                let _ = std::fs::remove_file(&output);
            }
            return Err(e.into());
        }
    };
    let header = RecordingHeader::new(
        c.target().clone(),
        interval.as_millis() as u64,
        std::env::args().collect(),
    );
    let mut rec = Recorder::create(&output, &header)?;
    let stop = stop_flag();
    eprintln!(
        "holdup: recording {} to {} every {:?}{}; Ctrl-C to stop",
        c.target(),
        output.display(),
        c.interval(),
        duration.map(|d| format!(" for {d:?}")).unwrap_or_default()
    );
    if sink::drive(&mut c, &stop, duration, &mut [&mut rec])? == End::TargetExited {
        eprintln!("holdup: the target {} exited; stopping", c.target());
    }
    let n = rec.finish()?;
    eprintln!("holdup: wrote {n} windows to {}", output.display());
    drop(c);
    if summary {
        inspect(&output, false)?;
    }
    Ok(())
}

fn inspect(file: &std::path::Path, json: bool) -> Result<()> {
    let rec = Recording::open(file)?;
    let summary = holdup_record::summary::summarize(&rec.header, &rec.windows);
    let text = if json {
        format!("{}\n", serde_json::to_string_pretty(&summary)?)
    } else {
        format!("{summary}{}\n", rec.status.describe())
    };
    let mut out = std::io::stdout().lock();
    quiet_on_closed_pipe(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
}

/// A reader that went away (`holdup inspect x | head`) is not an error.
fn quiet_on_closed_pipe(r: std::io::Result<()>) -> Result<()> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5parsecs").is_err());
    }
}
