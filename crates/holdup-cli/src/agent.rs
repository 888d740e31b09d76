//! `holdup agent`: the per-host daemon (crates/holdup-agent), configured by
//! a TOML file, flags, or both (flags add services and override settings).

use anyhow::Result;
use clap::Args;
use holdup_agent::config::{comm_regex, name_value, Config, Selector, Service};
use holdup_agent::Agent;
use std::path::PathBuf;

/// `holdup agent` flags.
#[derive(Args)]
pub struct AgentArgs {
    /// TOML configuration (docs/AGENT.md), e.g. /etc/holdup/agent.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address:port to serve /metrics on (default 127.0.0.1:9464; port 0 picks a free one).
    #[arg(long)]
    listen: Option<String>,
    /// Window length (default 1s).
    #[arg(long)]
    interval: Option<String>,
    /// A service of processes by name: NAME=REGEX (repeatable).
    #[arg(long, value_name = "NAME=REGEX")]
    comm: Vec<String>,
    /// A service that is one cgroup v2 directory: NAME=PATH (repeatable).
    #[arg(long, value_name = "NAME=PATH")]
    cgroup: Vec<String>,
    /// Every child cgroup of this slice is a service (repeatable).
    #[arg(long, value_name = "PATH")]
    slice: Vec<PathBuf>,
    /// Attach only the scheduler tracepoints (cheapest; no disk metrics).
    #[arg(long)]
    sched_only: bool,
    /// Culprits named per service; the rest are "other" (default 5).
    #[arg(long)]
    top_culprits: Option<usize>,
    /// Roles (thread-name patterns) named per service; the rest are "other" (default 20).
    #[arg(long)]
    max_roles: Option<usize>,
    /// Also run the probes a workbench dispatches to this host: its URL
    /// (`https://` for TLS), with --token-file and --host.
    #[cfg(feature = "workbench")]
    #[arg(long, value_name = "URL", requires_all = ["token_file", "host"])]
    workbench: Option<String>,
    /// With --workbench: the file holding this agent's token (from `holdup
    /// wb agents create HOST`).
    #[cfg(feature = "workbench")]
    #[arg(long, value_name = "FILE", requires = "workbench")]
    token_file: Option<PathBuf>,
    /// With --workbench: the host this agent runs requests for.
    #[cfg(feature = "workbench")]
    #[arg(long, requires = "workbench")]
    host: Option<String>,
    /// With --workbench: where dispatched runs keep their files.
    #[cfg(feature = "workbench")]
    #[arg(long, value_name = "DIR", default_value = "/var/lib/holdup/agent")]
    state_dir: PathBuf,
    /// With --workbench: PEM file of CA certificates to trust for an
    /// https:// workbench.
    #[cfg(feature = "workbench")]
    #[arg(long, value_name = "FILE", requires = "workbench")]
    ca_file: Option<PathBuf>,
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(args: AgentArgs) -> Result<()> {
    let mut services = Vec::new();
    for c in &args.comm {
        let (name, re) = name_value("--comm", c)?;
        services.push(Service {
            name,
            selector: Selector::Comm(comm_regex(&re)?),
        });
    }
    for c in &args.cgroup {
        let (name, path) = name_value("--cgroup", c)?;
        services.push(Service {
            name,
            selector: Selector::Cgroup(path.into()),
        });
    }
    for s in &args.slice {
        services.push(Service {
            name: s.display().to_string(),
            selector: Selector::Slice(s.clone()),
        });
    }
    let config = match &args.config {
        Some(path) => {
            let mut c = Config::load(path)?;
            c.services.extend(services);
            Config::build(
                Some(&args.listen.unwrap_or_else(|| c.listen.to_string())),
                args.interval
                    .as_deref()
                    .or(Some(&format!("{}ms", c.interval.as_millis()))),
                c.sched_only || args.sched_only,
                args.top_culprits.or(Some(c.top_culprits)),
                args.max_roles.or(Some(c.max_roles)),
                c.services,
                c.flight_recorder,
            )?
        }
        None => Config::build(
            args.listen.as_deref(),
            args.interval.as_deref(),
            args.sched_only,
            args.top_culprits,
            args.max_roles,
            services,
            None,
        )?,
    };
    if let Some(fr) = &config.flight_recorder {
        eprintln!(
            "holdup agent: [flight_recorder] dir {} is configured, but this build has no ring recorder to run; ignoring it",
            fr.dir.display()
        );
    }
    let names: Vec<String> = config.services.iter().map(|s| s.name.clone()).collect();
    let interval = config.interval;
    let stop = crate::stop_flag();
    #[allow(unused_mut)]
    let mut agent = Agent::new(config);
    #[cfg(feature = "workbench")]
    if let (Some(server), Some(token_file), Some(host)) =
        (args.workbench, args.token_file, args.host)
    {
        // The workbench's run puller, as a thread of the daemon.
        let d = crate::wb::DispatchArgs {
            token_file,
            host,
            state_dir: args.state_dir,
            ca_file: args.ca_file,
        };
        let cfg = crate::wb::agent_config(d, server)?;
        eprintln!(
            "holdup agent: pulling the runs {} dispatches to host {}",
            cfg.server, cfg.host
        );
        agent.add_worker(
            "workbench runs",
            Box::new(move |stop| crate::wb::run_agent_loop(&cfg, stop)),
        );
    }
    agent.run(stop, |addr| {
        eprintln!(
            "holdup agent: serving http://{addr}/metrics, watching {} every {interval:?}",
            names.join(", ")
        );
    })
}
