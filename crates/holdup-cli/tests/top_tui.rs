//! `holdup top` on a real recording (Redis, then a CPU hog on its CPU): the
//! terminal UI's state, keys and screen (ratatui's TestBackend) on the
//! recorded windows; `--replay` without a terminal printing the plain frames
//! live `top` prints; `--replay` in a real terminal (tmux); bad replay input.
//!
//! Needs root (the recording loads BPF), redis and stress-ng: skipped
//! without them, failing with CI=true. Run under the machine's measurement
//! lock: `flock /tmp/holdup-measure.lock cargo test -p holdup-cli --test
//! top_tui -- --test-threads=1`.

// The UI logic, compiled into this test as it is into the command.
#[allow(dead_code)]
#[path = "../src/top/tui.rs"]
mod tui;

use holdup_record::Recording;
use holdup_testkit::scenario::have_tools;
use holdup_testkit::{bpf_setup, lab};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::KeyCode;
use ratatui::Terminal;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tui::{App, Event, Grouping, SortKey};

const HOLDUP: &str = env!("CARGO_BIN_EXE_holdup");

fn recording() -> Option<PathBuf> {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-top-incident.rec");
    lab::record_cpu_hog(Path::new(HOLDUP), &out, "holdup top on a recording")
}

/// The screen as text, one line per row.
fn screen(app: &mut App) -> String {
    let mut t = Terminal::new(TestBackend::new(170, 40)).unwrap();
    t.draw(|f| app.render(f)).unwrap();
    let buf = t.backend().buffer();
    let mut s = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            s.push_str(buf[(x, y)].symbol());
        }
        s.push('\n');
    }
    s
}

fn key(app: &mut App, k: KeyCode) {
    app.update(Event::Key(k));
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(HOLDUP)
        .args(args)
        .output()
        .expect("run holdup")
}

#[test]
fn top_views_a_recorded_cpu_hog_incident() {
    let Some(_g) = bpf_setup("holdup top on a recording") else {
        return;
    };
    let Some(rec_path) = recording() else {
        return;
    };
    let rec = Recording::open(&rec_path).unwrap();
    let n = rec.windows.len();
    assert!(n >= 24, "{n} windows recorded");
    // The first window the hog ran instead of Redis in (the recorder starts
    // its windows a moment after it is started, so not exactly HOG_AT).
    let hog_window = rec
        .windows
        .iter()
        .position(|w| w.culprits.iter().any(|c| c.comm == lab::HOG_COMM))
        .expect("the hog ran instead of Redis in some window");
    assert!(hog_window >= 6, "the hog in window {hog_window} already");

    let mut app = App::new("redis (test)");
    assert!(screen(&mut app).contains("waiting for the first window"));

    // Before the hog: the view follows the newest window; nothing names it.
    for w in &rec.windows[..hog_window] {
        app.update(Event::Window(Box::new(w.clone())));
    }
    let before = screen(&mut app);
    assert!(before.contains("LIVE"), "{before}");
    assert!(
        before.contains(&format!(
            "window #{}",
            rec.windows[hog_window - 1].window.index
        )),
        "{before}"
    );
    assert!(before.contains("redis-server"), "{before}");
    assert!(!before.contains(lab::HOG_COMM), "no hog yet:\n{before}");

    // The hog's windows: the "now" line is the diagnosis of the last windows
    // judged alone, and names the hog.
    for w in &rec.windows[hog_window..] {
        app.update(Event::Window(Box::new(w.clone())));
    }
    app.update(Event::Ended("replay ended".into()));
    let last = app.shown().unwrap();
    let now = app.now(last);
    assert!(
        now.holdup && now.text.contains("CPU contention") && now.text.contains(lab::HOG_COMM),
        "now: {now:?}"
    );
    let after = screen(&mut app);
    let now_line = after.lines().find(|l| l.starts_with("now:")).unwrap();
    assert!(now_line.contains(lab::HOG_COMM), "{now_line}");
    assert!(after.contains("ENDED"), "{after}");

    // Sort by a column: key 2 is CPU%, largest first; r reverses.
    key(&mut app, KeyCode::Char('2'));
    assert_eq!(app.sort, SortKey::Cpu);
    let rows = app.rows();
    assert!(rows.len() >= 2, "{rows:?}");
    assert!(rows.windows(2).all(|p| p[0].states[0] >= p[1].states[0]));
    assert!(screen(&mut app).contains("CPU%▼"));
    key(&mut app, KeyCode::Char('r'));
    let rows = app.rows();
    assert!(rows.windows(2).all(|p| p[0].states[0] <= p[1].states[0]));

    // Filter by name: only the matching threads stay.
    key(&mut app, KeyCode::Char('/'));
    for c in "REDIS".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    key(&mut app, KeyCode::Enter);
    let rows = app.rows();
    assert!(!rows.is_empty());
    assert!(
        rows.iter().all(|r| r.name.to_lowercase().contains("redis")),
        "{rows:?}"
    );
    assert!(screen(&mut app).contains("filter: REDIS"));
    key(&mut app, KeyCode::Char('/'));
    key(&mut app, KeyCode::Esc);
    assert!(app.filter.is_empty());

    // Pause and step: the shown window stays while windows arrive.
    key(&mut app, KeyCode::Char(' '));
    assert!(app.paused());
    key(&mut app, KeyCode::Left);
    key(&mut app, KeyCode::Left);
    assert_eq!(app.shown(), Some(last - 2));
    app.update(Event::Window(Box::new(rec.windows[n - 1].clone())));
    assert_eq!(app.shown(), Some(last - 2));
    let paused = screen(&mut app);
    assert!(paused.contains("PAUSED"), "{paused}");
    assert!(
        paused.contains(&format!("window #{}", rec.windows[n - 3].window.index)),
        "{paused}"
    );
    key(&mut app, KeyCode::Home);
    assert_eq!(app.shown(), Some(0));
    let first_now = app.now(0);
    assert!(!first_now.text.contains(lab::HOG_COMM), "{first_now:?}");
    key(&mut app, KeyCode::End);
    assert!(!app.paused());

    // Per-role view: the diagnosis's roles, Redis's entry role marked.
    key(&mut app, KeyCode::Char('g'));
    assert_eq!(app.grouping, Grouping::Roles);
    let roles = app.rows();
    let entry = roles
        .iter()
        .find(|r| r.entry)
        .unwrap_or_else(|| panic!("no entry role: {roles:?}"));
    assert_eq!(entry.process, "redis-server");
    let threads: usize = roles.iter().map(|r| r.id.parse::<usize>().unwrap()).sum();
    assert_eq!(threads, rec.windows[n - 1].threads.len());
    let by_role = screen(&mut app);
    assert!(
        by_role.contains("ROLE") && by_role.contains("* "),
        "{by_role}"
    );
    eprintln!("{after}\n{by_role}");

    // Without a terminal, --replay prints the plain frames of live top, one
    // per window from --from on.
    let out = run(&[
        "top",
        "--replay",
        rec_path.to_str().unwrap(),
        "--speed",
        "max",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("THREAD").count(), n, "one frame per window");
    assert!(text.contains("window #0") && text.contains("WHO RAN INSTEAD"));
    assert!(text.contains(lab::HOG_COMM), "the hog ran instead of Redis");
    let out = run(&[
        "top",
        "--replay",
        rec_path.to_str().unwrap(),
        "--from",
        "10s",
        "--speed",
        "max",
        "--json",
    ]);
    assert!(out.status.success());
    let first: holdup_model::Snapshot =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    let origin = rec.windows[0].window.start_ns;
    assert!(first.window.start_ns - origin >= 10_000_000_000);
    assert!(first.window.start_ns - origin < 10_000_000_000 + 2 * lab::INTERVAL_MS * 1_000_000);
    // Paced: 4 windows of 500 ms at 4x take about half a second.
    let t0 = Instant::now();
    let out = run(&[
        "top",
        "--replay",
        rec_path.to_str().unwrap(),
        "--from",
        "14s",
        "--speed",
        "4x",
    ]);
    assert!(out.status.success());
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "4 windows of 500 ms at 4x took {took:?}"
    );

    // Bad input says what is wrong.
    let bad = |args: &[&str], says: &str| {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{args:?}: {err}"
        );
    };
    let p = rec_path.to_str().unwrap();
    bad(
        &["top", "--replay", "/nonexistent.rec"],
        "cannot replay /nonexistent.rec",
    );
    bad(&["top", "--replay", p, "--from", "1h"], "past the end");
    bad(&["top", "--replay", p, "--speed", "0x"], "not a speed");
    bad(&["top", "--replay", p, "--pid", "1"], "cannot be used with");

    // In a real terminal: the UI starts, shows the now line, and q quits.
    if have_tools("holdup top in tmux", &["tmux"]) {
        let session = format!("holdup-top-{}", std::process::id());
        let cmd = format!("{HOLDUP} top --replay {p} --speed 8x");
        let ok = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &session,
                "-x",
                "170",
                "-y",
                "40",
                &cmd,
            ])
            .status()
            .unwrap();
        assert!(ok.success());
        let capture = || {
            let o = Command::new("tmux")
                .args(["capture-pane", "-p", "-t", &session])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).to_string()
        };
        let t0 = Instant::now();
        let mut pane = String::new();
        while t0.elapsed() < Duration::from_secs(15) {
            pane = capture();
            if pane.contains("now:") && pane.contains("STATES") {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-top-tmux.txt");
        let _ = std::fs::write(&shot, &pane);
        let _ = Command::new("tmux")
            .args(["send-keys", "-t", &session, "q"])
            .status();
        let t1 = Instant::now();
        let gone = loop {
            let alive = Command::new("tmux")
                .args(["has-session", "-t", &session])
                .output()
                .is_ok_and(|o| o.status.success());
            if !alive || t1.elapsed() > Duration::from_secs(5) {
                break !alive;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if !gone {
            let _ = Command::new("tmux")
                .args(["kill-session", "-t", &session])
                .status();
        }
        assert!(pane.contains("now:") && pane.contains("STATES"), "{pane}");
        assert!(gone, "q did not quit holdup top");
    }
}
