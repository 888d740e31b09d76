//! Static checks of user-submitted bpftrace scripts, run on submit.
//!
//! 1. unsafe builtins (`system`, `signal`, `override`, ...) are refused unless
//!    the policy allows them;
//! 2. attach points are read from the script text;
//! 3. wildcard attach points are expanded with `bpftrace -l` and refused past
//!    the policy's limit (or when they cannot be counted);
//! 4. `bpftrace -d` (dry run: parse and semantic analysis, nothing loaded)
//!    must accept the script, when bpftrace is installed.

use crate::policy::Policy;
use serde::Serialize;
use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Builtins refused unless the policy allows unsafe scripts: the ones
/// bpftrace only accepts with `--unsafe` (they act on the host), and `cat`,
/// which bpftrace allows but which reads any file as root into the run's
/// output, where every viewer of the incident can read it.
pub const UNSAFE_BUILTINS: &[&str] = &["system", "signal", "override", "cat"];

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub accepted: bool,
    pub attach_points: Vec<String>,
    pub unsafe_builtins: Vec<String>,
    /// Per wildcard attach point: how many probes it expands to (None: unknown).
    pub wildcards: Vec<(String, Option<u64>)>,
    /// Why the script was refused, one line per reason.
    pub problems: Vec<String>,
    /// What `bpftrace -d` said, or why it was skipped.
    pub parse: String,
}

/// Removes `//` and `/* */` comments and string literals' contents, so the
/// scans below see only code.
fn strip(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == '/' && b.get(i + 1) == Some(&'/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if b[i] == '/' && b.get(i + 1) == Some(&'*') {
            i += 2;
            while i < b.len() && !(b[i] == '*' && b.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if b[i] == '"' {
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            out.push('"');
            i += 1;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Unsafe builtins called in the script (`name(` with a word boundary before).
pub fn unsafe_calls(text: &str) -> Vec<String> {
    let code = strip(text);
    let mut found = Vec::new();
    for name in UNSAFE_BUILTINS {
        let mut start = 0;
        while let Some(pos) = code[start..].find(name) {
            let at = start + pos;
            let before_ok = code[..at]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '$' || c == '@'));
            let after = code[at + name.len()..].trim_start();
            if before_ok && after.starts_with('(') && !found.iter().any(|f| f == name) {
                found.push(name.to_string());
            }
            start = at + name.len();
        }
    }
    found
}

/// Attach points: the comma-separated probe lists before each top-level
/// `{` (predicates `/.../` removed).
pub fn attach_points(text: &str) -> Vec<String> {
    let code = strip(text);
    let mut points = Vec::new();
    let mut depth = 0usize;
    let mut header = String::new();
    for c in code.chars() {
        match c {
            '{' => {
                if depth == 0 {
                    let h = match header.find('/') {
                        // a predicate starts with '/' after whitespace
                        Some(p) if header[..p].ends_with(char::is_whitespace) => &header[..p],
                        _ => header.as_str(),
                    };
                    for p in h.split(',') {
                        let p = p.trim();
                        if !p.is_empty() {
                            points.push(p.to_string());
                        }
                    }
                    header.clear();
                }
                depth += 1;
            }
            '}' => depth = depth.saturating_sub(1),
            _ if depth == 0 => header.push(c),
            _ => {}
        }
    }
    points
}

/// How long one bpftrace invocation of the checks may take.
pub const BPFTRACE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `cmd` to completion, killing it after `limit`. Reads stdout and
/// stderr concurrently so a large listing cannot fill a pipe and hang.
fn output_with_timeout(cmd: &mut Command, limit: Duration) -> std::io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut b);
        }
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut b);
        }
        b
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("timed out after {} s", limit.as_secs()),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

fn bpftrace_available() -> bool {
    output_with_timeout(Command::new("bpftrace").arg("--version"), BPFTRACE_TIMEOUT)
        .is_ok_and(|o| o.status.success())
}

/// Counts what a wildcard attach point expands to with `bpftrace -l`.
fn count_probes(point: &str) -> Option<u64> {
    let out = output_with_timeout(
        Command::new("bpftrace").arg("-l").arg(point),
        BPFTRACE_TIMEOUT,
    )
    .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count() as u64,
    )
}

/// Runs every check. `script_path` is a file holding `text`, for bpftrace.
pub fn check(text: &str, script_path: &std::path::Path, policy: &Policy) -> CheckReport {
    let mut problems = Vec::new();
    let unsafe_builtins = unsafe_calls(text);
    if !unsafe_builtins.is_empty() && !policy.allow_unsafe {
        problems.push(format!(
            "uses unsafe builtin(s) {} (needs bpftrace --unsafe); the policy has allow_unsafe = false",
            unsafe_builtins.join(", ")
        ));
    }
    let attach = attach_points(text);
    if attach.is_empty() {
        problems.push("no attach point found (expected `probe:target { ... }`)".into());
    }
    let have_bpftrace = bpftrace_available();
    let mut wildcards = Vec::new();
    for p in attach.iter().filter(|p| p.contains('*') || p.contains('?')) {
        let n = if have_bpftrace { count_probes(p) } else { None };
        match n {
            Some(n) if n > policy.wildcard_limit => problems.push(format!(
                "wildcard `{p}` expands to {n} probes, over the policy's wildcard_limit {}",
                policy.wildcard_limit
            )),
            Some(0) => problems.push(format!(
                "wildcard `{p}` matches no probe here (bpftrace -l found none, or may not list them without privileges), so its cost cannot be bounded"
            )),
            None => problems.push(format!(
                "wildcard `{p}` could not be counted with bpftrace -l, so its cost cannot be bounded"
            )),
            Some(_) => {}
        }
        wildcards.push((p.clone(), n));
    }
    let parse = if !have_bpftrace {
        "skipped: bpftrace is not installed".to_string()
    } else {
        let mut cmd = Command::new("bpftrace");
        cmd.arg("-d");
        if policy.allow_unsafe {
            cmd.arg("--unsafe");
        }
        match output_with_timeout(cmd.arg(script_path), BPFTRACE_TIMEOUT) {
            Err(e) => format!("skipped: could not run bpftrace: {e}"),
            Ok(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let errors: Vec<&str> = stderr
                    .lines()
                    .filter(|l| l.contains("ERROR") && !l.contains("RLIMIT_MEMLOCK"))
                    .collect();
                if !out.status.success() || !errors.is_empty() {
                    let msg = if errors.is_empty() {
                        stderr.trim().to_string()
                    } else {
                        errors.join("\n")
                    };
                    problems.push(format!("bpftrace -d refused the script: {msg}"));
                    format!("failed: {msg}")
                } else {
                    "ok: bpftrace -d parsed and analysed the script".to_string()
                }
            }
        }
    };
    CheckReport {
        accepted: problems.is_empty(),
        attach_points: attach,
        unsafe_builtins,
        wildcards,
        problems,
        parse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_unsafe_calls_but_not_in_comments_or_strings() {
        assert_eq!(unsafe_calls("k:f { system(\"ls\"); }"), vec!["system"]);
        assert!(unsafe_calls("k:f { printf(\"system(x)\"); } // signal(9)").is_empty());
        assert!(unsafe_calls("k:f { @system_calls = count(); }").is_empty());
        assert_eq!(
            unsafe_calls("BEGIN { cat(\"/etc/shadow\"); exit(); }"),
            vec!["cat"]
        );
        assert!(unsafe_calls("k:f { @cat[comm] = count(); concat(1); }").is_empty());
    }

    #[test]
    fn parses_attach_points() {
        let s = "BEGIN { }\nkprobe:vfs_read, kprobe:vfs_write /pid == 1/ { @[probe] = count(); }\ntracepoint:sched:* { }";
        assert_eq!(
            attach_points(s),
            vec![
                "BEGIN",
                "kprobe:vfs_read",
                "kprobe:vfs_write",
                "tracepoint:sched:*"
            ]
        );
    }
}
