//! `holdup wb catalog|submit|request|requests|approve|reject`: what can be
//! probed, scripts and their checks, requests and decisions.

use super::client::{decode, reason, server_error, Client, Method};
use super::show::{opt, out, print_json, short, table};
use anyhow::{bail, Context, Result};
use holdup_wb_api::{
    Catalog, Decision, NewScript, ProbeRequest, RequestInput, RequestStatus, ScriptAnswer,
    ScriptStatus, TargetKind,
};

pub(crate) fn catalog(c: &Client, json: bool) -> Result<()> {
    let cat: Catalog = c.get("/api/catalog")?;
    if json {
        return print_json(&cat);
    }
    let mut rows: Vec<Vec<String>> = cat
        .builtin
        .into_iter()
        .map(|b| {
            vec![
                b.name,
                b.overhead.as_str().into(),
                short(&b.description, 80),
            ]
        })
        .collect();
    rows.extend(cat.scripts.into_iter().map(|s| {
        vec![
            s.probe,
            s.overhead.as_str().into(),
            format!(
                "script {} by {} (sha256 {})",
                s.name,
                s.submitted_by,
                short(&s.sha256, 13)
            ),
        ]
    }));
    out(&table(&["PROBE", "OVERHEAD", "WHAT"], &rows))
}

pub(crate) fn submit(c: &Client, json: bool, name: &str, file: &std::path::Path) -> Result<()> {
    let body = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the script {}", file.display()))?;
    let script = NewScript {
        name: name.into(),
        body,
    };
    let (status, data) = c.call(Method::Post, "/api/scripts", Some(&script))?;
    // 422: stored, but refused by the checks; the body is the script with its report.
    if !(200..300).contains(&status) && status != 422 {
        return Err(server_error(status, &data));
    }
    let v: ScriptAnswer = decode(&data)?;
    if json {
        print_json(&v)?;
    } else {
        out(&script_report(&v))?;
    }
    if status == 422 || v.script.status != ScriptStatus::Accepted {
        let problems = &v.script.report.problems;
        bail!(
            "script {} refused by the static checks: {} (HTTP {status} {})",
            v.script.id,
            if problems.is_empty() {
                opt(&v.error)
            } else {
                problems.join("; ")
            },
            reason(status)
        );
    }
    Ok(())
}

fn script_report(v: &ScriptAnswer) -> String {
    let (sc, r) = (&v.script, &v.script.report);
    let mut s = format!(
        "script {} {:?}: {} (sha256 {})\n",
        sc.id, sc.name, sc.status, sc.sha256
    );
    s += &format!("  attach points: {}\n", r.attach_points.join(", "));
    for (point, count) in &r.wildcards {
        s += &format!("  wildcard {point} expands to {} probes\n", opt(count));
    }
    if !r.unsafe_builtins.is_empty() {
        s += &format!("  unsafe builtins: {}\n", r.unsafe_builtins.join(", "));
    }
    s += &format!("  parse: {}\n", super::show::text(&r.parse));
    if r.problems.is_empty() {
        s += "  problems: none\n";
    } else {
        s += "  problems:\n";
        for p in &r.problems {
            s += &format!("    - {p}\n");
        }
    }
    if sc.status == ScriptStatus::Accepted {
        s += &format!(
            "request it with: holdup wb request script:{} --purpose ... --duration 30s\n",
            sc.id
        );
    }
    s
}

/// This host's name.
pub(crate) fn hostname() -> String {
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

/// What `holdup wb request` asks for.
pub(crate) struct RequestArgs {
    pub probe: String,
    pub purpose: String,
    pub duration_s: u64,
    pub pid: Option<u32>,
    pub cgroup: Option<String>,
    pub host: Option<String>,
    pub incident: Option<i64>,
}

pub(crate) fn request(c: &Client, json: bool, a: RequestArgs) -> Result<()> {
    let (target_kind, target) = match (a.pid, a.cgroup) {
        (Some(p), _) => (TargetKind::Pid, p.to_string()),
        (None, Some(cg)) => (TargetKind::Cgroup, cg),
        (None, None) => (TargetKind::Host, String::new()),
    };
    let body = RequestInput {
        probe: a.probe,
        target_kind,
        target,
        host: a.host.unwrap_or_else(hostname),
        duration_s: a.duration_s,
        purpose: a.purpose,
        incident_id: a.incident,
    };
    let r: ProbeRequest = c.post("/api/requests", &body)?;
    if json {
        return print_json(&r);
    }
    let id = r.id;
    let what = format!(
        "request {id}: {} on {}{} for {} s",
        r.input.probe,
        opt(&Some(&r.input.host)),
        match r.input.target_kind {
            TargetKind::Host => String::new(),
            k => format!(" ({k} {})", opt(&Some(&r.input.target))),
        },
        r.input.duration_s
    );
    let status = match r.status {
        RequestStatus::Approved if r.decided_by.is_none() => {
            format!("approved by policy; start it with `holdup wb run {id}`")
        }
        RequestStatus::Pending => format!(
            "pending approval: an approver other than you must run `holdup wb approve {id}`"
        ),
        s => s.to_string(),
    };
    out(&format!("{what}\n{status}\n"))
}

pub(crate) fn requests(c: &Client, json: bool, pending: bool) -> Result<()> {
    let all: Vec<ProbeRequest> = c.get("/api/requests")?;
    let items: Vec<ProbeRequest> = all
        .into_iter()
        .filter(|r| !pending || r.status == RequestStatus::Pending)
        .collect();
    if json {
        return print_json(&items);
    }
    let rows: Vec<Vec<String>> = items
        .into_iter()
        .map(|r| {
            let target = match r.input.target_kind {
                TargetKind::Host => "host".to_string(),
                k => format!("{k} {}", opt(&Some(&r.input.target))),
            };
            vec![
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
            ]
        })
        .collect();
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

/// Approves (`approve`) or rejects a request.
pub(crate) fn decide(c: &Client, json: bool, id: i64, approve: bool, comment: &str) -> Result<()> {
    let verb = if approve { "approve" } else { "reject" };
    let body = Decision {
        comment: comment.into(),
        grant: Default::default(),
    };
    let r: ProbeRequest = c.post(&format!("/api/requests/{id}/{verb}"), &body)?;
    if json {
        return print_json(&r);
    }
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
