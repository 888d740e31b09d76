//! `holdup wb`: the command-line client of the workbench HTTP API
//! (docs/WORKBENCH.md): incidents, scripts, requests and approval, runs and
//! the audit log, as tables or (`--json`) the server's JSON.
//!
//! This file holds the command line and its dispatch; the client is in
//! `client`, printing in `show`, and the commands in `people` (users,
//! incidents), `probes` (catalog, scripts, requests), `runs` (runs,
//! audit) and `agent` (`holdup wb agent`, the agent of a host, and
//! `holdup wb agents`). Every answer is read into `holdup-wb-api`'s types.

mod agent;
mod client;
mod people;
mod probes;
mod runs;
mod show;

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
// The `holdup agent` daemon starts the loop as a thread of its own.
pub(crate) use agent::{agent_config, AgentArgs as DispatchArgs};
#[allow(unused_imports)]
pub use agent::{run_agent_loop, AgentConfig};
use client::Client;
pub use client::TlsOptions;
use holdup_wb_api::UserChange;
use std::path::PathBuf;

/// `holdup workbench`: the server.
#[derive(Subcommand)]
pub enum WorkbenchCmd {
    /// Serve the HTTP API. The first start creates an admin and prints its token once.
    Serve {
        /// SQLite store (created with its schema on first start).
        #[arg(long, default_value = "holdup-workbench.db")]
        db: PathBuf,
        /// Policy file (TOML); default: the built-in conservative policy.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7420")]
        listen: std::net::SocketAddr,
        /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        cmd: ServerAuditCmd,
    },
}

/// `holdup workbench audit`.
#[derive(Subcommand)]
pub enum ServerAuditCmd {
    /// Check the hash chain: reports the first edited, deleted or reordered entry.
    Verify {
        /// SQLite store.
        #[arg(long, default_value = "holdup-workbench.db")]
        db: PathBuf,
    },
}

/// `holdup workbench serve|audit verify`.
pub fn workbench(cmd: WorkbenchCmd) -> Result<()> {
    match cmd {
        WorkbenchCmd::Serve {
            db,
            policy,
            listen,
            tls_cert,
            tls_key,
        } => {
            let tls = tls_cert.zip(tls_key);
            holdup_workbench::api::serve_blocking_tls(
                &db,
                policy.as_deref(),
                listen,
                tls.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
            )
        }
        WorkbenchCmd::Audit {
            cmd: ServerAuditCmd::Verify { db },
        } => {
            let report = holdup_workbench::verify_store(&db)?;
            if report.ok {
                println!(
                    "audit log of {} intact: {} entries, head {}",
                    db.display(),
                    report.entries,
                    report.head_hash
                );
                Ok(())
            } else {
                bail!(
                    "audit log of {} is broken at entry {}: {}",
                    db.display(),
                    report.bad_seq.map_or("?".into(), |s| s.to_string()),
                    report.reason.unwrap_or_default()
                )
            }
        }
    }
}

const DEFAULT_URL: &str = "http://127.0.0.1:7420";

#[derive(Args)]
pub struct WbArgs {
    /// Workbench server URL [env: HOLDUP_WB_URL; default: http://127.0.0.1:7420].
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,
    /// API token [env: HOLDUP_WB_TOKEN].
    #[arg(long, global = true, value_name = "TOKEN")]
    token: Option<String>,
    /// Print the server's JSON instead of tables and text.
    #[arg(long, global = true)]
    json: bool,
    /// PEM file of CA certificates to trust for an https:// server (a private CA).
    #[arg(long, global = true, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    #[command(subcommand)]
    cmd: WbCmd,
}

#[derive(Subcommand)]
enum WbCmd {
    /// Who the token belongs to, and its role.
    Whoami,
    /// Run as the agent of a host: pull the runs dispatched to it, run them
    /// here bounded, report them (needs root for BPF).
    Agent(agent::AgentArgs),
    /// Agent identities (admin): list, or create / rotate / revoke one.
    Agents {
        #[command(subcommand)]
        cmd: Option<AgentsCmd>,
    },
    /// Users (admin only).
    Users {
        #[command(subcommand)]
        cmd: Option<UsersCmd>,
    },
    /// List incidents.
    Incidents,
    /// Create or show one incident, or fetch one of its artifacts.
    Incident {
        #[command(subcommand)]
        cmd: IncidentCmd,
    },
    /// Built-in probes and accepted scripts that can be requested.
    Catalog,
    /// Submit a bpftrace script for the static checks; prints the report.
    Submit {
        /// Script name (A-Z a-z 0-9 . _ -).
        name: String,
        /// The bpftrace script file.
        file: PathBuf,
    },
    /// Request a probe run: `holdup-sched`, `holdup-full` or `script:<id>`.
    Request {
        /// The probe.
        probe: String,
        /// Why it should run (shown to the approver, kept in the audit log).
        #[arg(long)]
        purpose: String,
        /// How long (30s, 5m or seconds).
        #[arg(long, value_parser = parse_seconds)]
        duration: u64,
        /// Target this process.
        #[arg(long, group = "target")]
        pid: Option<u32>,
        /// Target this cgroup (absolute path).
        #[arg(long, group = "target")]
        cgroup: Option<String>,
        /// The host it runs on (default: this host's name).
        #[arg(long)]
        host: Option<String>,
        /// The incident it serves; the run's output is attached to it.
        #[arg(long)]
        incident: Option<i64>,
    },
    /// List requests.
    Requests {
        /// Only those waiting for approval.
        #[arg(long)]
        pending: bool,
    },
    /// Approve a request (an approver other than its requester).
    Approve {
        id: i64,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Reject a request, saying why.
    Reject {
        id: i64,
        #[arg(long)]
        comment: String,
    },
    /// Start a run of an approved request.
    Run {
        /// The request.
        id: i64,
        /// Wait for the run to end, then print its status and output.
        #[arg(long)]
        wait: bool,
    },
    /// List the latest runs, or show / stop one.
    Runs {
        /// Only the runs of this incident.
        #[arg(long)]
        incident: Option<i64>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(subcommand)]
        cmd: Option<RunsCmd>,
    },
    /// The audit log (approvers), or `audit verify`.
    Audit {
        /// Entries after this seq.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// How many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(subcommand)]
        cmd: Option<AuditCmd>,
    },
}

#[derive(Subcommand)]
enum AgentsCmd {
    /// Create the agent identity of a host; prints its token (shown only once).
    Create { host: String },
    /// Replace a host's agent token (also lifts a revocation); the old one stops working.
    Rotate { host: String },
    /// Revoke a host's agent: its token is refused from now on.
    Revoke { host: String },
}

#[derive(Subcommand)]
enum UsersCmd {
    /// Create a user; prints its token (shown only once).
    Create {
        name: String,
        /// viewer, requester, approver or admin.
        role: String,
    },
    /// Replace a user's token (yours, or anyone's as admin); the old one stops working.
    Rotate { name: String },
    /// Change a user's role (admin).
    Role {
        name: String,
        /// viewer, requester, approver or admin.
        role: String,
    },
    /// Disable a user: its token is refused, its history stays (admin).
    Disable { name: String },
    /// Enable a disabled user again (admin).
    Enable { name: String },
}

#[derive(Subcommand)]
enum IncidentCmd {
    /// Open an incident.
    Create {
        #[arg(long)]
        title: String,
        #[arg(long, default_value = "")]
        service: String,
        #[arg(long, default_value = "")]
        host: String,
        #[arg(long, default_value = "")]
        notes: String,
    },
    /// Change an incident's fields (the ones given).
    Update {
        id: i64,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        notes: Option<String>,
    },
    /// An incident, its artifacts and its runs.
    Show { id: i64 },
    /// Fetch an artifact (raw bytes) to stdout or a file.
    Artifact {
        id: i64,
        name: String,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Add a note to an incident's timeline.
    Note { id: i64, text: String },
    /// Run holdup's diagnosis on a recording attached to an incident; the
    /// report is attached too (`<name>.diagnosis.txt`) and printed.
    Diagnose { id: i64, name: String },
}

#[derive(Subcommand)]
enum RunsCmd {
    /// One run: status, reason, overhead and output.
    Show { id: i64 },
    /// Stop a running run.
    Stop { id: i64 },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the audit hash chain on the server.
    Verify,
}

/// "30s", "5m" or a number of seconds, as whole seconds (at least 1).
fn parse_seconds(s: &str) -> Result<u64, String> {
    let d = crate::parse_duration(s)?;
    if d.subsec_nanos() != 0 || d.as_secs() == 0 {
        return Err(format!("{s:?}: give a whole number of seconds, at least 1"));
    }
    Ok(d.as_secs())
}

/// `holdup wb`: runs one client command.
pub fn run(args: WbArgs) -> Result<()> {
    let server = args
        .server
        .or_else(|| {
            std::env::var("HOLDUP_WB_URL")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    if let WbCmd::Agent(a) = args.cmd {
        let a = agent::AgentArgs {
            ca_file: a.ca_file.or(args.ca_file),
            ..a
        };
        return agent::agent_main(a, server);
    }
    let token = args
        .token
        .or_else(|| std::env::var("HOLDUP_WB_TOKEN").ok())
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            anyhow!("no workbench API token: set HOLDUP_WB_TOKEN or pass --token TOKEN (an admin creates users and their tokens with `holdup wb users create NAME ROLE`)")
        })?;
    let tls = TlsOptions {
        ca_file: args.ca_file,
    };
    let c = Client::new(&server, &token, &tls)?;
    let json = args.json;
    match args.cmd {
        WbCmd::Whoami => people::whoami(&c, json),
        WbCmd::Agent(_) => unreachable!("handled above"),
        WbCmd::Agents { cmd: None } => agent::list(&c, json),
        WbCmd::Agents {
            cmd: Some(AgentsCmd::Create { host }),
        } => agent::issue(&c, json, &host, false),
        WbCmd::Agents {
            cmd: Some(AgentsCmd::Rotate { host }),
        } => agent::issue(&c, json, &host, true),
        WbCmd::Agents {
            cmd: Some(AgentsCmd::Revoke { host }),
        } => agent::revoke(&c, json, &host),
        WbCmd::Users { cmd: None } => people::users(&c, json),
        WbCmd::Users {
            cmd: Some(UsersCmd::Create { name, role }),
        } => people::create_user(&c, json, &name, &role),
        WbCmd::Users {
            cmd: Some(UsersCmd::Rotate { name }),
        } => people::rotate_token(&c, json, &name),
        WbCmd::Users {
            cmd: Some(UsersCmd::Role { name, role }),
        } => people::update_user(
            &c,
            json,
            &name,
            UserChange {
                role: Some(role),
                disabled: None,
            },
        ),
        WbCmd::Users {
            cmd: Some(UsersCmd::Disable { name }),
        } => people::set_disabled(&c, json, &name, true),
        WbCmd::Users {
            cmd: Some(UsersCmd::Enable { name }),
        } => people::set_disabled(&c, json, &name, false),
        WbCmd::Incidents => people::incidents(&c, json),
        WbCmd::Incident {
            cmd:
                IncidentCmd::Create {
                    title,
                    service,
                    host,
                    notes,
                },
        } => people::create_incident(&c, json, &title, &service, &host, &notes),
        WbCmd::Incident {
            cmd:
                IncidentCmd::Update {
                    id,
                    title,
                    service,
                    host,
                    notes,
                },
        } => people::update_incident(&c, json, id, [title, service, host, notes]),
        WbCmd::Incident {
            cmd: IncidentCmd::Show { id },
        } => people::show_incident(&c, json, id),
        WbCmd::Incident {
            cmd: IncidentCmd::Artifact { id, name, output },
        } => people::artifact(&c, id, &name, output),
        WbCmd::Incident {
            cmd: IncidentCmd::Note { id, text },
        } => people::add_note(&c, json, id, text),
        WbCmd::Incident {
            cmd: IncidentCmd::Diagnose { id, name },
        } => people::diagnose(&c, json, id, &name),
        WbCmd::Catalog => probes::catalog(&c, json),
        WbCmd::Submit { name, file } => probes::submit(&c, json, &name, &file),
        WbCmd::Request {
            probe,
            purpose,
            duration,
            pid,
            cgroup,
            host,
            incident,
        } => probes::request(
            &c,
            json,
            probes::RequestArgs {
                probe,
                purpose,
                duration_s: duration,
                pid,
                cgroup,
                host,
                incident,
            },
        ),
        WbCmd::Requests { pending } => probes::requests(&c, json, pending),
        WbCmd::Approve { id, comment } => probes::decide(&c, json, id, true, &comment),
        WbCmd::Reject { id, comment } => probes::decide(&c, json, id, false, &comment),
        WbCmd::Run { id, wait } => runs::start_run(&c, json, id, wait),
        WbCmd::Runs {
            incident,
            limit,
            cmd: None,
        } => runs::runs(&c, json, incident, limit),
        WbCmd::Runs {
            cmd: Some(RunsCmd::Show { id }),
            ..
        } => runs::show_run(&c, json, id),
        WbCmd::Runs {
            cmd: Some(RunsCmd::Stop { id }),
            ..
        } => runs::stop_run(&c, json, id),
        WbCmd::Audit {
            after,
            limit,
            cmd: None,
        } => runs::audit(&c, json, after, limit),
        WbCmd::Audit {
            cmd: Some(AuditCmd::Verify),
            ..
        } => runs::audit_verify(&c, json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_whole_seconds() {
        assert_eq!(parse_seconds("30s"), Ok(30));
        assert_eq!(parse_seconds("2m"), Ok(120));
        assert_eq!(parse_seconds("7"), Ok(7));
        assert!(parse_seconds("500ms").is_err());
        assert!(parse_seconds("0").is_err());
    }
}
