//! Shared by the `holdup wb` end-to-end tests (`wb.rs`, `wb_dispatch.rs`):
//! a `holdup workbench serve` child, `holdup` runs with deadlines, and
//! small steps of the flow.
// Each test file uses a different part of this.
#![allow(dead_code)]

use holdup_testkit::TempDir;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest any single `holdup` client run may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub const TICKS: &str = "interval:ms:100 { @ticks = count(); } interval:s:1 { print(@ticks); }\n";

/// A `holdup workbench serve` child on 127.0.0.1:<free port>; stopped when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// The admin token, if this start was the first on its store.
    pub admin: Option<String>,
    /// What the server wrote to stderr after its "serving" line.
    pub log: Arc<Mutex<String>>,
    /// Kept open: a closed stdout would make a later print fail in the server.
    _stdout: std::process::ChildStdout,
}

impl Server {
    pub fn start(db: &Path) -> Server {
        Server::start_with(db, &[])
    }

    /// Started with more `holdup workbench serve` flags.
    pub fn start_with(db: &Path, extra: &[&std::ffi::OsStr]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_holdup"))
            .args(["workbench", "serve", "--db"])
            .arg(db)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("HOLDUP_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start holdup workbench serve");
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut said = String::new();
        let url = loop {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                panic!("holdup workbench serve exited before serving; stderr:\n{said}");
            }
            said.push_str(&line);
            if let Some(rest) = line.split("serving ").nth(1) {
                break rest
                    .split_whitespace()
                    .next()
                    .expect("an address after `serving`")
                    .to_string();
            }
        };
        let log = Arc::new(Mutex::new(String::new()));
        let l = log.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while err.read_line(&mut line).unwrap_or(0) > 0 {
                l.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        // The token is printed (and flushed, line by line) before the
        // "serving" line; a restart prints nothing on stdout.
        let mut out = child.stdout.take().unwrap();
        let mut text = String::new();
        let admin = if db_had_admin_line(&mut out, &mut text) {
            text.lines().nth(1).map(str::trim).map(String::from)
        } else {
            None
        };
        Server {
            child,
            url,
            admin,
            log,
            _stdout: out,
        }
    }

    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// SIGKILL, and reap it.
    pub fn kill_hard(&mut self) {
        // SAFETY: plain syscall on our own, not yet reaped, child.
        unsafe { libc::kill(self.pid(), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Reads the server's stdout if it has the first-start lines, without
/// blocking on a restart (which writes nothing and keeps stdout open).
pub fn db_had_admin_line(out: &mut std::process::ChildStdout, text: &mut String) -> bool {
    use std::os::fd::AsRawFd;
    let fd = out.as_raw_fd();
    // SAFETY: fcntl on a pipe fd we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    let mut buf = [0u8; 4096];
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => break, // WouldBlock: everything written so far is read
        }
        if text.lines().count() >= 2 {
            break;
        }
    }
    text.starts_with("first start")
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SIGTERM (graceful), SIGKILL if it lingers.
            // SAFETY: plain syscall on our own child.
            unsafe { libc::kill(self.pid(), libc::SIGTERM) };
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The outcome of one `holdup` run.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(self, what: &str) -> Run {
        assert!(
            self.status.success(),
            "{what}: holdup failed with {:?}\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{what}: {}", self.stderr);
        self
    }

    /// A clean failure: an exit code, no panic, a `holdup: ...` message.
    pub fn fails(self, what: &str) -> Run {
        assert!(
            !self.status.success() && self.status.code().is_some(),
            "{what}: expected holdup to fail, got {:?}\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{what}: {}", self.stderr);
        assert!(
            self.stderr.starts_with("holdup: "),
            "{what}: the error should be a `holdup: ...` message, got {:?}",
            self.stderr
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// Runs `cmd` to completion; kills it and fails the test after `DEADLINE`.
pub fn run(mut cmd: Command) -> Run {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start holdup");
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.expect("wait for holdup"),
        Err(_) => {
            // SAFETY: the child is not reaped until the waiting thread returns.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{cmd:?} did not finish within {DEADLINE:?}");
        }
    };
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `holdup wb ARGS...` against `url` as the holder of `token`, through the
/// environment (HOLDUP_WB_URL, HOLDUP_WB_TOKEN).
pub fn wb(url: &str, token: &str, args: &[&str]) -> Run {
    let mut c = Command::new(env!("CARGO_BIN_EXE_holdup"));
    c.arg("wb")
        .args(args)
        .env_remove("HOLDUP_LOG")
        .env("HOLDUP_WB_URL", url)
        .env("HOLDUP_WB_TOKEN", token);
    run(c)
}

/// Creates a user through `holdup wb users create` as admin; its token.
pub fn create_user(s: &Server, name: &str, role: &str) -> String {
    let admin = s.admin.as_deref().expect("admin token");
    let r = wb(&s.url, admin, &["users", "create", name, role]).ok("users create");
    assert!(
        r.stdout.contains(&format!("created user {name}")),
        "{}",
        r.stdout
    );
    let token = r.stdout.lines().last().unwrap().trim().to_string();
    assert!(token.starts_with("hwb_"), "no token in {:?}", r.stdout);
    token
}

pub fn id_of(v: &Value) -> i64 {
    v["id"].as_i64().unwrap_or_else(|| panic!("no id in {v}"))
}

/// Is `pid` a live process (not gone, not a zombie)?
pub fn alive(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next());
            state != Some("Z") && state != Some("X")
        }
    }
}

/// Opens an incident, submits `script`, requests it for `duration` on the
/// incident as `req`, and has `appr` approve it. (incident, script, request).
pub fn approved_script_request(
    url: &str,
    req: &str,
    appr: &str,
    dir: &TempDir,
    script: &str,
    duration: &str,
) -> (i64, i64, i64) {
    let inc = wb(
        url,
        req,
        &[
            "--json",
            "incident",
            "create",
            "--title",
            "checkout p99 doubled",
            "--service",
            "shop",
        ],
    )
    .ok("incident create")
    .json();
    let inc = id_of(&inc);
    let file = dir.join("probe.bt");
    std::fs::write(&file, script).unwrap();
    let sub = wb(
        url,
        req,
        &["submit", "ticks", file.to_str().unwrap(), "--json"],
    )
    .ok("submit")
    .json();
    assert_eq!(sub["status"], "accepted", "{sub}");
    let sid = id_of(&sub);
    let r = wb(
        url,
        req,
        &[
            "--json",
            "request",
            &format!("script:{sid}"),
            "--purpose",
            "see whether the timer fires",
            "--duration",
            duration,
            "--incident",
            &inc.to_string(),
        ],
    )
    .ok("request")
    .json();
    assert_eq!(r["status"], "pending", "a script needs an approver: {r}");
    assert_eq!(r["incident_id"], inc, "{r}");
    let rid = id_of(&r);
    let a = wb(url, appr, &["approve", &rid.to_string(), "--comment", "ok"]).ok("approve");
    assert!(a.stdout.contains("approved by bob"), "{}", a.stdout);
    (inc, sid, rid)
}
