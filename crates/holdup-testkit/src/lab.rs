//! A real incident recording for the lab's tests (`holdup top --replay`,
//! `holdup report`): Redis under a benchmark load, recorded by `holdup
//! record`, with a CPU hog started on Redis's CPU part-way through, so the
//! recording has a quiet stretch, then CPU contention by `stress-ng-cpu`.

use crate::scenario::{free_port, have_tools, quiet, wait_until, Guard};
use crate::TempDir;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Length of the recording.
pub const RECORD_SECS: u64 = 16;
/// Window length of the recording, ms (32 windows: enough for the
/// diagnosis to compare the two stretches, in few seconds).
pub const INTERVAL_MS: u64 = 500;
/// When the hog starts, from the start of `holdup record` (its first window
/// opens a moment later, once the programs are loaded).
pub const HOG_AT: Duration = Duration::from_secs(7);
/// The culprit the diagnosis must name.
pub const HOG_COMM: &str = "stress-ng-cpu";

/// The tools [`record_cpu_hog`] needs.
pub const TOOLS: &[&str] = &[
    "redis-server",
    "redis-benchmark",
    "redis-cli",
    "taskset",
    "stress-ng",
];

/// Records Redis with a CPU hog arriving at [`HOG_AT`] into `out` with the
/// `holdup` binary `holdup`; None (skipped, with a note; failing with
/// CI=true) when a tool is missing. Needs root; the caller holds the
/// machine's measurement lock. Every process it starts is stopped.
pub fn record_cpu_hog(holdup: &Path, out: &Path, what: &str) -> Option<PathBuf> {
    if !have_tools(what, TOOLS) {
        return None;
    }
    let dir = TempDir::under("/tmp", "lab-rec");
    let port = free_port();
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "1", "redis-server", "--port"])
        .arg(port.to_string())
        .args([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
        ])
        .arg(&dir.0);
    let redis = Guard::spawn("redis-server", quiet(&mut cmd));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pong = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "ping"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"));
        if pong {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "redis-server did not answer PING"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0", "redis-benchmark", "-p"])
        .arg(port.to_string())
        .args(["-n", "100000000", "-q", "-c", "20", "-t", "get,set"]);
    let _bench = Guard::spawn("redis-benchmark", quiet(&mut cmd));
    let mut cmd = Command::new(holdup);
    cmd.args(["record", "--pid", &redis.pid().to_string()])
        .args(["--duration", &format!("{RECORD_SECS}s")])
        .args(["--interval", &format!("{INTERVAL_MS}ms"), "-o"])
        .arg(out);
    let mut recorder = Guard::spawn("holdup record", &mut cmd);
    let t0 = Instant::now();
    wait_until(t0, HOG_AT);
    let mut cmd = Command::new("stress-ng");
    cmd.args(["--cpu", "1", "--taskset", "1", "--timeout", "30s"]);
    let _hog = Guard::spawn("stress-ng", quiet(&mut cmd));
    let deadline = t0 + Duration::from_secs(RECORD_SECS + 20);
    while recorder.running() {
        assert!(Instant::now() < deadline, "holdup record did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(out.exists(), "holdup record wrote no {}", out.display());
    Some(out.to_path_buf())
}
