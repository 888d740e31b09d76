//! End-to-end tests of `holdup wb`, the workbench client, against a real
//! `holdup workbench serve` process over TCP: the whole incident → script →
//! request → approval → run → artifact → audit flow, the client's error
//! messages, and a server killed with SIGKILL in the middle of a run.
//!
//! Runs execute bpftrace, and bpftrace 0.17 also parses (`-d`, the script
//! checks) only as root, so everything that needs an accepted script needs
//! root: without it those parts are skipped, except with CI=true, where a
//! missing capability fails them. Tests take the shared serial lock. Every `holdup` run has a
//! deadline, so a hang fails the test instead of blocking it.

mod wb_common;

use holdup_testkit::{bpf_allowed, bpf_setup, serial, TempDir};
use std::process::Command;
use std::time::{Duration, Instant};
use wb_common::*;

#[test]
fn wb_client_full_flow() {
    let _guard = serial();
    let t0 = Instant::now();
    // bpftrace (0.17) checks and runs scripts only as root: without it only
    // the parts that need no accepted script run.
    let root = bpf_allowed("wb_client_full_flow (its script part runs bpftrace)");
    let dir = TempDir::new("flow");
    let s = Server::start(&dir.join("wb.db"));
    let url = s.url.clone();
    let alice = create_user(&s, "alice", "requester");
    let bob = create_user(&s, "bob", "approver");

    let me = wb(&url, &alice, &["whoami"]).ok("whoami");
    assert!(me.stdout.contains("alice (role requester"), "{}", me.stdout);
    let inc = wb(
        &url,
        &alice,
        &[
            "incident",
            "create",
            "--title",
            "first look",
            "--host",
            "db1",
        ],
    )
    .ok("incident create");
    assert!(
        inc.stdout.starts_with("incident 1 created: first look"),
        "{}",
        inc.stdout
    );
    let list = wb(&url, &bob, &["incidents"]).ok("incidents");
    assert!(
        list.stdout.starts_with("ID") && list.stdout.contains("first look"),
        "{}",
        list.stdout
    );

    // A requester cannot approve at all; an approver not their own request.
    let own = wb(
        &url,
        &bob,
        &[
            "--json",
            "request",
            "holdup-full",
            "--purpose",
            "mine",
            "--duration",
            "10",
        ],
    )
    .ok("request holdup-full")
    .json();
    assert_eq!(own["status"], "pending", "{own}");
    let own = id_of(&own).to_string();
    let a = wb(&url, &alice, &["approve", &own]).fails("approve as requester");
    assert!(
        a.stderr.contains("needs role approver") && a.stderr.contains("HTTP 403"),
        "{}",
        a.stderr
    );
    let selfie = wb(&url, &bob, &["approve", &own]).fails("self-approval");
    assert!(
        selfie.stderr.contains("self-approval refused") && selfie.stderr.contains("HTTP 403"),
        "{}",
        selfie.stderr
    );
    let pending = wb(&url, &bob, &["requests", "--pending"]).ok("requests --pending");
    assert!(
        pending
            .stdout
            .lines()
            .any(|l| l.starts_with(&format!("{own} ")) && l.contains("pending")),
        "{}",
        pending.stdout
    );

    // A script using system() is refused, with the reason.
    let bad = dir.join("bad.bt");
    std::fs::write(&bad, "BEGIN { system(\"id\"); exit(); }\n").unwrap();
    let r = wb(&url, &alice, &["submit", "bad", bad.to_str().unwrap()]).fails("unsafe script");
    assert!(
        r.stderr.contains("refused") && r.stderr.contains("system") && r.stderr.contains("422"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("unsafe builtins: system"), "{}", r.stdout);

    if root {
        script_flow(&url, &alice, &bob, &dir);
    } else {
        eprintln!("skipping the script part of wb_client_full_flow: bpftrace needs root");
    }

    let v = wb(&url, &bob, &["audit", "verify"]).ok("audit verify");
    assert!(v.stdout.contains("audit log intact"), "{}", v.stdout);
    let log = wb(&url, &bob, &["audit", "--limit", "1000"]).ok("audit");
    assert!(log.stdout.starts_with("SEQ"), "{}", log.stdout);
    for action in ["incident.created", "script.checked", "request.created"] {
        assert!(
            log.stdout.contains(action),
            "no {action} in\n{}",
            log.stdout
        );
    }
    if root {
        for action in ["request.approved", "run.started", "run.stopped"] {
            assert!(
                log.stdout.contains(action),
                "no {action} in\n{}",
                log.stdout
            );
        }
    }
    let no = wb(&url, &alice, &["audit"]).fails("audit as requester");
    assert!(no.stderr.contains("HTTP 403"), "{}", no.stderr);
    eprintln!("wb_client_full_flow took {:?}", t0.elapsed());
}

/// Submit, request, approve, run with --wait, and find the output attached
/// to the incident (needs root: bpftrace).
fn script_flow(url: &str, alice: &str, bob: &str, dir: &TempDir) {
    // Text output of the submit: the check report.
    let file = dir.join("ticks.bt");
    std::fs::write(&file, TICKS).unwrap();
    let sub = wb(
        url,
        alice,
        &["submit", "ticks-text", file.to_str().unwrap()],
    )
    .ok("submit");
    assert!(sub.stdout.contains("accepted"), "{}", sub.stdout);
    assert!(
        sub.stdout
            .contains("attach points: interval:ms:100, interval:s:1"),
        "{}",
        sub.stdout
    );

    let (inc, sid, rid) = approved_script_request(url, alice, bob, dir, TICKS, "3s");
    let list = wb(url, bob, &["requests"]).ok("requests");
    assert!(
        list.stdout
            .lines()
            .any(|l| l.starts_with(&format!("{rid} "))
                && l.contains("approved")
                && l.contains(&format!("script:{sid}"))
                && l.contains("alice")
                && l.contains("bob")),
        "{}",
        list.stdout
    );

    let t = Instant::now();
    let run = wb(url, alice, &["run", &rid.to_string(), "--wait"]).ok("run --wait");
    let took = t.elapsed();
    assert!(run.stdout.contains("ticks"), "{}", run.stdout);
    let first = run.stdout.lines().next().unwrap_or("");
    assert!(
        first.ends_with(": stopped_duration") || first.ends_with(": finished"),
        "{}",
        run.stdout
    );
    assert!(took < Duration::from_secs(10), "a 3 s run took {took:?}");
    let runs = wb(
        url,
        alice,
        &["--json", "runs", "--incident", &inc.to_string()],
    )
    .ok("runs --incident")
    .json();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run_id = id_of(&runs[0]);
    let shown = wb(url, alice, &["--json", "runs", "show", &run_id.to_string()])
        .ok("runs show")
        .json();
    assert!(
        ["stopped_duration", "finished"].contains(&shown["status"].as_str().unwrap()),
        "{shown}"
    );
    let artifact = format!("run-{run_id}.json");
    assert_eq!(shown["artifact"], artifact.as_str(), "{shown}");
    let show = wb(url, alice, &["incident", "show", &inc.to_string()]).ok("incident show");
    assert!(
        show.stdout.contains("checkout p99 doubled"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.lines().any(|l| l.trim() == artifact),
        "artifact {artifact} not listed:\n{}",
        show.stdout
    );
    let got = wb(
        url,
        alice,
        &["incident", "artifact", &inc.to_string(), &artifact],
    )
    .ok("incident artifact");
    assert!(got.stdout.contains("@ticks"), "{}", got.stdout);

    // A built-in probe on the same incident (auto-approved: holdup-sched up
    // to 60 s), the real `holdup record` started by the server; then
    // holdup's diagnosis of its recording, attached, and a note.
    let inc_s = inc.to_string();
    let req = wb(
        url,
        alice,
        &[
            "--json",
            "request",
            "holdup-sched",
            "--purpose",
            "who runs instead",
            "--duration",
            "2s",
            "--incident",
            &inc_s,
        ],
    )
    .ok("request holdup-sched")
    .json();
    assert_eq!(req["status"], "approved", "{req}");
    let run = wb(url, alice, &["run", &id_of(&req).to_string(), "--wait"]).ok("run holdup-sched");
    assert!(
        run.stdout.contains("stopped_duration") || run.stdout.contains("finished"),
        "{}",
        run.stdout
    );
    let runs = wb(url, alice, &["--json", "runs", "--incident", &inc_s])
        .ok("runs")
        .json();
    let rec = format!("run-{}.rec", id_of(&runs[0]));
    let d = wb(url, alice, &["incident", "diagnose", &inc_s, &rec]).ok("incident diagnose");
    assert!(
        d.stdout.contains(&format!(
            "attached to incident {inc} as {rec}.diagnosis.txt"
        )),
        "{}",
        d.stdout
    );
    wb(
        url,
        alice,
        &["incident", "note", &inc_s, "GET slow since 14:05"],
    )
    .ok("note");
    let show = wb(url, alice, &["incident", "show", &inc_s]).ok("incident show");
    assert!(
        show.stdout.contains("alice: GET slow since 14:05"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout
            .lines()
            .any(|l| l.trim() == format!("{rec}.diagnosis.txt")),
        "{}",
        show.stdout
    );
}

#[test]
fn wb_users_rotate_disable_and_enable() {
    let _guard = serial();
    let dir = TempDir::new("users");
    let s = Server::start(&dir.join("wb.db"));
    let admin = s.admin.clone().expect("first start prints the admin token");
    let carol = create_user(&s, "carol", "requester");
    // Rotating one's own token: the old one is refused, the new one works.
    let r = wb(&s.url, &carol, &["users", "rotate", "carol"]).ok("rotate");
    let new = r
        .stdout
        .lines()
        .find(|l| l.starts_with("hwb_"))
        .unwrap_or_else(|| panic!("no token in {}", r.stdout))
        .to_string();
    wb(&s.url, &carol, &["whoami"]).fails("old token");
    assert!(wb(&s.url, &new, &["whoami"])
        .ok("new token")
        .stdout
        .contains("carol"));
    // Disabled: refused with the reason; enabled: back.
    wb(&s.url, &admin, &["users", "disable", "carol"]).ok("disable");
    let r = wb(&s.url, &new, &["whoami"]).fails("disabled");
    assert!(r.stderr.contains("carol is disabled"), "{}", r.stderr);
    let r = wb(&s.url, &admin, &["users"]).ok("list");
    assert!(r.stdout.contains("disabled"), "{}", r.stdout);
    wb(&s.url, &admin, &["users", "enable", "carol"]).ok("enable");
    wb(&s.url, &admin, &["users", "role", "carol", "approver"]).ok("role");
    assert!(wb(&s.url, &new, &["whoami"])
        .ok("enabled")
        .stdout
        .contains("approver"));
    // The last admin cannot be disabled.
    let r = wb(&s.url, &admin, &["users", "disable", "admin"]).fails("last admin");
    assert!(r.stderr.contains("last enabled admin"), "{}", r.stderr);
}

#[test]
fn wb_client_errors() {
    let _guard = serial();
    let t0 = Instant::now();
    let dir = TempDir::new("errors");
    let s = Server::start(&dir.join("wb.db"));
    let admin = s.admin.clone().expect("first start prints the admin token");

    // No token at all.
    let mut c = Command::new(env!("CARGO_BIN_EXE_holdup"));
    c.args(["wb", "whoami"])
        .env("HOLDUP_WB_URL", &s.url)
        .env_remove("HOLDUP_WB_TOKEN")
        .env_remove("HOLDUP_LOG");
    let r = run(c).fails("no token");
    assert!(
        r.stderr.contains("set HOLDUP_WB_TOKEN or pass --token"),
        "{}",
        r.stderr
    );

    // A wrong token: the server's 401 text.
    let r = wb(&s.url, "hwb_not_a_token", &["whoami"]).fails("wrong token");
    assert!(
        r.stderr.contains("unknown or revoked API token") && r.stderr.contains("HTTP 401"),
        "{}",
        r.stderr
    );
    // --token and --server override the environment.
    let r = wb(
        "http://127.0.0.1:9",
        "hwb_wrong",
        &["--server", &s.url, "--token", &admin, "whoami"],
    )
    .ok("--server/--token");
    assert!(r.stdout.contains("admin (role admin"), "{}", r.stdout);

    // Not found, and a run of a request that is not approved.
    let r = wb(&s.url, &admin, &["incident", "show", "999"]).fails("no incident");
    assert!(
        r.stderr.contains("no incident 999") && r.stderr.contains("HTTP 404"),
        "{}",
        r.stderr
    );
    let req = wb(
        &s.url,
        &admin,
        &[
            "--json",
            "request",
            "holdup-full",
            "--purpose",
            "x",
            "--duration",
            "5s",
        ],
    )
    .ok("request")
    .json();
    let r = wb(&s.url, &admin, &["run", &id_of(&req).to_string()]).fails("run pending");
    assert!(
        r.stderr.contains("not approved") && r.stderr.contains("HTTP 403"),
        "{}",
        r.stderr
    );
    // Refused by the argument parser (clap's message), before any request.
    let r = wb(
        &s.url,
        &admin,
        &[
            "request",
            "holdup-sched",
            "--purpose",
            "x",
            "--duration",
            "500ms",
        ],
    );
    assert!(
        !r.status.success() && r.stderr.contains("whole number of seconds"),
        "{}",
        r.stderr
    );

    // Nothing listening: the error names the URL and the likely cause.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let r = wb(&url, &admin, &["incidents"]).fails("closed port");
    assert!(
        r.stderr.contains(&format!("{url}/api/incidents"))
            && r.stderr.contains("may not be running")
            && r.stderr.contains("holdup workbench serve"),
        "{}",
        r.stderr
    );
    eprintln!("wb_client_errors took {:?}", t0.elapsed());
}

#[test]
fn server_killed_mid_run_run_is_interrupted() {
    let Some(_guard) = bpf_setup("server_killed_mid_run_run_is_interrupted (runs bpftrace)") else {
        return;
    };
    let t0 = Instant::now();
    let dir = TempDir::new("killed");
    let db = dir.join("wb.db");
    let mut s = Server::start(&db);
    let url = s.url.clone();
    let alice = create_user(&s, "alice", "requester");
    let bob = create_user(&s, "bob", "approver");
    let (inc, sid, rid) = approved_script_request(
        &url,
        &alice,
        &bob,
        &dir,
        "interval:s:1 { printf(\"tick\\n\"); }\n",
        "60s",
    );
    // The approver starts the requester's run.
    let started = wb(&url, &bob, &["--json", "run", &rid.to_string()])
        .ok("run")
        .json();
    let run_id = id_of(&started);
    let pid = started["pid"].as_i64().expect("the run's pid");
    // The output is stored when the run ends, so "running" shows none yet:
    // wait for the run to be running in bpftrace, then give it a second to
    // attach its probes.
    let t = Instant::now();
    loop {
        let v = wb(&url, &bob, &["--json", "runs", "show", &run_id.to_string()])
            .ok("runs show")
            .json();
        assert_eq!(v["status"], "running", "the run ended early: {v}");
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if alive(pid) && comm.trim() == "bpftrace" {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the probe (pid {pid}, comm {comm:?}) is not running bpftrace: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(alive(pid), "bpftrace (pid {pid}) exited on its own");

    s.kill_hard();
    let killed = Instant::now();
    while alive(pid) {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "the probe (pid {pid}) outlived the SIGKILLed server by 5 s: PR_SET_PDEATHSIG did not stop it"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let gone_after = killed.elapsed();
    let server_log = s.log.lock().unwrap().clone();
    drop(s);

    let s = Server::start(&db);
    assert!(s.admin.is_none(), "a restart shows no new admin token");
    let url = s.url.clone();
    let v = wb(&url, &bob, &["--json", "runs", "show", &run_id.to_string()])
        .ok("runs show after restart")
        .json();
    assert_eq!(v["status"], "interrupted", "{v}\nserver log: {server_log}");
    assert!(
        v["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "no reason: {v}"
    );
    let text = wb(&url, &bob, &["runs", "show", &run_id.to_string()]).ok("runs show (text)");
    assert!(text.stdout.contains(": interrupted"), "{}", text.stdout);

    // Incident, script and request survived.
    let show = wb(&url, &alice, &["incident", "show", &inc.to_string()]).ok("incident show");
    assert!(
        show.stdout.contains("checkout p99 doubled"),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains("interrupted"), "{}", show.stdout);
    let cat = wb(&url, &alice, &["catalog"]).ok("catalog");
    assert!(
        cat.stdout.contains(&format!("script:{sid}")),
        "{}",
        cat.stdout
    );
    let reqs = wb(&url, &alice, &["--json", "requests"])
        .ok("requests")
        .json();
    assert!(
        reqs.as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == rid && r["status"] == "approved"),
        "{reqs}"
    );

    // The offline chain check, and the interruption on record.
    let mut c = Command::new(env!("CARGO_BIN_EXE_holdup"));
    c.args(["workbench", "audit", "verify", "--db"]).arg(&db);
    let r = run(c).ok("workbench audit verify");
    assert!(r.stdout.contains("intact"), "{}", r.stdout);
    let log = wb(&url, &bob, &["--json", "audit", "--limit", "1000"])
        .ok("audit")
        .json();
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "run.interrupted" && e["details"]["run"] == run_id),
        "no run.interrupted for run {run_id} in {log}"
    );
    eprintln!(
        "server_killed_mid_run_run_is_interrupted took {:?}; the probe was gone {gone_after:?} after the SIGKILL",
        t0.elapsed()
    );
}
