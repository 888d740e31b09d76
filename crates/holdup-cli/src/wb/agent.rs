//! `holdup wb agent`: the agent of one host. It pulls the runs the
//! workbench dispatches to its host (long poll), runs each here bounded in
//! time, output and BPF CPU by `holdup-runner` (the budget the server
//! sends), sends a heartbeat every second while it runs (and stops it when
//! someone stops it on the server), then uploads its output and how it
//! ended. `holdup wb agents` manages agent identities (admins).
//!
//! [`run_agent_loop`] is the loop, usable as a thread of a longer-lived
//! daemon: it returns when `stop` is set (a run going then is stopped and
//! reported first) or when the server refuses the agent's token.

use super::client::{decode, server_error, Client, Method, TlsOptions};
use super::show::{at, opt, out, print_json, table};
use anyhow::{anyhow, bail, Context, Result};
use holdup_runner::overhead::StatsGuard;
use holdup_runner::{run_bounded, OutputFrom, RecordCommand, RecordTarget, Spec};
use holdup_wb_api::{
    Agent, AgentToken, DispatchedRun, Heartbeat, HeartbeatAnswer, NewAgent, RunEnd, RunStatus,
    TargetKind,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What an agent needs: its server, identity, host and state directory.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The workbench's URL (`https://` for TLS).
    pub server: String,
    /// The agent token (`hwa_...`).
    pub token: String,
    /// The host this agent runs requests for (as requests name it).
    pub host: String,
    /// Where runs keep their files while they go.
    pub state_dir: PathBuf,
    /// A PEM file of CA certificates to trust for the server's TLS
    /// certificate (a private CA); None: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// How long one poll waits for a run on the server.
    pub poll_wait: Duration,
}

/// The loop of an agent: pulls, runs and reports runs until `stop` is set.
/// Errors: the token is refused (wrong or revoked), or the state directory
/// cannot be made. A server that cannot be reached is retried.
pub fn run_agent_loop(cfg: &AgentConfig, stop: Arc<AtomicBool>) -> Result<()> {
    std::fs::create_dir_all(&cfg.state_dir).with_context(|| {
        format!(
            "cannot create the agent's state dir {}",
            cfg.state_dir.display()
        )
    })?;
    let c = Client::with_tls(
        &cfg.server,
        &cfg.token,
        &TlsOptions {
            ca_file: cfg.ca_file.clone(),
        },
        cfg.poll_wait + Duration::from_secs(30),
    )?;
    let path = format!("/agent/runs/next?wait={}", cfg.poll_wait.as_secs());
    while !stop.load(Ordering::Relaxed) {
        let (status, data) = match c.call::<()>(Method::Get, &path, None) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("holdup agent {}: {e:#}; retrying in 2 s", cfg.host);
                sleep_unless(&stop, Duration::from_secs(2));
                continue;
            }
        };
        match status {
            204 => continue,
            200 => {
                let run: DispatchedRun = decode(&data)?;
                eprintln!(
                    "holdup agent {}: run {} ({}) for {} s",
                    cfg.host, run.run_id, run.probe, run.duration_s
                );
                if let Err(e) = execute(&c, cfg, &run, &stop) {
                    eprintln!("holdup agent {}: run {}: {e:#}", cfg.host, run.run_id);
                }
            }
            401 | 403 => {
                return Err(server_error(status, &data)).with_context(|| {
                    format!(
                        "the workbench at {} refused the agent of {}",
                        cfg.server, cfg.host
                    )
                })
            }
            _ => {
                eprintln!(
                    "holdup agent {}: {:#}; retrying in 2 s",
                    cfg.host,
                    server_error(status, &data)
                );
                sleep_unless(&stop, Duration::from_secs(2));
            }
        }
    }
    Ok(())
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = std::time::Instant::now() + d;
    while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The probe of a dispatched run, as a bounded spec.
fn spec_of(run: &DispatchedRun, dir: &std::path::Path) -> Result<Spec> {
    let (program, args, output) = match &run.script {
        Some(body) => {
            let file = dir.join("script.bt");
            std::fs::write(&file, body)?;
            let bin = std::env::var_os("HOLDUP_BPFTRACE").unwrap_or_else(|| "bpftrace".into());
            let mut args: Vec<std::ffi::OsString> = vec!["-f".into(), "json".into(), file.into()];
            if run.target_kind == TargetKind::Pid {
                args.push(run.target.clone().into());
            }
            (PathBuf::from(bin), args, OutputFrom::Stdout)
        }
        None => {
            let file = dir.join("recording.rec");
            let target = match run.target_kind {
                TargetKind::Pid => RecordTarget::Pid(
                    run.target
                        .parse()
                        .map_err(|_| anyhow!("target {:?} is not a pid", run.target))?,
                ),
                TargetKind::Cgroup => RecordTarget::Cgroup(run.target.clone()),
                TargetKind::Host => RecordTarget::All,
            };
            let record = RecordCommand {
                target,
                sched_only: run.sched_only,
                duration: Duration::from_secs(run.duration_s),
                output: file.clone(),
            };
            let bin = match std::env::var_os("HOLDUP_BIN") {
                Some(b) => PathBuf::from(b),
                None => std::env::current_exe()?,
            };
            (bin, record.args(), OutputFrom::File(file))
        }
    };
    Ok(Spec {
        program,
        args,
        output,
        duration: Duration::from_secs(run.duration_s),
        max_output: usize::try_from(run.max_output_bytes).unwrap_or(usize::MAX),
        budget_percent: run.budget_percent,
    })
}

/// Runs one dispatched run here and reports it.
fn execute(c: &Client, cfg: &AgentConfig, run: &DispatchedRun, stop: &AtomicBool) -> Result<()> {
    let id = run.run_id;
    let dir = cfg.state_dir.join(format!("run-{id}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = (|| {
        // Without BPF stats the budget cannot be enforced: refuse rather
        // than run unmetered, as the server does.
        let _stats = StatsGuard::enable().map_err(|e| {
            anyhow!("cannot measure the run's overhead: enabling BPF stats failed ({e}); run the agent as root (CAP_SYS_ADMIN)")
        })?;
        let spec = spec_of(run, &dir)?;
        let beat = format!("/agent/runs/{id}/heartbeat");
        let outcome = run_bounded(&spec, |p| {
            if stop.load(Ordering::Relaxed) {
                return Some(format!("the agent of {} (shutting down)", cfg.host));
            }
            let hb = Heartbeat {
                pid: Some(p.pid),
                bpf_run_time_ns: p.bpf_run_time_ns,
                output_bytes: p.output_bytes,
            };
            // A missed heartbeat is not fatal: the run stays bounded here.
            c.post::<HeartbeatAnswer, _>(&beat, &hb)
                .ok()
                .and_then(|a| a.stop_by)
        })?;
        let (status, reason) = outcome.stop.verdict(
            spec.duration,
            spec.max_output,
            spec.budget_percent,
            &outcome.stderr,
        );
        Ok::<_, anyhow::Error>((outcome, status, reason))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    let (output, end) = match result {
        Ok((o, status, reason)) => {
            let end = RunEnd {
                status,
                exit_status: o.exit_code,
                reason,
                output_bytes: o.output.len() as u64,
                output_sha256: holdup_workbench::sha256_hex(&o.output),
                bpf_run_time_ns: o.bpf.run_time_ns,
                bpf_programs: o.bpf.programs,
                bpf_cpu_percent: o.cpu_percent,
                peak_interval_percent: o.peak_percent,
            };
            (o.output, end)
        }
        Err(e) => (
            Vec::new(),
            RunEnd {
                status: RunStatus::Failed,
                exit_status: None,
                reason: format!("the probe could not be started on {}: {e:#}", cfg.host),
                output_bytes: 0,
                output_sha256: holdup_workbench::sha256_hex(&[]),
                bpf_run_time_ns: 0,
                bpf_programs: 0,
                bpf_cpu_percent: None,
                peak_interval_percent: 0.0,
            },
        ),
    };
    report(c, id, &output, &end)
}

/// Uploads a run's output and its end, retrying a busy or unreachable
/// server a few times.
fn report(c: &Client, id: i64, output: &[u8], end: &RunEnd) -> Result<()> {
    let mut last = None;
    for _ in 0..5 {
        let sent = c
            .put_bytes(&format!("/agent/runs/{id}/output"), output)
            .and_then(|()| c.post::<holdup_wb_api::Run, _>(&format!("/agent/runs/{id}/end"), end));
        match sent {
            Ok(r) => {
                eprintln!("holdup agent: run {id} ended {}", r.status);
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Err(last.unwrap_or_else(|| anyhow!("not sent")))
}

/// `holdup wb agent`: reads the token file and runs the loop until Ctrl-C
/// or SIGTERM.
pub(crate) fn agent_main(cfg_args: AgentArgs, server: String) -> Result<()> {
    let cfg = agent_config(cfg_args, server)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    eprintln!(
        "holdup agent {}: pulling runs from {} (state in {})",
        cfg.host,
        cfg.server,
        cfg.state_dir.display()
    );
    run_agent_loop(&cfg, stop)
}

/// The agent's configuration from its flags: reads the token file.
pub(crate) fn agent_config(cfg_args: AgentArgs, server: String) -> Result<AgentConfig> {
    let token = std::fs::read_to_string(&cfg_args.token_file)
        .with_context(|| {
            format!(
                "cannot read the agent token file {}",
                cfg_args.token_file.display()
            )
        })?
        .trim()
        .to_string();
    if token.is_empty() {
        bail!("the agent token file {} is empty: put the token `holdup wb agents create {}` printed in it", cfg_args.token_file.display(), cfg_args.host);
    }
    Ok(AgentConfig {
        server,
        token,
        host: cfg_args.host,
        state_dir: cfg_args.state_dir,
        ca_file: cfg_args.ca_file,
        poll_wait: Duration::from_secs(10),
    })
}

/// `holdup wb agent`'s flags (also built from `holdup agent --workbench`'s).
#[derive(clap::Args)]
pub(crate) struct AgentArgs {
    /// File holding the agent's token (from `holdup wb agents create HOST`).
    #[arg(long, value_name = "FILE")]
    pub token_file: PathBuf,
    /// The host this agent runs requests for (requests name it as their host).
    #[arg(long)]
    pub host: String,
    /// Where runs keep their files while they go.
    #[arg(long, default_value = "/var/lib/holdup/agent", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// PEM file of CA certificates to trust for an https:// server.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// `holdup wb agents`: list agent identities.
pub(crate) fn list(c: &Client, json: bool) -> Result<()> {
    let agents: Vec<Agent> = c.get("/api/agents")?;
    if json {
        return print_json(&agents);
    }
    let rows: Vec<Vec<String>> = agents
        .into_iter()
        .map(|a| {
            vec![
                a.id.to_string(),
                a.host,
                if a.revoked { "revoked" } else { "" }.into(),
                a.last_seen.map_or("-".into(), |t| at(Some(t))),
                a.created_by,
            ]
        })
        .collect();
    out(&table(
        &["ID", "HOST", "STATE", "LAST SEEN (UTC)", "CREATED BY"],
        &rows,
    ))
}

/// `holdup wb agents create|rotate HOST`: prints the new token once.
pub(crate) fn issue(c: &Client, json: bool, host: &str, rotate: bool) -> Result<()> {
    let t: AgentToken = if rotate {
        c.post_empty(&format!("/api/agents/{host}/token"))?
    } else {
        c.post("/api/agents", &NewAgent { host: host.into() })?
    };
    if json {
        return print_json(&t);
    }
    out(&format!(
        "agent of {} {}; its token, shown only now (put it in the file `holdup wb agent --token-file` reads):\n{}\n",
        t.agent.host,
        if rotate { "has a new token (the old one no longer works)" } else { "created" },
        t.token
    ))
}

/// `holdup wb agents revoke HOST`.
pub(crate) fn revoke(c: &Client, json: bool, host: &str) -> Result<()> {
    let (status, data) = c.call::<()>(Method::Delete, &format!("/api/agents/{host}"), None)?;
    if !(200..300).contains(&status) {
        return Err(server_error(status, &data));
    }
    let a: Agent = decode(&data)?;
    if json {
        return print_json(&a);
    }
    out(&format!(
        "agent of {} revoked (last seen {}): its token is refused from now on\n",
        a.host,
        opt(&a.last_seen.map(|t| at(Some(t))))
    ))
}
