//! `holdup wb`: the command-line client of the workbench HTTP API
//! (docs/WORKBENCH.md): incidents, scripts, requests and approval, runs and
//! the audit log, as tables or (`--json`) the server's JSON.
//!
//! Why this file is long: one small function per subcommand, each with its
//! table or text; requests and runs are read into `holdup-wb-api`'s types,
//! the rest still index the JSON (moving them is issue 10's remainder).

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use holdup_wb_api::{ProbeRequest, RequestStatus, Run, RunStatus};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

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
        WorkbenchCmd::Serve { db, policy, listen } => {
            holdup_workbench::api::serve_blocking(&db, policy.as_deref(), listen)
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
/// How often `run --wait` asks for the run's status.
const POLL: Duration = Duration::from_millis(500);

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
    #[command(subcommand)]
    cmd: WbCmd,
}

#[derive(Subcommand)]
enum WbCmd {
    /// Who the token belongs to, and its role.
    Whoami,
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

/// The API client: base URL, token, agent.
struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

enum Method {
    Get,
    Post,
    Put,
}

impl Client {
    fn new(server: String, token: String) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            // Script checks run bpftrace (30 s per call) before answering.
            .timeout_global(Some(Duration::from_secs(300)))
            .build();
        Client {
            base: server.trim_end_matches('/').to_string(),
            token,
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// One request: the HTTP status and the raw body.
    fn raw(&self, method: Method, path: &str, body: Option<&Value>) -> Result<(u16, Vec<u8>)> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let res = match method {
            Method::Get => self.agent.get(&url).header("Authorization", &auth).call(),
            Method::Post | Method::Put => {
                let b = match method {
                    Method::Post => self.agent.post(&url),
                    _ => self.agent.put(&url),
                }
                .header("Authorization", &auth);
                match body {
                    Some(v) => b.send_json(v),
                    None => b.send_empty(),
                }
            }
        };
        let mut resp = res.map_err(|e| self.transport_error(&url, e))?;
        let status = resp.status().as_u16();
        let data = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .with_context(|| format!("reading the answer of {url}"))?;
        Ok((status, data))
    }

    fn transport_error(&self, url: &str, e: ureq::Error) -> anyhow::Error {
        let refused = matches!(&e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused)
            || matches!(e, ureq::Error::ConnectionFailed);
        if refused {
            anyhow!(
                "cannot connect to the workbench at {url}: {e}; the server may not be running (start it with `holdup workbench serve`), or set HOLDUP_WB_URL / --server to its address"
            )
        } else {
            anyhow!(
                "request to the workbench at {url} failed: {e}; is the server running (`holdup workbench serve`) and HOLDUP_WB_URL / --server right?"
            )
        }
    }

    /// One request whose answer is JSON: the status and the value.
    fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let (status, data) = self.raw(method, path, body)?;
        let v = if data.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&data).unwrap_or_else(|_| {
                // Not JSON (a proxy's error page, say): keep the text.
                json!({"error": String::from_utf8_lossy(&data).trim().to_string()})
            })
        };
        Ok((status, v))
    }

    /// A 2xx answer's JSON, or an error with the server's message.
    fn ok(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let (status, v) = self.call(method, path, body)?;
        if (200..300).contains(&status) {
            Ok(v)
        } else {
            Err(server_error(status, &v))
        }
    }

    fn get(&self, path: &str) -> Result<Value> {
        self.ok(Method::Get, path, None)
    }

    fn post(&self, path: &str, body: Option<&Value>) -> Result<Value> {
        self.ok(Method::Post, path, body)
    }

    fn put(&self, path: &str, body: &Value) -> Result<Value> {
        self.ok(Method::Put, path, Some(body))
    }
}

/// The server's `{"error": ...}` with the HTTP status.
fn server_error(status: u16, v: &Value) -> anyhow::Error {
    let msg = match v.get("error") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => v.to_string(),
    };
    anyhow!("{msg} (HTTP {status} {})", reason(status))
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

pub fn run(args: WbArgs) -> Result<()> {
    let server = args
        .server
        .or_else(|| {
            std::env::var("HOLDUP_WB_URL")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    let token = args
        .token
        .or_else(|| std::env::var("HOLDUP_WB_TOKEN").ok())
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            anyhow!("no workbench API token: set HOLDUP_WB_TOKEN or pass --token TOKEN (an admin creates users and their tokens with `holdup wb users create NAME ROLE`)")
        })?;
    let c = Client::new(server, token.trim().to_string());
    let json = args.json;
    match args.cmd {
        WbCmd::Whoami => whoami(&c, json),
        WbCmd::Users { cmd: None } => users(&c, json),
        WbCmd::Users {
            cmd: Some(UsersCmd::Create { name, role }),
        } => create_user(&c, json, &name, &role),
        WbCmd::Users {
            cmd: Some(UsersCmd::Rotate { name }),
        } => {
            let v = c.post(&format!("/api/users/{name}/token"), None)?;
            if json {
                return print_json(&v);
            }
            out(&format!(
                "new API token for {name} (the old one no longer works; shown only now):\n{}\n",
                txt(&v["token"])
            ))
        }
        WbCmd::Users {
            cmd: Some(UsersCmd::Role { name, role }),
        } => update_user(&c, json, &name, json!({"role": role})),
        WbCmd::Users {
            cmd: Some(UsersCmd::Disable { name }),
        } => update_user(&c, json, &name, json!({"disabled": true})),
        WbCmd::Users {
            cmd: Some(UsersCmd::Enable { name }),
        } => update_user(&c, json, &name, json!({"disabled": false})),
        WbCmd::Incidents => incidents(&c, json),
        WbCmd::Incident {
            cmd:
                IncidentCmd::Create {
                    title,
                    service,
                    host,
                    notes,
                },
        } => create_incident(&c, json, &title, &service, &host, &notes),
        WbCmd::Incident {
            cmd:
                IncidentCmd::Update {
                    id,
                    title,
                    service,
                    host,
                    notes,
                },
        } => update_incident(&c, json, id, [title, service, host, notes]),
        WbCmd::Incident {
            cmd: IncidentCmd::Show { id },
        } => show_incident(&c, json, id),
        WbCmd::Incident {
            cmd: IncidentCmd::Artifact { id, name, output },
        } => artifact(&c, id, &name, output),
        WbCmd::Incident {
            cmd: IncidentCmd::Note { id, text },
        } => {
            let v = c.post(
                &format!("/api/incidents/{id}/notes"),
                Some(&json!({"text": text})),
            )?;
            if json {
                return print_json(&v);
            }
            out(&format!(
                "incident {id}: {} notes on the timeline\n",
                list(&v["timeline"]).len()
            ))
        }
        WbCmd::Incident {
            cmd: IncidentCmd::Diagnose { id, name },
        } => {
            let v = c.post(
                &format!("/api/incidents/{id}/artifacts/{name}/diagnose"),
                None,
            )?;
            if json {
                return print_json(&v);
            }
            out(&format!(
                "{}\n(attached to incident {id} as {})\n",
                txt(&v["text"]).trim_end(),
                txt(&v["artifact"])
            ))
        }
        WbCmd::Catalog => catalog(&c, json),
        WbCmd::Submit { name, file } => submit(&c, json, &name, &file),
        WbCmd::Request {
            probe,
            purpose,
            duration,
            pid,
            cgroup,
            host,
            incident,
        } => request(
            &c, json, &probe, &purpose, duration, pid, cgroup, host, incident,
        ),
        WbCmd::Requests { pending } => requests(&c, json, pending),
        WbCmd::Approve { id, comment } => decide(&c, json, id, "approve", &comment),
        WbCmd::Reject { id, comment } => decide(&c, json, id, "reject", &comment),
        WbCmd::Run { id, wait } => start_run(&c, json, id, wait),
        WbCmd::Runs {
            incident,
            limit,
            cmd: None,
        } => runs(&c, json, incident, limit),
        WbCmd::Runs {
            cmd: Some(RunsCmd::Show { id }),
            ..
        } => show_run(&c, json, id),
        WbCmd::Runs {
            cmd: Some(RunsCmd::Stop { id }),
            ..
        } => stop_run(&c, json, id),
        WbCmd::Audit {
            after,
            limit,
            cmd: None,
        } => audit(&c, json, after, limit),
        WbCmd::Audit {
            cmd: Some(AuditCmd::Verify),
            ..
        } => audit_verify(&c, json),
    }
}

// ---- output helpers ----

fn print_json(v: &Value) -> Result<()> {
    out(&format!("{}\n", serde_json::to_string_pretty(v)?))
}

/// Writes to stdout; a reader that went away is not an error. Control
/// characters other than newline and tab are shown escaped (`\u{1b}`):
/// incident fields and run outputs come from other users, and a raw escape
/// sequence would act on the reader's terminal.
fn out(text: &str) -> Result<()> {
    let safe = terminal_safe(text);
    let mut o = std::io::stdout().lock();
    crate::quiet_on_closed_pipe(o.write_all(safe.as_bytes()).and_then(|()| o.flush()))
}

/// `text` with control characters (but newline and tab) escaped.
fn terminal_safe(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            s.extend(c.escape_unicode());
        } else {
            s.push(c);
        }
    }
    s
}

/// The server's JSON as one of the API's types.
fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T> {
    serde_json::from_value(v.clone())
        .map_err(|e| anyhow!("the server's answer is not what this holdup expects ({e}): {v}"))
}

/// An optional field as display text ("-" when absent or empty).
fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    match v {
        Some(x) => {
            let s = x.to_string();
            if s.is_empty() {
                "-".into()
            } else {
                s
            }
        }
        None => "-".into(),
    }
}

/// Unix seconds (or none) as a UTC date.
fn at(t: Option<i64>) -> String {
    time(&json!(t))
}

/// A field as display text: strings bare, null as "-", the rest as JSON.
fn txt(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// At most `max` characters, on one line.
fn short(s: &str, max: usize) -> String {
    holdup_format::one_line(s, max)
}

/// Unix seconds as a UTC date and time.
fn time(v: &Value) -> String {
    v.as_i64().map_or_else(|| "-".into(), holdup_format::utc_s)
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = holdup_format::table(headers, &[]);
    for r in rows {
        t.add_row(r);
    }
    holdup_format::indented(&t, 0)
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

// ---- one function per command ----

fn whoami(c: &Client, json: bool) -> Result<()> {
    let u = c.get("/api/whoami")?;
    if json {
        return print_json(&u);
    }
    out(&format!(
        "{} (role {}, user id {})\n",
        txt(&u["name"]),
        txt(&u["role"]),
        txt(&u["id"])
    ))
}

fn users(c: &Client, json: bool) -> Result<()> {
    let v = c.get("/api/users")?;
    if json {
        return print_json(&v);
    }
    let rows: Vec<Vec<String>> = list(&v)
        .iter()
        .map(|u| {
            let state = if u["disabled"] == true {
                "disabled"
            } else {
                ""
            };
            vec![
                txt(&u["id"]),
                txt(&u["name"]),
                txt(&u["role"]),
                state.into(),
            ]
        })
        .collect();
    out(&table(&["ID", "NAME", "ROLE", "STATE"], &rows))
}

fn update_user(c: &Client, json: bool, name: &str, change: Value) -> Result<()> {
    let v = c.put(&format!("/api/users/{name}"), &change)?;
    if json {
        return print_json(&v);
    }
    out(&format!(
        "{}: role {}, {}\n",
        txt(&v["name"]),
        txt(&v["role"]),
        if v["disabled"] == true {
            "disabled"
        } else {
            "enabled"
        }
    ))
}

fn create_user(c: &Client, json: bool, name: &str, role: &str) -> Result<()> {
    let v = c.post("/api/users", Some(&json!({"name": name, "role": role})))?;
    if json {
        return print_json(&v);
    }
    out(&format!(
        "created user {} (role {}); its API token, shown only now:\n{}\n",
        txt(&v["user"]["name"]),
        txt(&v["user"]["role"]),
        txt(&v["token"])
    ))
}

fn incidents(c: &Client, json: bool) -> Result<()> {
    let v = c.get("/api/incidents")?;
    if json {
        return print_json(&v);
    }
    let rows: Vec<Vec<String>> = list(&v)
        .iter()
        .map(|i| {
            vec![
                txt(&i["id"]),
                time(&i["created"]),
                txt(&i["created_by"]),
                txt(&i["service"]),
                txt(&i["host"]),
                list(&i["artifacts"]).len().to_string(),
                short(&txt(&i["title"]), 60),
            ]
        })
        .collect();
    out(&table(
        &[
            "ID",
            "CREATED (UTC)",
            "BY",
            "SERVICE",
            "HOST",
            "ARTIFACTS",
            "TITLE",
        ],
        &rows,
    ))
}

fn create_incident(
    c: &Client,
    json: bool,
    title: &str,
    service: &str,
    host: &str,
    notes: &str,
) -> Result<()> {
    let v = c.post(
        "/api/incidents",
        Some(&json!({"title": title, "service": service, "host": host, "notes": notes})),
    )?;
    if json {
        return print_json(&v);
    }
    out(&format!(
        "incident {} created: {}\n",
        txt(&v["id"]),
        txt(&v["title"])
    ))
}

/// New values for title, service, host and notes; `None` keeps the old one.
fn update_incident(c: &Client, json: bool, id: i64, new: [Option<String>; 4]) -> Result<()> {
    let mut inc = c.get(&format!("/api/incidents/{id}"))?;
    for (key, value) in ["title", "service", "host", "notes"].into_iter().zip(new) {
        if let Some(v) = value {
            inc[key] = json!(v);
        }
    }
    let body = json!({
        "title": inc["title"], "service": inc["service"], "host": inc["host"],
        "start_time": inc["start_time"], "end_time": inc["end_time"], "notes": inc["notes"],
    });
    let v = c.put(&format!("/api/incidents/{id}"), &body)?;
    if json {
        return print_json(&v);
    }
    out(&format!("incident {id} updated: {}\n", txt(&v["title"])))
}

fn show_incident(c: &Client, json: bool, id: i64) -> Result<()> {
    let inc = c.get(&format!("/api/incidents/{id}"))?;
    let runs = c.get(&format!("/api/runs?incident={id}&limit=1000"))?;
    if json {
        return print_json(&json!({"incident": inc, "runs": runs}));
    }
    let mut s = format!("incident {}: {}\n", txt(&inc["id"]), txt(&inc["title"]));
    for (label, key) in [
        ("service", "service"),
        ("host", "host"),
        ("created by", "created_by"),
    ] {
        s += &format!("  {label:<11} {}\n", txt(&inc[key]));
    }
    s += &format!("  {:<11} {} UTC\n", "created", time(&inc["created"]));
    for (label, key) in [("start", "start_time"), ("end", "end_time")] {
        if !inc[key].is_null() {
            s += &format!("  {label:<11} {} UTC\n", time(&inc[key]));
        }
    }
    if let Some(n) = inc["notes"].as_str().filter(|n| !n.is_empty()) {
        s += &format!("  notes:\n    {}\n", n.replace('\n', "\n    "));
    }
    let timeline = list(&inc["timeline"]);
    if !timeline.is_empty() {
        s += "\ntimeline:\n";
        for n in timeline {
            s += &format!(
                "  {} UTC {}: {}\n",
                time(&n["created"]),
                txt(&n["author"]),
                txt(&n["text"]).replace('\n', "\n    ")
            );
        }
    }
    let arts = list(&inc["artifacts"]);
    s += &format!("\nartifacts ({}):\n", arts.len());
    for a in arts {
        s += &format!("  {}\n", txt(a));
    }
    s += &format!("\nruns ({}):\n", list(&runs).len());
    if !list(&runs).is_empty() {
        s += &runs_table(&runs)?;
    }
    out(&s)
}

fn artifact(c: &Client, id: i64, name: &str, output: Option<PathBuf>) -> Result<()> {
    let path = format!("/api/incidents/{id}/artifacts/{name}");
    let (status, data) = c.raw(Method::Get, &path, None)?;
    if !(200..300).contains(&status) {
        let v = serde_json::from_slice(&data).unwrap_or_else(
            |_| json!({"error": String::from_utf8_lossy(&data).trim().to_string()}),
        );
        return Err(server_error(status, &v));
    }
    match output {
        Some(p) => {
            std::fs::write(&p, &data).with_context(|| format!("writing {}", p.display()))?;
            eprintln!("wrote {} bytes to {}", data.len(), p.display());
            Ok(())
        }
        None => {
            let mut o = std::io::stdout().lock();
            crate::quiet_on_closed_pipe(o.write_all(&data).and_then(|()| o.flush()))
        }
    }
}

fn catalog(c: &Client, json: bool) -> Result<()> {
    let v = c.get("/api/catalog")?;
    if json {
        return print_json(&v);
    }
    let mut rows: Vec<Vec<String>> = list(&v["builtin"])
        .iter()
        .map(|b| {
            vec![
                txt(&b["name"]),
                txt(&b["overhead"]),
                short(&txt(&b["description"]), 80),
            ]
        })
        .collect();
    rows.extend(list(&v["scripts"]).iter().map(|s| {
        vec![
            txt(&s["probe"]),
            txt(&s["overhead"]),
            format!(
                "script {} by {} (sha256 {})",
                txt(&s["name"]),
                txt(&s["submitted_by"]),
                short(&txt(&s["sha256"]), 13)
            ),
        ]
    }));
    out(&table(&["PROBE", "OVERHEAD", "WHAT"], &rows))
}

fn submit(c: &Client, json: bool, name: &str, file: &std::path::Path) -> Result<()> {
    let body = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the script {}", file.display()))?;
    let (status, v) = c.call(
        Method::Post,
        "/api/scripts",
        Some(&json!({"name": name, "body": body})),
    )?;
    // 422: stored, but refused by the checks; the body is the script with its report.
    if !(200..300).contains(&status) && status != 422 {
        return Err(server_error(status, &v));
    }
    if json {
        print_json(&v)?;
    } else {
        out(&script_report(&v))?;
    }
    if status == 422 || v["status"] != "accepted" {
        let problems: Vec<String> = list(&v["report"]["problems"]).iter().map(txt).collect();
        bail!(
            "script {} refused by the static checks: {} (HTTP {status} {})",
            txt(&v["id"]),
            if problems.is_empty() {
                txt(&v["error"])
            } else {
                problems.join("; ")
            },
            reason(status)
        );
    }
    Ok(())
}

fn script_report(v: &Value) -> String {
    let r = &v["report"];
    let mut s = format!(
        "script {} {:?}: {} (sha256 {})\n",
        txt(&v["id"]),
        txt(&v["name"]),
        txt(&v["status"]),
        txt(&v["sha256"])
    );
    let points: Vec<String> = list(&r["attach_points"]).iter().map(txt).collect();
    s += &format!("  attach points: {}\n", points.join(", "));
    for w in list(&r["wildcards"]) {
        s += &format!(
            "  wildcard {} expands to {} probes\n",
            txt(&w[0]),
            txt(&w[1])
        );
    }
    let unsafe_: Vec<String> = list(&r["unsafe_builtins"]).iter().map(txt).collect();
    if !unsafe_.is_empty() {
        s += &format!("  unsafe builtins: {}\n", unsafe_.join(", "));
    }
    s += &format!("  parse: {}\n", txt(&r["parse"]));
    let problems = list(&r["problems"]);
    if problems.is_empty() {
        s += "  problems: none\n";
    } else {
        s += "  problems:\n";
        for p in problems {
            s += &format!("    - {}\n", txt(p));
        }
    }
    if v["status"] == "accepted" {
        s += &format!(
            "request it with: holdup wb request script:{} --purpose ... --duration 30s\n",
            txt(&v["id"])
        );
    }
    s
}

/// This host's name.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it (or truncates, which the search for NUL below handles).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[allow(clippy::too_many_arguments)]
fn request(
    c: &Client,
    json: bool,
    probe: &str,
    purpose: &str,
    duration_s: u64,
    pid: Option<u32>,
    cgroup: Option<String>,
    host: Option<String>,
    incident: Option<i64>,
) -> Result<()> {
    let (kind, target) = match (pid, cgroup) {
        (Some(p), _) => ("pid", p.to_string()),
        (None, Some(cg)) => ("cgroup", cg),
        (None, None) => ("host", String::new()),
    };
    let body = json!({
        "probe": probe,
        "target_kind": kind,
        "target": target,
        "host": host.unwrap_or_else(hostname),
        "duration_s": duration_s,
        "purpose": purpose,
        "incident_id": incident,
    });
    let v = c.post("/api/requests", Some(&body))?;
    if json {
        return print_json(&v);
    }
    let id = txt(&v["id"]);
    let what = format!(
        "request {id}: {} on {}{} for {} s",
        txt(&v["probe"]),
        txt(&v["host"]),
        match kind {
            "host" => String::new(),
            k => format!(" ({k} {})", txt(&v["target"])),
        },
        txt(&v["duration_s"])
    );
    let status = match v["status"].as_str() {
        Some("approved") if v["decided_by"].is_null() => {
            format!("approved by policy; start it with `holdup wb run {id}`")
        }
        Some("pending") => format!(
            "pending approval: an approver other than you must run `holdup wb approve {id}`"
        ),
        _ => txt(&v["status"]),
    };
    out(&format!("{what}\n{status}\n"))
}

fn requests(c: &Client, json: bool, pending: bool) -> Result<()> {
    let v = c.get("/api/requests")?;
    let items: Vec<&Value> = list(&v)
        .iter()
        .filter(|r| !pending || r["status"] == "pending")
        .collect();
    if json {
        return print_json(&json!(items));
    }
    let rows = items
        .iter()
        .map(|r| {
            let r: ProbeRequest = typed(r)?;
            let target = match r.input.target_kind.as_str() {
                "host" => "host".to_string(),
                k => format!("{k} {}", opt(&Some(&r.input.target))),
            };
            Ok(vec![
                r.id.to_string(),
                r.status.to_string(),
                r.input.probe,
                target,
                opt(&Some(r.input.host)),
                format!("{}s", r.input.duration_s),
                opt(&r.input.incident_id),
                r.requester,
                opt(&r.decided_by),
                short(&opt(&Some(r.input.purpose)), 50),
            ])
        })
        .collect::<Result<Vec<Vec<String>>>>()?;
    out(&table(
        &[
            "ID",
            "STATUS",
            "PROBE",
            "TARGET",
            "HOST",
            "DURATION",
            "INCIDENT",
            "REQUESTER",
            "DECIDED BY",
            "PURPOSE",
        ],
        &rows,
    ))
}

fn decide(c: &Client, json: bool, id: i64, verb: &str, comment: &str) -> Result<()> {
    let v = c.post(
        &format!("/api/requests/{id}/{verb}"),
        Some(&json!({"comment": comment})),
    )?;
    if json {
        return print_json(&v);
    }
    let r: ProbeRequest = typed(&v)?;
    let next = if r.status == RequestStatus::Approved {
        format!("; the requester starts it with `holdup wb run {id}`")
    } else {
        String::new()
    };
    out(&format!(
        "request {id} {} by {}{next}\n",
        r.status,
        opt(&r.decided_by)
    ))
}

fn start_run(c: &Client, json: bool, id: i64, wait: bool) -> Result<()> {
    let v = c.post(&format!("/api/requests/{id}/run"), None)?;
    let run: Run = typed(&v)?;
    let run_id = run.id;
    if !wait {
        if json {
            return print_json(&v);
        }
        return out(&format!(
            "run {run_id} of request {id} started (pid {}, ends by {} UTC); see it with `holdup wb runs show {run_id}`, stop it with `holdup wb runs stop {run_id}`\n",
            opt(&run.pid),
            at(Some(run.deadline))
        ));
    }
    eprintln!(
        "run {run_id} of request {id} started (pid {}, ends by {} UTC); waiting for it to end (Ctrl-C stops waiting, not the run: `holdup wb runs stop {run_id}` stops it)",
        opt(&run.pid),
        at(Some(run.deadline))
    );
    let (v, end) = loop {
        let v = c.get(&format!("/api/runs/{run_id}"))?;
        let r: Run = typed(&v)?;
        if r.status != RunStatus::Running {
            break (v, r);
        }
        std::thread::sleep(POLL);
    };
    if json {
        print_json(&v)?;
    } else {
        out(&run_text(&end))?;
    }
    if end.status == RunStatus::Failed {
        bail!("run {run_id} failed: {}", opt(&end.reason));
    }
    Ok(())
}

fn run_text(r: &Run) -> String {
    let mut s = format!(
        "run {} (request {}, {}): {}\n",
        r.id, r.request_id, r.probe, r.status
    );
    s += &format!("  reason       {}\n", opt(&r.reason));
    s += &format!(
        "  started      {} UTC by {}\n",
        at(Some(r.started_at)),
        r.started_by
    );
    if r.ended_at.is_some() {
        s += &format!("  ended        {} UTC\n", at(r.ended_at));
    }
    s += &format!(
        "  bpf cpu      {}\n",
        r.bpf_cpu_percent
            .map_or("-".into(), |p| format!("{p:.3}% of one CPU"))
    );
    s += &format!("  output       {} bytes\n", r.output_bytes);
    if let Some(a) = &r.artifact {
        s += &format!("  artifact     {a} of incident {}\n", opt(&r.incident_id));
    }
    if let Some(o) = &r.output {
        if !r.probe.starts_with("script:") {
            // A recording (binary): point at the artifact instead.
            s += &match &r.artifact {
                Some(a) => format!(
                    "  (the output is a holdup recording: fetch it with `holdup wb incident artifact {} {a} -o {a}`)\n",
                    opt(&r.incident_id)
                ),
                None => "  (the output is a holdup recording; this run has no incident, so it is not kept as an artifact: request with --incident to fetch it intact)\n".into(),
            };
        } else {
            s += "--- output ---\n";
            s += o;
            if !o.is_empty() && !o.ends_with('\n') {
                s.push('\n');
            }
            if r.output_truncated {
                s += "--- (truncated: the whole output is the run's incident artifact) ---\n";
            }
        }
    }
    s
}

fn runs_table(v: &Value) -> Result<String> {
    let runs: Vec<Run> = typed(v)?;
    let rows: Vec<Vec<String>> = runs
        .into_iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.request_id.to_string(),
                r.probe,
                opt(&r.incident_id),
                r.status.to_string(),
                at(Some(r.started_at)),
                r.started_by,
                r.output_bytes.to_string(),
                r.bpf_cpu_percent.map_or("-".into(), |p| format!("{p:.3}")),
                opt(&r.artifact),
            ]
        })
        .collect();
    Ok(table(
        &[
            "RUN",
            "REQUEST",
            "PROBE",
            "INCIDENT",
            "STATUS",
            "STARTED (UTC)",
            "BY",
            "OUTPUT",
            "BPF CPU%",
            "ARTIFACT",
        ],
        &rows,
    ))
}

fn runs(c: &Client, json: bool, incident: Option<i64>, limit: u32) -> Result<()> {
    let path = match incident {
        Some(i) => format!("/api/runs?incident={i}&limit={limit}"),
        None => format!("/api/runs?limit={limit}"),
    };
    let v = c.get(&path)?;
    if json {
        return print_json(&v);
    }
    out(&runs_table(&v)?)
}

fn show_run(c: &Client, json: bool, id: i64) -> Result<()> {
    let v = c.get(&format!("/api/runs/{id}"))?;
    if json {
        return print_json(&v);
    }
    out(&run_text(&typed(&v)?))
}

fn stop_run(c: &Client, json: bool, id: i64) -> Result<()> {
    c.post(&format!("/api/runs/{id}/stop"), None)?;
    // The watcher records the end once the probe is gone (SIGINT, then
    // SIGKILL after 2 s): wait for it, briefly.
    let started = std::time::Instant::now();
    let (v, run) = loop {
        let v = c.get(&format!("/api/runs/{id}"))?;
        let run: Run = typed(&v)?;
        if run.status != RunStatus::Running || started.elapsed() > Duration::from_secs(10) {
            break (v, run);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if json {
        return print_json(&v);
    }
    out(&format!("run {id}: {}\n", run.status))
}

fn audit(c: &Client, json: bool, after: i64, limit: u32) -> Result<()> {
    let v = c.get(&format!("/api/audit?after={after}&limit={limit}"))?;
    if json {
        return print_json(&v);
    }
    let rows: Vec<Vec<String>> = list(&v)
        .iter()
        .map(|e| {
            vec![
                txt(&e["seq"]),
                time(&e["time"]),
                txt(&e["actor"]),
                txt(&e["action"]),
                short(&e["details"].to_string(), 100),
            ]
        })
        .collect();
    out(&table(
        &["SEQ", "TIME (UTC)", "ACTOR", "ACTION", "DETAILS"],
        &rows,
    ))
}

fn audit_verify(c: &Client, json: bool) -> Result<()> {
    let v = c.get("/api/audit/verify")?;
    if json {
        print_json(&v)?;
    }
    if v["ok"] == true {
        if !json {
            out(&format!(
                "audit log intact: {} entries, head {}\n",
                txt(&v["entries"]),
                txt(&v["head_hash"])
            ))?;
        }
        Ok(())
    } else {
        bail!(
            "audit log broken at entry {}: {}",
            txt(&v["bad_seq"]),
            txt(&v["reason"])
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(&json!(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(&json!(951_782_400)), "2000-02-29 00:00:00 UTC");
        assert_eq!(time(&json!(1_700_000_000)), "2023-11-14 22:13:20 UTC");
        assert_eq!(time(&Value::Null), "-");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["ID", "NAME"],
            &[
                vec!["1".into(), "a".into()],
                vec!["100".into(), "bb".into()],
            ],
        );
        assert_eq!(t, "ID   NAME\n1    a\n100  bb\n");
    }

    #[test]
    fn escape_sequences_from_the_server_are_shown_not_obeyed() {
        // an incident title that would clear the screen and retitle the terminal
        let evil = "redis slow\u{1b}[2J\u{1b}]0;pwned\u{7}\tok\n";
        let shown = terminal_safe(evil);
        assert!(
            !shown.chars().any(|c| c == '\u{1b}' || c == '\u{7}'),
            "{shown:?}"
        );
        assert_eq!(shown, "redis slow\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\tok\n");
    }

    #[test]
    fn durations_are_whole_seconds() {
        assert_eq!(parse_seconds("30s"), Ok(30));
        assert_eq!(parse_seconds("2m"), Ok(120));
        assert_eq!(parse_seconds("7"), Ok(7));
        assert!(parse_seconds("500ms").is_err());
        assert!(parse_seconds("0").is_err());
    }
}
