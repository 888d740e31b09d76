//! Runs: approved requests executed on this host, bounded in time and
//! output; runs left `running` by a killed server are interrupted at restart.
//! Tests that run bpftrace need root (skipped otherwise, failing with CI=true).

use axum::http::{Method, StatusCode};
use holdup_workbench::{policy::Policy, runs, Workbench};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

mod common;
use common::*;

fn start(tmp: &Tmp, policy: Policy) -> Wb {
    start_with(tmp, policy)
}

/// Submits `body`, requests it for `duration_s` on the host, has another
/// user approve it; returns (requester token, request id).
async fn approved_script(wb: &Wb, body: &str, duration_s: u64) -> (String, i64) {
    approved_script_for(wb, body, duration_s, None).await
}

/// [`approved_script`] for an incident.
async fn approved_script_for(
    wb: &Wb,
    body: &str,
    duration_s: u64,
    incident: Option<i64>,
) -> (String, i64) {
    let req = user(wb, "rita", "requester").await;
    let appr = user(wb, "amos", "approver").await;
    let (s, sc) = call_as(
        &wb.app,
        Method::POST,
        "/api/scripts",
        &req,
        Some(json!({"name": "t.bt", "body": body})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{sc}");
    let sid = sc["id"].as_i64().unwrap();
    let (s, r) = call_as(
        &wb.app,
        Method::POST,
        "/api/requests",
        &req,
        Some(json!({"probe": format!("script:{sid}"), "target_kind": "host", "target": "", "host": "localhost", "duration_s": duration_s, "purpose": "test", "incident_id": incident})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let rid = r["id"].as_i64().unwrap();
    let (s, v) = call_as(
        &wb.app,
        Method::POST,
        &format!("/api/requests/{rid}/approve"),
        &appr,
        Some(json!({"comment": "ok"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    (req, rid)
}

/// Starts a run and waits (at most `limit`) until it is no longer running.
async fn run_to_end(wb: &Wb, token: &str, rid: i64, limit: Duration) -> (Value, Duration) {
    let t0 = Instant::now();
    let (s, run) = call_as(
        &wb.app,
        Method::POST,
        &format!("/api/requests/{rid}/run"),
        token,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{run}");
    assert_eq!(run["status"], "running", "{run}");
    let id = run["id"].as_i64().unwrap();
    loop {
        let (s, v) = call_as(
            &wb.app,
            Method::GET,
            &format!("/api/runs/{id}"),
            token,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if v["status"] != "running" {
            return (v, t0.elapsed());
        }
        assert!(
            t0.elapsed() < limit,
            "run {id} still running after {limit:?}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// BPF tests hold the testkit's (synchronous) serial lock outside the runtime.
fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn verify(wb: &Wb) {
    let (s, v) = call_as(&wb.app, Method::GET, "/api/audit/verify", &wb.admin, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["ok"], true, "{v}");
}

async fn audit_actions(wb: &Wb) -> Vec<String> {
    let (_, v) = call_as(
        &wb.app,
        Method::GET,
        "/api/audit?limit=1000",
        &wb.admin,
        None,
    )
    .await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

const FOREVER: &str = "interval:ms:100 { printf(\"{\\\"tick\\\": %d}\\n\", 1); }\n";
const CHATTY: &str = "interval:ms:10 { printf(\"{\\\"tick\\\": %d}\\n\", 1); }\n";

#[test]
fn endless_script_stopped_at_approved_duration() {
    let Some(_g) = holdup_testkit::bpf_setup("endless_script_stopped_at_approved_duration") else {
        return;
    };
    rt().block_on(async {
        let tmp = Tmp::new("duration");
        let wb = start(&tmp, Policy::default());
        let (tok, rid) = approved_script(&wb, FOREVER, 2).await;
        let (run, took) = run_to_end(&wb, &tok, rid, Duration::from_secs(20)).await;
        assert_eq!(run["status"], "stopped_duration", "{run}");
        assert!(run["ended_at"].as_i64().is_some(), "{run}");
        assert!(took < Duration::from_secs(6), "took {took:?}: {run}");
        assert!(run["output"].as_str().unwrap().contains("tick"), "{run}");
        assert_eq!(
            run["deadline"].as_i64().unwrap(),
            run["started_at"].as_i64().unwrap() + 2
        );
        let (s, list) = call_as(
            &wb.app,
            Method::GET,
            &format!("/api/requests/{rid}/runs"),
            &tok,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        let actions = audit_actions(&wb).await;
        assert!(actions.contains(&"run.started".to_string()), "{actions:?}");
        assert!(actions.contains(&"run.stopped".to_string()), "{actions:?}");
        verify(&wb).await;
    });
}

#[test]
fn chatty_script_stopped_at_max_output_bytes() {
    let Some(_g) = holdup_testkit::bpf_setup("chatty_script_stopped_at_max_output_bytes") else {
        return;
    };
    rt().block_on(async {
        let tmp = Tmp::new("output");
        let policy = Policy {
            max_output_bytes: 300,
            ..Policy::default()
        };
        let wb = start(&tmp, policy);
        let (tok, rid) = approved_script(&wb, CHATTY, 30).await;
        let (run, took) = run_to_end(&wb, &tok, rid, Duration::from_secs(20)).await;
        assert_eq!(run["status"], "stopped_output", "{run}");
        assert_eq!(run["output_bytes"], 300, "{run}");
        assert!(took < Duration::from_secs(15), "took {took:?}");
        verify(&wb).await;
    });
}

#[tokio::test]
async fn unapproved_request_is_refused() {
    let tmp = Tmp::new("unapproved");
    let wb = start(&tmp, Policy::default());
    let req = user(&wb, "rita", "requester").await;
    // holdup-full is not auto-approved: the request stays pending
    let (s, r) = call_as(
        &wb.app,
        Method::POST,
        "/api/requests",
        &req,
        Some(json!({"probe": "holdup-full", "target_kind": "host", "target": "", "host": "localhost", "duration_s": 5, "purpose": "test"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["status"], "pending");
    let rid = r["id"].as_i64().unwrap();
    let (s, v) = call_as(
        &wb.app,
        Method::POST,
        &format!("/api/requests/{rid}/run"),
        &req,
        None,
    )
    .await;
    assert!(
        s == StatusCode::FORBIDDEN || s == StatusCode::CONFLICT,
        "{s} {v}"
    );
    assert!(v["error"].as_str().unwrap().contains("not approved"), "{v}");
    let (_, list) = call_as(
        &wb.app,
        Method::GET,
        &format!("/api/requests/{rid}/runs"),
        &req,
        None,
    )
    .await;
    assert_eq!(list, json!([]));
    // another requester may not start someone else's request
    let other = user(&wb, "olga", "requester").await;
    let (s, _) = call_as(
        &wb.app,
        Method::POST,
        &format!("/api/requests/{rid}/run"),
        &other,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

fn sleeper() -> std::process::Child {
    std::process::Command::new("sleep")
        .arg("30")
        .process_group(0)
        .spawn()
        .unwrap()
}

fn exited_within(child: &mut std::process::Child, limit: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[tokio::test]
async fn restart_interrupts_running_runs_and_kills_their_process() {
    let tmp = Tmp::new("restart");
    let rid = {
        let wb = start(&tmp, Policy::default());
        let req = user(&wb, "rita", "requester").await;
        let (s, r) = call_as(
            &wb.app,
            Method::POST,
            "/api/requests",
            &req,
            Some(json!({"probe": "holdup-sched", "target_kind": "host", "target": "", "host": "localhost", "duration_s": 30, "purpose": "test"})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        r["id"].as_i64().unwrap()
    };
    let mut live = sleeper();
    let mut reused = sleeper();
    let insert = |pid: u32, start: i64| {
        let conn = rusqlite::Connection::open(tmp.db()).unwrap();
        conn.execute(
            "INSERT INTO runs (request_id, started_by, status, started_at, deadline, pid, pgid, proc_start) VALUES (?1, 'rita', 'running', 0, 30, ?2, ?2, ?3)",
            rusqlite::params![rid, pid, start],
        )
        .unwrap();
        conn.last_insert_rowid()
    };
    let live_start = runs::proc_start_time(live.id() as i64).expect("start time of sleep");
    let live_run = insert(live.id(), live_start);
    // a pid that now belongs to another process (start time differs): not killed
    let reused_start = runs::proc_start_time(reused.id() as i64).unwrap();
    let reused_run = insert(reused.id(), reused_start + 12345);

    let (wb, token) = Workbench::open(&tmp.db(), Policy::default()).unwrap();
    assert!(token.is_none());
    for id in [live_run, reused_run] {
        let run = wb.get_run(id).unwrap();
        assert_eq!(run.status, "interrupted", "{run:?}");
        assert!(run.ended_at.is_some());
    }
    assert!(
        exited_within(&mut live, Duration::from_secs(5)),
        "the run's process group was not killed"
    );
    assert!(
        reused.try_wait().unwrap().is_none(),
        "a process with a reused pid was killed"
    );
    reused.kill().unwrap();
    reused.wait().unwrap();
    let report = wb.verify_audit().unwrap();
    assert!(report.ok, "{report:?}");
    let entries = wb.audit_entries(0, 1000).unwrap();
    let n = entries
        .iter()
        .filter(|e| e.action == "run.interrupted")
        .count();
    assert_eq!(n, 2);
}

#[test]
fn builtin_probe_runs_holdup_record_and_attaches_the_recording() {
    let Some(_g) = holdup_testkit::bpf_setup("builtin_probe_runs_holdup_record") else {
        return;
    };
    rt().block_on(async {
        let tmp = Tmp::new("record");
        // a stand-in for `holdup record`: writes its arguments to the -o
        // file, then never ends on its own
        let fake = tmp.0.join("fake-holdup");
        std::fs::write(
            &fake,
            "#!/bin/sh\nout=\"\"\nprev=\"\"\nfor a in \"$@\"; do [ \"$prev\" = \"-o\" ] && out=\"$a\"; prev=\"$a\"; done\necho \"fake recording: $*\" > \"$out\"\nexec sleep 30\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::env::set_var("HOLDUP_BIN", &fake);
        let wb = start(&tmp, Policy::default());
        let req = user(&wb, "rita", "requester").await;
        let (s, inc) = call_as(
            &wb.app,
            Method::POST,
            "/api/incidents",
            &req,
            Some(json!({"title": "redis slow"})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{inc}");
        let inc = inc["id"].as_i64().unwrap();
        // holdup-sched for <= 60 s is approved by the default policy; the
        // target is this test process
        let me = std::process::id();
        let (s, r) = call_as(
            &wb.app,
            Method::POST,
            "/api/requests",
            &req,
            Some(json!({"probe": "holdup-sched", "target_kind": "pid", "target": me.to_string(), "host": "localhost", "duration_s": 1, "purpose": "test", "incident_id": inc})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        assert_eq!(r["status"], "approved", "{r}");
        assert_eq!(r["incident_id"], inc, "{r}");
        let rid = r["id"].as_i64().unwrap();
        let (run, took) = run_to_end(&wb, &req, rid, Duration::from_secs(20)).await;
        std::env::remove_var("HOLDUP_BIN");
        assert_eq!(run["status"], "stopped_duration", "{run}");
        assert!(took < Duration::from_secs(5), "took {took:?}");
        let out = run["output"].as_str().unwrap();
        assert!(
            out.contains(&format!("fake recording: record --pid {me} --sched-only --duration 1s -o ")),
            "{run}"
        );
        // The output is on the incident, byte for byte.
        let name = format!("run-{}.rec", run["id"]);
        assert_eq!(run["artifact"], name.as_str(), "{run}");
        let (s, i) = call_as(&wb.app, Method::GET, &format!("/api/incidents/{inc}"), &req, None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(i["artifacts"], json!([name.clone()]), "{i}");
        let (s, body) = call_raw(
            &wb.app,
            Method::GET,
            &format!("/api/incidents/{inc}/artifacts/{name}"),
            Some(&req),
            axum::body::Body::empty(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(String::from_utf8_lossy(&body), out);
        let (_, runs) = call_as(&wb.app, Method::GET, &format!("/api/runs?incident={inc}"), &req, None).await;
        assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
        assert!(runs[0].get("output").is_none(), "listings leave output out: {runs}");
        verify(&wb).await;
    });
}

/// Context switches as fast as two threads can hand a token back and forth:
/// tens of thousands per second, each one a run of any sched_switch probe.
fn switch_storm(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (a_tx, a_rx) = std::sync::mpsc::sync_channel::<()>(0);
        let (b_tx, b_rx) = std::sync::mpsc::sync_channel::<()>(0);
        let peer = std::thread::spawn(move || {
            while a_rx.recv().is_ok() {
                if b_tx.send(()).is_err() {
                    break;
                }
            }
        });
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if a_tx.send(()).is_err() || b_rx.recv().is_err() {
                break;
            }
        }
        drop(a_tx);
        let _ = peer.join();
    })
}

/// A sched_switch script that keeps per-thread maps: its BPF cost scales
/// with the context-switch rate.
/// Runs approved request `rid` to its end while a switch storm goes.
async fn run_during_storm(wb: &Wb, tok: &str, rid: i64, limit: Duration) -> (Value, Duration) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storm = switch_storm(stop.clone());
    let out = run_to_end(wb, tok, rid, limit).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    storm.join().unwrap();
    out
}

const SWITCH_COUNTER: &str = "tracepoint:sched:sched_switch { @[args->prev_pid, args->next_pid] = count(); @h = hist(args->next_pid); }\n";

#[test]
fn run_over_its_overhead_budget_is_stopped() {
    let Some(_g) = holdup_testkit::bpf_setup("run_over_its_overhead_budget_is_stopped") else {
        return;
    };
    rt().block_on(async {
        let tmp = Tmp::new("overhead");
        // Scripts are class `high`; give that class 0.05% of a CPU. The
        // switch storm makes sched_switch fire tens of thousands of times a
        // second; at >= 100 ns a run that is >= 0.5%, ten times the budget.
        let policy = Policy::from_toml("[overhead_budget_percent]\nhigh = 0.05\n").unwrap();
        let wb = start(&tmp, policy);
        let (tok, rid) = approved_script(&wb, SWITCH_COUNTER, 30).await;
        let (run, took) = run_during_storm(&wb, &tok, rid, Duration::from_secs(40)).await;
        assert_eq!(run["status"], "stopped_overhead", "{run}");
        // Two 1 s intervals over budget, after a first reading, plus the
        // stop grace and slow startup of bpftrace: well under the 30 s.
        assert!(took < Duration::from_secs(15), "took {took:?}: {run}");
        let reason = run["reason"].as_str().unwrap();
        assert!(reason.contains("over the budget of 0.05%"), "{run}");
        let pct = run["bpf_cpu_percent"].as_f64().unwrap();
        eprintln!("over budget: {pct:.3}% of a CPU, stopped after {took:?}: {reason}");
        assert!(
            pct > 0.05,
            "measured {pct}% should be over the budget: {run}"
        );
        assert!(run["bpf_run_time_ns"].as_i64().unwrap() > 0, "{run}");
        assert!(audit_actions(&wb)
            .await
            .contains(&"run.stopped".to_string()));
        verify(&wb).await;
    });
}

#[test]
fn run_within_its_overhead_budget_runs_to_its_duration() {
    let Some(_g) = holdup_testkit::bpf_setup("run_within_its_overhead_budget") else {
        return;
    };
    rt().block_on(async {
        let tmp = Tmp::new("overhead-ok");
        // The same script and storm under a budget far above their cost
        // (5-10% of a CPU here) are measured but not stopped.
        let policy = Policy::from_toml("[overhead_budget_percent]\nhigh = 80\n").unwrap();
        let wb = start(&tmp, policy);
        let (tok, rid) = approved_script(&wb, SWITCH_COUNTER, 3).await;
        let (run, _) = run_during_storm(&wb, &tok, rid, Duration::from_secs(20)).await;
        assert_eq!(run["status"], "stopped_duration", "{run}");
        let pct = run["bpf_cpu_percent"].as_f64().unwrap();
        eprintln!("within budget: {pct:.3}% of a CPU");
        assert!(pct > 0.0 && pct < 80.0, "measured {pct}%: {run}");
        verify(&wb).await;
    });
}

#[test]
fn running_run_stopped_by_its_requester_not_by_another() {
    let Some(_g) = holdup_testkit::bpf_setup("running_run_stopped_by_its_requester") else {
        return;
    };
    rt().block_on(async {
        let tmp = Tmp::new("stop");
        let wb = start(&tmp, Policy::default());
        let (tok, rid) = approved_script(&wb, FOREVER, 60).await;
        let other = user(&wb, "olga", "requester").await;
        let (s, run) = call_as(
            &wb.app,
            Method::POST,
            &format!("/api/requests/{rid}/run"),
            &tok,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{run}");
        let id = run["id"].as_i64().unwrap();
        let (s, v) = call_as(
            &wb.app,
            Method::POST,
            &format!("/api/runs/{id}/stop"),
            &other,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        // Output is readable while the run goes.
        let t0 = Instant::now();
        loop {
            let (_, v) =
                call_as(&wb.app, Method::GET, &format!("/api/runs/{id}"), &tok, None).await;
            assert_eq!(v["status"], "running", "{v}");
            if v["output"].as_str().unwrap().contains("tick") {
                assert!(v["output_bytes"].as_i64().unwrap() > 0, "{v}");
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "no live output: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The stop answers once the run has ended.
        let (s, run) = call_as(
            &wb.app,
            Method::POST,
            &format!("/api/runs/{id}/stop"),
            &tok,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{run}");
        assert_eq!(run["status"], "stopped_by_user", "{run}");
        assert_eq!(run["reason"], "stopped by rita", "{run}");
        // Stopping again: it is not running any more.
        let (s, v) = call_as(
            &wb.app,
            Method::POST,
            &format!("/api/runs/{id}/stop"),
            &tok,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        verify(&wb).await;
    });
}
