//! The real-service matrix of `holdup diagnose` (issue 8): services that are
//! not in tests/scenarios.rs, each started by the test from its Debian
//! package (or holdup-workload's lock manager) on loopback, one fault each.
//!
//! Every scenario is ONE watched run of 25 s: the service is up but idle when
//! the watch starts (no clients until 3 s), the load runs from 3 s, the
//! fault from 13 s to the end. The run is `holdup diagnose --pid P
//! --duration 25s --json --record FILE` (the live automatic split), and
//! during the incident a second, short live attach (`--duration 8s` from
//! 14 s: no normal stretch in its watch). The recording is then diagnosed
//! three ways: (1) whole, automatic split; (2) the true ranges, `--baseline
//! 4s..13s --incident 14s..24s`; (3) the incident alone, `--incident
//! 14s..24s --no-baseline`. Each way must give the expected top verdict AND
//! name the culprit; (3) and the live incident attach must say
//! `"mode": "incident_only"`, (1) and (2) `"mode": "compare"`. The unchanged
//! run of each service must raise no alarm: `no_significant_change` when
//! comparing, `nothing_holds_it_up` on the incident alone.
//!
//! A test checks all the ways and then fails once, listing every way that
//! was wrong. Before the verdicts it checks its own setup (the load ran
//! without errors, the fault happened), so a broken setup does not pass for
//! a wrong diagnosis. When a diagnosis blames a process the test did not
//! start (another job on this shared machine took the CPU or the disk), the
//! test says so and runs the scenario once more; both results are printed
//! and the second decides.
//!
//! They need root (BPF), haproxy, etcd, taskset, timeout and sha256sum
//! (scripts/setup.sh installs them); the data of etcd and the disk writer go
//! to /var/tmp (disk-backed). Run with
//! `flock /tmp/holdup-measure.lock cargo test -p holdup-cli --test services -- --test-threads=1 --nocapture`;
//! each run leaves its recording and diagnoses in target/tmp/services-*.

use holdup_testkit::scenario::{
    culprits, describe, foreign_culprit, free_port, have_tools, quiet, wait_for_port, wait_until,
    Diagnose, Guard, KERNEL_AND_HOLDUP,
};
use holdup_testkit::{bpf_setup, TempDir, Workload};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Length of each watched run.
const RUN_SECS: u64 = 25;
/// When the load starts (the watch begins idle before it).
const LOAD_AT: u64 = 3;
/// When the fault starts.
const FAULT_AT: u64 = 13;
/// When the live incident-only attach starts, and how long it watches.
const INCIDENT_ATTACH_AT: u64 = 14;
const INCIDENT_ATTACH_SECS: u64 = 8;
/// Where the incident ends in the recording's time (its last full window).
const INCIDENT_END: u64 = RUN_SECS - 1;

/// Processes these scenarios start, by name prefix (with holdup and the
/// kernel's threads); a culprit outside them is another job's.
const OURS: &[&str] = &[
    "haproxy",
    "etcd",
    "sha256sum",
    "timeout",
    "taskset",
    "hw-",
    "postgres",
    "pgbench",
    "runuser",
    "psql",
];

fn holdup() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_holdup"))
}

fn artifact(name: &str, ext: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("services-{name}.{ext}"))
}

/// The moments of a run at which a scenario acts.
enum Phase {
    /// The watch has started (the service is idle).
    Watching,
    /// Start the load.
    Load,
    /// Start the fault.
    Fault,
}

/// What one watched run produced.
struct Run {
    rec: PathBuf,
    /// The live diagnosis of the whole watch (automatic split).
    live: Value,
    /// The live attach during the incident only.
    live_incident: Value,
    /// When the load and the fault started, in seconds from the watch start.
    load_at: f64,
    fault_at: f64,
}

/// Watches `pid` for RUN_SECS (recording it), calling `act` at each phase,
/// with the short live attach during the incident.
fn watch(name: &str, pid: u32, mut act: impl FnMut(Phase, Instant)) -> Run {
    let rec = artifact(name, "rec");
    let args = |secs: u64, record: Option<&Path>| {
        let mut a = vec![
            "--pid".to_string(),
            pid.to_string(),
            "--duration".into(),
            format!("{secs}s"),
        ];
        if let Some(r) = record {
            a.push("--record".into());
            a.push(r.display().to_string());
        }
        a
    };
    let limit = Duration::from_secs(RUN_SECS + 40);
    let live = Diagnose::start(
        holdup(),
        &args(RUN_SECS, Some(&rec)),
        limit,
        Some(artifact(name, "live.json")),
        true,
    );
    let t0 = live.started;
    act(Phase::Watching, t0);
    wait_until(t0, Duration::from_secs(LOAD_AT));
    let load_at = t0.elapsed().as_secs_f64();
    act(Phase::Load, t0);
    wait_until(t0, Duration::from_secs(FAULT_AT));
    let fault_at = t0.elapsed().as_secs_f64();
    act(Phase::Fault, t0);
    wait_until(t0, Duration::from_secs(INCIDENT_ATTACH_AT));
    let incident = Diagnose::start(
        holdup(),
        &args(INCIDENT_ATTACH_SECS, None),
        limit,
        Some(artifact(name, "live-incident.json")),
        true,
    );
    let live_incident = incident.finish();
    let live = live.finish();
    Run {
        rec,
        live,
        live_incident,
        load_at,
        fault_at,
    }
}

/// `holdup diagnose REC ARGS --json`, or why it failed (a flag the build
/// does not know yet fails that way, not the whole test).
fn diagnose_rec(rec: &Path, args: &[String]) -> Result<Value, String> {
    let out = Command::new(holdup())
        .arg("diagnose")
        .arg(rec)
        .args(args)
        .arg("--json")
        .output()
        .map_err(|e| format!("cannot run holdup: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "holdup diagnose {} {args:?} failed: {}",
            rec.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("bad JSON: {e}"))
}

/// A check of the culprits a verdict names, given the run's facts.
type Culprit = Box<dyn Fn(&Value, &Value) -> Result<(), String>>;

/// The expected answer of a scenario.
struct Expect {
    /// The top verdict when comparing (and, for a fault, on the incident alone).
    kind: &'static str,
    /// Checks the top verdict names the culprit, given the run's facts
    /// (addresses, pids); Err says what it named instead.
    culprit: Culprit,
}

impl Expect {
    fn unchanged(&self) -> bool {
        self.kind == "no_significant_change"
    }
}

/// Each way of diagnosing one run, by name.
fn diagnoses(name: &str, run: &Run) -> Vec<(String, Result<Value, String>)> {
    // The true ranges, in whole seconds inside the measured phases.
    let baseline = format!(
        "{}s..{}s",
        run.load_at.floor() as u64 + 1,
        run.fault_at.floor() as u64
    );
    let incident = format!("{}s..{INCIDENT_END}s", run.fault_at.floor() as u64 + 1);
    let ways: Vec<(String, Vec<String>)> = vec![
        ("recording, automatic split".into(), vec![]),
        (
            format!("recording, --baseline {baseline} --incident {incident}"),
            vec![
                "--baseline".into(),
                baseline.clone(),
                "--incident".into(),
                incident.clone(),
            ],
        ),
        (
            format!("recording, --incident {incident} --no-baseline"),
            vec![
                "--incident".into(),
                incident.clone(),
                "--no-baseline".into(),
            ],
        ),
    ];
    let mut out = vec![(
        "live, automatic split (25 s watch from idle)".to_string(),
        Ok(run.live.clone()),
    )];
    for (i, (label, args)) in ways.into_iter().enumerate() {
        let d = diagnose_rec(&run.rec, &args);
        if let Ok(v) = &d {
            let _ = std::fs::write(
                artifact(name, &format!("mode{}.json", i + 1)),
                v.to_string(),
            );
        }
        out.push((label, d));
    }
    out.push((
        format!("live, incident only (8 s attach from {INCIDENT_ATTACH_AT} s)"),
        Ok(run.live_incident.clone()),
    ));
    out
}

/// Whether a way judges the incident alone.
fn incident_only_way(label: &str) -> bool {
    label.contains("--no-baseline") || label.contains("incident only")
}

/// What is wrong with one diagnosis, if anything.
fn judge(label: &str, d: &Value, expect: &Expect, facts: &Value) -> Option<String> {
    let alone = incident_only_way(label);
    let mut wrong = Vec::new();
    let want_mode = if alone { "incident_only" } else { "compare" };
    if d["mode"] != want_mode {
        wrong.push(format!("mode {} instead of {want_mode}", d["mode"]));
    }
    let top = &d["verdicts"][0];
    if expect.unchanged() {
        let want = if alone {
            "nothing_holds_it_up"
        } else {
            "no_significant_change"
        };
        if top["kind"] != want {
            wrong.push(format!("top verdict {} instead of {want}", top["kind"]));
        }
        let alarms: Vec<&str> = d["verdicts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["significant"] == true && v["kind"] != want)
            .map(|v| v["kind"].as_str().unwrap_or("?"))
            .collect();
        if !alarms.is_empty() {
            wrong.push(format!("false alarm: significant {alarms:?}"));
        }
    } else if top["kind"] != expect.kind {
        wrong.push(format!(
            "top verdict {} instead of {}",
            top["kind"], expect.kind
        ));
    } else if let Err(e) = (expect.culprit)(top, facts) {
        wrong.push(e);
    }
    (!wrong.is_empty()).then(|| format!("{label}: {}", wrong.join("; ")))
}

/// Runs a scenario (once more when a diagnosis blames a process it did not
/// start), diagnoses it every way and fails listing every wrong way.
fn check(name: &str, expect: Expect, run: impl Fn() -> (Run, Value)) {
    // Built before any watch starts: building it on first use inside a
    // run would stall the run's timeline behind cargo.
    let _ = holdup_testkit::workload_bin();
    let ours: Vec<&str> = OURS.iter().chain(KERNEL_AND_HOLDUP).copied().collect();
    let mut attempt = 0;
    let (ways, facts) = loop {
        attempt += 1;
        let (r, facts) = run();
        let ways = diagnoses(name, &r);
        let foreign = ways
            .iter()
            .filter_map(|(label, d)| {
                let d = d.as_ref().ok()?;
                foreign_culprit(d, &ours).map(|who| format!("{who} (in {label})"))
            })
            .next();
        match foreign {
            Some(who) if attempt == 1 => {
                eprintln!(
                    "scenario {name}: the diagnosis blames a process this test did not start: \
                     {who}; another job on this machine took the CPU or the disk, so holdup \
                     may be right about the machine. Running the scenario once more; \
                     the first run's diagnoses:"
                );
                for (label, d) in &ways {
                    eprintln!("  [{label}]\n{}", shown(d));
                }
            }
            _ => break (ways, facts),
        }
    };
    let mut failures = Vec::new();
    println!("scenario {name} (facts: {facts}):");
    for (what, at, want) in [
        ("load", "load_at", LOAD_AT),
        ("fault", "fault_at", FAULT_AT),
    ] {
        let t = facts[at].as_f64().unwrap_or(f64::NAN);
        assert!(
            (t - want as f64).abs() < 1.5,
            "setup: the {what} started at {t:.1} s instead of {want} s (the machine stalled the run)"
        );
    }
    for (label, d) in &ways {
        println!("  [{label}]\n{}", shown(d));
        match d {
            Ok(d) => failures.extend(judge(label, d, &expect, &facts)),
            Err(e) => failures.push(format!("{label}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: expected {} ({} way(s) wrong):\n  {}\n(diagnoses above; facts {facts})",
        expect.kind,
        failures.len(),
        failures.join("\n  ")
    );
}

fn shown(d: &Result<Value, String>) -> String {
    match d {
        Ok(d) => describe(d),
        Err(e) => format!("  (no diagnosis: {e})\n"),
    }
}

/// The load generator ran the whole time without errors.
fn check_load(load: Workload, min_requests: u64) -> Value {
    let fin = load.finish();
    assert!(
        fin["requests"].as_u64().unwrap_or(0) >= min_requests
            && fin["errors"] == 0
            && fin["error_answers"] == 0,
        "setup: the load generator did not run cleanly (want >= {min_requests} requests, \
         no errors): {fin}"
    );
    fin
}

// ---------------------------------------------------------------- HAProxy

const HAPROXY_TOOLS: &[&str] = &["haproxy", "taskset", "timeout", "sha256sum"];

/// HAProxy's fault in a run.
#[derive(Clone, Copy, PartialEq)]
enum ProxyFault {
    SlowBackend,
    CpuHog,
    None,
}

/// HAProxy (mode tcp, one thread, on CPU 1) in front of `holdup-workload
/// backend` (CPU 0), loaded by `holdup-workload loadgen` (CPU 0).
fn haproxy_run(name: &str, fault: ProxyFault) -> (Run, Value) {
    let dir = TempDir::new("haproxy");
    let (fport, bport) = (free_port(), free_port());
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n    nbthread 1\n    maxconn 256\n\
             defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 60s\n    timeout server 60s\n\
             frontend fe\n    bind 127.0.0.1:{fport}\n    default_backend be\n\
             backend be\n    server b1 127.0.0.1:{bport}\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "1", "haproxy", "-db", "-f"]).arg(&cfg);
    let hap = Guard::spawn("haproxy", quiet(&mut cmd));
    wait_for_port(fport, "haproxy", Duration::from_secs(10));
    // The CPU-hog run loads HAProxy harder (a fast backend, short think
    // time), so that it needs its CPU.
    let (delay, think) = match fault {
        ProxyFault::CpuHog => ("0.1", "100"),
        _ => ("1", "1000"),
    };
    let (mut backend, mut load, mut hog) = (None, None, None);
    let run = watch(name, hap.pid(), |phase, t0| match phase {
        Phase::Watching => {
            // Started with the watch, so its knob is on the watch's clock.
            let mut args = vec![
                "backend".to_string(),
                "--secs".into(),
                (RUN_SECS + 5).to_string(),
                "--port".into(),
                bport.to_string(),
                "--delay-ms".into(),
                delay.into(),
                "--slow-delay-ms".into(),
                "15".into(),
            ];
            if fault == ProxyFault::SlowBackend {
                let left = FAULT_AT as f64 - t0.elapsed().as_secs_f64();
                args.push("--slow-after-secs".into());
                args.push(format!("{left:.3}"));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            backend = Some(Workload::start_on_cpu(0, &args));
        }
        Phase::Load => {
            load = Some(Workload::start_on_cpu(
                0,
                &[
                    "loadgen",
                    "--secs",
                    &(RUN_SECS - LOAD_AT).to_string(),
                    "--server",
                    &format!("127.0.0.1:{fport}"),
                    "--connections",
                    "6",
                    "--think-us",
                    think,
                ],
            ));
        }
        Phase::Fault => {
            if fault == ProxyFault::CpuHog {
                let mut cmd = Command::new("timeout");
                cmd.arg((RUN_SECS - FAULT_AT + 5).to_string()).args([
                    "taskset",
                    "-c",
                    "1",
                    "sha256sum",
                    "/dev/zero",
                ]);
                hog = Some(Guard::spawn("sha256sum", quiet(&mut cmd)));
            }
        }
    });
    if let Some(h) = &mut hog {
        assert!(h.running(), "setup: the CPU hog (sha256sum) stopped early");
    }
    let lf = check_load(load.expect("load started"), 1000);
    drop(backend);
    let facts = json!({
        "haproxy_pid": hap.pid(),
        "backend": format!("127.0.0.1:{bport}"),
        "load": lf,
        "load_at": run.load_at,
        "fault_at": run.fault_at,
    });
    (run, facts)
}

/// The top verdict names the backend's address (facts.backend) first
/// among its peers.
fn names_backend() -> Culprit {
    Box::new(|v, facts| {
        let addr = facts["backend"].as_str().unwrap_or("?");
        let peers = culprits(v, "peer");
        if peers.first().map(String::as_str) == Some(addr) {
            Ok(())
        } else {
            Err(format!(
                "first named peer {peers:?}, not the backend {addr}"
            ))
        }
    })
}

/// The top verdict names process `comm` first among its processes.
fn names_process(comm: &'static str) -> Culprit {
    Box::new(move |v, _| {
        let procs = culprits(v, "process");
        if procs.first().map(String::as_str) == Some(comm) {
            Ok(())
        } else {
            Err(format!("first named process {procs:?}, not {comm}"))
        }
    })
}

/// The expectation of an unchanged run (no culprit to name).
fn unchanged() -> Expect {
    Expect {
        kind: "no_significant_change",
        culprit: Box::new(|_, _| Ok(())),
    }
}

#[test]
fn haproxy_with_a_slowed_backend_is_slow_external_service_naming_the_backend() {
    const NAME: &str = "haproxy-slow-backend";
    let Some(_g) = bpf_setup(NAME) else {
        return;
    };
    if !have_tools(NAME, HAPROXY_TOOLS) {
        return;
    }
    let expect = Expect {
        kind: "slow_external_service",
        culprit: names_backend(),
    };
    check(NAME, expect, || haproxy_run(NAME, ProxyFault::SlowBackend));
}

#[test]
fn haproxy_with_a_cpu_hog_on_its_cpu_is_cpu_contention_naming_the_hog() {
    const NAME: &str = "haproxy-cpu-hog";
    let Some(_g) = bpf_setup(NAME) else {
        return;
    };
    if !have_tools(NAME, HAPROXY_TOOLS) {
        return;
    }
    let expect = Expect {
        kind: "cpu_contention",
        culprit: names_process("sha256sum"),
    };
    check(NAME, expect, || haproxy_run(NAME, ProxyFault::CpuHog));
}

#[test]
fn haproxy_unchanged_raises_no_alarm() {
    const NAME: &str = "haproxy-unchanged";
    let Some(_g) = bpf_setup(NAME) else {
        return;
    };
    if !have_tools(NAME, HAPROXY_TOOLS) {
        return;
    }
    check(NAME, unchanged(), || haproxy_run(NAME, ProxyFault::None));
}

// ---------------------------------------------------------------- etcd

const ETCD_TOOLS: &[&str] = &["etcd", "etcdctl"];

/// A single-member etcd on loopback, its data on /var/tmp (a real disk),
/// under `holdup-workload loadgen --etcd-put`; with `writer`, another
/// process's O_DIRECT + fsync writer on the same filesystem from FAULT_AT.
fn etcd_run(name: &str, writer: bool) -> (Run, Value) {
    let dir = TempDir::under("/var/tmp", "etcd");
    let (cport, pport) = (free_port(), free_port());
    let client = format!("http://127.0.0.1:{cport}");
    let peer = format!("http://127.0.0.1:{pport}");
    let mut cmd = Command::new("etcd");
    cmd.args(["--name", "holdup", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen-client-urls", &client])
        .args(["--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("holdup={peer}")])
        .args(["--logger", "zap", "--log-level", "warn"]);
    let etcd = Guard::spawn("etcd", quiet(&mut cmd));
    wait_for_port(cport, "etcd", Duration::from_secs(15));
    // A leader is elected once the health check passes.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &client, "endpoint", "health"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            Instant::now() < deadline,
            "setup: etcd never became healthy"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let writer_dir = TempDir::under("/var/tmp", "etcd-writer");
    let (mut load, mut disk) = (None, None);
    let run = watch(name, etcd.pid(), |phase, _| match phase {
        Phase::Watching => {}
        Phase::Load => {
            load = Some(Workload::start(&[
                "loadgen",
                "--secs",
                &(RUN_SECS - LOAD_AT).to_string(),
                "--server",
                &format!("127.0.0.1:{cport}"),
                "--connections",
                "6",
                "--think-us",
                "500",
                "--etcd-put",
            ]));
        }
        Phase::Fault => {
            if writer {
                disk = Some(Workload::start(&[
                    "disk",
                    "--secs",
                    &(RUN_SECS - FAULT_AT + 1).to_string(),
                    "--block-kb",
                    "1024",
                    "--dir",
                    &writer_dir.0.display().to_string(),
                ]));
            }
        }
    });
    let lf = check_load(load.expect("load started"), 500);
    let mut facts = json!({
        "etcd_pid": etcd.pid(),
        "data_dir": dir.0.display().to_string(),
        "load": lf,
        "load_at": run.load_at,
        "fault_at": run.fault_at,
    });
    if let Some(d) = disk {
        let fin = d.finish();
        assert!(
            fin["writes"].as_u64().unwrap_or(0) > 0,
            "setup: the disk writer wrote nothing: {fin}"
        );
        facts["writer"] = fin;
    }
    (run, facts)
}

#[test]
fn etcd_with_another_fsync_writer_is_disk_contention_naming_the_writer() {
    const NAME: &str = "etcd-disk-writer";
    let Some(_g) = bpf_setup(NAME) else {
        return;
    };
    if !have_tools(NAME, ETCD_TOOLS) {
        return;
    }
    let writer = names_process("hw-disk");
    let expect = Expect {
        kind: "disk_contention",
        culprit: Box::new(move |v, facts| {
            writer(v, facts)?;
            if culprits(v, "disk").is_empty() {
                return Err("no disk named".into());
            }
            Ok(())
        }),
    };
    check(NAME, expect, || etcd_run(NAME, true));
}

#[test]
fn etcd_unchanged_raises_no_alarm() {
    const NAME: &str = "etcd-unchanged";
    let Some(_g) = bpf_setup(NAME) else {
        return;
    };
    if !have_tools(NAME, ETCD_TOOLS) {
        return;
    }
    check(NAME, unchanged(), || etcd_run(NAME, false));
}

// ---------------------------------------------------------------- lock manager

/// `holdup-workload lockmgr` (6 workers: threads, or processes with
/// `prefork`) under 6 connections; with `hot`, every request takes the same
/// row from 10 s after the first request (≈ FAULT_AT) on.
fn lockmgr_run(name: &str, hot: bool, prefork: bool) -> (Run, Value) {
    let mut args = vec![
        "lockmgr".to_string(),
        "--secs".into(),
        (RUN_SECS + 2).to_string(),
        "--workers".into(),
        "6".into(),
    ];
    if hot {
        args.push("--hot-after-secs".into());
        args.push((FAULT_AT - LOAD_AT).to_string());
    }
    if prefork {
        args.push("--prefork".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let svc = Workload::start(&args);
    let port = svc.u64("server_port");
    let mut load = None;
    let run = watch(name, svc.pid(), |phase, _| {
        if let Phase::Load = phase {
            load = Some(Workload::start(&[
                "loadgen",
                "--secs",
                &(RUN_SECS - LOAD_AT).to_string(),
                "--server",
                &format!("127.0.0.1:{port}"),
                "--connections",
                "6",
                "--think-us",
                "1000",
            ]));
        }
    });
    let lf = check_load(load.expect("load started"), 1000);
    let info = svc.info.clone();
    let pid = svc.pid();
    let fin = svc.finish();
    let waits = fin["lock_waits"].as_u64().unwrap_or(0);
    if hot {
        assert!(
            waits >= 1000,
            "setup: the hot row made too few lock waits: {fin}"
        );
    }
    let mut pids = vec![json!(pid)];
    pids.extend(info["worker_pids"].as_array().cloned().unwrap_or_default());
    let facts = json!({
        "pid": pid,
        "pids": pids,
        "table_addr": info["table_addr"],
        "table_bytes": info["table_bytes"],
        "table_memfd_ino": info["table_memfd_ino"],
        "load": lf,
        "lockmgr": fin,
        "load_at": run.load_at,
        "fault_at": run.fault_at,
    });
    (run, facts)
}

/// Whether a culprit's name is a futex in the lock table: `futex 0xADDR (pid
/// P)` inside the table in one of its processes, or `shared futex inode INO
/// +0xOFF` in the table's memfd.
fn in_lock_table(name: &str, facts: &Value) -> bool {
    let table = facts["table_addr"].as_u64().unwrap_or(0);
    let bytes = facts["table_bytes"].as_u64().unwrap_or(0);
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    if let Some(rest) = name.strip_prefix("futex ") {
        let mut parts = rest.split_whitespace();
        let addr = parts.next().and_then(hex);
        let pid: Option<u64> = parts
            .next()
            .filter(|p| *p == "(pid")
            .and_then(|_| parts.next())
            .and_then(|p| p.trim_end_matches(')').parse().ok());
        let ours = facts["pids"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p.as_u64() == pid));
        return ours && addr.is_some_and(|a| (table..table + bytes).contains(&a));
    }
    if let Some(rest) = name.strip_prefix("shared futex inode ") {
        let mut parts = rest.split_whitespace();
        let ino: Option<u64> = parts.next().and_then(|i| i.parse().ok());
        let off = parts.next().and_then(|o| hex(o.trim_start_matches('+')));
        return ino.is_some()
            && ino == facts["table_memfd_ino"].as_u64()
            && off.is_some_and(|o| o < bytes);
    }
    false
}

/// The top verdict names a futex of the lock table and the workers that
/// hold and wait for it.
fn names_lock_table() -> Culprit {
    Box::new(|v, facts| {
        let all: Vec<(String, String)> = v["culprits"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["kind"].as_str().unwrap_or("").to_string(),
                    c["name"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let lock = all.iter().any(|(_, n)| in_lock_table(n, facts));
        let workers = all.iter().any(|(k, n)| {
            matches!(k.as_str(), "thread" | "process" | "role") && n.starts_with("hw-lm-w-")
        });
        match (lock, workers) {
            (true, true) => Ok(()),
            _ => Err(format!(
                "culprits {all:?}: lock table named {lock}, its workers (hw-lm-w-*) named \
                 {workers} (table {:#x} + {} bytes, memfd inode {})",
                facts["table_addr"].as_u64().unwrap_or(0),
                facts["table_bytes"],
                facts["table_memfd_ino"]
            )),
        }
    })
}

#[test]
fn lock_manager_hot_row_is_lock_contention_naming_the_lock_table() {
    const NAME: &str = "lockmgr-hot-row";
    let Some(_g) = bpf_setup(NAME) else {
        return;
    };
    let expect = Expect {
        kind: "lock_contention",
        culprit: names_lock_table(),
    };
    check(NAME, expect, || lockmgr_run(NAME, true, false));
}

#[test]
fn lock_manager_unchanged_raises_no_alarm() {
    const NAME: &str = "lockmgr-unchanged";
    let Some(_g) = bpf_setup(NAME) else {
        return;
    };
    check(NAME, unchanged(), || lockmgr_run(NAME, false, false));
}

#[test]
fn prefork_lock_manager_hot_row_is_lock_contention_across_processes() {
    const NAME: &str = "lockmgr-prefork-hot-row";
    let Some(_g) = bpf_setup(NAME) else {
        return;
    };
    let expect = Expect {
        kind: "lock_contention",
        culprit: names_lock_table(),
    };
    check(NAME, expect, || lockmgr_run(NAME, true, true));
}

#[test]
fn prefork_lock_manager_unchanged_raises_no_alarm() {
    const NAME: &str = "lockmgr-prefork-unchanged";
    let Some(_g) = bpf_setup(NAME) else {
        return;
    };
    check(NAME, unchanged(), || lockmgr_run(NAME, false, true));
}

// ---------------------------------------------------------------- PostgreSQL

const PG_TOOLS: &[&str] = &["runuser", "pgbench", "/usr/lib/postgresql/15/bin/postgres"];
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// pgbench's rate (transactions/s): a healthy, unsaturated server on two
/// CPUs, so the faults, not the load, hold it up.
const PG_RATE: &str = "200";

/// PostgreSQL's fault in a run.
#[derive(Clone, Copy, PartialEq)]
enum PgFault {
    /// Every transaction updates the same branch row (row-lock contention).
    HotRow,
    /// Another process's O_DIRECT + fsync writer on the same filesystem as
    /// the WAL: commits wait for the WAL flush lock while its holder fsyncs.
    DiskWriter,
    None,
}

/// A command run as the `postgres` user (initdb and postgres refuse root).
fn as_postgres(args: &[&str]) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).args(args);
    c
}

/// `pgbench` against the server, as the postgres user, for `secs`.
fn pgbench(port: u16, secs: u64, extra: &[&str]) -> Guard {
    let port = port.to_string();
    let secs = secs.to_string();
    let mut args = vec![
        "pgbench",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-c",
        "8",
        "-j",
        "2",
        "-T",
        &secs,
        "-R",
        PG_RATE,
    ];
    args.extend_from_slice(extra);
    args.push("postgres");
    Guard::spawn("pgbench", quiet(&mut as_postgres(&args)))
}

/// PostgreSQL 15 (Debian) on loopback, one process per connection, its data
/// on /var/tmp (a real disk), under pgbench's simple-update transactions.
fn pg_run(name: &str, fault: PgFault) -> (Run, Value) {
    let dir = TempDir::under("/var/tmp", "pg");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("create the data directory");
    let owner = |p: &Path| {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(p)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "setup: chown {} to postgres", p.display());
    };
    owner(&dir.0);
    let initdb = as_postgres(&[
        &format!("{PG_BIN}/initdb"),
        "-D",
        &data.display().to_string(),
        "--no-sync",
        "-A",
        "trust",
    ])
    .output()
    .expect("run initdb");
    assert!(
        initdb.status.success(),
        "setup: initdb failed: {}",
        String::from_utf8_lossy(&initdb.stderr)
    );
    let port = free_port();
    let server = Guard::spawn(
        "postgres",
        quiet(&mut as_postgres(&[
            &format!("{PG_BIN}/postgres"),
            "-D",
            &data.display().to_string(),
            "-p",
            &port.to_string(),
            "-k",
            &data.display().to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "shared_buffers=64MB",
        ])),
    );
    wait_for_port(port, "postgres", Duration::from_secs(20));
    let init = as_postgres(&[
        "pgbench",
        "-i",
        "-s",
        "2",
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "postgres",
    ])
    .output()
    .expect("run pgbench -i");
    assert!(
        init.status.success(),
        "setup: pgbench -i failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    // The postmaster is runuser's child; its pid is the data dir's first line.
    let postmaster: u32 = std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()
        .and_then(|s| s.lines().next()?.trim().parse().ok())
        .expect("setup: postmaster.pid names the server");
    let hot = dir.join("hot.sql");
    std::fs::write(
        &hot,
        "\\set aid random(1, 200000)\nBEGIN;\nUPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;\nUPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = 1;\nSELECT pg_sleep(0.005);\nEND;\n",
    )
    .expect("write the hot-row script");
    owner(&hot);
    let writer_dir = TempDir::under("/var/tmp", "pg-writer");
    let (mut loads, mut disk) = (Vec::new(), None);
    let run = watch(name, postmaster, |phase, _| match phase {
        Phase::Watching => {}
        Phase::Load => {
            let until = if fault == PgFault::HotRow {
                FAULT_AT
            } else {
                RUN_SECS
            };
            loads.push(pgbench(port, until - LOAD_AT, &["-N"]));
        }
        Phase::Fault => match fault {
            PgFault::HotRow => {
                loads.push(pgbench(
                    port,
                    RUN_SECS - FAULT_AT,
                    &["-f", &hot.display().to_string()],
                ));
            }
            PgFault::DiskWriter => {
                disk = Some(Workload::start(&[
                    "disk",
                    "--secs",
                    &(RUN_SECS - FAULT_AT + 1).to_string(),
                    "--block-kb",
                    "1024",
                    "--dir",
                    &writer_dir.0.display().to_string(),
                ]));
            }
            PgFault::None => {}
        },
    });
    // pgbench ran: the tables changed.
    let count = as_postgres(&[
        "psql",
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-At",
        "-c",
        "SELECT count(*) FROM pgbench_history",
        "postgres",
    ])
    .output()
    .expect("run psql");
    let transactions: u64 = String::from_utf8_lossy(&count.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(
        transactions >= 500,
        "setup: pgbench committed only {transactions} transactions"
    );
    drop(loads);
    let mut facts = json!({
        "postmaster": postmaster,
        "port": port,
        "transactions": transactions,
        "load_at": run.load_at,
        "fault_at": run.fault_at,
    });
    if let Some(d) = disk {
        let fin = d.finish();
        assert!(
            fin["writes"].as_u64().unwrap_or(0) > 0,
            "setup: the disk writer wrote nothing: {fin}"
        );
        facts["writer"] = fin;
    }
    drop(server);
    (run, facts)
}

#[test]
fn postgres_hot_row_is_lock_contention_naming_the_backends() {
    const NAME: &str = "pg-hot-row";
    let Some(_g) = bpf_setup(NAME) else {
        return;
    };
    if !have_tools(NAME, PG_TOOLS) {
        return;
    }
    let expect = Expect {
        kind: "lock_contention",
        culprit: Box::new(|v, _| {
            let futexes = culprits(v, "futex");
            let backends = ["thread", "process", "role"]
                .iter()
                .flat_map(|k| culprits(v, k))
                .any(|n| n.starts_with("postgres"));
            if futexes.is_empty() || !backends {
                return Err(format!(
                    "futexes {futexes:?}, postgres backends named {backends}"
                ));
            }
            Ok(())
        }),
    };
    check(NAME, expect, || pg_run(NAME, PgFault::HotRow));
}

#[test]
fn postgres_with_another_fsync_writer_is_disk_contention_naming_the_writer() {
    const NAME: &str = "pg-disk-writer";
    let Some(_g) = bpf_setup(NAME) else {
        return;
    };
    if !have_tools(NAME, PG_TOOLS) {
        return;
    }
    let writer = names_process("hw-disk");
    let expect = Expect {
        kind: "disk_contention",
        culprit: Box::new(move |v, facts| writer(v, facts)),
    };
    check(NAME, expect, || pg_run(NAME, PgFault::DiskWriter));
}

#[test]
fn postgres_unchanged_raises_no_alarm() {
    const NAME: &str = "pg-unchanged";
    let Some(_g) = bpf_setup(NAME) else {
        return;
    };
    if !have_tools(NAME, PG_TOOLS) {
        return;
    }
    check(NAME, unchanged(), || pg_run(NAME, PgFault::None));
}

#[test]
fn in_lock_table_reads_both_futex_names() {
    let facts = json!({
        "pids": [100, 101],
        "table_addr": 0x1000,
        "table_bytes": 0x100,
        "table_memfd_ino": 77,
    });
    assert!(in_lock_table("futex 0x1040 (pid 101)", &facts));
    assert!(!in_lock_table("futex 0x1040 (pid 5)", &facts));
    assert!(!in_lock_table("futex 0x2000 (pid 100)", &facts));
    assert!(in_lock_table("shared futex inode 77 +0x40", &facts));
    assert!(!in_lock_table("shared futex inode 78 +0x40", &facts));
    assert!(!in_lock_table("shared futex inode 77 +0x400", &facts));
    assert!(!in_lock_table("pipe inode 77", &facts));
}
