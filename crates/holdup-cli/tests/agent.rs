//! `holdup agent` scraped by a real Prometheus (the Debian package, started
//! here on loopback with a temporary config and data directory): Redis
//! serves a benchmark, a CPU hog joins it on its CPU, and PromQL through
//! Prometheus's HTTP API must show Redis's run-queue seconds rising and the
//! hog as its top culprit. Needs root (BPF), redis-server, redis-benchmark,
//! stress-ng, taskset and prometheus (scripts/setup.sh). Every process it
//! starts is killed when it ends. Run with
//! `flock /tmp/holdup-measure.lock cargo test -p holdup-cli --test agent -- --test-threads=1`.

use holdup_testkit::scenario::{free_port, have_tools, quiet, wait_for_port, Guard};
use holdup_testkit::{bpf_setup, TempDir};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Each phase (before the hog, with it) lasts this long; queries look back one phase.
const PHASE: Duration = Duration::from_secs(12);

/// GET `path` from 127.0.0.1:`port` (HTTP/1.0: the body ends with the connection).
fn http_get(port: u16, path: &str, accept: Option<&str>) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{accept}\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read the response");
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (head.to_string(), body.to_string())
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant PromQL query; the result vector.
fn promql(port: u16, q: &str) -> Vec<Value> {
    let (_, body) = http_get(
        port,
        &format!("/api/v1/query?query={}", url_encode(q)),
        None,
    );
    let v: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("Prometheus answered {q:?} with non-JSON ({e}): {body}"));
    assert_eq!(v["status"], "success", "query {q:?}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The value of a one-sample result (0 when empty).
fn scalar(port: u16, q: &str) -> f64 {
    promql(port, q)
        .first()
        .and_then(|s| s["value"][1].as_str()?.parse().ok())
        .unwrap_or(0.0)
}

fn start_redis(dir: &TempDir) -> (Guard, u16) {
    let port = free_port();
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "1", "redis-server", "--port"])
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--daemonize", "no", "--dir"])
        .arg(&dir.0);
    let g = Guard::spawn("redis-server", quiet(&mut cmd));
    wait_for_port(port, "redis-server", Duration::from_secs(10));
    (g, port)
}

/// `holdup agent` on a free port; waits for its "serving" line and returns the port.
fn start_agent(dir: &TempDir) -> (Guard, u16) {
    let log = dir.join("agent.err");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_holdup"));
    cmd.args([
        "agent",
        "--listen",
        "127.0.0.1:0",
        "--comm",
        "redis=^redis-server$",
    ])
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap());
    let g = Guard::spawn("holdup agent", &mut cmd);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(port) = text
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split('/').next()?.parse().ok())
        {
            return (g, port);
        }
        assert!(
            Instant::now() < deadline,
            "holdup agent did not start serving within 30s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_prometheus(dir: &TempDir, agent_port: u16) -> (Guard, u16) {
    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: holdup\n    static_configs:\n      \
             - targets: ['127.0.0.1:{agent_port}']\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.err")).unwrap());
    let g = Guard::spawn("prometheus", &mut cmd);
    wait_for_port(port, "prometheus", Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_get(port, "/-/ready", None).0.contains(" 200 ") {
        assert!(
            Instant::now() < deadline,
            "prometheus was not ready within 30s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (g, port)
}

#[test]
fn prometheus_sees_redis_run_queue_rise_under_a_cpu_hog_and_names_the_hog() {
    const NAME: &str = "agent + prometheus";
    let Some(_g) = bpf_setup(NAME) else {
        return;
    };
    if !have_tools(
        NAME,
        &[
            "redis-server",
            "redis-benchmark",
            "stress-ng",
            "taskset",
            "prometheus",
        ],
    ) {
        return;
    }
    let dir = TempDir::new("agent-prom");
    let (_redis, redis_port) = start_redis(&dir);
    let mut bench = Command::new("taskset");
    bench
        .args(["-c", "0", "redis-benchmark", "-p"])
        .arg(redis_port.to_string())
        .args(["-n", "100000000", "-q", "-c", "20", "-t", "get,set"]);
    let _bench = Guard::spawn("redis-benchmark", quiet(&mut bench));
    let (_agent, agent_port) = start_agent(&dir);

    // The agent itself, both expositions.
    let (head, text) = http_get(agent_port, "/metrics", None);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(text.contains("# TYPE holdup_thread_state_seconds_total counter"));
    let (head, om) = http_get(
        agent_port,
        "/metrics",
        Some("application/openmetrics-text; version=1.0.0"),
    );
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(om.ends_with("# EOF\n"), "OpenMetrics must end with # EOF");
    assert!(om.contains("# TYPE holdup_thread_state_seconds counter"));
    let (head, _) = http_get(agent_port, "/nope", None);
    assert!(head.contains("404"), "{head}");

    let (_prom, prom_port) = start_prometheus(&dir, agent_port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while scalar(prom_port, "up{job=\"holdup\"}") < 1.0
        || scalar(prom_port, "sum(holdup_windows_total)") < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape the agent within 30s: {}",
            std::fs::read_to_string(dir.join("prometheus.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let window = format!("{}s", PHASE.as_secs() - 2);
    let runq = format!(
        "sum(increase(holdup_thread_state_seconds_total{{service=\"redis\",state=\"run_queue\"}}[{window}]))"
    );
    let on_cpu = format!(
        "sum(increase(holdup_thread_state_seconds_total{{service=\"redis\",state=\"on_cpu\"}}[{window}]))"
    );
    std::thread::sleep(PHASE);
    let (runq_before, cpu_before) = (scalar(prom_port, &runq), scalar(prom_port, &on_cpu));

    // At nice -10 the hog weighs ~9 times a nice-0 task, so Redis waits for
    // its CPU most of the time it wants it, whatever else this shared
    // machine runs (other jobs already make Redis wait before the hog).
    let mut hog = Command::new("nice");
    hog.args([
        "-n",
        "-10",
        "stress-ng",
        "--cpu",
        "1",
        "--taskset",
        "1",
        "--timeout",
        "30s",
    ]);
    let hog = Guard::spawn("stress-ng", quiet(&mut hog));
    std::thread::sleep(PHASE);
    let (runq_during, cpu_during) = (scalar(prom_port, &runq), scalar(prom_port, &on_cpu));
    let top = promql(
        prom_port,
        &format!(
            "topk(1, sum by (culprit) (increase(holdup_culprit_seconds_total{{service=\"redis\"}}[{window}])))"
        ),
    );
    let categories = scalar(
        prom_port,
        &format!(
            "sum(increase(holdup_holdup_seconds_total{{service=\"redis\",category=\"run_queue\"}}[{window}]))"
        ),
    );
    let hist_count = scalar(
        prom_port,
        "sum(holdup_runqueue_latency_seconds_count{service=\"redis\"})",
    );
    drop(hog);
    eprintln!(
        "redis over {window}: run queue {runq_before:.3}s -> {runq_during:.3}s, on CPU \
         {cpu_before:.3}s -> {cpu_during:.3}s; run-queue category {categories:.3}s; \
         run-queue waits {hist_count}; top culprit {top:?}"
    );

    // On this shared machine other jobs already make Redis wait before the
    // hog, and the hog also cuts how long Redis is runnable at all (fewer
    // requests get through); what must rise is the run-queue seconds per
    // runnable second, from what the others leave to most of it.
    assert!(
        cpu_before > 1.0,
        "Redis should be busy serving the benchmark before the hog: {cpu_before:.3}s on CPU"
    );
    let share_before = runq_before / (runq_before + cpu_before);
    let share_during = runq_during / (runq_during + cpu_during).max(1e-9);
    assert!(
        runq_during > 2.0 && share_during > 0.8 && share_during > share_before + 0.1,
        "Redis's run-queue seconds must rise with the hog: {runq_before:.3}s before \
         ({:.0}% of its runnable time), {runq_during:.3}s with it ({:.0}%)",
        100.0 * share_before,
        100.0 * share_during
    );
    assert!(
        (categories - runq_during).abs() <= 0.05 * runq_during + 0.05,
        "the run_queue hold-up category is the run-queue state: {categories:.3}s vs {runq_during:.3}s"
    );
    assert!(hist_count > 0.0, "the run-queue histogram must count waits");
    let culprit = top
        .first()
        .and_then(|s| s["metric"]["culprit"].as_str())
        .unwrap_or("");
    let hog_secs: f64 = top
        .first()
        .and_then(|s| s["value"][1].as_str()?.parse().ok())
        .unwrap_or(0.0);
    assert!(
        hog_secs > 0.3 * runq_during,
        "the hog must hold the CPU for a good part of Redis's run-queue wait: {hog_secs:.3}s of {runq_during:.3}s"
    );
    assert_eq!(
        culprit, "stress-ng-cpu",
        "the hog must be Redis's top culprit: {top:?}"
    );
}
