//! Dispatch end to end (issue 14, part 3): a `holdup workbench serve` over
//! TLS (a test CA made with rcgen) and two `holdup wb agent` processes on
//! this machine posing as hosts `alpha` and `beta` (separate state dirs).
//! A request for `beta` runs on beta's agent, bounded there in duration
//! and BPF CPU budget, and its output lands on the incident; an agent with
//! a wrong or revoked token gets nothing; a SIGKILLed agent's run is marked
//! interrupted. Runs load BPF: needs root (skipped without, failing with
//! CI=true); hold /tmp/holdup-measure.lock when running it.

mod wb_common;

use holdup_testkit::{bpf_setup, TempDir};
use serde_json::Value;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wb_common::*;

/// A test CA and a certificate for 127.0.0.1 signed by it, as PEM files
/// in `dir`: (ca.pem, cert.pem, key.pem).
fn test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "holdup test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let files = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&files.0, ca_cert.pem()).unwrap();
    std::fs::write(&files.1, cert.pem()).unwrap();
    std::fs::write(&files.2, key.serialize_pem()).unwrap();
    (files.0, files.1, files.2)
}

/// A `holdup wb agent` child; SIGKILLed and reaped when dropped.
struct AgentProc {
    child: Child,
}

impl AgentProc {
    fn start(url: &str, ca: &Path, token_file: &Path, host: &str, state: &Path) -> AgentProc {
        let child = Command::new(env!("CARGO_BIN_EXE_holdup"))
            .args(["wb", "agent", "--server", url, "--ca-file"])
            .arg(ca)
            .arg("--token-file")
            .arg(token_file)
            .args(["--host", host, "--state-dir"])
            .arg(state)
            .env_remove("HOLDUP_LOG")
            .env_remove("HOLDUP_WB_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start holdup wb agent");
        AgentProc { child }
    }

    /// Waits up to `within` for the agent to exit: its status and stderr.
    fn exits_within(&mut self, within: Duration) -> Option<(std::process::ExitStatus, String)> {
        let t = Instant::now();
        while t.elapsed() < within {
            if let Ok(Some(st)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return Some((st, err));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// `holdup wb --ca-file CA ARGS...` as `token`.
fn wbt(url: &str, ca: &Path, token: &str, args: &[&str]) -> Run {
    let mut all = vec!["--ca-file", ca.to_str().unwrap()];
    all.extend_from_slice(args);
    wb(url, token, &all)
}

/// Creates `host`'s agent as admin; writes its token to a file in `dir`.
fn create_agent(url: &str, ca: &Path, admin: &str, host: &str, dir: &Path) -> PathBuf {
    let r = wbt(url, ca, admin, &["agents", "create", host]).ok("agents create");
    let token = r.stdout.lines().last().unwrap().trim().to_string();
    assert!(
        token.starts_with("hwa_"),
        "no agent token in {:?}",
        r.stdout
    );
    let f = dir.join(format!("{host}.token"));
    std::fs::write(&f, token).unwrap();
    f
}

/// Requests `probe` on `host` for `duration` on incident `inc` as
/// `alice`; approved by `bob` unless the policy did. The request id.
fn request_on(
    url: &str,
    ca: &Path,
    (alice, bob): (&str, &str),
    probe: &str,
    host: &str,
    duration: &str,
    inc: i64,
) -> i64 {
    let r = wbt(
        url,
        ca,
        alice,
        &[
            "--json",
            "request",
            probe,
            "--purpose",
            "dispatch test",
            "--duration",
            duration,
            "--host",
            host,
            "--incident",
            &inc.to_string(),
        ],
    )
    .ok("request")
    .json();
    let rid = id_of(&r);
    if r["status"] == "pending" {
        wbt(url, ca, bob, &["approve", &rid.to_string()]).ok("approve");
    }
    rid
}

/// `runs show` of `run` until `done` holds of it, at most `within`.
fn run_until(
    url: &str,
    ca: &Path,
    token: &str,
    run: i64,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let t = Instant::now();
    loop {
        let v = wbt(
            url,
            ca,
            token,
            &["--json", "runs", "show", &run.to_string()],
        )
        .ok("runs show")
        .json();
        if done(&v) {
            return v;
        }
        assert!(
            t.elapsed() < within,
            "run {run} did not get there in {within:?}: {v}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn runs_are_dispatched_to_their_hosts_agent_over_tls() {
    let Some(_guard) =
        bpf_setup("runs_are_dispatched_to_their_hosts_agent_over_tls (agents run holdup record)")
    else {
        return;
    };
    let t0 = Instant::now();
    let dir = TempDir::new("dispatch");
    let (ca, cert, key) = test_pki(&dir.0);
    let policy = dir.join("policy.toml");
    // medium's budget is far below what holdup-full costs: a run of it
    // must be stopped over budget, on its agent.
    std::fs::write(
        &policy,
        "agent_heartbeat_timeout_s = 3\n[overhead_budget_percent]\nlow = 50.0\nmedium = 0.0001\nhigh = 10.0\n",
    )
    .unwrap();
    let s = Server::start_with(
        &dir.join("wb.db"),
        &[
            OsStr::new("--policy"),
            policy.as_os_str(),
            OsStr::new("--tls-cert"),
            cert.as_os_str(),
            OsStr::new("--tls-key"),
            key.as_os_str(),
        ],
    );
    assert!(s.url.starts_with("https://"), "{}", s.url);
    let url = s.url.clone();
    let admin = s.admin.clone().expect("admin token");

    // The link is TLS checked against the CA: without it, refused.
    let no_ca = wb(&url, &admin, &["whoami"]).fails("whoami without the CA");
    assert!(
        no_ca.stderr.to_lowercase().contains("certificate"),
        "{}",
        no_ca.stderr
    );

    let user = |name: &str, role: &str| {
        let r = wbt(&url, &ca, &admin, &["users", "create", name, role]).ok("users create");
        r.stdout.lines().last().unwrap().trim().to_string()
    };
    let (alice, bob) = (user("alice", "requester"), user("bob", "approver"));
    let alpha_token = create_agent(&url, &ca, &admin, "alpha", &dir.0);
    let beta_token = create_agent(&url, &ca, &admin, "beta", &dir.0);
    let mut alpha = AgentProc::start(&url, &ca, &alpha_token, "alpha", &dir.join("alpha"));
    let mut beta = AgentProc::start(&url, &ca, &beta_token, "beta", &dir.join("beta"));

    // A wrong token gets nothing: the agent stops at once, saying why.
    let bad = dir.join("bad.token");
    std::fs::write(&bad, "hwa_0000").unwrap();
    let mut wrong = AgentProc::start(&url, &ca, &bad, "beta", &dir.join("wrong"));
    let (st, err) = wrong
        .exits_within(Duration::from_secs(20))
        .expect("an agent with a wrong token keeps running");
    assert!(!st.success() && err.contains("refused"), "{st:?}: {err}");

    let inc = id_of(
        &wbt(
            &url,
            &ca,
            &alice,
            &["--json", "incident", "create", "--title", "beta slow"],
        )
        .ok("incident create")
        .json(),
    );
    let users = (alice.as_str(), bob.as_str());

    // 1. holdup-sched on beta: runs there, within its 3 s, metered there,
    // and its recording lands on the incident.
    let rid = request_on(&url, &ca, users, "holdup-sched", "beta", "3s", inc);
    let t = Instant::now();
    let done = wbt(
        &url,
        &ca,
        &alice,
        &["--json", "run", &rid.to_string(), "--wait"],
    )
    .ok("run --wait")
    .json();
    let took = t.elapsed();
    let run1 = id_of(&done);
    assert!(
        done["status"] == "finished" || done["status"] == "stopped_duration",
        "{done}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}: {done}");
    assert!(
        done["bpf_cpu_percent"].as_f64().is_some(),
        "not metered: {done}"
    );
    let artifact = format!("run-{run1}.rec");
    assert_eq!(done["artifact"], artifact.as_str(), "{done}");
    let rec = dir.join("run1.rec");
    wbt(
        &url,
        &ca,
        &alice,
        &[
            "incident",
            "artifact",
            &inc.to_string(),
            &artifact,
            "-o",
            rec.to_str().unwrap(),
        ],
    )
    .ok("incident artifact");
    let bytes = std::fs::read(&rec).unwrap();
    assert!(
        bytes.starts_with(b"HOLDUPRC"),
        "not a recording: {} bytes",
        bytes.len()
    );
    let audit = wbt(&url, &ca, &bob, &["--json", "audit", "--limit", "1000"])
        .ok("audit")
        .json();
    let dispatched: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "run.dispatched" && e["details"]["run"] == run1)
        .collect();
    assert_eq!(dispatched.len(), 1, "{audit}");
    assert_eq!(dispatched[0]["details"]["agent"], "beta", "{audit}");

    // 2. holdup-full on beta, over its (tiny) budget: stopped there.
    let rid = request_on(&url, &ca, users, "holdup-full", "beta", "30s", inc);
    let over = wbt(
        &url,
        &ca,
        &alice,
        &["--json", "run", &rid.to_string(), "--wait"],
    )
    .ok("run --wait (over budget)")
    .json();
    assert_eq!(over["status"], "stopped_overhead", "{over}");
    assert!(
        over["reason"].as_str().unwrap_or("").contains("budget"),
        "{over}"
    );

    // 3. A revoked agent gets nothing: its host's runs are refused, and
    // its loop stops at its next poll.
    wbt(&url, &ca, &admin, &["agents", "revoke", "alpha"]).ok("agents revoke");
    let rid = request_on(&url, &ca, users, "holdup-sched", "alpha", "3s", inc);
    let refused = wbt(&url, &ca, &alice, &["run", &rid.to_string()]).fails("run on alpha");
    assert!(refused.stderr.contains("no agent"), "{}", refused.stderr);
    let (st, err) = alpha
        .exits_within(Duration::from_secs(20))
        .expect("the revoked agent keeps polling");
    assert!(!st.success() && err.contains("refused"), "{st:?}: {err}");

    // 4. beta's agent is killed mid-run: its probe dies with it, and the
    // run is marked interrupted once its heartbeats stop.
    let rid = request_on(&url, &ca, users, "holdup-sched", "beta", "30s", inc);
    let started = wbt(&url, &ca, &alice, &["--json", "run", &rid.to_string()])
        .ok("run")
        .json();
    let run3 = id_of(&started);
    let going = run_until(&url, &ca, &alice, run3, Duration::from_secs(20), |v| {
        v["pid"].as_i64().is_some()
    });
    let pid = going["pid"].as_i64().unwrap();
    beta.kill_hard();
    let killed = Instant::now();
    while alive(pid) {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "the probe (pid {pid}) outlived its SIGKILLed agent"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let v = run_until(&url, &ca, &alice, run3, Duration::from_secs(15), |v| {
        v["status"] != "running"
    });
    assert_eq!(v["status"], "interrupted", "{v}");
    assert!(
        v["reason"].as_str().unwrap_or("").contains("heartbeat"),
        "{v}"
    );
    let verify = wbt(&url, &ca, &bob, &["audit", "verify"]).ok("audit verify");
    assert!(verify.stdout.contains("intact"), "{}", verify.stdout);
    eprintln!(
        "runs_are_dispatched_to_their_hosts_agent_over_tls took {:?}",
        t0.elapsed()
    );
}
