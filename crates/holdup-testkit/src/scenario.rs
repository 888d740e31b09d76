//! What the scenario tests of `holdup diagnose` share (tests/scenarios.rs and
//! tests/services/ in holdup-cli): processes killed with their process
//! group, the tools a scenario needs, a running `holdup diagnose`, and
//! reading its JSON (top verdict, culprits, the foreign-culprit rule).

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process started by a scenario, in its own process group; the whole
/// group is killed when this is dropped (also when a test fails).
pub struct Guard {
    child: Child,
    name: String,
}

impl Guard {
    /// Starts `cmd` (stdin closed) in a new process group.
    pub fn spawn(name: &str, cmd: &mut Command) -> Guard {
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Guard {
            child,
            name: name.into(),
        }
    }

    /// The process id (also the process group's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: signalling the process group this guard created.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
        eprintln!("scenario: stopped {}", self.name);
    }
}

/// Whether the external programs a scenario needs exist; skips (false, with
/// a note) or, with CI=true, fails when they do not.
pub fn have_tools(what: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{what} needs {} (run scripts/setup.sh)", missing.join(", "));
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true: {msg}");
    }
    eprintln!("skipping {msg}");
    false
}

/// What a scenario test needs before it starts: the serial lock, if BPF
/// can be loaded here (see [`crate::bpf_setup`]), and the external programs
/// `tools` (see [`have_tools`]). None: skip the test (with CI=true, a
/// missing capability fails it instead).
pub fn prepare(what: &str, tools: &[&str]) -> Option<std::sync::MutexGuard<'static, ()>> {
    let guard = crate::bpf_setup(what)?;
    have_tools(what, tools).then_some(guard)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something listens on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, what: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on 127.0.0.1:{port} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A private redis-server on 127.0.0.1:<free port> with its files in
/// `dir`, no snapshots, and the flags `extra`; pinned to CPU `cpu` (through
/// taskset, which execs it: the pid is Redis's) when given. Returns once it
/// answers PING (within 10 s).
pub fn start_redis(dir: &Path, cpu: Option<usize>, extra: &[&str]) -> (Guard, u16) {
    let port = free_port();
    let mut cmd = pinned(cpu, "redis-server");
    cmd.arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra);
    let redis = Guard::spawn("redis-server", quiet(&mut cmd));
    wait_for_redis(port, Duration::from_secs(10));
    (redis, port)
}

/// Waits until the Redis on 127.0.0.1:`port` answers PING.
pub fn wait_for_redis(port: u16, within: Duration) {
    let deadline = Instant::now() + within;
    while !redis_pong(port) {
        assert!(
            Instant::now() < deadline,
            "redis-server did not answer PING on 127.0.0.1:{port} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One PING in the Redis protocol; whether PONG came back.
fn redis_pong(port: u16) -> bool {
    use std::io::Write;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}

/// redis-benchmark against 127.0.0.1:`port` until it is killed (`-n
/// 100000000 -q` plus `args`), pinned to CPU `cpu` when given.
pub fn start_redis_benchmark(port: u16, cpu: Option<usize>, args: &[&str]) -> Guard {
    let mut cmd = pinned(cpu, "redis-benchmark");
    cmd.arg("-p")
        .arg(port.to_string())
        .args(["-n", "100000000", "-q"])
        .args(args);
    Guard::spawn("redis-benchmark", quiet(&mut cmd))
}

/// `program`, through `taskset -c CPU` when `cpu` is given.
fn pinned(cpu: Option<usize>, program: &str) -> Command {
    match cpu {
        Some(cpu) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &cpu.to_string(), program]);
            cmd
        }
        None => Command::new(program),
    }
}

/// Discards a command's stdout and stderr.
pub fn quiet(cmd: &mut Command) -> &mut Command {
    cmd.stdout(Stdio::null()).stderr(Stdio::null())
}

/// Sleeps until `at` after `t0`.
pub fn wait_until(t0: Instant, at: Duration) {
    let now = t0.elapsed();
    if at > now {
        std::thread::sleep(at - now);
    }
}

/// A running `holdup diagnose ... --json`.
pub struct Diagnose {
    child: Child,
    /// When holdup said it was watching (live) or when it was started.
    pub started: Instant,
    limit: Duration,
    json_copy: Option<PathBuf>,
}

impl Diagnose {
    /// Starts `BIN diagnose ARGS --json` (live: ARGS has --pid and
    /// --duration) and, when `wait_watching`, waits until it says it is
    /// watching, so `started` is the start of its first window. It must end
    /// within `limit`; its JSON is also written to `json_copy`.
    pub fn start(
        bin: &Path,
        args: &[String],
        limit: Duration,
        json_copy: Option<PathBuf>,
        wait_watching: bool,
    ) -> Diagnose {
        let mut child = Command::new(bin)
            .arg("diagnose")
            .args(args)
            .arg("--json")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start holdup diagnose");
        let mut started = Instant::now();
        if wait_watching {
            let mut err = BufReader::new(child.stderr.take().expect("piped stderr"));
            let mut seen = String::new();
            loop {
                let mut line = String::new();
                let n = err.read_line(&mut line).unwrap_or(0);
                seen += &line;
                if n == 0 {
                    let _ = child.kill();
                    panic!("holdup diagnose {args:?} stopped before watching:\n{seen}");
                }
                if line.contains("holdup: watching") {
                    break;
                }
            }
            started = Instant::now();
            // Keep draining stderr so holdup never blocks on it.
            std::thread::spawn(move || {
                let mut rest = String::new();
                let _ = err.read_to_string(&mut rest);
                if !rest.trim().is_empty() {
                    eprintln!("holdup diagnose: {}", rest.trim());
                }
            });
        }
        Diagnose {
            child,
            started,
            limit,
            json_copy,
        }
    }

    /// Waits for the diagnosis (within the limit) and parses it.
    pub fn finish(mut self) -> Value {
        let deadline = self.started + self.limit;
        while self.child.try_wait().expect("wait for holdup").is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("holdup diagnose did not finish within {:?}", self.limit);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut out = String::new();
        let mut err = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "holdup diagnose failed: {status}\n{err}");
        if let Some(p) = &self.json_copy {
            let _ = std::fs::write(p, &out);
        }
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{out}\n{err}"))
    }
}

impl Drop for Diagnose {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `BIN diagnose FILE ARGS --json` on a recording, parsed.
pub fn diagnose_file(bin: &Path, file: &Path, args: &[&str]) -> Value {
    let out = Command::new(bin)
        .arg("diagnose")
        .arg(file)
        .args(args)
        .arg("--json")
        .output()
        .expect("run holdup diagnose on a recording");
    assert!(
        out.status.success(),
        "holdup diagnose {} {args:?} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON from holdup diagnose {} {args:?} ({e}):\n{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// One line per verdict, for failure messages and --nocapture.
pub fn describe(d: &Value) -> String {
    let mut s = String::new();
    if let Some(m) = d["mode"].as_str() {
        s += &format!("mode: {m}\n");
    }
    s += &format!(
        "split: {} | baseline {} windows, incident {} windows\n",
        d["split"]["detail"], d["split"]["baseline"]["windows"], d["split"]["incident"]["windows"]
    );
    for v in d["verdicts"].as_array().into_iter().flatten() {
        s += &format!(
            "  {} score {:.2} significant {}: {}\n",
            v["kind"].as_str().unwrap_or("?"),
            v["score"].as_f64().unwrap_or(0.0),
            v["significant"],
            v["summary"].as_str().unwrap_or("")
        );
        for c in v["culprits"].as_array().into_iter().flatten().take(6) {
            s += &format!(
                "      culprit {} {}\n",
                c["kind"].as_str().unwrap_or("?"),
                c["name"].as_str().unwrap_or("")
            );
        }
        for e in v["evidence"].as_array().into_iter().flatten().take(5) {
            s += &format!("      - {}\n", e.as_str().unwrap_or(""));
        }
    }
    for m in d["missing"].as_array().into_iter().flatten() {
        s += &format!("  missing: {}\n", m.as_str().unwrap_or(""));
    }
    s
}

/// Checks the top verdict's kind and returns it.
pub fn top<'a>(d: &'a Value, scenario: &str, kind: &str) -> &'a Value {
    let text = describe(d);
    println!("scenario {scenario}:\n{text}");
    let v = &d["verdicts"][0];
    assert_eq!(v["kind"], kind, "{scenario}: wrong top verdict\n{text}");
    v
}

/// Names of a verdict's culprits of one kind.
pub fn culprits(v: &Value, kind: &str) -> Vec<String> {
    v["culprits"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["kind"] == kind)
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// A process a significant CPU or disk verdict blames that is none of
/// `ours` (name prefixes of what the scenario started, or the kernel's):
/// on a shared machine another job took the CPU or the disk during the run.
pub fn foreign_culprit(d: &Value, ours: &[&str]) -> Option<String> {
    d["verdicts"]
        .as_array()?
        .iter()
        .filter(|v| v["significant"] == true)
        .filter(|v| {
            matches!(
                v["kind"].as_str(),
                Some("cpu_contention" | "cpu_saturation" | "disk_contention")
            )
        })
        .flat_map(|v| culprits(v, "process"))
        .find(|name| !ours.iter().any(|o| name.starts_with(o)))
}

/// Processes every scenario may see named: holdup itself and the kernel's
/// threads that work for the service.
pub const KERNEL_AND_HOLDUP: &[&str] = &["holdup", "kworker", "ksoftirqd", "jbd2", "[kernel]"];
