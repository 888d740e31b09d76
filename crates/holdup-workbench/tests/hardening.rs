//! Issue 11's findings, each as the attack against a real workbench: every
//! test here failed before its fix. Tests that start runs load BPF (root,
//! `holdup_testkit::bpf_setup`); the script checks run the real bpftrace.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use holdup_workbench::{api, policy::Policy, Workbench};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::*;

/// BPF tests hold the testkit's (synchronous) serial lock outside the runtime.
fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn policy(toml: &str) -> Policy {
    Policy::from_toml(toml).unwrap()
}

/// This process's resident memory, bytes.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// Samples [`rss`] every 10 ms until `stop`; the peak.
fn rss_peak_while(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = rss();
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(rss());
            std::thread::sleep(Duration::from_millis(10));
        }
        peak.max(rss())
    })
}

async fn submit(wb: &Wb, token: &str, name: &str, body: &str) -> (StatusCode, Value) {
    call_as(
        &wb.app,
        Method::POST,
        "/api/scripts",
        token,
        Some(json!({"name": name, "body": body})),
    )
    .await
}

/// A request for accepted script `sid` on this host, approved by `appr`
/// with `grant` (e.g. `{"runs": 3}`); its id.
async fn approve_script_request(wb: &Wb, req: &str, appr: &str, sid: i64, grant: Value) -> i64 {
    let (s, r) = call_as(
        &wb.app,
        Method::POST,
        "/api/requests",
        req,
        Some(json!({"probe": format!("script:{sid}"), "target_kind": "host", "target": "", "host": "localhost", "duration_s": 10, "purpose": "test"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let rid = r["id"].as_i64().unwrap();
    let mut body = json!({"comment": "ok"});
    body.as_object_mut()
        .unwrap()
        .extend(grant.as_object().unwrap().clone());
    let (s, v) = call_as(
        &wb.app,
        Method::POST,
        &format!("/api/requests/{rid}/approve"),
        appr,
        Some(body),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    rid
}

/// Polls run `id` until it is no longer running (at most `limit`).
async fn wait_run(wb: &Wb, token: &str, id: i64, limit: Duration) -> Value {
    let t0 = Instant::now();
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
            return v;
        }
        assert!(t0.elapsed() < limit, "run {id} still running: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn audit(wb: &Wb) -> Vec<Value> {
    let (s, v) = call_as(
        &wb.app,
        Method::GET,
        "/api/audit?limit=1000",
        &wb.admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

const GOOD: &str = "BEGIN { printf(\"GOOD\\n\"); exit(); }\n";
const EVIL: &str = "BEGIN { printf(\"EVIL\\n\"); exit(); }\n";

/// Finding 1: the run path checked the pinned hash, then read the script
/// again and ran that. Here the script row flips between the approved body
/// and another (as `PUT /api/scripts/N` does, without waiting for its
/// checks) while the approved request is run again and again with the real
/// bpftrace: no run may ever print the other body's output, and every
/// `run.started` names the sha256 of the approved bytes.
#[test]
fn the_bytes_that_run_are_the_bytes_approved_even_under_a_race() {
    let Some(_g) = holdup_testkit::bpf_setup("the_bytes_that_run_are_the_bytes_approved") else {
        return;
    };
    rt().block_on(async {
        let tmp = Tmp::new("pin-race");
        let wb = start_with(&tmp, Policy::default());
        let req = user(&wb, "rita", "requester").await;
        let appr = user(&wb, "amos", "approver").await;
        let (s, sc) = submit(&wb, &req, "good.bt", GOOD).await;
        assert_eq!(s, StatusCode::CREATED, "{sc}");
        let sid = sc["id"].as_i64().unwrap();
        let good_sha = sc["sha256"].as_str().unwrap().to_string();
        let evil_sha = holdup_workbench::sha256_hex(EVIL.as_bytes());
        // The flipper: the two bodies, each with its hash and status, as
        // PUT writes them.
        let stop = Arc::new(AtomicBool::new(false));
        let flipper = {
            let stop = stop.clone();
            let db = tmp.db();
            let good_sha = good_sha.clone();
            let evil_sha = evil_sha.clone();
            std::thread::spawn(move || {
                let conn = rusqlite::Connection::open(db).unwrap();
                conn.busy_timeout(Duration::from_secs(5)).unwrap();
                let mut flips = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for (body, sha, status) in
                        [(EVIL, &evil_sha, "refused"), (GOOD, &good_sha, "accepted")]
                    {
                        conn.execute(
                            "UPDATE scripts SET body = ?1, sha256 = ?2, status = ?3 WHERE id = ?4",
                            rusqlite::params![body, sha, status, sid],
                        )
                        .unwrap();
                        flips += 1;
                        // a tight loop would starve the server's writes
                        // of the store's lock (the attack goes through
                        // PUT, slower still)
                        std::thread::sleep(Duration::from_micros(500));
                    }
                }
                flips
            })
        };
        let t0 = Instant::now();
        let (mut ran, mut refused) = (0, 0);
        let mut runs = Vec::new();
        let mut rid = None;
        while ran < 40 && t0.elapsed() < Duration::from_secs(60) {
            let r = match rid {
                Some(r) => r,
                None => {
                    // a request pins the hash it sees: only ones pinning
                    // the approved body are the attack
                    let (s, r) = call_as(
                        &wb.app,
                        Method::POST,
                        "/api/requests",
                        &req,
                        Some(json!({"probe": format!("script:{sid}"), "target_kind": "host", "target": "", "host": "localhost", "duration_s": 10, "purpose": "race"})),
                    )
                    .await;
                    if s != StatusCode::CREATED || r["script_sha256"] != good_sha.as_str() {
                        continue;
                    }
                    let id = r["id"].as_i64().unwrap();
                    let (s, _) = call_as(
                        &wb.app,
                        Method::POST,
                        &format!("/api/requests/{id}/approve"),
                        &appr,
                        Some(json!({"comment": "ok", "runs": 10})),
                    )
                    .await;
                    if s != StatusCode::OK {
                        continue;
                    }
                    rid = Some(id);
                    id
                }
            };
            let (s, run) =
                call_as(&wb.app, Method::POST, &format!("/api/requests/{r}/run"), &req, None).await;
            match s {
                StatusCode::CREATED => {
                    ran += 1;
                    let id = run["id"].as_i64().unwrap();
                    let end = wait_run(&wb, &req, id, Duration::from_secs(20)).await;
                    runs.push(end);
                }
                // the gate saw the flipped script (409), or the approval
                // is used up (403): next request
                StatusCode::CONFLICT => refused += 1,
                StatusCode::FORBIDDEN => rid = None,
                other => panic!("run: {other} {run}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        let flips = flipper.join().unwrap();
        assert!(ran >= 10, "only {ran} runs started ({refused} refused, {flips} flips)");
        for run in &runs {
            let out = run["output"].as_str().unwrap_or_default();
            assert!(
                !out.contains("EVIL"),
                "an unapproved body ran: {run} ({ran} runs, {refused} refused, {flips} flips)"
            );
        }
        for e in audit(&wb).await {
            if e["action"] == "run.started" {
                assert_eq!(e["details"]["script_sha256"], good_sha.as_str(), "{e}");
            }
        }
        eprintln!("{ran} runs, {refused} refused by the gate, {flips} flips: none ran the other body");
    });
}

/// Finding 2: the unsafe-builtin check and the wildcard limit read the
/// script with a text stripper that bpftrace disagrees with. Each payload
/// here parses in bpftrace and was accepted before.
#[tokio::test]
async fn unsafe_builtins_and_wildcards_are_found_however_the_script_is_written() {
    let tmp = Tmp::new("bypass");
    let wb = start_with(&tmp, Policy::default());
    let req = user(&wb, "rita", "requester").await;
    for (name, body, why) in [
        // an unterminated quote on a #define line hides the rest from a
        // stripper that thinks a string started
        (
            "define-quote.bt",
            "#define X \"abc\nBEGIN { cat(\"/etc/shadow\"); exit(); }\n// \"\n",
            "cat",
        ),
        // `//` inside an attach path taken for a comment
        (
            "path-slashes.bt",
            "uprobe://bin/bash:readline { cat(\"/etc/shadow\"); }\n",
            "cat",
        ),
        // a quoted wildcard: 1600+ functions of bash
        (
            "quoted-wildcard.bt",
            "uprobe:\"/bin/bash\":\"*\" { @ = count(); }\n",
            "wildcard",
        ),
    ] {
        let (s, v) = submit(&wb, &req, name, body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {v}");
        let err = v["error"].as_str().unwrap();
        assert!(err.contains(why), "{name}: {v}");
    }
}

/// Finding 3: `#include "/dev/zero"` made the `bpftrace -d` check grow
/// without bound, at submit time. It is refused before bpftrace sees it;
/// where a policy allows includes, the checker is bounded (rlimits) and
/// the script refused when it hits the bound.
#[tokio::test]
async fn include_of_dev_zero_is_refused_and_the_checker_is_bounded() {
    let tmp = Tmp::new("devzero");
    let wb = start_with(&tmp, Policy::default());
    let req = user(&wb, "rita", "requester").await;
    let body = "#include \"/dev/zero\"\nBEGIN { exit(); }\n";
    let (s, v) = submit(&wb, &req, "zero.bt", body).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"].as_str().unwrap().contains("include"), "{v}");
    assert!(
        v["report"]["parse"]
            .as_str()
            .unwrap()
            .starts_with("not run"),
        "{v}"
    );

    let tmp = Tmp::new("devzero-allowed");
    let wb = start_with(
        &tmp,
        policy("allow_include = true\ncheck_memory_bytes = 268435456\ncheck_time_s = 20\n"),
    );
    let req = user(&wb, "rita", "requester").await;
    let (s, v) = submit(&wb, &req, "zero.bt", body).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"].as_str().unwrap().contains("bpftrace -d"), "{v}");
}

/// Finding 4: the scratch directory was `/tmp/holdup-workbench-<pid>`,
/// used even if it already existed. Another user pre-creates it with a
/// symlink named as the checker's file for a script: root must not write
/// through it, neither when checking nor when running.
#[test]
fn a_precreated_scratch_dir_with_symlinks_is_not_used() {
    let Some(_g) = holdup_testkit::bpf_setup("a_precreated_scratch_dir_is_not_used") else {
        return;
    };
    let tmp = Tmp::new("scratch");
    let victim = tmp.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let trap = std::env::temp_dir().join(format!("holdup-workbench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&trap);
    std::fs::create_dir(&trap).unwrap();
    let sha = holdup_workbench::sha256_hex(GOOD.as_bytes());
    std::os::unix::fs::symlink(&victim, trap.join(format!("{sha}.bt"))).unwrap();
    for i in 0..8 {
        // where runs put their files, for the next run ids
        let _ = std::os::unix::fs::symlink(&victim, trap.join(format!("run-{i}")));
    }
    // owned by another user, writable by all, as an attacker leaves it
    let nobody = 65534;
    std::os::unix::fs::lchown(&trap, Some(nobody), Some(nobody)).unwrap();
    std::fs::set_permissions(&trap, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    rt().block_on(async {
        let wb = start_with(&tmp, Policy::default());
        let req = user(&wb, "rita", "requester").await;
        let appr = user(&wb, "amos", "approver").await;
        let (s, sc) = submit(&wb, &req, "good.bt", GOOD).await;
        assert_eq!(s, StatusCode::CREATED, "{sc}");
        let rid =
            approve_script_request(&wb, &req, &appr, sc["id"].as_i64().unwrap(), json!({})).await;
        let (s, run) = call_as(
            &wb.app,
            Method::POST,
            &format!("/api/requests/{rid}/run"),
            &req,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{run}");
        let end = wait_run(
            &wb,
            &req,
            run["id"].as_i64().unwrap(),
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(end["status"], "finished", "{end}");
    });
    let _ = std::fs::remove_dir_all(&trap);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

/// Finding 5: artifact uploads were read (up to 64 MiB each) before the
/// token was checked. 20 tokenless 64 MiB uploads over TCP, at once: the
/// server must refuse them without buffering them (RSS sampled meanwhile).
#[test]
fn tokenless_uploads_are_refused_before_their_body_is_read() {
    use std::io::{Read, Write};
    let tmp = Tmp::new("upload-rss");
    let (wb, _) = Workbench::open(&tmp.db(), Policy::default()).unwrap();
    let rt = rt();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = rt.spawn(api::serve(Arc::new(wb), listener));
    const SIZE: usize = 64 << 20;
    let before = rss();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = rss_peak_while(stop.clone());
    let uploads: Vec<_> = (0..20)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                let head = format!("PUT /api/incidents/1/artifacts/a{i}.rec HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {SIZE}\r\nContent-Type: application/octet-stream\r\n\r\n");
                s.write_all(head.as_bytes()).unwrap();
                let zeros = [0u8; 64 * 1024];
                let mut sent = 0;
                while sent < SIZE {
                    match s.write(&zeros) {
                        Ok(n) => sent += n,
                        Err(_) => break, // the server answered and closed
                    }
                }
                let mut resp = String::new();
                let _ = s.read_to_string(&mut resp);
                resp
            })
        })
        .collect();
    let answers: Vec<String> = uploads.into_iter().map(|t| t.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    server.abort();
    for a in &answers {
        assert!(a.is_empty() || a.starts_with("HTTP/1.1 401"), "{a}");
    }
    assert!(
        answers.iter().any(|a| a.starts_with("HTTP/1.1 401")),
        "{answers:?}"
    );
    let grew = peak.saturating_sub(before);
    assert!(
        grew < 128 << 20,
        "20 tokenless uploads of 64 MiB grew the server by {} MiB",
        grew >> 20
    );
}

/// Finding 6: one approval allowed unlimited runs, at once, forever, and
/// the policy was not checked again when they ran.
#[test]
fn approvals_are_counted_expire_and_are_rechecked_at_run_time() {
    let Some(_g) = holdup_testkit::bpf_setup("approvals_are_counted") else {
        return;
    };
    rt().block_on(async {
        let tmp = Tmp::new("approvals");
        let wb = start_with(&tmp, Policy::default());
        let req = user(&wb, "rita", "requester").await;
        let appr = user(&wb, "amos", "approver").await;
        let (_, sc) = submit(&wb, &req, "good.bt", GOOD).await;
        let sid = sc["id"].as_i64().unwrap();
        // One run by default: the second is refused.
        let rid = approve_script_request(&wb, &req, &appr, sid, json!({})).await;
        let run_path = format!("/api/requests/{rid}/run");
        let (s, run) = call_as(&wb.app, Method::POST, &run_path, &req, None).await;
        assert_eq!(s, StatusCode::CREATED, "{run}");
        wait_run(
            &wb,
            &req,
            run["id"].as_i64().unwrap(),
            Duration::from_secs(20),
        )
        .await;
        let (s, v) = call_as(&wb.app, Method::POST, &run_path, &req, None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert!(
            v["error"].as_str().unwrap().contains("approved for 1 run"),
            "{v}"
        );

        // Overlapping runs of one request are refused unless approved so.
        let (_, sc) = submit(&wb, &req, "slow.bt", "interval:s:5 { exit(); }\n").await;
        let slow = sc["id"].as_i64().unwrap();
        let rid = approve_script_request(&wb, &req, &appr, slow, json!({"runs": 3})).await;
        let run_path = format!("/api/requests/{rid}/run");
        let (s, first) = call_as(&wb.app, Method::POST, &run_path, &req, None).await;
        assert_eq!(s, StatusCode::CREATED, "{first}");
        let (s, v) = call_as(&wb.app, Method::POST, &run_path, &req, None).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert!(v["error"].as_str().unwrap().contains("overlapping"), "{v}");
        let first = first["id"].as_i64().unwrap();
        call_as(
            &wb.app,
            Method::POST,
            &format!("/api/runs/{first}/stop"),
            &req,
            None,
        )
        .await;

        // The policy in force when it runs: the requester lost the role
        // that may request scripts.
        let (s, v) = call_as(
            &wb.app,
            Method::PUT,
            "/api/users/rita",
            &wb.admin,
            Some(json!({"role": "viewer"})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = call_as(&wb.app, Method::POST, &run_path, &appr, None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert!(v["error"].as_str().unwrap().contains("role viewer"), "{v}");

        // An approval expires.
        let tmp = Tmp::new("approvals-ttl");
        let wb = start_with(&tmp, policy("approval_ttl_s = 1\n"));
        let req = user(&wb, "rita", "requester").await;
        let appr = user(&wb, "amos", "approver").await;
        let (_, sc) = submit(&wb, &req, "good.bt", GOOD).await;
        let rid =
            approve_script_request(&wb, &req, &appr, sc["id"].as_i64().unwrap(), json!({})).await;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let (s, v) = call_as(
            &wb.app,
            Method::POST,
            &format!("/api/requests/{rid}/run"),
            &req,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert!(v["error"].as_str().unwrap().contains("expired"), "{v}");
    });
}

/// Finding 7: live output was copied for every reader (10 readers of a
/// 100 MiB output: 1 GiB) and the output was stored twice (run row and
/// artifact). A stand-in bpftrace prints 64 MiB at once (real bpftrace
/// cannot print that much quickly), then waits.
#[test]
fn live_output_is_shared_by_readers_and_stored_once() {
    let Some(_g) = holdup_testkit::bpf_setup("live_output_is_shared") else {
        return;
    };
    rt().block_on(async {
        let tmp = Tmp::new("live-output");
        let fake = tmp.join("fake-bpftrace");
        std::fs::write(&fake, "#!/bin/sh\nhead -c 67108864 /dev/zero | tr '\\0' x\nexec sleep 30\n")
            .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let wb = start_with(&tmp, Policy::default());
        let req = user(&wb, "rita", "requester").await;
        let appr = user(&wb, "amos", "approver").await;
        let (_, inc) = call_as(
            &wb.app,
            Method::POST,
            "/api/incidents",
            &req,
            Some(json!({"title": "big output"})),
        )
        .await;
        let inc = inc["id"].as_i64().unwrap();
        let (_, sc) = submit(&wb, &req, "good.bt", GOOD).await;
        let sid = sc["id"].as_i64().unwrap();
        let (_, r) = call_as(
            &wb.app,
            Method::POST,
            "/api/requests",
            &req,
            Some(json!({"probe": format!("script:{sid}"), "target_kind": "host", "target": "", "host": "localhost", "duration_s": 30, "purpose": "test", "incident_id": inc})),
        )
        .await;
        let rid = r["id"].as_i64().unwrap();
        call_as(
            &wb.app,
            Method::POST,
            &format!("/api/requests/{rid}/approve"),
            &appr,
            Some(json!({"comment": "ok"})),
        )
        .await;
        std::env::set_var("HOLDUP_BPFTRACE", &fake);
        let (s, run) =
            call_as(&wb.app, Method::POST, &format!("/api/requests/{rid}/run"), &req, None).await;
        std::env::remove_var("HOLDUP_BPFTRACE");
        assert_eq!(s, StatusCode::CREATED, "{run}");
        let id = run["id"].as_i64().unwrap();
        let t0 = Instant::now();
        loop {
            let (_, v) = call_as(&wb.app, Method::GET, &format!("/api/runs/{id}"), &req, None).await;
            if v["output_bytes"].as_i64() == Some(64 << 20) {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "{v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // 10 readers at once, each reading the body as it streams
        let before = rss();
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = rss_peak_while(stop.clone());
        let readers: Vec<_> = (0..10)
            .map(|_| {
                let app = wb.app.clone();
                let tok = req.clone();
                tokio::spawn(async move {
                    use http_body_util::BodyExt;
                    use tower::ServiceExt;
                    let r = axum::http::Request::get(format!("/api/runs/{id}/output"))
                        .header("authorization", format!("Bearer {tok}"))
                        .body(Body::empty())
                        .unwrap();
                    let resp = app.oneshot(r).await.unwrap();
                    assert_eq!(resp.status(), StatusCode::OK);
                    let mut body = resp.into_body();
                    let mut n = 0usize;
                    while let Some(f) = body.frame().await {
                        if let Ok(d) = f.unwrap().into_data() {
                            n += d.len();
                        }
                    }
                    n
                })
            })
            .collect();
        for r in readers {
            assert_eq!(r.await.unwrap(), 64 << 20);
        }
        stop.store(true, Ordering::Relaxed);
        let grew = sampler.join().unwrap().saturating_sub(before);
        assert!(
            grew < 160 << 20,
            "10 readers of a 64 MiB live output grew the server by {} MiB",
            grew >> 20
        );
        // Stopped: the output is the incident's artifact, and only there.
        call_as(&wb.app, Method::POST, &format!("/api/runs/{id}/stop"), &req, None).await;
        let end = wait_run(&wb, &req, id, Duration::from_secs(10)).await;
        assert_eq!(end["artifact"], format!("run-{id}.json"), "{end}");
        let conn = rusqlite::Connection::open(tmp.db()).unwrap();
        let (in_row, in_artifact): (i64, i64) = conn
            .query_row(
                "SELECT length(r.output), (SELECT length(data) FROM artifacts WHERE name = r.artifact) FROM runs r WHERE r.id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((in_row, in_artifact), (0, 64 << 20));
        let (s, out) = call_raw(
            &wb.app,
            Method::GET,
            &format!("/api/runs/{id}/output"),
            Some(&req),
            Body::empty(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(out.len(), 64 << 20);
    });
}

/// Finding 8: requesters could overwrite any artifact (another run's
/// evidence included), upload without quota, write 64 KiB notes each
/// audited whole, and edit other people's incidents.
#[tokio::test]
async fn artifacts_are_immutable_and_owned_text_is_bounded() {
    let tmp = Tmp::new("immutable");
    let wb = start_with(&tmp, Policy::default());
    let alice = user(&wb, "alice", "requester").await;
    let bob = user(&wb, "bob", "requester").await;
    let (_, inc) = call_as(
        &wb.app,
        Method::POST,
        "/api/incidents",
        &alice,
        Some(json!({"title": "alice's"})),
    )
    .await;
    let inc = inc["id"].as_i64().unwrap();
    let put = |tok: &str, name: &str, data: Vec<u8>| {
        let app = wb.app.clone();
        let tok = tok.to_string();
        let uri = format!("/api/incidents/{inc}/artifacts/{name}");
        async move {
            call_raw(&app, Method::PUT, &uri, Some(&tok), Body::from(data))
                .await
                .0
        }
    };
    assert_eq!(
        put(&alice, "a.rec", vec![1; 600]).await,
        StatusCode::CREATED
    );
    // another user, or the uploader, cannot replace it
    assert_eq!(put(&bob, "a.rec", vec![2; 10]).await, StatusCode::CONFLICT);
    assert_eq!(
        put(&alice, "a.rec", vec![3; 10]).await,
        StatusCode::CONFLICT
    );
    // names of runs' evidence and diagnoses are the workbench's
    assert_eq!(
        put(&bob, "run-1.json", vec![4; 10]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        put(&bob, "a.rec.diagnosis.txt", vec![4; 10]).await,
        StatusCode::FORBIDDEN
    );
    let (_, a) = call_raw(
        &wb.app,
        Method::GET,
        &format!("/api/incidents/{inc}/artifacts/a.rec"),
        Some(&bob),
        Body::empty(),
    )
    .await;
    assert_eq!(a, vec![1; 600]);

    // someone else's incident: not editable by a requester
    let (s, v) = call_as(
        &wb.app,
        Method::PUT,
        &format!("/api/incidents/{inc}"),
        &bob,
        Some(json!({"title": "mine now"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    // notes are bounded, and audited as a digest
    let big = "n".repeat(20 * 1024);
    let (s, v) = call_as(
        &wb.app,
        Method::POST,
        &format!("/api/incidents/{inc}/notes"),
        &bob,
        Some(json!({"text": big})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let notes = "m".repeat(16 * 1024);
    let (s, v) = call_as(
        &wb.app,
        Method::PUT,
        &format!("/api/incidents/{inc}"),
        &alice,
        Some(json!({"title": "alice's", "notes": notes})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let updated = audit(&wb)
        .await
        .into_iter()
        .rfind(|e| e["action"] == "incident.updated")
        .unwrap();
    assert!(updated.to_string().len() < 2048, "{updated}");
}

/// Finding 8, quotas per user: artifacts and notes.
#[tokio::test]
async fn artifacts_and_notes_have_a_quota_per_user() {
    let tmp = Tmp::new("artifact-quota");
    let wb = start_with(&tmp, policy("artifact_quota_bytes = 1000\n"));
    let alice = user(&wb, "alice", "requester").await;
    let bob = user(&wb, "bob", "requester").await;
    let (_, inc) = call_as(
        &wb.app,
        Method::POST,
        "/api/incidents",
        &alice,
        Some(json!({"title": "t"})),
    )
    .await;
    for (tok, name, want) in [
        (&alice, "a.rec", StatusCode::CREATED),
        (&alice, "b.rec", StatusCode::PAYLOAD_TOO_LARGE),
        (&bob, "b.rec", StatusCode::CREATED),
    ] {
        let (s, v) = call_raw(
            &wb.app,
            Method::PUT,
            &format!("/api/incidents/{}/artifacts/{name}", inc["id"]),
            Some(tok),
            Body::from(vec![7u8; 600]),
        )
        .await;
        assert_eq!(s, want, "{}", String::from_utf8_lossy(&v));
    }

    let tmp = Tmp::new("note-quota");
    let wb = start_with(&tmp, policy("note_quota_bytes = 100\n"));
    let bob = user(&wb, "bob", "requester").await;
    let (_, inc) = call_as(
        &wb.app,
        Method::POST,
        "/api/incidents",
        &bob,
        Some(json!({"title": "t"})),
    )
    .await;
    let path = format!("/api/incidents/{}/notes", inc["id"]);
    let note = json!({"text": "x".repeat(60)});
    let (s, _) = call_as(&wb.app, Method::POST, &path, &bob, Some(note.clone())).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = call_as(&wb.app, Method::POST, &path, &bob, Some(note)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("note_quota_bytes"),
        "{v}"
    );
}

/// Finding 9: 403s (self-approval among them) were not audited, and the
/// count of bad tokens not yet audited lived in memory only.
#[tokio::test]
async fn refusals_are_audited_with_their_actor_and_counts_survive_a_restart() {
    let tmp = Tmp::new("refusals");
    let wb = start_with(&tmp, Policy::default());
    let req = user(&wb, "rita", "requester").await;
    let (s, _) = call_as(&wb.app, Method::GET, "/api/audit", &req, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let refused: Vec<Value> = audit(&wb)
        .await
        .into_iter()
        .filter(|e| e["action"] == "access.refused")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["actor"], "rita");
    assert!(
        refused[0]["details"]["reason"]
            .as_str()
            .unwrap()
            .contains("GET /api/audit"),
        "{refused:?}"
    );
    // self-approval, by an approver
    let appr = user(&wb, "amos", "approver").await;
    let (_, r) = call_as(
        &wb.app,
        Method::POST,
        "/api/requests",
        &appr,
        Some(json!({"probe": "holdup-full", "target_kind": "host", "target": "", "host": "localhost", "duration_s": 5, "purpose": "p"})),
    )
    .await;
    let (s, _) = call_as(
        &wb.app,
        Method::POST,
        &format!("/api/requests/{}/approve", r["id"]),
        &appr,
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(audit(&wb)
        .await
        .iter()
        .any(|e| e["action"] == "access.refused"
            && e["actor"] == "amos"
            && e["details"]["reason"]
                .as_str()
                .unwrap()
                .contains("self-approval")));

    // 5 bad tokens: one entry at once, 4 counted; then the server stops
    for i in 0..5 {
        let (s, _) = call_as(
            &wb.app,
            Method::GET,
            "/api/whoami",
            &format!("hwb_bad{i}"),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let admin = wb.admin.clone();
    drop(wb);
    let (wb2, _) = Workbench::open(&tmp.db(), Policy::default()).unwrap();
    let wb = Wb {
        app: api::router(Arc::new(wb2)),
        admin,
    };
    let failures: i64 = audit(&wb)
        .await
        .iter()
        .filter(|e| e["action"] == "auth.failure")
        .map(|e| e["details"]["failures"].as_i64().unwrap())
        .sum();
    assert_eq!(failures, 5);
}

/// Findings 11 and 12 (smaller): store files readable by others; user
/// names the audit log uses for the workbench itself; token responses
/// cacheable.
#[tokio::test]
async fn store_files_are_private_and_reserved_names_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = Tmp::new("modes");
    let wb = start_with(&tmp, Policy::default());
    let (s, v) = call_as(
        &wb.app,
        Method::POST,
        "/api/users",
        &wb.admin,
        Some(json!({"name": "system", "role": "admin"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let r = axum::http::Request::post("/api/users")
        .header("authorization", format!("Bearer {}", wb.admin))
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"name": "rita", "role": "viewer"}).to_string(),
        ))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(wb.app.clone(), r).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let db = tmp.db();
    let mut files = vec![db.clone(), db.with_extension("sqlite-wal")];
    files.push(holdup_workbench::audit::head_path(&db));
    for f in files {
        let mode = std::fs::metadata(&f).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", f.display());
    }
}

/// Finding 10: no header-read timeout, so half-open connections stayed
/// open (300 of them, before). 100 connections that send half a request
/// line are closed by the server once the header timeout (1 s here) has
/// passed; a whole request still gets its answer.
#[test]
fn half_open_connections_are_closed_at_the_header_timeout() {
    use std::io::{Read, Write};
    let tmp = Tmp::new("half-open");
    let (wb, admin) = Workbench::open(&tmp.db(), Policy::default()).unwrap();
    let admin = admin.unwrap();
    let rt = rt();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = rt.spawn(api::serve_with(
        Arc::new(wb),
        listener,
        Duration::from_secs(1),
        std::future::pending(),
    ));
    let mut half: Vec<std::net::TcpStream> = (0..100)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /api/whoami HTT").unwrap();
            s
        })
        .collect();
    let mut whole = std::net::TcpStream::connect(addr).unwrap();
    write!(
        whole,
        "GET /api/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    whole.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    std::thread::sleep(Duration::from_millis(2500));
    let mut still_open = 0;
    for s in &mut half {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            // closed (0), or answered (408) and closed
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(_) => still_open += 1,
        }
    }
    server.abort();
    assert_eq!(
        still_open, 0,
        "{still_open} of 100 half-open connections still open"
    );
}

/// Finding 12 (smaller): a `Host` naming another domain (DNS rebinding) is
/// refused; two approvals of one request at once decide it once, with one
/// audit entry; bpftrace's messages do not reveal server paths.
#[tokio::test]
async fn foreign_hosts_double_decisions_and_path_leaks() {
    let tmp = Tmp::new("smaller");
    let wb = start_with(&tmp, Policy::default());
    for (host, ok) in [
        ("evil.example", false),
        ("evil.example:7420", false),
        ("127.0.0.1:7420", true),
        ("localhost", true),
        ("[::1]:7420", true),
    ] {
        let r = axum::http::Request::get("/api/whoami")
            .header("host", host)
            .header("authorization", format!("Bearer {}", wb.admin))
            .body(Body::empty())
            .unwrap();
        let resp = tower::ServiceExt::oneshot(wb.app.clone(), r).await.unwrap();
        assert_eq!(
            resp.status().is_success(),
            ok,
            "Host {host}: {}",
            resp.status()
        );
    }
    let req = user(&wb, "rita", "requester").await;
    let a1 = user(&wb, "amos", "approver").await;
    let a2 = user(&wb, "anna", "approver").await;
    let (_, r) = call_as(
        &wb.app,
        Method::POST,
        "/api/requests",
        &req,
        Some(json!({"probe": "holdup-full", "target_kind": "host", "target": "", "host": "localhost", "duration_s": 5, "purpose": "p"})),
    )
    .await;
    let path = format!("/api/requests/{}/approve", r["id"]);
    let (x, y) = tokio::join!(
        call_as(&wb.app, Method::POST, &path, &a1, Some(json!({}))),
        call_as(&wb.app, Method::POST, &path, &a2, Some(json!({})))
    );
    let mut statuses = [x.0, y.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    let approvals = audit(&wb)
        .await
        .into_iter()
        .filter(|e| e["action"] == "request.approved")
        .count();
    assert_eq!(approvals, 1);
    let (s, v) = submit(&wb, &req, "broken.bt", "BEGIN { printf(\"x\" }\n").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let tmpdir = std::env::temp_dir();
    assert!(
        !v.to_string().contains(tmpdir.to_str().unwrap()),
        "the report names a server path: {v}"
    );
}
