//! Static checks of user-submitted bpftrace scripts, run on submit and on
//! change.
//!
//! The checks read the script the way bpftrace does, from bpftrace's own
//! parse: `bpftrace -d` (0.17's dry run: parse and semantic analysis,
//! nothing loaded) prints the syntax tree, and the attach points and the
//! functions called are taken from that tree, not from the script text.
//! A text scan disagrees with bpftrace's lexer sooner or later (a quote on
//! a `#define` line, `//` inside an attach path, a quoted wildcard), and
//! every disagreement is a bypass.
//!
//! 1. `#include` (and anything that could pull a file into the
//!    preprocessor) is refused unless the policy allows it, before bpftrace
//!    sees the script;
//! 2. `bpftrace -d` must parse the script, bounded in memory, CPU time,
//!    wall time and output size, and must not report errors;
//! 3. unsafe builtins called anywhere in the tree are refused unless the
//!    policy allows them;
//! 4. wildcard attach points (as bpftrace read them, quotes removed) are
//!    expanded with `bpftrace -l` and refused past the policy's limit, or
//!    when they cannot be counted.

use crate::policy::Policy;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Builtins refused unless the policy allows unsafe scripts: the ones
/// bpftrace only accepts with `--unsafe` (they act on the host), and `cat`,
/// which bpftrace allows but which reads any file as root into the run's
/// output, where every viewer of the incident can read it.
pub const UNSAFE_BUILTINS: &[&str] = &["system", "signal", "override", "cat"];

/// Words that may make the C preprocessor read a file (`#include`,
/// `#include_next`, `#import`, `#embed`), searched for anywhere in the
/// script. Directives can be spelled many ways (`%:`, `??=`, comments or
/// line splices between `#` and the name), so the whole text is searched
/// rather than parsed: a stray word costs a refusal, a missed directive a
/// root read of any file (`/dev/zero` grows the checker without bound).
const FILE_DIRECTIVES: &[&str] = &["include", "import", "embed"];

/// Most wildcard attach points one script may have (each costs a
/// `bpftrace -l`).
const MAX_WILDCARDS: usize = 16;

/// The result of the checks, stored with the script.
pub use holdup_wb_api::CheckReport;

/// Bounds of one bpftrace process run by the checks.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Address space (RLIMIT_AS), bytes.
    pub memory_bytes: u64,
    /// CPU time (RLIMIT_CPU), and wall time.
    pub time: Duration,
    /// Largest stdout kept; more kills the process.
    pub output_bytes: usize,
}

impl Bounds {
    /// The bounds the policy sets for checks.
    pub fn from_policy(policy: &Policy) -> Bounds {
        Bounds {
            memory_bytes: policy.check_memory_bytes,
            time: Duration::from_secs(policy.check_time_s.max(1)),
            output_bytes: 16 << 20,
        }
    }
}

/// What a bounded process left behind.
struct Bounded {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Why a bounded process did not complete.
#[derive(Debug, thiserror::Error)]
enum BoundError {
    #[error("could not run bpftrace: {0}")]
    Spawn(std::io::Error),
    #[error("it ran longer than {0} s and was killed")]
    Time(u64),
    #[error("it printed more than {0} bytes and was killed")]
    Output(usize),
}

/// Reads `from` to its end, keeping at most `cap` bytes; says whether
/// there was more.
fn read_capped(mut from: impl Read, cap: usize) -> (Vec<u8>, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        match from.read(&mut chunk) {
            Ok(0) | Err(_) => return (buf, false),
            Ok(n) if buf.len() + n > cap => return (buf, true),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Runs `cmd` with `input` on stdin under `bounds`: rlimits on address
/// space and CPU time in the child, a wall-clock deadline and an output
/// cap in the parent (either kills it).
fn run_bounded(cmd: &mut Command, input: &[u8], bounds: Bounds) -> Result<Bounded, BoundError> {
    let mem = bounds.memory_bytes;
    let cpu = bounds.time.as_secs().max(1);
    // SAFETY: setrlimit is async-signal-safe and touches no memory of the
    // parent; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let set = |res, v: u64| {
                let lim = libc::rlimit {
                    rlim_cur: v,
                    rlim_max: v,
                };
                if libc::setrlimit(res, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            set(libc::RLIMIT_AS, mem)?;
            set(libc::RLIMIT_CPU, cpu)?;
            // The checks write no files; neither may the script make them.
            set(libc::RLIMIT_FSIZE, 0)?;
            set(libc::RLIMIT_CORE, 0)?;
            Ok(())
        });
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(BoundError::Spawn)?;
    let mut stdin = child.stdin.take();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            let _ = s.write_all(&input);
        }
        // dropped: bpftrace sees the end of the program
    });
    let out = child.stdout.take();
    let err = child.stderr.take();
    let cap = bounds.output_bytes;
    let t_out = std::thread::spawn(move || out.map(|o| read_capped(o, cap)).unwrap_or_default());
    let t_err =
        std::thread::spawn(move || err.map(|e| read_capped(e, 64 * 1024).0).unwrap_or_default());
    let deadline = Instant::now() + bounds.time;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(e) => return Err(BoundError::Spawn(e)),
        }
        // The stdout reader returns early only when over the cap (or at
        // EOF, and then the child exits right after).
        let over_cap = t_out.is_finished();
        if Instant::now() >= deadline || over_cap {
            if over_cap {
                std::thread::sleep(Duration::from_millis(200));
                if let Ok(Some(st)) = child.try_wait() {
                    break st;
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = feeder.join();
            let (_, over) = t_out.join().unwrap_or_default();
            return Err(if over {
                BoundError::Output(cap)
            } else {
                BoundError::Time(bounds.time.as_secs())
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = feeder.join();
    let (stdout, over) = t_out.join().unwrap_or_default();
    if over {
        return Err(BoundError::Output(cap));
    }
    Ok(Bounded {
        status,
        stdout,
        stderr: t_err.join().unwrap_or_default(),
    })
}

/// The path of bpftrace used by the checks (`HOLDUP_BPFTRACE_CHECK`, for
/// tests, else `bpftrace`).
fn bpftrace_bin() -> String {
    std::env::var("HOLDUP_BPFTRACE_CHECK").unwrap_or_else(|_| "bpftrace".into())
}

/// Whether the script names a file directive (see [`FILE_DIRECTIVES`]),
/// after joining lines split with a backslash.
pub fn file_directives(text: &str) -> Vec<&'static str> {
    let joined = text.replace("\\\r\n", "").replace("\\\n", "");
    FILE_DIRECTIVES
        .iter()
        .copied()
        .filter(|d| joined.contains(d))
        .collect()
}

/// What the checks take from bpftrace's syntax tree dump.
#[derive(Debug, Default, PartialEq)]
pub struct AstFacts {
    /// Whether a tree was printed at all (the script parsed).
    pub parsed: bool,
    /// Attach points, in order, each once.
    pub attach_points: Vec<String>,
    /// Functions called, each once.
    pub calls: Vec<String>,
}

/// Reads the attach points and calls from `bpftrace -d` output.
///
/// In the dump, a program is a line `Program`, its probes' attach points
/// are the lines indented by exactly one space, and a call is a node line
/// `call: NAME :: type[...]` at any depth. String literals print as
/// `string: ...` and cannot hold a newline (bpftrace refuses one), so no
/// literal can forge a node line. C definitions (`#define`, structs) are
/// printed verbatim before `Program` and can hold any text: every line of
/// the whole dump is scanned, so forged lines there can only add calls or
/// attach points (a refusal, or a wildcard to count), never hide the real
/// ones, which always follow the real `Program` line.
pub fn ast_facts(dump: &str) -> AstFacts {
    let mut facts = AstFacts::default();
    let mut in_program = false;
    for line in dump.lines() {
        if line == "Program" {
            facts.parsed = true;
            in_program = true;
            continue;
        }
        if !line.starts_with(' ') {
            // a stage header, a C definition line, or LLVM IR's top level
            in_program = false;
            continue;
        }
        let depth = line.len() - line.trim_start_matches(' ').len();
        let node = line.trim_start_matches(' ');
        if let Some(rest) = node.strip_prefix("call: ") {
            let name = rest.split(" ::").next().unwrap_or(rest).trim();
            if !name.is_empty() && !facts.calls.iter().any(|c| c == name) {
                facts.calls.push(name.to_string());
            }
        } else if in_program && depth == 1 && !facts.attach_points.iter().any(|p| p == node) {
            facts.attach_points.push(node.to_string());
        }
    }
    facts
}

/// Counts what a wildcard attach point expands to with `bpftrace -l`.
fn count_probes(point: &str, bounds: Bounds) -> Option<u64> {
    let out = run_bounded(
        Command::new(bpftrace_bin()).arg("-l").arg(point),
        b"",
        bounds,
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

/// bpftrace's error lines (its RLIMIT_MEMLOCK notice is not an error of
/// the script).
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("ERROR") && !l.contains("RLIMIT_MEMLOCK"))
        .collect()
}

/// Runs every check on the script `text`.
pub fn check(text: &str, policy: &Policy) -> CheckReport {
    let mut report = CheckReport::default();
    let bounds = Bounds::from_policy(policy);
    let directives = file_directives(text);
    if !directives.is_empty() && !policy.allow_include {
        report.problems.push(format!(
            "the script mentions {} (a C preprocessor directive could read any file as root); the policy has allow_include = false, so remove it",
            directives.join(", ")
        ));
        report.parse = "not run: the script was refused before bpftrace read it".into();
        return report;
    }
    let mut cmd = Command::new(bpftrace_bin());
    cmd.arg("-d");
    if policy.allow_unsafe {
        cmd.arg("--unsafe");
    }
    // The program comes on stdin: no file to place, and bpftrace's messages
    // name "stdin", not a server path.
    cmd.arg("-");
    let out = match run_bounded(&mut cmd, text.as_bytes(), bounds) {
        Ok(o) => o,
        Err(BoundError::Spawn(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            report.problems.push(
                "bpftrace is not installed on the server, so the script cannot be checked (install bpftrace)".into(),
            );
            report.parse = "not run: bpftrace is not installed".into();
            return report;
        }
        Err(e) => {
            report.problems.push(format!(
                "bpftrace -d did not finish checking the script: {e} (bounds: {} MiB of memory, {} s; policy check_memory_bytes, check_time_s)",
                bounds.memory_bytes >> 20,
                bounds.time.as_secs()
            ));
            report.parse = format!("failed: {e}");
            return report;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let dump = String::from_utf8_lossy(&out.stdout);
    let facts = ast_facts(&dump);
    let errors = error_lines(&stderr);
    report.attach_points = facts.attach_points;
    report.unsafe_builtins = UNSAFE_BUILTINS
        .iter()
        .filter(|b| facts.calls.iter().any(|c| c == *b))
        .map(|b| b.to_string())
        .collect();
    if !report.unsafe_builtins.is_empty() && !policy.allow_unsafe {
        report.problems.push(format!(
            "uses unsafe builtin(s) {} (needs bpftrace --unsafe, or reads files as root); the policy has allow_unsafe = false",
            report.unsafe_builtins.join(", ")
        ));
    }
    if !out.status.success() || !errors.is_empty() || !facts.parsed {
        let msg = if errors.is_empty() {
            let s = stderr.trim();
            if s.is_empty() {
                format!("it exited with {} and printed no syntax tree", out.status)
            } else {
                s.to_string()
            }
        } else {
            errors.join("\n")
        };
        report
            .problems
            .push(format!("bpftrace -d refused the script: {msg}"));
        report.parse = format!("failed: {msg}");
    } else {
        report.parse = "ok: bpftrace -d parsed and analysed the script".into();
    }
    if facts.parsed && report.attach_points.is_empty() {
        report
            .problems
            .push("no attach point found (expected `probe:target { ... }`)".into());
    }
    let wild: Vec<String> = report
        .attach_points
        .iter()
        .filter(|p| p.contains('*') || p.contains('?'))
        .cloned()
        .collect();
    if wild.len() > MAX_WILDCARDS {
        report.problems.push(format!(
            "{} wildcard attach points: at most {MAX_WILDCARDS} are counted; list the probes instead",
            wild.len()
        ));
    } else {
        for p in wild {
            let n = count_probes(&p, bounds);
            match n {
                Some(n) if n > policy.wildcard_limit => report.problems.push(format!(
                    "wildcard `{p}` expands to {n} probes, over the policy's wildcard_limit {}",
                    policy.wildcard_limit
                )),
                Some(0) => report.problems.push(format!(
                    "wildcard `{p}` matches no probe here (bpftrace -l found none, or may not list them without privileges), so its cost cannot be bounded"
                )),
                None => report.problems.push(format!(
                    "wildcard `{p}` could not be counted with bpftrace -l, so its cost cannot be bounded"
                )),
                Some(_) => {}
            }
            report.wildcards.push((p, n));
        }
    }
    report.accepted = report.problems.is_empty();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bpftrace -d` output for
    /// `#define X "abc` / `uprobe://bin/bash:readline, i:s:1 /pid == 1/ { @a[comm] = count(); cat("/etc/shadow"); printf("%s\n", "system(x)"); }`
    /// (bpftrace 0.17).
    const DUMP: &str = "\nAST after: parser\n-------------------\n#define X \"abc\n\nProgram\n uprobe://bin/bash:readline\n interval:s:1\n  pred\n   == :: type[none, ctx: 0]\n    builtin: pid :: type[none, ctx: 0]\n    int: 1 :: type[none, ctx: 0]\n  =\n   map: @a :: type[none, ctx: 0]\n    builtin: comm :: type[none, ctx: 0]\n   call: count :: type[none, ctx: 0]\n  call: cat :: type[none, ctx: 0]\n   string: /etc/shadow :: type[none, ctx: 0]\n  call: printf :: type[none, ctx: 0]\n   string: %s\\n :: type[none, ctx: 0]\n   string: system(x) :: type[none, ctx: 0]\n\n";

    #[test]
    fn reads_calls_and_attach_points_from_the_tree() {
        let f = ast_facts(DUMP);
        assert!(f.parsed);
        assert_eq!(
            f.attach_points,
            vec!["uprobe://bin/bash:readline", "interval:s:1"]
        );
        // `system(x)` is inside a string: not a call
        assert_eq!(f.calls, vec!["count", "cat", "printf"]);
    }

    #[test]
    fn forged_lines_in_c_definitions_cannot_hide_real_calls() {
        // a struct comment holding a fake program and a blank line
        let dump = "\nAST after: parser\n-------------------\nstruct X { /*\n\nProgram\n kprobe:fake\n*/ int a; }\n\nProgram\n BEGIN\n  call: system :: type[none, ctx: 0]\n";
        let f = ast_facts(dump);
        assert!(f.calls.contains(&"system".to_string()), "{f:?}");
        assert!(f.attach_points.contains(&"BEGIN".to_string()), "{f:?}");
    }

    #[test]
    fn no_tree_means_not_parsed() {
        assert!(!ast_facts("stdin:1:1: ERROR: syntax error\n").parsed);
    }

    #[test]
    fn file_directives_found_however_spelled() {
        assert_eq!(file_directives("#include \"/dev/zero\"\n"), vec!["include"]);
        assert_eq!(file_directives("%:inc\\\nlude <x>\n"), vec!["include"]);
        assert_eq!(file_directives("#import \"x\"\n"), vec!["import"]);
        assert!(file_directives("BEGIN { printf(\"hi\"); }").is_empty());
    }
}
