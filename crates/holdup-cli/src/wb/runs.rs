//! `holdup wb run|runs|audit`: starting, following and stopping runs, and
//! the audit log.

use super::client::Client;
use super::show::{at, opt, out, print_json, short, table};
use anyhow::{bail, Result};
use holdup_wb_api::{AuditEntry, Run, RunStatus, VerifyReport};
use std::time::Duration;

/// How often `run --wait` asks for the run's status.
const POLL: Duration = Duration::from_millis(500);

pub(crate) fn start_run(c: &Client, json: bool, id: i64, wait: bool) -> Result<()> {
    let run: Run = c.post_empty(&format!("/api/requests/{id}/run"))?;
    let run_id = run.id;
    if !wait {
        if json {
            return print_json(&run);
        }
        return out(&format!(
            "run {run_id} of request {id} started (pid {}, ends by {}); see it with `holdup wb runs show {run_id}`, stop it with `holdup wb runs stop {run_id}`\n",
            opt(&run.pid),
            at(Some(run.deadline))
        ));
    }
    eprintln!(
        "run {run_id} of request {id} started (pid {}, ends by {}); waiting for it to end (Ctrl-C stops waiting, not the run: `holdup wb runs stop {run_id}` stops it)",
        opt(&run.pid),
        at(Some(run.deadline))
    );
    let end = loop {
        let r: Run = c.get(&format!("/api/runs/{run_id}"))?;
        if r.ended() {
            break r;
        }
        std::thread::sleep(POLL);
    };
    if json {
        print_json(&end)?;
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
        "  started      {} by {}\n",
        at(Some(r.started_at)),
        r.started_by
    );
    if r.ended_at.is_some() {
        s += &format!("  ended        {}\n", at(r.ended_at));
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

pub(crate) fn runs_table(runs: Vec<Run>) -> String {
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
    table(
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
    )
}

pub(crate) fn runs(c: &Client, json: bool, incident: Option<i64>, limit: u32) -> Result<()> {
    let path = match incident {
        Some(i) => format!("/api/runs?incident={i}&limit={limit}"),
        None => format!("/api/runs?limit={limit}"),
    };
    let runs: Vec<Run> = c.get(&path)?;
    if json {
        return print_json(&runs);
    }
    out(&runs_table(runs))
}

pub(crate) fn show_run(c: &Client, json: bool, id: i64) -> Result<()> {
    let run: Run = c.get(&format!("/api/runs/{id}"))?;
    if json {
        return print_json(&run);
    }
    out(&run_text(&run))
}

pub(crate) fn stop_run(c: &Client, json: bool, id: i64) -> Result<()> {
    let _: Run = c.post_empty(&format!("/api/runs/{id}/stop"))?;
    // The watcher records the end once the probe is gone (SIGINT, then
    // SIGKILL after 2 s): wait for it, briefly.
    let started = std::time::Instant::now();
    let run = loop {
        let run: Run = c.get(&format!("/api/runs/{id}"))?;
        if run.ended() || started.elapsed() > Duration::from_secs(10) {
            break run;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if json {
        return print_json(&run);
    }
    out(&format!("run {id}: {}\n", run.status))
}

pub(crate) fn audit(c: &Client, json: bool, after: i64, limit: u32) -> Result<()> {
    let entries: Vec<AuditEntry> = c.get(&format!("/api/audit?after={after}&limit={limit}"))?;
    if json {
        return print_json(&entries);
    }
    let rows: Vec<Vec<String>> = entries
        .into_iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                at(Some(e.time)),
                e.actor,
                e.action,
                short(&e.details.to_string(), 100),
            ]
        })
        .collect();
    out(&table(
        &["SEQ", "TIME (UTC)", "ACTOR", "ACTION", "DETAILS"],
        &rows,
    ))
}

pub(crate) fn audit_verify(c: &Client, json: bool) -> Result<()> {
    let v: VerifyReport = c.get("/api/audit/verify")?;
    if json {
        print_json(&v)?;
    }
    if v.ok {
        if !json {
            out(&format!(
                "audit log intact: {} entries, head {}\n",
                v.entries, v.head_hash
            ))?;
        }
        Ok(())
    } else {
        bail!(
            "audit log broken at entry {}: {}",
            opt(&v.bad_seq),
            opt(&v.reason)
        )
    }
}
