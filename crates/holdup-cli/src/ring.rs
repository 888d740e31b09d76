//! `holdup record --ring 30m --dir DIR`: the flight recorder. Windows go
//! into a ring of segment recordings (holdup-record's `ring`); a trigger
//! freezes the stretch around it (`--before`, `--after`) into an incident
//! recording `incident-<unix ms>.rec` with a sidecar `.json` saying what
//! fired it.

use super::{parse_duration, stop_flag, TargetArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use holdup_collect::Collector;
use holdup_model::Snapshot;
use holdup_record::ring::{Ring, RingOptions};
use holdup_record::RecordingHeader;
use holdup_triage::rotate::parse_bytes;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Flags of `holdup record` for the flight recorder.
#[derive(Args, Clone)]
pub struct RingArgs {
    /// Keep the last stretch of this length (e.g. 30m) in rotating segments
    /// in --dir, instead of one recording.
    #[arg(long, value_parser = parse_duration, requires = "dir", conflicts_with = "output")]
    pub ring: Option<Duration>,
    /// The ring's directory (segments seg-*.rec, incidents incident-*.rec).
    #[arg(long, requires = "ring")]
    pub dir: Option<PathBuf>,
    /// Length of one segment.
    #[arg(long, default_value = "1m", value_parser = parse_duration, requires = "ring")]
    pub segment: Duration,
    /// Most bytes the segments may take (e.g. 512M).
    #[arg(long, value_parser = parse_bytes, requires = "ring")]
    pub max_bytes: Option<u64>,
    /// Freeze the ring when this holds (repeatable): `runq_share>0.3`,
    /// `disk_share>0.4` (the target's share of busy time), `psi.cpu.some10>20`
    /// (percent), `slo:/path>50ms` (the file's last value, in ms). SIGUSR1
    /// always freezes.
    #[arg(long, requires = "ring")]
    pub trigger: Vec<String>,
    /// Time before the trigger the incident recording starts.
    #[arg(long, default_value = "5m", value_parser = parse_duration, requires = "ring")]
    pub before: Duration,
    /// Time after the trigger it ends.
    #[arg(long, default_value = "1m", value_parser = parse_duration, requires = "ring")]
    pub after: Duration,
    /// Least time between two triggers.
    #[arg(long, default_value = "5m", value_parser = parse_duration, requires = "ring")]
    pub min_gap: Duration,
    /// Most incident recordings kept in --dir (the oldest go first).
    #[arg(long, default_value_t = 10, requires = "ring")]
    pub keep_incidents: usize,
}

/// What a trigger measures.
#[derive(Clone, Debug, PartialEq)]
enum Measure {
    /// The target's run-queue share of busy time (0..=1).
    RunqShare,
    /// The target's D-state (iowait + other uninterruptible) share of busy time.
    DiskShare,
    /// A PSI average, percent: resource, "some"/"full", 10/60/300.
    Psi(String, String, u32),
    /// The last value of an SLO file, ms.
    Slo(PathBuf),
}

/// One trigger: a measure above a limit.
#[derive(Clone, Debug, PartialEq)]
pub struct Trigger {
    expr: String,
    measure: Measure,
    limit: f64,
}

const GRAMMAR: &str = "write NAME>VALUE with NAME one of runq_share, disk_share (a share: 0.3 or 30%), \
psi.cpu|io|memory.some10|some60|some300|full10|full60|full300 (percent), or slo:/path/to/file (its last value, in ms; VALUE e.g. 50ms)";

impl Trigger {
    /// Parses `NAME>VALUE`.
    pub fn parse(expr: &str) -> Result<Trigger> {
        let Some((name, value)) = expr.split_once('>') else {
            bail!("trigger {expr:?} does not parse: no '>'; {GRAMMAR}");
        };
        let (name, value) = (name.trim(), value.trim());
        let number = |v: &str| -> Result<f64> {
            v.parse::<f64>()
                .with_context(|| format!("trigger {expr:?}: {v:?} is not a number; {GRAMMAR}"))
        };
        let share = |v: &str| -> Result<f64> {
            let x = match v.strip_suffix('%') {
                Some(p) => number(p.trim())? / 100.0,
                None => number(v)?,
            };
            if !(0.0..=1.0).contains(&x) {
                bail!("trigger {expr:?}: a share is between 0 and 1 (or 0% and 100%)");
            }
            Ok(x)
        };
        let (measure, limit) = if name == "runq_share" {
            (Measure::RunqShare, share(value)?)
        } else if name == "disk_share" {
            (Measure::DiskShare, share(value)?)
        } else if let Some(rest) = name.strip_prefix("psi.") {
            let parts: Vec<&str> = rest.split('.').collect();
            let ok_res = parts.len() == 2 && ["cpu", "io", "memory"].contains(&parts[0]);
            let kind = parts.get(1).copied().unwrap_or("");
            let (line, avg) = if let Some(a) = kind.strip_prefix("some") {
                ("some", a)
            } else if let Some(a) = kind.strip_prefix("full") {
                ("full", a)
            } else {
                ("", "")
            };
            let avg: u32 = avg.parse().unwrap_or(0);
            if !ok_res || line.is_empty() || ![10, 60, 300].contains(&avg) {
                bail!("trigger {expr:?}: {name:?} is not a PSI measure; {GRAMMAR}");
            }
            (
                Measure::Psi(parts[0].to_string(), line.to_string(), avg),
                number(value.trim_end_matches('%'))?,
            )
        } else if let Some(path) = name.strip_prefix("slo:") {
            if path.is_empty() {
                bail!("trigger {expr:?}: no SLO file after 'slo:'; {GRAMMAR}");
            }
            let limit = if value
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphabetic())
            {
                parse_duration(value)
                    .map_err(|e| anyhow::anyhow!("trigger {expr:?}: {e}"))?
                    .as_secs_f64()
                    * 1000.0
            } else {
                number(value)?
            };
            (Measure::Slo(PathBuf::from(path)), limit)
        } else {
            bail!("trigger {expr:?}: unknown measure {name:?}; {GRAMMAR}");
        };
        Ok(Trigger {
            expr: expr.to_string(),
            measure,
            limit,
        })
    }

    /// The measure's value for this window (None: nothing to measure).
    fn value(&self, s: &Snapshot) -> Option<f64> {
        match &self.measure {
            Measure::RunqShare | Measure::DiskShare => {
                let mut part = 0u64;
                let mut busy = 0u64;
                for t in &s.threads {
                    let st = &t.states;
                    busy += st.on_cpu_ns + st.runq_ns + st.iowait_ns + st.other_d_ns;
                    part += if self.measure == Measure::RunqShare {
                        st.runq_ns
                    } else {
                        st.iowait_ns + st.other_d_ns
                    };
                }
                (busy > 0).then(|| part as f64 / busy as f64)
            }
            Measure::Psi(res, line, avg) => {
                let text = std::fs::read_to_string(format!("/proc/pressure/{res}")).ok()?;
                let p = holdup_triage::host::parse_psi(res, &text)?;
                let l = if line == "some" { Some(p.some) } else { p.full }?;
                Some(match avg {
                    10 => l.avg10,
                    60 => l.avg60,
                    _ => l.avg300,
                })
            }
            Measure::Slo(path) => {
                let text = std::fs::read_to_string(path).ok()?;
                let last = text.lines().rev().find(|l| !l.trim().is_empty())?;
                last.split_whitespace().last()?.parse().ok()
            }
        }
    }
}

/// A trigger that fired, and the stretch to freeze.
struct Pending {
    why: String,
    value: Option<f64>,
    fired_unix_ms: u64,
    until: Instant,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs the flight recorder.
pub fn run(target: TargetArgs, args: RingArgs, duration: Option<Duration>) -> Result<()> {
    let ring_len = args.ring.expect("run only with --ring");
    let dir = args.dir.clone().expect("clap requires --dir with --ring");
    let triggers: Vec<Trigger> = args
        .trigger
        .iter()
        .map(|t| Trigger::parse(t))
        .collect::<Result<_>>()?;
    if args.segment < target.interval {
        bail!(
            "--segment must be at least one --interval ({:?})",
            target.interval
        );
    }
    if ring_len < args.before + args.after + args.segment {
        bail!(
            "--ring {ring_len:?} cannot hold --before {:?} + --after {:?} (plus one --segment {:?}): make the ring longer or the window shorter",
            args.before,
            args.after,
            args.segment
        );
    }
    if args.keep_incidents == 0 {
        bail!("--keep-incidents must be at least 1");
    }
    if !dir.is_dir() {
        bail!(
            "{} is not a directory: create it (mkdir -p) or choose another --dir",
            dir.display()
        );
    }
    holdup_triage::check_writable(&dir.join("x"), "ring")?;
    let opts = target.options()?;
    let interval = opts.interval;
    let mut c = Collector::start(opts)?;
    let header = RecordingHeader::new(
        c.target().clone(),
        interval.as_millis() as u64,
        std::env::args().collect(),
    );
    let mut ring = Ring::create(
        RingOptions {
            dir: dir.clone(),
            ring: ring_len,
            segment: args.segment,
            max_bytes: args.max_bytes,
        },
        header,
    )?;
    let stop = stop_flag();
    let usr1 = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, usr1.clone())
        .context("cannot catch SIGUSR1")?;
    eprintln!(
        "holdup: flight recorder of {} in {}: the last {ring_len:?} in segments of {:?}; {} trigger(s) and SIGUSR1 freeze {:?} before to {:?} after; Ctrl-C to stop",
        c.target(),
        dir.display(),
        args.segment,
        triggers.len(),
        args.before,
        args.after
    );
    let mut pending: Option<Pending> = None;
    let mut last_fire: Option<Instant> = None;
    let mut windows = c.windows(&stop, duration);
    for snap in windows.by_ref() {
        let snap = snap?;
        ring.write_window(&snap)?;
        let may_fire = last_fire.is_none_or(|t| t.elapsed() >= args.min_gap);
        if pending.is_none() {
            let signalled = usr1.swap(false, Ordering::Relaxed);
            let fired = if signalled && may_fire {
                Some(("SIGUSR1".to_string(), None))
            } else if may_fire {
                triggers.iter().find_map(|t| {
                    let v = t.value(&snap)?;
                    (v > t.limit).then(|| (t.expr.clone(), Some(v)))
                })
            } else {
                if signalled {
                    eprintln!(
                        "holdup: SIGUSR1 within --min-gap {:?} of the last trigger: ignored",
                        args.min_gap
                    );
                }
                None
            };
            if let Some((why, value)) = fired {
                eprintln!(
                    "holdup: trigger {why}{} fired; freezing after {:?}",
                    value
                        .map(|v| format!(" ({})", holdup_format::rate(v)))
                        .unwrap_or_default(),
                    args.after
                );
                let now = Instant::now();
                last_fire = Some(now);
                pending = Some(Pending {
                    why,
                    value,
                    fired_unix_ms: unix_ms(),
                    until: now + args.after,
                });
            }
        }
        if pending
            .as_ref()
            .is_some_and(|p| Instant::now() + Duration::from_millis(5) >= p.until)
        {
            let p = pending.take().expect("checked");
            freeze(&ring, &dir, &args, &p)?;
        }
    }
    if let Some(p) = pending.take() {
        eprintln!("holdup: stopping before the end of --after; freezing what there is");
        freeze(&ring, &dir, &args, &p)?;
    }
    ring.finish()?;
    eprintln!("holdup: the ring stays in {}", dir.display());
    Ok(())
}

fn freeze(ring: &Ring, dir: &Path, args: &RingArgs, p: &Pending) -> Result<()> {
    let from = p
        .fired_unix_ms
        .saturating_sub(args.before.as_millis() as u64);
    let to = p.fired_unix_ms + args.after.as_millis() as u64;
    let out = dir.join(format!("incident-{:013}.rec", p.fired_unix_ms));
    let mut argv: Vec<String> = std::env::args().collect();
    argv.push(format!("# frozen by trigger: {}", p.why));
    let n = ring.freeze(&out, from, to, argv)?;
    let sidecar = PathBuf::from(format!("{}.json", out.display()));
    let meta = serde_json::json!({
        "trigger": p.why,
        "value": p.value,
        "fired_unix_ms": p.fired_unix_ms,
        "from_unix_ms": from,
        "to_unix_ms": to,
        "windows": n,
        "recording": out.file_name().map(|f| f.to_string_lossy().into_owned()),
    });
    std::fs::write(&sidecar, serde_json::to_vec_pretty(&meta)?)
        .with_context(|| format!("cannot write {}", sidecar.display()))?;
    eprintln!(
        "holdup: froze {n} windows ({} before to {} after the trigger) into {}",
        holdup_format::ns(args.before.as_nanos() as f64),
        holdup_format::ns(args.after.as_nanos() as f64),
        out.display()
    );
    prune_incidents(dir, args.keep_incidents)
}

/// Keeps the newest `keep` incident recordings (and their sidecars).
fn prune_incidents(dir: &Path, keep: usize) -> Result<()> {
    let mut recs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("incident-") && n.ends_with(".rec"))
        })
        .collect();
    recs.sort();
    let drop = recs.len().saturating_sub(keep);
    for p in &recs[..drop] {
        let _ = std::fs::remove_file(p);
        let _ = std::fs::remove_file(format!("{}.json", p.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_parse() {
        let t = Trigger::parse("runq_share>0.3").unwrap();
        assert_eq!((t.measure, t.limit), (Measure::RunqShare, 0.3));
        assert_eq!(Trigger::parse("disk_share > 40%").unwrap().limit, 0.4);
        let t = Trigger::parse("psi.cpu.some10>20").unwrap();
        assert_eq!(t.measure, Measure::Psi("cpu".into(), "some".into(), 10));
        let t = Trigger::parse("slo:/tmp/p99>50ms").unwrap();
        assert_eq!(
            (t.measure, t.limit),
            (Measure::Slo("/tmp/p99".into()), 50.0)
        );
        assert_eq!(Trigger::parse("slo:/tmp/p99>1s").unwrap().limit, 1000.0);
        for bad in [
            "runq_share",
            "runq_share>lots",
            "runq_share>2",
            "psi.disk.some10>1",
            "psi.cpu.some11>1",
            "load>3",
            "slo:>5",
        ] {
            let e = Trigger::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad) || e.contains("trigger"), "{bad}: {e}");
        }
    }
}
