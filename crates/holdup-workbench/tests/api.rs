//! API tests: the axum router in-process via `tower::ServiceExt::oneshot`.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use holdup_workbench::{api, policy::Policy, Workbench};
use serde_json::{json, Value};
use std::sync::Arc;

mod common;
use common::*;

fn open(db: &std::path::Path, policy: Policy) -> (axum::Router, Option<String>) {
    let (wb, token) = Workbench::open(db, policy).unwrap();
    (api::router(Arc::new(wb)), token)
}

fn start(tmp: &Tmp) -> Wb {
    start_with(tmp, Policy::default())
}

async fn verify(wb: &Wb) -> Value {
    let (s, v) = call(
        &wb.app,
        Method::GET,
        "/api/audit/verify",
        Some(&wb.admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    v
}

const GOOD_SCRIPT: &str = "kprobe:do_nanosleep { @[comm] = count(); }\n";

/// Submits a script; returns (status, response).
/// Opens `n` incidents as admin (each an audit entry).
async fn open_incidents(wb: &Wb, n: usize) {
    for i in 0..n {
        let (s, _) = call(
            &wb.app,
            Method::POST,
            "/api/incidents",
            Some(&wb.admin),
            Some(json!({"title": format!("inc {i}")})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
    }
}

async fn submit(wb: &Wb, token: &str, name: &str, body: &str) -> (StatusCode, Value) {
    call(
        &wb.app,
        Method::POST,
        "/api/scripts",
        Some(token),
        Some(json!({"name": name, "body": body})),
    )
    .await
}

fn script_request(id: i64) -> Value {
    json!({"probe": format!("script:{id}"), "target_kind": "pid", "target": "1234", "host": "web-1", "duration_s": 30, "purpose": "why is it slow"})
}

#[tokio::test]
async fn no_token_is_401_with_instructions() {
    let tmp = Tmp::new("401");
    let wb = start(&tmp);
    let (s, v) = call(&wb.app, Method::GET, "/api/incidents", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{v}"
    );
    let (s, v) = call(
        &wb.app,
        Method::GET,
        "/api/incidents",
        Some("hwb_bogus"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    // the failed login is audited
    let (_, entries) = call(
        &wb.app,
        Method::GET,
        "/api/audit?limit=1000",
        Some(&wb.admin),
        None,
    )
    .await;
    assert!(entries
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "auth.failure"));
    let (s, v) = call(&wb.app, Method::GET, "/api/whoami", Some(&wb.admin), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["role"], "admin");
}

#[tokio::test]
async fn wrong_role_is_403_naming_the_role() {
    let tmp = Tmp::new("403");
    let wb = start(&tmp);
    let viewer = user(&wb, "vera", "viewer").await;
    let (s, v) = call(
        &wb.app,
        Method::POST,
        "/api/incidents",
        Some(&viewer),
        Some(json!({"title": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(v["error"].as_str().unwrap().contains("requester"), "{v}");
    let (s, v) = call(
        &wb.app,
        Method::POST,
        "/api/users",
        Some(&viewer),
        Some(json!({"name": "x", "role": "admin"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(v["error"].as_str().unwrap().contains("admin"), "{v}");
    // viewers can read
    let (s, _) = call(&wb.app, Method::GET, "/api/policy", Some(&viewer), None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn self_approval_refused_and_other_approver_accepted() {
    let tmp = Tmp::new("self");
    let wb = start(&tmp);
    let alice = user(&wb, "alice", "approver").await;
    let bob = user(&wb, "bob", "approver").await;
    let req = json!({"probe": "holdup-full", "target_kind": "host", "host": "web-1", "duration_s": 30, "purpose": "p99 spike"});
    let (s, r) = call(
        &wb.app,
        Method::POST,
        "/api/requests",
        Some(&alice),
        Some(req),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["status"], "pending");
    let id = r["id"].as_i64().unwrap();
    let (s, v) = call(
        &wb.app,
        Method::POST,
        &format!("/api/requests/{id}/approve"),
        Some(&alice),
        Some(json!({"comment": "lgtm"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        v["error"].as_str().unwrap().contains("self-approval"),
        "{v}"
    );
    let (s, v) = call(
        &wb.app,
        Method::POST,
        &format!("/api/requests/{id}/approve"),
        Some(&bob),
        Some(json!({"comment": "ok"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "approved");
    assert_eq!(v["decided_by"], "bob");
    // decided once only
    let (s, _) = call(
        &wb.app,
        Method::POST,
        &format!("/api/requests/{id}/reject"),
        Some(&wb.admin),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // auto-approval by policy for a short low-overhead probe
    let quick = json!({"probe": "holdup-sched", "target_kind": "host", "host": "web-1", "duration_s": 10, "purpose": "look"});
    let (_, r) = call(
        &wb.app,
        Method::POST,
        "/api/requests",
        Some(&alice),
        Some(quick),
    )
    .await;
    assert_eq!(r["status"], "approved", "{r}");
    // over the policy's max duration
    let long = json!({"probe": "holdup-sched", "target_kind": "host", "host": "web-1", "duration_s": 100000, "purpose": "look"});
    let (s, v) = call(
        &wb.app,
        Method::POST,
        "/api/requests",
        Some(&alice),
        Some(long),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        v["error"].as_str().unwrap().contains("max_duration_s"),
        "{v}"
    );
}

#[tokio::test]
async fn script_changed_after_approval_refused() {
    let tmp = Tmp::new("pin");
    let wb = start(&tmp);
    let req_tok = user(&wb, "rita", "requester").await;
    let appr = user(&wb, "amos", "approver").await;
    let (s, sc) = submit(&wb, &req_tok, "sleeps.bt", GOOD_SCRIPT).await;
    assert_eq!(s, StatusCode::CREATED, "{sc}");
    let sid = sc["id"].as_i64().unwrap();
    assert_eq!(
        sc["report"]["attach_points"],
        json!(["kprobe:do_nanosleep"])
    );

    // 1: changed through the API after approval
    let (_, r) = call(
        &wb.app,
        Method::POST,
        "/api/requests",
        Some(&req_tok),
        Some(script_request(sid)),
    )
    .await;
    let rid = r["id"].as_i64().unwrap();
    assert_eq!(r["script_sha256"], sc["sha256"]);
    let (s, _) = call(
        &wb.app,
        Method::POST,
        &format!("/api/requests/{rid}/approve"),
        Some(&appr),
        Some(json!({"comment": "fine"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(
        &wb.app,
        Method::POST,
        &format!("/api/requests/{rid}/authorize"),
        Some(&req_tok),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = call(
        &wb.app,
        Method::PUT,
        &format!("/api/scripts/{sid}"),
        Some(&req_tok),
        Some(json!({"body": "kprobe:do_nanosleep { @[pid] = count(); }\n"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = call(
        &wb.app,
        Method::POST,
        &format!("/api/requests/{rid}/authorize"),
        Some(&req_tok),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("changed since request"),
        "{v}"
    );

    // 2: changed behind the API's back (row edited) before approval
    let (_, r) = call(
        &wb.app,
        Method::POST,
        "/api/requests",
        Some(&req_tok),
        Some(script_request(sid)),
    )
    .await;
    let rid = r["id"].as_i64().unwrap();
    let conn = rusqlite::Connection::open(tmp.db()).unwrap();
    conn.execute(
        "UPDATE scripts SET body = body || '// x' WHERE id = ?1",
        [sid],
    )
    .unwrap();
    let (s, v) = call(
        &wb.app,
        Method::POST,
        &format!("/api/requests/{rid}/approve"),
        Some(&appr),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
}

#[tokio::test]
async fn system_call_script_refused_by_default_policy() {
    let tmp = Tmp::new("unsafe");
    let wb = start(&tmp);
    let req_tok = user(&wb, "rita", "requester").await;
    let (s, v) = submit(
        &wb,
        &req_tok,
        "evil.bt",
        "kprobe:do_nanosleep { system(\"rm -rf /\"); }\n",
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["status"], "refused");
    assert!(v["error"].as_str().unwrap().contains("system"), "{v}");
    // and cannot be requested
    let sid = v["id"].as_i64().unwrap();
    let (s, v) = call(
        &wb.app,
        Method::POST,
        "/api/requests",
        Some(&req_tok),
        Some(script_request(sid)),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    // not in the catalog
    let (_, cat) = call(&wb.app, Method::GET, "/api/catalog", Some(&req_tok), None).await;
    assert!(cat["scripts"].as_array().unwrap().is_empty());
    assert_eq!(cat["builtin"].as_array().unwrap().len(), 2);
    // reading files as root into the output is refused the same way
    let (s, v) = submit(
        &wb,
        &req_tok,
        "peek.bt",
        "BEGIN { cat(\"/etc/shadow\"); exit(); }\n",
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"].as_str().unwrap().contains("cat"), "{v}");
    // a wildcard that cannot be bounded is refused too
    let (s, v) = submit(&wb, &req_tok, "wild.bt", "kprobe:* { @ = count(); }\n").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"].as_str().unwrap().contains("wildcard"), "{v}");
}

#[tokio::test]
async fn tampered_audit_entry_detected_at_its_seq() {
    let tmp = Tmp::new("tamper");
    let wb = start(&tmp);
    open_incidents(&wb, 4).await;
    let v = verify(&wb).await;
    assert_eq!(v["ok"], true, "{v}");
    let conn = rusqlite::Connection::open(tmp.db()).unwrap();
    // edit
    conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 4", [])
        .unwrap();
    let v = verify(&wb).await;
    assert_eq!(v["ok"], false);
    assert_eq!(v["bad_seq"], 4, "{v}");
    conn.execute("UPDATE audit SET actor = 'admin' WHERE seq = 4", [])
        .unwrap();
    assert_eq!(verify(&wb).await["ok"], true);
    // delete
    conn.execute("DELETE FROM audit WHERE seq = 3", []).unwrap();
    let v = verify(&wb).await;
    assert_eq!(v["ok"], false);
    assert_eq!(v["bad_seq"], 4, "{v}");
}

#[tokio::test]
async fn entries_deleted_from_the_end_of_the_audit_log_detected() {
    let tmp = Tmp::new("tail");
    let wb = start(&tmp);
    open_incidents(&wb, 3).await;
    let v = verify(&wb).await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["head_copy_checked"], true, "{v}");
    let last = v["entries"].as_i64().unwrap();
    // Cut the last two entries: what is left is a valid, shorter chain.
    let conn = rusqlite::Connection::open(tmp.db()).unwrap();
    conn.execute("DELETE FROM audit WHERE seq > ?1", [last - 2])
        .unwrap();
    let v = verify(&wb).await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["bad_seq"], last, "{v}");
    let why = v["reason"].as_str().unwrap();
    assert!(why.contains("were deleted"), "{why}");
    // The offline check sees it too, and the server refuses to start (and
    // so to grow the log over the gap).
    let report = holdup_workbench::verify_store(&tmp.db()).unwrap();
    assert!(!report.ok && report.bad_seq == Some(last), "{report:?}");
    drop(wb);
    let err = Workbench::open(&tmp.db(), Policy::default())
        .err()
        .expect("a store whose log lost its end must not open");
    let msg = err.to_string();
    assert!(
        msg.contains("refusing to start") && msg.contains("audit verify"),
        "{msg}"
    );
}

#[tokio::test]
async fn reordered_audit_entries_detected() {
    let tmp = Tmp::new("reorder");
    let wb = start(&tmp);
    open_incidents(&wb, 3).await;
    let conn = rusqlite::Connection::open(tmp.db()).unwrap();
    // swap the contents (and seqs) of entries 3 and 4
    conn.execute_batch(
        "UPDATE audit SET seq = -3 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 4; UPDATE audit SET seq = 4 WHERE seq = -3;",
    )
    .unwrap();
    let v = verify(&wb).await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["bad_seq"], 3, "{v}");
}

#[tokio::test]
async fn sql_injection_strings_stored_literally() {
    let tmp = Tmp::new("sqli");
    let wb = start(&tmp);
    let evil = "x'); DROP TABLE incidents; --";
    let evil2 = "\" OR 1=1; DELETE FROM audit; --";
    let inc = json!({"title": evil, "service": evil2, "host": evil, "notes": evil2});
    let (s, v) = call(
        &wb.app,
        Method::POST,
        "/api/incidents",
        Some(&wb.admin),
        Some(inc),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (_, v) = call(
        &wb.app,
        Method::GET,
        &format!("/api/incidents/{id}"),
        Some(&wb.admin),
        None,
    )
    .await;
    assert_eq!(v["title"], evil);
    assert_eq!(v["service"], evil2);
    assert_eq!(v["host"], evil);
    assert_eq!(v["notes"], evil2);
    let req = json!({"probe": "holdup-full", "target_kind": "host", "target": evil, "host": "h", "duration_s": 5, "purpose": evil2});
    let (s, r) = call(
        &wb.app,
        Method::POST,
        "/api/requests",
        Some(&wb.admin),
        Some(req),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let rid = r["id"].as_i64().unwrap();
    let appr = user(&wb, "amos", "approver").await;
    let (s, d) = call(
        &wb.app,
        Method::POST,
        &format!("/api/requests/{rid}/reject"),
        Some(&appr),
        Some(json!({"comment": evil})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["comment"], evil);
    assert_eq!(d["purpose"], evil2);
    assert_eq!(d["target"], evil);
    // injection in the probe name is just an unknown probe / not allowed
    let req =
        json!({"probe": evil, "target_kind": evil, "host": evil, "duration_s": 5, "purpose": evil});
    let (s, _) = call(
        &wb.app,
        Method::POST,
        "/api/requests",
        Some(&wb.admin),
        Some(req),
    )
    .await;
    assert!(s.is_client_error());
    // a user name with SQL is refused by the name rules, not executed
    let (s, _) = call(
        &wb.app,
        Method::POST,
        "/api/users",
        Some(&wb.admin),
        Some(json!({"name": evil, "role": "viewer"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // everything still there, and the chain verifies
    let (_, list) = call(
        &wb.app,
        Method::GET,
        "/api/incidents",
        Some(&wb.admin),
        None,
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(verify(&wb).await["ok"], true);
}

#[tokio::test]
async fn path_traversal_in_artifact_names_refused() {
    let tmp = Tmp::new("trav");
    let wb = start(&tmp);
    let (_, v) = call(
        &wb.app,
        Method::POST,
        "/api/incidents",
        Some(&wb.admin),
        Some(json!({"title": "t"})),
    )
    .await;
    let id = v["id"].as_i64().unwrap();
    for name in [
        "..",
        "..%2F..%2Fetc%2Fpasswd",
        "a%2Fb",
        "a%00b",
        ".hidden",
        "..%5Cx",
        "x..y",
    ] {
        let uri = format!("/api/incidents/{id}/artifacts/{name}");
        let (s, b) = call_raw(
            &wb.app,
            Method::PUT,
            &uri,
            Some(&wb.admin),
            Body::from("data"),
        )
        .await;
        assert_eq!(
            s,
            StatusCode::BAD_REQUEST,
            "{name}: {}",
            String::from_utf8_lossy(&b)
        );
    }
    let uri = format!("/api/incidents/{id}/artifacts/trace-1.json");
    let (s, _) = call_raw(
        &wb.app,
        Method::PUT,
        &uri,
        Some(&wb.admin),
        Body::from("{\"a\":1}"),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, b) = call_raw(&wb.app, Method::GET, &uri, Some(&wb.admin), Body::empty()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b, b"{\"a\":1}");
}

#[tokio::test]
async fn oversized_upload_is_413() {
    let tmp = Tmp::new("413");
    let policy = Policy {
        max_body_bytes: 1024,
        max_upload_bytes: 2048,
        ..Policy::default()
    };
    let (app, admin) = open(&tmp.db(), policy);
    let wb = Wb {
        app,
        admin: admin.unwrap(),
    };
    let (_, v) = call(
        &wb.app,
        Method::POST,
        "/api/incidents",
        Some(&wb.admin),
        Some(json!({"title": "t"})),
    )
    .await;
    let id = v["id"].as_i64().unwrap();
    let (s, b) = call_raw(
        &wb.app,
        Method::PUT,
        &format!("/api/incidents/{id}/artifacts/big.bin"),
        Some(&wb.admin),
        Body::from(vec![0u8; 4096]),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("max_upload_bytes"),
        "{v}"
    );
    // uploads have their own, larger bound than JSON bodies
    let (s, b) = call_raw(
        &wb.app,
        Method::PUT,
        &format!("/api/incidents/{id}/artifacts/mid.bin"),
        Some(&wb.admin),
        Body::from(vec![0u8; 1536]),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&b));
    // JSON bodies too
    let big = "x".repeat(4096);
    let (s, v) = call(
        &wb.app,
        Method::POST,
        "/api/incidents",
        Some(&wb.admin),
        Some(json!({"title": big})),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("max_body_bytes"),
        "{v}"
    );
}

#[tokio::test]
async fn restart_keeps_data_and_chain_verifies() {
    let tmp = Tmp::new("restart");
    let (admin, viewer) = {
        let wb = start(&tmp);
        let viewer = user(&wb, "vera", "viewer").await;
        let (s, _) = call(
            &wb.app,
            Method::POST,
            "/api/incidents",
            Some(&wb.admin),
            Some(json!({"title": "before restart", "service": "redis"})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
        (wb.admin, viewer)
    };
    let (app, again) = open(&tmp.db(), Policy::default());
    assert!(
        again.is_none(),
        "the admin token is shown only at first start"
    );
    let wb = Wb { app, admin };
    let (s, v) = call(&wb.app, Method::GET, "/api/incidents", Some(&viewer), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v[0]["title"], "before restart");
    let v = verify(&wb).await;
    assert_eq!(v["ok"], true, "{v}");
    let (_, entries) = call(
        &wb.app,
        Method::GET,
        "/api/audit?limit=1000",
        Some(&wb.admin),
        None,
    )
    .await;
    let loads = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "policy.loaded")
        .count();
    assert_eq!(loads, 2);
    let conn = rusqlite::Connection::open(tmp.db()).unwrap();
    assert_eq!(
        holdup_workbench::store::schema_version(&conn).unwrap(),
        holdup_workbench::store::MIGRATIONS.len() as i64
    );
}

#[test]
fn policy_parses_from_toml() {
    let p = Policy::from_toml("max_duration_s = 60\nallow_unsafe = true\nmax_overhead = \"low\"\n[allowed_probes]\nrequester = [\"holdup-sched\"]\n").unwrap();
    assert_eq!(p.max_duration_s, 60);
    assert!(p.allow_unsafe);
    assert!(p.probe_allowed("requester", "holdup-sched"));
    assert!(!p.probe_allowed("requester", "holdup-full"));
    assert!(Policy::from_toml("no_such_key = 1").is_err());
}

#[tokio::test]
async fn serves_over_tcp() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = Tmp::new("tcp");
    let (wb, admin) = Workbench::open(&tmp.db(), Policy::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(api::serve(Arc::new(wb), listener));
    for (token, want) in [(None, "401"), (admin.as_deref(), "200")] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!("GET /api/whoami HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with(&format!("HTTP/1.1 {want}")), "{out}");
    }
    server.abort();
}

#[test]
fn verify_store_reads_without_writing() {
    let tmp = Tmp::new("verify");
    drop(Workbench::open(&tmp.db(), Policy::default()).unwrap());
    let a = holdup_workbench::verify_store(&tmp.db()).unwrap();
    let b = holdup_workbench::verify_store(&tmp.db()).unwrap();
    assert!(a.ok);
    assert_eq!(a, b, "verify appends nothing");
    assert_eq!(a.entries, 2, "user.created + policy.loaded");
    assert!(holdup_workbench::verify_store(&tmp.db().with_extension("nope")).is_err());
}

#[tokio::test]
async fn targets_outside_the_policy_refused() {
    let tmp = Tmp::new("targets");
    let policy = Policy::from_toml(
        "allowed_pid_comms = [\"redis-server\"]\nallowed_cgroup_prefixes = [\"/system.slice/redis.service\"]\n",
    )
    .unwrap();
    let wb = start_with(&tmp, policy);
    let req = user(&wb, "rita", "requester").await;
    let ask = |target_kind: &str, target: String, host: &str| json!({"probe": "holdup-sched", "target_kind": target_kind, "target": target, "host": host, "duration_s": 5, "purpose": "test"});
    // this test process is not redis-server
    let me = std::process::id().to_string();
    let (s, v) = call_as(
        &wb.app,
        Method::POST,
        "/api/requests",
        &req,
        Some(ask("pid", me, "localhost")),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let why = v["error"].as_str().unwrap();
    assert!(why.contains("allowed_pid_comms"), "{why}");
    // a pid that does not exist here
    let (s, v) = call_as(
        &wb.app,
        Method::POST,
        "/api/requests",
        &req,
        Some(ask("pid", "999999999".into(), "localhost")),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no process 999999999"),
        "{v}"
    );
    // a cgroup beside the allowed one, sharing its prefix as text only
    for cg in [
        "/system.slice/redis.service-evil",
        "/system.slice/sshd.service",
    ] {
        let (s, v) = call_as(
            &wb.app,
            Method::POST,
            "/api/requests",
            &req,
            Some(ask("cgroup", cg.into(), "localhost")),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{cg}: {v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("allowed_cgroup_prefixes"),
            "{v}"
        );
    }
    let (s, v) = call_as(
        &wb.app,
        Method::POST,
        "/api/requests",
        &req,
        Some(ask(
            "cgroup",
            "/system.slice/redis.service/sub".into(),
            "localhost",
        )),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

#[tokio::test]
async fn runs_for_other_hosts_refused_until_agents_exist() {
    let tmp = Tmp::new("otherhost");
    let wb = start(&tmp);
    let req = user(&wb, "rita", "requester").await;
    let (s, r) = call_as(
        &wb.app,
        Method::POST,
        "/api/requests",
        &req,
        Some(json!({"probe": "holdup-sched", "target_kind": "host", "target": "", "host": "db-7", "duration_s": 5, "purpose": "test"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["status"], "approved", "{r}");
    let id = r["id"].as_i64().unwrap();
    let (s, v) = call_as(
        &wb.app,
        Method::POST,
        &format!("/api/requests/{id}/run"),
        &req,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let why = v["error"].as_str().unwrap();
    assert!(
        why.contains("\"db-7\"") && why.contains("only on its own host"),
        "{why}"
    );
}

#[tokio::test]
async fn tokens_rotate_and_users_disable() {
    let tmp = Tmp::new("users");
    let wb = start(&tmp);
    let rita = user(&wb, "rita", "requester").await;
    let olga = user(&wb, "olga", "requester").await;
    // not someone else's token
    let (s, v) = call_as(&wb.app, Method::POST, "/api/users/rita/token", &olga, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    // one's own: the old token stops working at once
    let (s, v) = call_as(&wb.app, Method::POST, "/api/users/rita/token", &rita, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let new = v["token"].as_str().unwrap().to_string();
    let (s, _) = call_as(&wb.app, Method::GET, "/api/whoami", &rita, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = call_as(&wb.app, Method::GET, "/api/whoami", &new, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // disabled by an admin: refused, saying so; enabled again: back
    let (s, v) = call_as(
        &wb.app,
        Method::PUT,
        "/api/users/rita",
        &wb.admin,
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["disabled"], true, "{v}");
    let (s, v) = call_as(&wb.app, Method::GET, "/api/whoami", &new, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("rita is disabled"),
        "{v}"
    );
    let (s, _) = call_as(
        &wb.app,
        Method::PUT,
        "/api/users/rita",
        &wb.admin,
        Some(json!({"disabled": false, "role": "approver"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = call_as(&wb.app, Method::GET, "/api/whoami", &new, None).await;
    assert_eq!(v["role"], "approver", "{v}");
    // only admins change users; the last admin stays
    let (s, _) = call_as(
        &wb.app,
        Method::PUT,
        "/api/users/olga",
        &new,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = call_as(
        &wb.app,
        Method::PUT,
        "/api/users/admin",
        &wb.admin,
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("last enabled admin"),
        "{v}"
    );
    let (s, v) = call_as(
        &wb.app,
        Method::PUT,
        "/api/users/nobody",
        &wb.admin,
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let v = verify(&wb).await;
    assert_eq!(v["ok"], true, "{v}");
}

#[tokio::test]
async fn a_flood_of_bad_tokens_does_not_flood_the_audit_log() {
    let tmp = Tmp::new("flood");
    let wb = start(&tmp);
    for i in 0..50 {
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
    let (_, entries) = call_as(
        &wb.app,
        Method::GET,
        "/api/audit?limit=1000",
        &wb.admin,
        None,
    )
    .await;
    let failures: Vec<&Value> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "auth.failure")
        .collect();
    // the first refusal is audited at once; the other 49 within the same
    // AUTH_FAILURE_EVERY are counted into the next entry
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["details"]["failures"], 1);
}

#[tokio::test]
async fn notes_build_a_timeline_and_only_recordings_are_diagnosed() {
    let tmp = Tmp::new("notes");
    let wb = start(&tmp);
    let rita = user(&wb, "rita", "requester").await;
    let viewer = user(&wb, "vic", "viewer").await;
    let (_, inc) = call_as(
        &wb.app,
        Method::POST,
        "/api/incidents",
        &rita,
        Some(json!({"title": "slow"})),
    )
    .await;
    let id = inc["id"].as_i64().unwrap();
    let path = format!("/api/incidents/{id}/notes");
    for text in ["p99 up since 14:05", "'); DROP TABLE notes; --"] {
        let (s, v) = call_as(
            &wb.app,
            Method::POST,
            &path,
            &rita,
            Some(json!({"text": text})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (s, _) = call_as(
        &wb.app,
        Method::POST,
        &path,
        &rita,
        Some(json!({"text": "  "})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call_as(
        &wb.app,
        Method::POST,
        &path,
        &viewer,
        Some(json!({"text": "hi"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, inc) = call_as(
        &wb.app,
        Method::GET,
        &format!("/api/incidents/{id}"),
        &viewer,
        None,
    )
    .await;
    let texts: Vec<&str> = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["p99 up since 14:05", "'); DROP TABLE notes; --"]);
    assert_eq!(inc["timeline"][0]["author"], "rita");
    // Diagnosing something that is not a recording: a clear refusal.
    let (s, _) = call_raw(
        &wb.app,
        Method::PUT,
        &format!("/api/incidents/{id}/artifacts/x.rec"),
        Some(&rita),
        Body::from("not a recording"),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = call_as(
        &wb.app,
        Method::POST,
        &format!("/api/incidents/{id}/artifacts/x.rec/diagnose"),
        &rita,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("not a readable holdup recording"),
        "{v}"
    );
    let v = verify(&wb).await;
    assert_eq!(v["ok"], true, "{v}");
}

/// A tmpfs of a few MiB, unmounted on drop.
struct SmallDisk(std::path::PathBuf);
impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn full_disk_is_a_clear_507_and_loses_nothing() {
    // Needs root to mount; not contention-sensitive, so no serial lock.
    if !holdup_testkit::bpf_allowed("full-disk test (mounts a tmpfs)") {
        return;
    }
    let tmp = Tmp::new("fulldisk");
    let mnt = tmp.0.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ok.success(), "mount tmpfs");
    let _disk = SmallDisk(mnt.clone());
    let (wb, admin) = Workbench::open(&mnt.join("wb.db"), Policy::default()).unwrap();
    let wb = Wb {
        app: api::router(Arc::new(wb)),
        admin: admin.unwrap(),
    };
    let (_, inc) = call(
        &wb.app,
        Method::POST,
        "/api/incidents",
        Some(&wb.admin),
        Some(json!({"title": "t"})),
    )
    .await;
    let id = inc["id"].as_i64().unwrap();
    let put = |name: &'static str, n: usize| {
        let app = wb.app.clone();
        let admin = wb.admin.clone();
        async move {
            call_raw(
                &app,
                Method::PUT,
                &format!("/api/incidents/{id}/artifacts/{name}"),
                Some(&admin),
                Body::from(vec![7u8; n]),
            )
            .await
        }
    };
    let (s, _) = put("small.bin", 1000).await;
    assert_eq!(s, StatusCode::CREATED);
    // Fill the disk.
    let fill = mnt.join("fill");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&fill).unwrap();
        while f.write_all(&[0u8; 65536]).is_ok() {}
    }
    let (s, b) = put("big.bin", 512 * 1024).await;
    assert_eq!(
        s,
        StatusCode::INSUFFICIENT_STORAGE,
        "{}",
        String::from_utf8_lossy(&b)
    );
    let v: Value = serde_json::from_slice(&b).unwrap();
    let why = v["error"].as_str().unwrap();
    assert!(
        why.contains("disk is full") && why.contains("nothing was changed"),
        "{why}"
    );
    // Nothing lost: the incident and its first artifact are there, the
    // audit chain verifies; with space again the upload works.
    std::fs::remove_file(&fill).unwrap();
    let (_, inc) = call(
        &wb.app,
        Method::GET,
        &format!("/api/incidents/{id}"),
        Some(&wb.admin),
        None,
    )
    .await;
    assert_eq!(inc["artifacts"], json!(["small.bin"]), "{inc}");
    let v = verify(&wb).await;
    assert_eq!(v["ok"], true, "{v}");
    let (s, _) = put("big.bin", 512 * 1024).await;
    assert_eq!(s, StatusCode::CREATED);
}
