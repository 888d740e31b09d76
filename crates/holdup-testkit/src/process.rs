//! Running a command to its end under a deadline, as the end-to-end tests
//! of the `holdup` binary do: a hang fails the test instead of blocking it,
//! and a failure shows what the command wrote.

use serde_json::Value;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs `cmd` to completion (stdin closed, stdout and stderr captured);
/// SIGKILLs it and fails the test, showing its output, if it takes longer
/// than `limit`.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(limit) {
        Ok(out) => out,
        Err(_) => {
            // SAFETY: plain syscall; the child is not reaped until the
            // waiting thread returns, so the pid is still ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let out = rx.recv().expect("the waiting thread answers");
            let (stdout, stderr) = out
                .map(|o| (text(&o.stdout), text(&o.stderr)))
                .unwrap_or_default();
            panic!("{cmd:?} did not finish within {limit:?}\nstdout: {stdout}\nstderr: {stderr}");
        }
    };
    out.unwrap_or_else(|e| panic!("wait for {cmd:?}: {e}"))
}

/// Runs `cmd` as [`output_within`] does (at most 5 minutes) and fails the
/// test, showing its stderr, unless it succeeds; its output.
pub fn succeeds(cmd: &mut Command, what: &str) -> Output {
    let out = output_within(cmd, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        text(&out.stderr)
    );
    out
}

/// Bytes a command wrote, as text (invalid UTF-8 replaced).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The outcome of one run of a command, with its output as text.
pub struct Run {
    /// How it exited.
    pub status: ExitStatus,
    /// What it wrote to stdout.
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
    /// How long it ran.
    pub took: Duration,
}

/// Runs `cmd` as [`output_within`] does; its outcome as text.
pub fn run_within(cmd: &mut Command, limit: Duration) -> Run {
    let started = Instant::now();
    let out = output_within(cmd, limit);
    Run {
        status: out.status,
        stdout: text(&out.stdout),
        stderr: text(&out.stderr),
        took: started.elapsed(),
    }
}

impl Run {
    /// Fails the test if the program panicked (whatever its exit code).
    pub fn assert_no_panic(&self) {
        assert!(
            !self.stderr.contains("panicked") && !self.stdout.contains("panicked"),
            "holdup panicked:\n{}",
            self.stderr
        );
    }

    /// Asserts a clean failure: non-zero exit, no panic, one `holdup: ...`
    /// message on stderr.
    pub fn assert_fails(&self, what: &str) {
        self.assert_no_panic();
        assert!(
            !self.status.success() && self.status.code().is_some(),
            "{what}: expected holdup to fail with an exit code, got {:?}\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        assert!(
            self.stderr.starts_with("holdup: "),
            "{what}: the error should be a `holdup: ...` message, got {:?}",
            self.stderr
        );
    }

    /// Asserts success without a panic.
    pub fn assert_success(&self, what: &str) {
        self.assert_no_panic();
        assert!(
            self.status.success(),
            "{what}: holdup failed with {:?}\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
    }

    /// [`Run::assert_success`], passing the run on.
    pub fn ok(self, what: &str) -> Run {
        self.assert_success(what);
        self
    }

    /// [`Run::assert_fails`], passing the run on.
    pub fn fails(self, what: &str) -> Run {
        self.assert_fails(what);
        self
    }

    /// Its stdout as JSON (fails the test when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}
