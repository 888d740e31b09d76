//! The lab's verbs: `holdup diff`, `holdup match` and `holdup reproduce`.
//! The work is in `holdup-lab`; here are the arguments, the workbench
//! client of `match`, and `reproduce`'s recording of the lab run with the
//! collector (the same window loop as `holdup record`).

use super::{parse_duration, stop_flag};
use anyhow::{bail, Context, Result};
use clap::Args;
use holdup_collect::{Collector, Options, TargetSpec};
use holdup_diagnose::{SplitRequest, TimeRange};
use holdup_lab::fingerprint::Fingerprint;
use holdup_lab::matching::{self, LibraryEntry, MatchReport};
use holdup_lab::reproduce::{self, cgroup, Contention, GeneratorSpec, Lab};
use holdup_lab::{diagnose_alone, Loaded};
use holdup_record::{Recorder, RecordingHeader};
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Arguments of `holdup diff`.
#[derive(Args)]
pub struct DiffArgs {
    /// `BASE.rec INCIDENT.rec`, or one recording with --base and --incident.
    #[arg(value_name = "RECORDING", num_args = 1..=2, required = true)]
    files: Vec<PathBuf>,
    /// The baseline range of one recording (e.g. 0s..60s).
    #[arg(long, value_name = "RANGE")]
    base: Option<String>,
    /// The incident range of one recording (e.g. 60s..120s).
    #[arg(long, value_name = "RANGE")]
    incident: Option<String>,
    /// Print the diff as JSON (every row).
    #[arg(long)]
    json: bool,
    /// Rows to print (most impact first).
    #[arg(long, default_value_t = 25)]
    rows: usize,
}

fn range(flag: &str, s: &Option<String>) -> Result<Option<TimeRange>> {
    s.as_ref()
        .map(|r| TimeRange::parse(r).map_err(|e| anyhow::anyhow!("{flag} {r}: {e}")))
        .transpose()
}

fn warn(l: &Loaded) {
    if let Some(w) = l.warning() {
        eprintln!("holdup: {w}");
    }
}

/// Runs `holdup diff`.
pub fn diff(args: DiffArgs) -> Result<()> {
    let split = SplitRequest {
        baseline: range("--base", &args.base)?,
        incident: range("--incident", &args.incident)?,
        ..SplitRequest::default()
    };
    let loaded: Vec<Loaded> = args
        .files
        .iter()
        .map(|f| Loaded::open(f))
        .collect::<Result<_>>()?;
    loaded.iter().for_each(warn);
    let d = match loaded.as_slice() {
        [one] => {
            if split.baseline.is_none() && split.incident.is_none() {
                bail!("one recording needs its two periods: holdup diff {} --base 0s..60s --incident 60s..120s (or give two recordings: BASE.rec INCIDENT.rec)", one.label);
            }
            holdup_lab::diff::diff(
                holdup_diagnose::Source {
                    label: &one.label,
                    windows: one.windows(),
                },
                None,
                &split,
                &format!("{} (recorded)", one.recording.header.target),
            )
        }
        [base, incident] => holdup_lab::diff::diff(
            holdup_diagnose::Source {
                label: &incident.label,
                windows: incident.windows(),
            },
            Some(holdup_diagnose::Source {
                label: &base.label,
                windows: base.windows(),
            }),
            &split,
            &format!("{} (recorded)", incident.recording.header.target),
        ),
        _ => unreachable!("clap allows one or two recordings"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!("{}", holdup_lab::diff::render(&d, args.rows));
    }
    Ok(())
}

/// Arguments of `holdup match`.
#[derive(Args)]
pub struct MatchArgs {
    /// The incident's recording.
    #[arg(value_name = "RECORDING")]
    file: PathBuf,
    /// A folder of earlier incidents' recordings (*.rec, with optional
    /// NAME.verdict and NAME.notes beside them).
    #[arg(long, value_name = "DIR")]
    library: Option<PathBuf>,
    /// A workbench whose incidents (their recorded artifacts) are the library.
    #[arg(long, value_name = "URL")]
    workbench: Option<String>,
    /// File holding the workbench token.
    #[arg(long, value_name = "FILE", requires = "workbench")]
    token_file: Option<PathBuf>,
    /// Print the ranking as JSON.
    #[arg(long)]
    json: bool,
    /// Earlier incidents to list.
    #[arg(long, default_value_t = 10)]
    rows: usize,
}

/// Runs `holdup match`.
pub fn matches(args: MatchArgs) -> Result<()> {
    if args.library.is_none() && args.workbench.is_none() {
        bail!("say where the earlier incidents are: --library DIR (a folder of recordings) or --workbench URL --token-file FILE");
    }
    let incident = Loaded::open(&args.file)?;
    warn(&incident);
    let d = diagnose_alone(&incident);
    let fp = Fingerprint::of(&d);
    let mut library: Vec<LibraryEntry> = Vec::new();
    let mut warnings = Vec::new();
    let me = std::fs::canonicalize(&args.file).ok();
    if let Some(dir) = &args.library {
        let (entries, w) = matching::load_library(dir)?;
        warnings.extend(w);
        // The incident itself, when it is in the library, is no match.
        library.extend(
            entries
                .into_iter()
                .filter(|e| std::fs::canonicalize(&e.source).ok() != me || me.is_none()),
        );
    }
    if let Some(url) = &args.workbench {
        let (entries, w) = workbench_library(url, args.token_file.as_deref())?;
        warnings.extend(w);
        library.extend(entries);
    }
    if library.is_empty() {
        bail!("the library holds no earlier incident to compare with");
    }
    let report = MatchReport {
        incident: incident.label.clone(),
        diagnosed: d.top().kind.title().to_string(),
        matches: matching::rank(&fp, &library),
        fingerprint: fp,
        warnings,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", matching::render(&report, args.rows));
    }
    Ok(())
}

#[cfg(feature = "workbench")]
fn workbench_library(
    url: &str,
    token_file: Option<&Path>,
) -> Result<(Vec<LibraryEntry>, Vec<String>)> {
    let token = match token_file {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the token file {}", f.display()))?
            .trim()
            .to_string(),
        None => std::env::var("HOLDUP_WB_TOKEN")
            .context("--workbench needs a token: --token-file FILE (or HOLDUP_WB_TOKEN)")?,
    };
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build(),
    );
    let base = url.trim_end_matches('/');
    let get = |path: &str| -> Result<Vec<u8>> {
        let u = format!("{base}{path}");
        let mut r = agent
            .get(&u)
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .with_context(|| format!("cannot reach the workbench at {u}"))?;
        let status = r.status().as_u16();
        let body = r
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_vec()
            .with_context(|| format!("reading {u}"))?;
        if !(200..300).contains(&status) {
            bail!(
                "the workbench answered {u} with HTTP {status}: {}",
                String::from_utf8_lossy(&body).trim()
            );
        }
        Ok(body)
    };
    let list: Vec<holdup_wb_api::Incident> = serde_json::from_slice(&get("/api/incidents")?)
        .context("the workbench's incident list is not what holdup expects")?;
    let list: Vec<matching::IncidentInfo> =
        list.iter().map(matching::IncidentInfo::from_api).collect();
    matching::workbench_entries(&list, |id, name| {
        get(&format!("/api/incidents/{id}/artifacts/{name}"))
    })
}

#[cfg(not(feature = "workbench"))]
fn workbench_library(_: &str, _: Option<&Path>) -> Result<(Vec<LibraryEntry>, Vec<String>)> {
    bail!("this holdup was built without the workbench (cargo feature `workbench`)")
}

/// Arguments of `holdup reproduce`.
#[derive(Args)]
pub struct ReproduceArgs {
    /// The incident's recording.
    #[arg(value_name = "RECORDING", required_unless_present = "generator")]
    file: Option<PathBuf>,
    /// A lab copy that is already running (instead of `-- COMMAND`).
    #[arg(long)]
    pid: Option<u32>,
    /// The client load, a shell command (run once, and scaled for more load);
    /// `{peer}` is replaced by the delay proxy's address.
    #[arg(long, value_name = "COMMAND")]
    load: Option<String>,
    /// Length of the lab run (baseline and incident).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// Window length of the lab recording.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// Time for the lab copy and its load to settle before recording.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Keep the lab run's recording here (default: reproduce-PID.rec in
    /// the current directory).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// The lab's copy of the recorded peer (a slow peer's proxy forwards
    /// there; default: the recorded address, which must be on loopback).
    #[arg(long, value_name = "ADDR")]
    peer: Option<SocketAddr>,
    /// Where the disk writer writes (default: the lab copy's working
    /// directory, on the service's filesystem).
    #[arg(long, value_name = "DIR")]
    disk_dir: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Internal: run one generator (holdup starts itself with it).
    #[arg(long, hide = true)]
    generator: Option<String>,
    /// The command that starts the lab copy (`{peer}` is replaced by the
    /// delay proxy's address).
    #[arg(last = true)]
    command: Vec<String>,
}

/// Runs `holdup reproduce`.
pub fn reproduce(args: ReproduceArgs) -> Result<()> {
    if let Some(g) = &args.generator {
        return reproduce::run_generator(g);
    }
    let file = args.file.clone().context("give the incident's recording")?;
    if args.pid.is_some() != args.command.is_empty() {
        bail!("say which lab copy to load: -- COMMAND (holdup starts it) or --pid PID (already running), one of them");
    }
    if args.duration < Duration::from_secs(2) || args.interval < Duration::from_millis(100) {
        bail!("--duration must be at least 2s and --interval at least 100ms");
    }
    let incident = Loaded::open(&file)?;
    warn(&incident);
    let d = diagnose_alone(&incident);
    let plan = reproduce::plan(&d, incident.windows());
    if let Some(why) = &plan.cannot {
        bail!("cannot reproduce {}: {why}", file.display());
    }
    let needs_load = plan
        .contention
        .iter()
        .any(|c| matches!(c, Contention::MoreLoad { .. }));
    if needs_load && args.load.is_none() {
        bail!("the incident is more load: give the client load to scale with --load '<command>'");
    }
    let stop = stop_flag();
    let total = args.warmup + args.duration + Duration::from_secs(30);
    let exe = std::env::current_exe().context("the path of holdup itself")?;
    let mut lab = Lab::new(exe, total.as_secs_f64())?;
    let result = run_lab(&args, &file, &d, &plan, &mut lab, &stop);
    let stopped = lab.stop();
    if !stopped.left.is_empty() {
        eprintln!("holdup: could not remove {}", stopped.left.join(", "));
    }
    let mut out = result?;
    out["stopped"] = serde_json::to_value(&stopped)?;
    out["notes"] = json!(lab.notes);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", render_reproduce(&out));
    }
    Ok(())
}

/// Sleeps up to `d`, in steps, unless stopped.
fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
    }
    true
}

fn with_peer(s: &str, peer: Option<SocketAddr>) -> String {
    match peer {
        Some(p) => s.replace("{peer}", &p.to_string()),
        None => s.to_string(),
    }
}

fn run_lab(
    args: &ReproduceArgs,
    file: &Path,
    incident: &holdup_diagnose::Diagnosis,
    plan: &reproduce::Plan,
    lab: &mut Lab,
    stop: &AtomicBool,
) -> Result<serde_json::Value> {
    let alone = plan.judged_alone;
    // The slow peer's proxy comes first: the lab copy is started pointing at it.
    let mut proxy = None;
    for c in &plan.contention {
        if let Contention::SlowPeer { peer, delay_ms } = c {
            let upstream: SocketAddr = match args.peer {
                Some(p) => p,
                None => peer.parse().with_context(|| {
                    format!("the recorded peer {peer} is not an address: give --peer HOST:PORT")
                })?,
            };
            if !upstream.ip().is_loopback() {
                bail!("the recorded peer {upstream} is not on loopback: holdup's delay proxy runs on loopback only; start a lab copy of the peer on 127.0.0.1 and give --peer 127.0.0.1:PORT");
            }
            let listen: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
            let pid = lab.start_generator(
                "delay proxy",
                GeneratorSpec::DelayProxy {
                    listen,
                    upstream,
                    delay_ms: *delay_ms,
                    on_signal: !alone,
                },
                &cgroup::Limits::default(),
            )?;
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::net::TcpStream::connect(listen).is_err() {
                if Instant::now() > deadline || !lab.running(pid) {
                    bail!("the delay proxy did not listen on {listen}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            proxy = Some((pid, listen));
        }
    }
    let peer = proxy.map(|p| p.1);
    if proxy.is_none() && args.command.iter().any(|a| a.contains("{peer}")) {
        bail!("the lab command has {{peer}} but the incident has no slow peer to put a proxy in front of");
    }
    let service = match args.pid {
        Some(p) => p,
        None => {
            let argv: Vec<String> = args.command.iter().map(|a| with_peer(a, peer)).collect();
            let pid = lab.start_command("lab copy", &argv)?;
            std::thread::sleep(Duration::from_millis(300));
            if !lab.running(pid) {
                bail!("the lab command `{}` exited at once: check that it starts the service (run it by hand)", argv.join(" "));
            }
            pid
        }
    };
    if !nap(args.warmup / 2, stop) {
        bail!("interrupted");
    }
    let load = args.load.as_ref().map(|l| with_peer(l, peer));
    if let Some(l) = &load {
        lab.start_shell("load 1", l)?;
    }
    if !nap(args.warmup / 2, stop) {
        bail!("interrupted");
    }
    // More load without a baseline: as many copies as it takes to reach
    // the recorded CPU use, from one copy's, measured now.
    let mut copies = 1;
    for c in &plan.contention {
        if let Contention::MoreLoad {
            copies: n,
            service_cpu,
        } = c
        {
            copies = match n {
                Some(n) => *n,
                None => {
                    let c0 = reproduce::process_cpu_secs(service).unwrap_or(0.0);
                    nap(Duration::from_secs(1), stop);
                    let one = (reproduce::process_cpu_secs(service).unwrap_or(0.0) - c0).max(0.01);
                    (service_cpu / one).ceil().clamp(2.0, 8.0) as u32
                }
            };
        }
    }
    let cpus = reproduce::affinity_of(service)?;
    let interval = args.interval;
    let mut collector = Collector::start(Options {
        target: TargetSpec::Pid(service),
        interval,
        follow_children: true,
        socket_calls: false,
        sched_only: false,
    })?;
    let rec_path = args
        .record
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("reproduce-{}.rec", std::process::id())));
    let header = RecordingHeader::new(
        collector.target().clone(),
        interval.as_millis() as u64,
        std::env::args().collect(),
    );
    let mut rec = Recorder::create(&rec_path, &header)?;
    let mut windows: Vec<holdup_model::Snapshot> = Vec::new();
    let baseline = if alone {
        Duration::ZERO
    } else {
        args.duration / 2
    };
    eprintln!(
        "holdup: reproducing {} against pid {service} (CPUs {cpus:?}) for {:?}{}; Ctrl-C stops and cleans up",
        file.display(),
        args.duration,
        if alone {
            String::new()
        } else {
            format!(", contention from {baseline:?} on")
        }
    );
    if !baseline.is_zero() {
        crate::sink::drive(
            &mut collector,
            stop,
            Some(baseline),
            &mut [&mut windows, &mut rec],
        )?;
    }
    let mut started = Vec::new();
    if !stop.load(Ordering::SeqCst) {
        started = start_contention(args, plan, lab, service, &cpus, copies, load.as_deref())?;
        if let Some((pid, _)) = proxy {
            lab.signal(pid, libc::SIGUSR1);
            started.push(format!("delay proxy {} → answers delayed", peer.unwrap()));
        }
        crate::sink::drive(
            &mut collector,
            stop,
            Some(args.duration - baseline),
            &mut [&mut windows, &mut rec],
        )?;
    }
    let interrupted = stop.load(Ordering::SeqCst);
    rec.finish()?;
    drop(collector);
    let label = rec_path.display().to_string();
    let split = if alone {
        SplitRequest {
            no_baseline: true,
            ..SplitRequest::default()
        }
    } else {
        let b = baseline.as_secs_f64();
        SplitRequest {
            baseline: Some(TimeRange {
                start_s: 0.0,
                end_s: Some(b),
            }),
            incident: Some(TimeRange {
                start_s: b + interval.as_secs_f64(),
                end_s: None,
            }),
            ..SplitRequest::default()
        }
    };
    let lab_d = holdup_diagnose::diagnose(&holdup_diagnose::Input {
        target: format!("lab copy pid {service}"),
        windows: &windows,
        label: &label,
        baseline_windows: None,
        split,
    });
    let close = reproduce::closeness(incident, &lab_d);
    Ok(json!({
        "incident": file.display().to_string(),
        "plan": plan,
        "service_pid": service,
        "service_cpus": cpus,
        "lab_cgroup": lab.cgroup_dir(),
        "started": lab.started(),
        "contention": started,
        "interrupted": interrupted,
        "lab_recording": label,
        "lab_diagnosis": {
            "verdict": lab_d.top().kind,
            "summary": lab_d.top().summary,
            "culprits": lab_d.top().culprits,
            "mode": lab_d.mode,
        },
        "closeness": close,
    }))
}

fn start_contention(
    args: &ReproduceArgs,
    plan: &reproduce::Plan,
    lab: &mut Lab,
    service: u32,
    cpus: &[usize],
    copies: u32,
    load: Option<&str>,
) -> Result<Vec<String>> {
    let mut said = Vec::new();
    for c in &plan.contention {
        match c {
            Contention::CpuHogs {
                like,
                threads,
                share,
            } => {
                for k in 0..*threads {
                    lab.start_generator(
                        &format!("cpu hog {}", k + 1),
                        GeneratorSpec::CpuHog {
                            cpus: cpus.to_vec(),
                        },
                        &cgroup::Limits {
                            cpu: Some(*share),
                            cpus: Some(cpus.to_vec()),
                            write_bps: None,
                            // As a process beside the service would.
                            weight: Some(reproduce::cpu_weight_of(service)),
                        },
                    )?;
                }
                said.push(format!(
                    "{threads} CPU hog(s) like {like}, {share:.2} CPU each, on CPUs {cpus:?}"
                ));
            }
            Contention::DiskWriter {
                like,
                bytes_per_s,
                block_bytes,
                fsync_every,
            } => {
                let dir = match &args.disk_dir {
                    Some(d) => d.clone(),
                    None => std::fs::read_link(format!("/proc/{service}/cwd"))
                        .context("the lab copy's working directory (give --disk-dir)")?,
                };
                let file = dir.join(format!(".holdup-lab-writer-{}", std::process::id()));
                let dev = cgroup::disk_of(&dir);
                lab.start_generator(
                    "disk writer",
                    GeneratorSpec::DiskWriter {
                        file: file.clone(),
                        bytes_per_s: *bytes_per_s,
                        block_bytes: *block_bytes,
                        fsync_every: *fsync_every,
                    },
                    &cgroup::Limits {
                        cpu: None,
                        cpus: None,
                        // Headroom above the paced rate: the limit is a cap.
                        write_bps: dev.map(|d| (d, (*bytes_per_s * 1.5) as u64)),
                        weight: None,
                    },
                )?;
                said.push(format!(
                    "a disk writer like {like}: {} in {} writes with an fsync after every {fsync_every}, to {}",
                    holdup_format::bytes_rate(*bytes_per_s),
                    holdup_format::bytes(*block_bytes),
                    file.display()
                ));
            }
            Contention::MoreLoad { .. } => {
                if let Some(l) = load {
                    for k in 1..copies {
                        lab.start_shell(&format!("load {}", k + 1), l)?;
                    }
                    said.push(format!("the load scaled to {copies} copies"));
                }
            }
            Contention::SlowPeer { .. } => {}
        }
    }
    Ok(said)
}

fn render_reproduce(v: &serde_json::Value) -> String {
    let c = &v["closeness"];
    let mut s = format!(
        "holdup reproduce {}: incident {}, lab run {}\n",
        v["incident"].as_str().unwrap_or(""),
        c["incident_verdict"].as_str().unwrap_or(""),
        c["lab_verdict"].as_str().unwrap_or("")
    );
    for line in v["contention"].as_array().into_iter().flatten() {
        s += &format!("  regenerated: {}\n", line.as_str().unwrap_or(""));
    }
    s += &format!(
        "  lab diagnosis: {}\n",
        v["lab_diagnosis"]["summary"].as_str().unwrap_or("")
    );
    s +=
        &format!(
        "  match: same verdict {}, same culprit kind {} ({} vs {}), fingerprint similarity {:.2}\n",
        if c["same_verdict"] == true { "yes" } else { "no" },
        if c["same_culprit_kind"] == true { "yes" } else { "no" },
        c["incident_culprit_kind"].as_str().unwrap_or("none"),
        c["lab_culprit_kind"].as_str().unwrap_or("none"),
        c["similarity"]["total"].as_f64().unwrap_or(0.0)
    );
    s += &format!(
        "  lab recording: {}\n",
        v["lab_recording"].as_str().unwrap_or("")
    );
    for n in v["notes"].as_array().into_iter().flatten() {
        s += &format!("  note: {}\n", n.as_str().unwrap_or(""));
    }
    if v["interrupted"] == true {
        s += "  interrupted: the lab run was cut short\n";
    }
    s += &format!(
        "  stopped {} process(es); removed the lab's cgroups\n",
        v["stopped"]["processes"].as_array().map_or(0, |a| a.len())
    );
    s
}
