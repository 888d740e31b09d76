//! What holdup's integration tests share: the policy for tests that load
//! BPF (run as root; skip otherwise, except with CI=true where not being root
//! fails), one lock so such tests run one at a time, and `holdup-workload`,
//! the program with known behaviour they measure; and in [`scenario`], what
//! the scenario tests of `holdup diagnose` share; [`lab`] makes a real
//! incident recording, [`browser`] drives headless Chromium.

#![warn(missing_docs)]

pub mod browser;
pub mod lab;
pub mod scenario;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the lock that keeps tests measuring the machine from overlapping.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Says whether BPF can be loaded here: true as root; false (skip, with a
/// note) otherwise, except with CI=true, where not being root fails the test.
pub fn bpf_allowed(what: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true: {what} must run as root (it loads BPF), and this run is not root");
    }
    eprintln!("skipping {what}: it loads BPF and needs root (run with sudo)");
    false
}

/// A test cannot run here because the machine lacks `why`: with CI=true
/// that fails the test (CI never skips what matters); otherwise it says so
/// and the caller returns.
pub fn skip_unless_ci(what: &str, why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true: {what} cannot run: {why}");
    }
    eprintln!("skipping {what}: {why}");
}

/// The serial lock, if BPF tests can run here (see [`bpf_allowed`]).
pub fn bpf_setup(what: &str) -> Option<MutexGuard<'static, ()>> {
    let guard = serial();
    bpf_allowed(what).then_some(guard)
}

/// Path of binary `name` of workspace package `package`, built on first use
/// with the cargo running the tests (for tests outside that package).
fn built_bin(package: &str, name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--bin", name])
        .status()
        .unwrap_or_else(|e| panic!("run cargo to build {name}: {e}"));
    assert!(status.success(), "building {name} failed");
    // target/<profile>/deps/<test binary> -> target/<profile>/<name>
    let exe = std::env::current_exe().expect("path of the test binary");
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join(name);
    assert!(bin.exists(), "no {name} at {}", bin.display());
    bin
}

/// Path of `holdup-workload`, built on first use.
pub fn workload_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_bin("holdup-workload", "holdup-workload"))
        .clone()
}

/// Path of the `holdup` command, built on first use (for the workbench's
/// runs of built-in probes, which start `holdup record`).
pub fn holdup_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_bin("holdup-cli", "holdup"))
        .clone()
}

/// A running `holdup-workload` scenario; killed when dropped.
pub struct Workload {
    child: Child,
    out: BufReader<ChildStdout>,
    /// Its startup line: pid, thread ids by name, and scenario facts.
    pub info: Value,
}

impl Workload {
    /// Starts a scenario (`args` as on its command line) and reads its startup line.
    pub fn start(args: &[&str]) -> Workload {
        Self::spawn(Command::new(workload_bin()).args(args))
    }

    /// Like [`Workload::start`], with all its threads on CPU `cpu` (through
    /// taskset, which execs it: the pid is the workload's).
    pub fn start_on_cpu(cpu: usize, args: &[&str]) -> Workload {
        Self::spawn(
            Command::new("taskset")
                .args(["-c", &cpu.to_string()])
                .arg(workload_bin())
                .args(args),
        )
    }

    fn spawn(cmd: &mut Command) -> Workload {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .expect("start holdup-workload");
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        out.read_line(&mut line)
            .expect("read the workload's startup line");
        let info: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("bad startup line {line:?}: {e}"));
        Workload { child, out, info }
    }

    /// The workload's process id.
    pub fn pid(&self) -> u32 {
        self.u64("pid") as u32
    }

    /// The id of the thread named `name`.
    pub fn tid(&self, name: &str) -> u32 {
        self.info["threads"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no thread {name}")) as u32
    }

    /// A number from the startup line.
    pub fn u64(&self, key: &str) -> u64 {
        self.info[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no {key} in {}", self.info))
    }

    /// Waits for the scenario to end and returns its final counters.
    pub fn finish(mut self) -> Value {
        let mut line = String::new();
        let _ = self.out.read_line(&mut line);
        let _ = self.child.wait();
        serde_json::from_str::<Value>(&line)
            .map(|v| v["final"].clone())
            .unwrap_or(Value::Null)
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory under the system temp dir, unique to this process
/// and call; removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new, empty directory named after `tag`.
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("holdup-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create a scratch directory");
        TempDir(p)
    }

    /// A new, empty directory named after `tag` under `base` (e.g.
    /// /var/tmp, which is disk-backed where /tmp may be tmpfs).
    pub fn under(base: &str, tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = PathBuf::from(base).join(format!("holdup-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create a scratch directory");
        TempDir(p)
    }

    /// A path inside it.
    pub fn join(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
