//! End-to-end tests of the `holdup` binary: `record` (including a recorder
//! killed with SIGKILL), `inspect` of good, truncated, damaged and foreign
//! files, `top` (JSON and plain text), the command target, and the error
//! messages for bad targets, paths and options.
//!
//! Tests that load BPF need root. Without it they are skipped (the parts that
//! need no BPF still run), except with CI=true, where a missing capability
//! fails them. Tests run one at a time (a global lock): they measure CPU time
//! on a two-core machine. Every `holdup` run has a deadline, so a hang fails
//! the test instead of blocking it.

use holdup_model::{Snapshot, Target};
use holdup_record::{ReadStatus, Recorder, Recording, RecordingHeader};
use holdup_testkit::process::{run_within, Run};
use holdup_testkit::{bpf_allowed, bpf_setup, serial, workload_bin, TempDir, Workload};
use serde_json::Value;
use std::io::Read;
use std::os::fd::FromRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Longest any single `holdup` run may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

fn lock() -> std::sync::MutexGuard<'static, ()> {
    serial()
}

fn setup(what: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    bpf_setup(what)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// `holdup ARGS...`, with logging at its default level.
fn holdup(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_holdup"));
    c.args(args).env_remove("HOLDUP_LOG");
    c
}

/// Runs `cmd` to completion (stdin closed, output captured); kills it and
/// fails the test if it takes longer than `limit`.
fn run_for(mut cmd: Command, limit: Duration) -> Run {
    run_within(&mut cmd, limit)
}

fn run(cmd: Command) -> Run {
    run_for(cmd, DEADLINE)
}

/// The hw-spin thread (by tid) in a window.
fn spinner(s: &Snapshot, tid: u32) -> &holdup_model::ThreadWindow {
    s.thread(tid).unwrap_or_else(|| {
        panic!(
            "hw-spin (tid {tid}) missing from window {}: threads {:?}",
            s.window.index,
            s.threads
                .iter()
                .map(|t| (t.tid, &t.comm))
                .collect::<Vec<_>>()
        )
    })
}

fn assert_consecutive(windows: &[Snapshot]) {
    let idx: Vec<u64> = windows.iter().map(|w| w.window.index).collect();
    let want: Vec<u64> = (0..windows.len() as u64).collect();
    assert_eq!(idx, want, "window indices should be 0, 1, 2, ...");
}

#[test]
fn record_killed_with_sigkill_keeps_complete_windows() {
    let Some(_g) = setup("record_killed_with_sigkill_keeps_complete_windows") else {
        return;
    };
    let w = Workload::start(&["spin", "--secs", "10"]);
    let (pid, tid) = (w.pid().to_string(), w.tid("hw-spin"));
    let dir = TempDir::new("sigkill");

    // --- A recorder killed with SIGKILL 3.2 s after it starts.
    let killed = dir.join("killed.rec");
    let mut child = holdup(&[
        "record",
        "--pid",
        &pid,
        "-o",
        s(&killed),
        "--interval",
        "500ms",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start holdup record");
    std::thread::sleep(Duration::from_millis(3200));
    // SAFETY: plain syscall on our own, not yet reaped, child.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) },
        0
    );
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "holdup record should still have been running when killed: {status:?}\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let rec = Recording::open(&killed).expect("a killed recording must still open");
    // No end marker, and a kill never leaves a damaged block: only a cut-off one.
    let n = rec.windows.len();
    match &rec.status {
        ReadStatus::Truncated {
            complete_windows, ..
        } => assert_eq!(*complete_windows as usize, n),
        other => panic!("a SIGKILLed recording should read as ended early, got {other:?}"),
    }
    // 500 ms windows for 3.2 s minus start-up (BPF load, ~0.3-0.5 s): 5-6
    // complete windows expected; accept 4 (a slow start-up) up to 7.
    assert!(
        (4..=7).contains(&n),
        "{n} complete windows recovered after 3.2 s of 500 ms windows"
    );
    assert_consecutive(&rec.windows);
    assert_eq!(rec.header.target, Target::Pid { pid: w.pid() });
    assert_eq!(rec.header.interval_ms, 500);
    for s in &rec.windows {
        assert_eq!(spinner(s, tid).comm, "hw-spin");
    }

    let r = run(holdup(&["inspect", s(&killed)]));
    r.assert_success("inspect of a killed recording");
    assert!(
        r.stdout.contains("ended early")
            && r.stdout
                .contains(&format!("recovered {n} complete windows")),
        "inspect should say the recording ended early and that {n} windows were recovered:\n{}",
        r.stdout
    );
    assert!(r.stdout.contains("hw-spin"), "{}", r.stdout);

    // --- A normal run, stopped by --duration, with the default 1 s window.
    let normal = dir.join("normal.rec");
    let r = run(holdup(&[
        "record",
        "--pid",
        &pid,
        "--duration",
        "2s",
        "-o",
        s(&normal),
    ]));
    r.assert_success("record --duration 2s");
    let rec = Recording::open(&normal).expect("open a finished recording");
    assert_eq!(rec.status, ReadStatus::Complete);
    // 2 s of 1 s windows: 2, +-1.
    let n = rec.windows.len();
    assert!((1..=3).contains(&n), "{n} windows in a 2 s recording");
    assert_consecutive(&rec.windows);
    for s in &rec.windows {
        spinner(s, tid);
    }
    assert!(
        r.stderr.contains(&format!("wrote {n} windows")),
        "record should report the windows it wrote ({n}):\n{}",
        r.stderr
    );
    let r = run(holdup(&["inspect", s(&normal)]));
    r.assert_success("inspect of a complete recording");
    assert!(
        r.stdout.contains("recording is complete"),
        "inspect should say the recording is complete:\n{}",
        r.stdout
    );
}

/// Small deterministic pseudo-random bytes (xorshift64).
fn random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Byte offset of each block after the header, from the documented format:
/// preamble 20 bytes (magic, version, header length, header crc), header,
/// then blocks of 28 header bytes plus their compressed length.
fn block_offsets(bytes: &[u8]) -> Vec<(usize, usize)> {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let mut off = 20 + u32_at(12);
    let mut blocks = Vec::new();
    while off + 28 <= bytes.len() && &bytes[off..off + 4] == b"WIN1" {
        let clen = u32_at(off + 12);
        blocks.push((off, 28 + clen));
        off += 28 + clen;
    }
    blocks
}

#[test]
fn inspect_of_corrupt_or_foreign_files_fails_cleanly() {
    let _g = lock();
    let dir = TempDir::new("corrupt");

    // (a) random bytes
    let random = dir.join("random.rec");
    std::fs::write(&random, random_bytes(4096)).unwrap();
    let r = run(holdup(&["inspect", s(&random)]));
    r.assert_fails("inspect of random bytes");
    assert!(
        r.stderr.contains(s(&random)) && r.stderr.contains("not a holdup recording"),
        "random bytes: the message should name the file and say it is not a recording: {}",
        r.stderr
    );

    // (b) a text file that is no recording
    let foreign = ["/etc/hostname", "/etc/passwd"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("a text file in /etc");
    let r = run(holdup(&["inspect", foreign]));
    r.assert_fails("inspect of a text file");
    assert!(
        r.stderr.contains(foreign) && r.stderr.contains("not a holdup recording"),
        "{foreign}: {}",
        r.stderr
    );

    // (d) a path that does not exist, an empty file, a directory
    let missing = dir.join("no-such.rec");
    let r = run(holdup(&["inspect", s(&missing)]));
    r.assert_fails("inspect of a missing file");
    assert!(
        r.stderr.contains(s(&missing)) && r.stderr.contains("no such file"),
        "missing file: {}",
        r.stderr
    );
    let empty = dir.join("empty.rec");
    std::fs::write(&empty, b"").unwrap();
    let r = run(holdup(&["inspect", s(&empty)]));
    r.assert_fails("inspect of an empty file");
    assert!(
        r.stderr.contains(s(&empty)) && r.stderr.contains("empty"),
        "empty file: {}",
        r.stderr
    );
    let r = run(holdup(&["inspect", s(&dir.0)]));
    r.assert_fails("inspect of a directory");
    assert!(
        r.stderr.contains(s(&dir.0)) && r.stderr.contains("directory"),
        "directory: {}",
        r.stderr
    );

    // (c) a real recording with one flipped byte.
    if !bpf_allowed("inspect_of_corrupt_or_foreign_files_fails_cleanly (damaged recording)") {
        return;
    }
    let good = dir.join("good.rec");
    let pid = std::process::id().to_string();
    // 100 ms windows for 0.5 s: 5 windows (the test needs at least 4).
    let r = run(holdup(&[
        "record",
        "--pid",
        &pid,
        "--interval",
        "100ms",
        "--duration",
        "500ms",
        "-o",
        s(&good),
    ]));
    r.assert_success("record for 0.5 s");
    let bytes = std::fs::read(&good).unwrap();
    let blocks = block_offsets(&bytes);
    assert!(
        blocks.len() >= 4,
        "expected >= 4 windows in 0.5 s of 100 ms windows, found {}",
        blocks.len()
    );

    // A byte in the middle of the data of the third window (index 2): the
    // first two windows are recovered, the damage is reported at window 2.
    let (off, len) = blocks[2];
    let mut damaged = bytes.clone();
    damaged[off + 28 + (len - 28) / 2] ^= 0x55;
    let bad = dir.join("damaged.rec");
    std::fs::write(&bad, &damaged).unwrap();
    let rec = Recording::open(&bad).expect("a damaged window is not an open error");
    assert_eq!(rec.windows.len(), 2);
    assert!(
        matches!(
            rec.status,
            ReadStatus::Corrupt {
                complete_windows: 2,
                window_index: Some(2),
                ..
            }
        ),
        "{:?}",
        rec.status
    );
    let r = run(holdup(&["inspect", s(&bad)]));
    r.assert_no_panic();
    if r.status.success() {
        // Current behaviour: the good windows are summarised, then the damage.
        assert!(
            r.stdout.contains("damaged")
                && r.stdout
                    .contains("recovered the 2 complete windows before it")
                && r.stdout.contains("window 2"),
            "inspect exits 0 on a damaged recording, so it must print the damage:\n{}",
            r.stdout
        );
    } else {
        assert!(
            r.stderr.contains(s(&bad))
                && (r.stderr.contains("damaged") || r.stderr.contains("corrupt")),
            "{}",
            r.stderr
        );
    }

    // A flipped byte in the header: nothing can be trusted, a clean error.
    let mut damaged = bytes;
    damaged[30] ^= 0x55;
    std::fs::write(&bad, &damaged).unwrap();
    let r = run(holdup(&["inspect", s(&bad)]));
    r.assert_fails("inspect of a recording with a damaged header");
    assert!(
        r.stderr.contains(s(&bad)) && r.stderr.contains("damaged header"),
        "{}",
        r.stderr
    );
}

#[test]
fn bad_targets_and_paths_get_clear_errors() {
    let _g = lock();
    let dir = TempDir::new("errors");
    let out = dir.join("x.rec");
    let me = std::process::id().to_string();

    // A bad output path fails before anything is loaded: fast (BPF load and
    // a first window take >= 0.3 s; allow 2 s for a loaded machine), naming
    // the path.
    let r = run(holdup(&[
        "record",
        "--pid",
        &me,
        "-o",
        "/nonexistent-dir/x.rec",
        "--duration",
        "1s",
    ]));
    r.assert_fails("-o in a missing directory");
    assert!(
        r.stderr.contains("/nonexistent-dir/x.rec"),
        "the message should name the path: {}",
        r.stderr
    );
    assert!(
        r.took < Duration::from_secs(2),
        "a bad -o path took {:?} to be refused",
        r.took
    );
    // With a bad pid too, the path is what is reported: it is checked before
    // the collector starts (which checks root, then the pid, then loads BPF).
    let r = run(holdup(&[
        "record",
        "--pid",
        "4999999",
        "-o",
        "/nonexistent-dir/x.rec",
    ]));
    r.assert_fails("-o in a missing directory, bad pid");
    assert!(
        r.stderr.contains("/nonexistent-dir/x.rec") && !r.stderr.contains("4999999"),
        "the path should be checked first: {}",
        r.stderr
    );

    // No target at all.
    let r = run(holdup(&["record", "-o", s(&out), "--duration", "1s"]));
    r.assert_fails("no target");
    for opt in ["--pid", "--cgroup", "--comm", "--all"] {
        assert!(r.stderr.contains(opt), "should list {opt}: {}", r.stderr);
    }

    // A bad regular expression.
    let r = run(holdup(&["record", "--comm", "(", "-o", s(&out)]));
    r.assert_fails("--comm '('");
    assert!(
        r.stderr.contains("not a valid regular expression") && r.stderr.contains("\"(\""),
        "{}",
        r.stderr
    );

    // Too short a window, for record and top.
    let r = run(holdup(&[
        "record",
        "--pid",
        &me,
        "--interval",
        "1ms",
        "-o",
        s(&out),
    ]));
    r.assert_fails("record --interval 1ms");
    assert!(r.stderr.contains("--interval"), "{}", r.stderr);
    let r = run(holdup(&["top", "--pid", &me, "--interval", "1ms"]));
    r.assert_fails("top --interval 1ms");
    assert!(r.stderr.contains("--interval"), "{}", r.stderr);
    // An option error leaves no output file behind.
    assert!(!out.exists(), "{} was created", out.display());

    // Targets that do not exist (the check runs after the root check).
    if !bpf_allowed("bad_targets_and_paths_get_clear_errors (missing pid and cgroup)") {
        return;
    }
    let r = run(holdup(&[
        "record",
        "--pid",
        "4999999",
        "-o",
        s(&out),
        "--duration",
        "1s",
    ]));
    r.assert_fails("--pid 4999999");
    assert!(
        r.stderr.contains("no process with pid 4999999"),
        "{}",
        r.stderr
    );
    let r = run(holdup(&["top", "--pid", "4999999", "--duration", "1s"]));
    r.assert_fails("top --pid 4999999");
    assert!(
        r.stderr.contains("no process with pid 4999999"),
        "{}",
        r.stderr
    );
    let r = run(holdup(&[
        "record",
        "--cgroup",
        "no/such/cg",
        "-o",
        s(&out),
        "--duration",
        "1s",
    ]));
    r.assert_fails("--cgroup no/such/cg");
    assert!(
        r.stderr.contains("no/such/cg") && r.stderr.contains("cgroup"),
        "{}",
        r.stderr
    );
}

#[test]
fn top_json_prints_one_snapshot_per_window() {
    let Some(_g) = setup("top_json_prints_one_snapshot_per_window") else {
        return;
    };
    let w = Workload::start(&["spin", "--secs", "6"]);
    let tid = w.tid("hw-spin");
    let r = run(holdup(&[
        "top",
        "--json",
        "--pid",
        &w.pid().to_string(),
        "--interval",
        "500ms",
        "--duration",
        "2s",
    ]));
    r.assert_success("top --json");
    let snaps: Vec<Snapshot> = r
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a Snapshot ({e}): {l:.300}"))
        })
        .collect();
    // 2 s of 500 ms windows: 4 (top stops once 2 s have passed); accept >= 3.
    assert!(
        (3..=6).contains(&snaps.len()),
        "{} windows in 2 s of 500 ms windows",
        snaps.len()
    );
    assert_consecutive(&snaps);
    let mut full = 0;
    for s in &snaps {
        let d = s.window.duration_ns();
        // A full window is 500 ms; timer slack makes it a little longer.
        if d < 450_000_000 {
            continue;
        }
        full += 1;
        let st = &spinner(s, tid).states;
        let running = (st.on_cpu_ns + st.runq_ns) as f64 / d as f64;
        // Spinning all the time: on-CPU or waiting for one; 10% slack for
        // accounting at window edges.
        assert!(
            running >= 0.9,
            "window {}: hw-spin on-CPU + run queue only {:.1}% of the window: {st:?}",
            s.window.index,
            running * 100.0
        );
    }
    assert!(full >= 3, "only {full} full 500 ms windows");
}

#[test]
fn top_renders_a_plain_terminal_view() {
    let Some(_g) = setup("top_renders_a_plain_terminal_view") else {
        return;
    };
    let w = Workload::start(&["spin", "--secs", "5"]);
    let r = run(holdup(&[
        "top",
        "--pid",
        &w.pid().to_string(),
        "--duration",
        "1.5s",
        "--interval",
        "500ms",
    ]));
    r.assert_success("top");
    // 1.5 s of 500 ms windows: 3 frames; accept >= 2.
    let frames = r.stdout.matches("THREAD").count();
    assert!(
        (2..=5).contains(&frames),
        "{frames} frames (THREAD headers) in:\n{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("window #0") && r.stdout.contains("window #1"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.matches("hw-spin").count() >= frames,
        "every frame should show hw-spin:\n{}",
        r.stdout
    );
    // stdout is a pipe: no clear-screen (or any other) escape sequence.
    assert!(
        !r.stdout.contains('\x1b'),
        "escape sequences written to a pipe: {:?}",
        r.stdout
    );
    assert!(
        r.stderr.contains(&format!("watching pid {}", w.pid())),
        "{}",
        r.stderr
    );
}

#[test]
fn command_target_runs_and_follows_the_command() {
    let Some(_g) = setup("command_target_runs_and_follows_the_command") else {
        return;
    };
    let dir = TempDir::new("command");
    let out = dir.join("cmd.rec");
    let wl = workload_bin();
    let r = run(holdup(&[
        "record",
        "-o",
        s(&out),
        "--duration",
        "3s",
        "--",
        s(&wl),
        "spin",
        "--secs",
        "1.5",
    ]));
    r.assert_success("record -- holdup-workload spin --secs 1.5");
    // The command spins 1.5 s; holdup stops at the end of the window in which
    // it exited (2 s with 1 s windows) plus start-up (~0.4 s): well before
    // the 3 s --duration would have ended it. 3.5 s allows a loaded machine.
    assert!(
        r.took < Duration::from_millis(3500),
        "holdup took {:?}: it should stop when the command exits",
        r.took
    );
    assert!(
        r.stderr.contains("exited"),
        "holdup should say the target exited: {}",
        r.stderr
    );
    // The command inherits holdup's stdout: its startup line names its threads.
    let info: Value = r
        .stdout
        .lines()
        .find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(|v| v["pid"].is_u64())
        })
        .unwrap_or_else(|| panic!("no workload startup line in {:?}", r.stdout));
    let pid = info["pid"].as_u64().unwrap() as u32;
    let tid = info["threads"]["hw-spin"].as_u64().unwrap() as u32;

    let rec = Recording::open(&out).expect("open the recording");
    assert_eq!(rec.status, ReadStatus::Complete);
    match &rec.header.target {
        Target::Command { argv, pid: p } => {
            assert_eq!(*p, pid, "the recorded pid is the command's");
            assert_eq!(argv[0], s(&wl));
        }
        t => panic!("target should be the command, got {t:?}"),
    }
    // 1 s windows over ~1.5 s of spinning: 2 windows (accept 1-3).
    assert!(
        (1..=3).contains(&rec.windows.len()),
        "{} windows",
        rec.windows.len()
    );
    let seen: Vec<_> = rec.windows.iter().filter_map(|s| s.thread(tid)).collect();
    assert!(!seen.is_empty(), "hw-spin (tid {tid}) in no window");
    // The window in which the thread was created may still carry the name it
    // had before it named itself (see threads_are_shown_under_their_current_name).
    assert!(
        seen.iter().any(|t| t.comm == "hw-spin"),
        "tid {tid} is never named hw-spin: {:?}",
        seen.iter().map(|t| &t.comm).collect::<Vec<_>>()
    );
    // It spun 1.5 s, all watched: on-CPU + run queue >= 90% of that.
    let running: u64 = seen
        .iter()
        .map(|t| t.states.on_cpu_ns + t.states.runq_ns)
        .sum();
    assert!(
        running >= 1_350_000_000,
        "hw-spin on-CPU + run queue {:.3} s over the recording, expected ~1.5 s",
        running as f64 / 1e9
    );
}

// --- Regression tests for bugs found while writing the tests above.

/// `holdup record` creates (truncates) the -o file before it checks the
/// target, so a typo in --pid destroys the recording it was told to write to.
#[test]
fn failed_record_leaves_an_existing_output_file_alone() {
    let _g = lock();
    let dir = TempDir::new("keep");
    let out = dir.join("precious.rec");
    std::fs::write(&out, b"an earlier recording").unwrap();
    let r = run(holdup(&["record", "--pid", "4999999", "-o", s(&out)]));
    r.assert_fails("--pid 4999999");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"an earlier recording",
        "a record that never started must not touch an existing file"
    );
}

/// `holdup inspect FILE | head -1` must not panic when the reader goes away.
#[test]
fn inspect_into_a_closed_pipe_does_not_panic() {
    let _g = lock();
    let dir = TempDir::new("pipe");
    let path = dir.join("empty-but-valid.rec");
    let header = RecordingHeader::new(Target::Pid { pid: 1 }, 1000, vec![]);
    Recorder::create(&path, &header).unwrap().finish().unwrap();

    let mut fds = [0; 2];
    // SAFETY: plain syscalls on fds this test owns.
    let write_end = unsafe {
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
        libc::close(fds[0]);
        std::os::fd::OwnedFd::from_raw_fd(fds[1])
    };
    let out = holdup(&["inspect", s(&path)])
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Windows per thread tid, with the thread's name in each window.
fn names_of(rec: &Recording, tid: u32) -> Vec<(u64, String)> {
    rec.windows
        .iter()
        .filter_map(|s| s.thread(tid).map(|t| (s.window.index, t.comm.clone())))
        .collect()
}

/// `holdup record -- CMD` must watch CMD's own process, not only the threads
/// and children it creates. Today the forked child is seen by the BPF
/// programs (fork wake-up) before its pid is put in `target_tgids`, is cached
/// as "not a target", and `Collector::spawn` never bumps `targets_gen`: the
/// command's main thread is never tracked, so a single-threaded command
/// records nothing at all ("threads: none seen").
#[test]
fn command_target_watches_the_command_itself() {
    let Some(_g) = setup("command_target_watches_the_command_itself") else {
        return;
    };
    let dir = TempDir::new("command-main");
    let out = dir.join("sh.rec");
    // A single-threaded busy shell loop: ~0.3-0.5 s of CPU.
    let r = run(holdup(&[
        "record",
        "-o",
        s(&out),
        "--duration",
        "5s",
        "--",
        "/bin/sh",
        "-c",
        "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done",
    ]));
    r.assert_success("record -- sh -c LOOP");
    let rec = Recording::open(&out).expect("open the recording");
    let Target::Command { pid, .. } = rec.header.target else {
        panic!("target should be the command: {:?}", rec.header.target);
    };
    let cpu: u64 = rec
        .windows
        .iter()
        .filter_map(|s| s.thread(pid))
        .map(|t| t.states.on_cpu_ns + t.states.runq_ns)
        .sum();
    // It did nothing but spin: most of its life (>= 0.1 s) is on-CPU or runq.
    assert!(
        cpu >= 100_000_000,
        "the command (pid {pid}) was not watched: {:.3} s on-CPU + run queue; threads seen: {:?}",
        cpu as f64 / 1e9,
        rec.windows
            .iter()
            .map(|s| s
                .threads
                .iter()
                .map(|t| (t.tid, &t.comm))
                .collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
}

/// A thread's name in a window is read once, when its per-window entry is
/// created (first event of the thread in that window), so a thread that names
/// itself right after it starts (pthread_setname_np, as nearly every named
/// thread does) shows under its parent's name for its whole first window.
#[test]
fn threads_are_shown_under_their_current_name() {
    let Some(_g) = setup("threads_are_shown_under_their_current_name") else {
        return;
    };
    let dir = TempDir::new("names");
    let out = dir.join("cmd.rec");
    let wl = workload_bin();
    let r = run(holdup(&[
        "record",
        "-o",
        s(&out),
        "--duration",
        "3s",
        "--",
        s(&wl),
        "spin",
        "--secs",
        "1.5",
    ]));
    r.assert_success("record -- holdup-workload spin --secs 1.5");
    let info: Value = r
        .stdout
        .lines()
        .find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(|v| v["pid"].is_u64())
        })
        .unwrap_or_else(|| panic!("no workload startup line in {:?}", r.stdout));
    let tid = info["threads"]["hw-spin"].as_u64().unwrap() as u32;
    let rec = Recording::open(&out).expect("open the recording");
    let names = names_of(&rec, tid);
    assert!(!names.is_empty(), "hw-spin (tid {tid}) in no window");
    // The thread named itself before the workload printed its startup line,
    // i.e. before it spun at all: every window must call it hw-spin.
    assert!(
        names.iter().all(|(_, n)| n == "hw-spin"),
        "(window, name) of tid {tid}: {names:?}"
    );
}
