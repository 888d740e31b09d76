//! `holdup top`: the live view of the target's threads, and `--replay` of a
//! recording through the same view.
//!
//! On a terminal it is a terminal UI ([`tui`]: colours, sorting, a name
//! filter, pause and step, a per-role view and a "now" verdict); into a pipe
//! or with `--json` it prints the plain frames of [`plain`]. Live windows
//! come from the one window loop (`sink::drive`), recorded ones from
//! [`replay_into`]; both feed the same sinks.

pub mod plain;
pub mod tui;

use crate::sink::{drive, Sink};
use anyhow::{bail, Context, Result};
use clap::Args;
use holdup_collect::windows::End;
use holdup_collect::Collector;
use holdup_model::Snapshot;
use holdup_record::{ReadStatus, Recording};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `holdup top --replay FILE [--from 30s] [--speed 4x]`.
#[derive(Args, Clone, Default)]
pub struct ReplayArgs {
    /// Play this recording through the view instead of watching a live target.
    #[arg(long = "replay", value_name = "RECORDING",
          conflicts_with_all = ["pid", "cgroup", "comm", "all", "command"])]
    pub file: Option<PathBuf>,
    /// Start this far into the recording (e.g. 30s).
    #[arg(long, value_parser = crate::parse_duration, requires = "file")]
    pub from: Option<Duration>,
    /// Play this many times faster than recorded (e.g. 4x, 0.5x), or `max`
    /// for no waiting between windows.
    #[arg(long, default_value = "1x", value_parser = parse_speed, requires = "file")]
    pub speed: Speed,
}

/// How fast a replay plays.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// This many times the recorded pace.
    Times(f64),
    /// As fast as the view takes them.
    Max,
}

impl Default for Speed {
    fn default() -> Speed {
        Speed::Times(1.0)
    }
}

/// Reads "4x", "0.5x", "4" or "max".
pub fn parse_speed(s: &str) -> Result<Speed, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("max") {
        return Ok(Speed::Max);
    }
    match t.strip_suffix(['x', 'X']).unwrap_or(t).parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 10_000.0 => Ok(Speed::Times(v)),
        _ => Err(format!(
            "{s:?} is not a speed: give a factor above 0 such as 4x or 0.5x, or max"
        )),
    }
}

/// Feeds a recording's windows from `from` on into `sink`, paced by the
/// recorded window lengths divided by `speed`, until `stop`, `until` of
/// playing time, or the recording's end. Returns the windows fed.
pub fn replay_into(
    windows: &[Snapshot],
    from: Duration,
    speed: Speed,
    stop: &AtomicBool,
    until: Option<Duration>,
    sink: &mut dyn Sink,
) -> Result<usize> {
    let Some(first) = windows.first() else {
        return Ok(0);
    };
    let origin = first.window.start_ns;
    let from_ns = from.as_nanos() as u64;
    let started = Instant::now();
    let mut fed = 0;
    for w in windows
        .iter()
        .filter(|w| w.window.start_ns.saturating_sub(origin) >= from_ns)
    {
        if let Speed::Times(f) = speed {
            // The window is shown when it closes, as live.
            let wait = Duration::from_secs_f64(w.window.duration_ns() as f64 / 1e9 / f);
            let due = Instant::now() + wait;
            while Instant::now() < due {
                if stop.load(Ordering::Relaxed) {
                    return Ok(fed);
                }
                std::thread::sleep((due - Instant::now()).min(Duration::from_millis(50)));
            }
        }
        if stop.load(Ordering::Relaxed) || until.is_some_and(|u| started.elapsed() >= u) {
            break;
        }
        sink.window(w)?;
        fed += 1;
    }
    Ok(fed)
}

/// The terminal UI is used on a terminal, unless JSON is asked for.
fn use_tui(json: bool) -> bool {
    !json && std::io::stdout().is_terminal() && std::io::stdin().is_terminal()
}

/// Runs the live view until stopped, the duration passes, or the target exits.
pub fn run(
    c: &mut Collector,
    stop: &std::sync::Arc<AtomicBool>,
    json: bool,
    duration: Option<Duration>,
    rows: usize,
) -> Result<()> {
    let target = c.target().to_string();
    if use_tui(json) {
        return with_tui(&target, stop, |sink| {
            let end = drive(c, stop, duration, &mut [sink])?;
            Ok(match end {
                End::TargetExited => format!("the target {target} exited"),
                _ => "collection stopped".to_string(),
            })
        });
    }
    if !json {
        eprintln!(
            "holdup: watching {} every {:?}; Ctrl-C to stop",
            c.target(),
            c.interval()
        );
    }
    let mut view = plain::View {
        json,
        tty: std::io::stdout().is_terminal(),
        target,
        rows,
    };
    if drive(c, stop, duration, &mut [&mut view])? == End::TargetExited {
        eprintln!("holdup: the target {} exited", c.target());
    }
    Ok(())
}

/// Plays a recording through the view: the terminal UI on a terminal, the
/// plain frames (or JSON) otherwise, as live `top` prints them.
pub fn replay(
    args: &ReplayArgs,
    stop: &std::sync::Arc<AtomicBool>,
    json: bool,
    duration: Option<Duration>,
    rows: usize,
) -> Result<()> {
    let Some(path) = &args.file else {
        bail!("--replay needs a recording");
    };
    let rec = Recording::open(path).with_context(|| format!("cannot replay {}", path.display()))?;
    if !matches!(rec.status, ReadStatus::Complete) {
        eprintln!("holdup: {}: {}", path.display(), rec.status.describe());
    }
    let from = args.from.unwrap_or_default();
    let span = rec
        .windows
        .first()
        .zip(rec.windows.last())
        .map(|(a, b)| Duration::from_nanos(b.window.end_ns.saturating_sub(a.window.start_ns)))
        .unwrap_or_default();
    if rec.windows.is_empty() {
        bail!("{} has no complete windows to replay", path.display());
    }
    if from >= span {
        bail!(
            "--from {from:?} is past the end of {} ({span:?} recorded)",
            path.display()
        );
    }
    let target = format!("{} (replay of {})", rec.header.target, path.display());
    if use_tui(json) {
        return with_tui(&target, stop, |sink| {
            let n = replay_into(&rec.windows, from, args.speed, stop, duration, sink)?;
            Ok(format!("replay ended after {n} windows"))
        });
    }
    let mut view = plain::View {
        json,
        tty: std::io::stdout().is_terminal(),
        target,
        rows,
    };
    replay_into(&rec.windows, from, args.speed, stop, duration, &mut view)?;
    Ok(())
}

/// Sends each window to the terminal UI's thread.
struct ToUi(mpsc::Sender<tui::Event>);

impl Sink for ToUi {
    fn window(&mut self, snap: &Snapshot) -> Result<()> {
        // The UI may have quit first: then the feed stops through `stop`.
        let _ = self.0.send(tui::Event::Window(Box::new(snap.clone())));
        Ok(())
    }
}

/// Runs `feed` (the live loop or a replay) on this thread into a terminal
/// UI on another; the UI quitting sets `stop`, which ends the feed.
fn with_tui(
    target: &str,
    stop: &std::sync::Arc<AtomicBool>,
    feed: impl FnOnce(&mut dyn Sink) -> Result<String>,
) -> Result<()> {
    let (tx, rx) = mpsc::channel();
    let ui = {
        let stop = stop.clone();
        let target = target.to_string();
        std::thread::spawn(move || tui::run_terminal(tui::App::new(&target), rx, &stop))
    };
    let mut sink = ToUi(tx.clone());
    let fed = feed(&mut sink);
    let why = match &fed {
        Ok(why) => why.clone(),
        Err(e) => format!("stopped: {e:#}"),
    };
    let _ = tx.send(tui::Event::Ended(why));
    drop(sink);
    drop(tx);
    let ui = ui
        .join()
        .map_err(|_| anyhow::anyhow!("the terminal UI panicked"))?;
    fed?;
    ui
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_parse_as_factors_or_max() {
        assert_eq!(parse_speed("4x"), Ok(Speed::Times(4.0)));
        assert_eq!(parse_speed("0.5X"), Ok(Speed::Times(0.5)));
        assert_eq!(parse_speed("2"), Ok(Speed::Times(2.0)));
        assert_eq!(parse_speed("max"), Ok(Speed::Max));
        for bad in ["0x", "-1x", "fast", "inf", "x"] {
            let e = parse_speed(bad).unwrap_err();
            assert!(e.contains("not a speed"), "{bad}: {e}");
        }
    }
}
