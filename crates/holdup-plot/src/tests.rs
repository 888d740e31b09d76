//! The plots on synthetic recordings written through the real format.

use super::*;
use holdup_model::{DiskIo, Loss, StateTimes, Target, ThreadWindow, WindowInfo, SCHEMA_VERSION};
use holdup_record::{Recorder, RecordingHeader, FORMAT_VERSION};
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

pub(crate) const NASTY: &str = "<script>&\"";

/// A writer the test can read back after the recorder took it.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn header() -> RecordingHeader {
    RecordingHeader {
        format_version: FORMAT_VERSION,
        schema_version: SCHEMA_VERSION,
        holdup_version: "test".into(),
        host: "testhost".into(),
        kernel: "6.1.0-test".into(),
        started_unix_ms: 1_700_000_000_000,
        interval_ms: 1000,
        target: Target::Command {
            argv: vec!["./server".into(), NASTY.into()],
            pid: 100,
        },
        argv: vec![],
        metrics: vec![],
    }
}

fn thread(tid: u32, comm: &str, states: StateTimes, runq: &[u64]) -> ThreadWindow {
    let runq_hist = Histogram::from_buckets(runq);
    ThreadWindow {
        tgid: 100,
        tid,
        comm: comm.into(),
        cgroup_id: 1,
        states,
        runq_count: runq_hist.count(),
        runq_hist,
        runq_unattributed_ns: 0,
        preempted: 0,
        waits: vec![],
        exited: false,
    }
}

fn st(cpu: u64, runq: u64, io: u64, d: u64, sleep: u64) -> StateTimes {
    const MS: u64 = 1_000_000;
    StateTimes {
        on_cpu_ns: cpu * MS,
        runq_ns: runq * MS,
        iowait_ns: io * MS,
        other_d_ns: d * MS,
        sleep_ns: sleep * MS,
    }
}

/// Ten 1 s windows of three threads (one named [`NASTY`]) whose load
/// rises, then one zero-length window that must be skipped.
fn synthetic() -> Vec<Snapshot> {
    let base = 5_000_000_000u64;
    let mut out: Vec<Snapshot> = (0..10u64)
        .map(|i| {
            let start = base + i * 1_000_000_000;
            let k = i * 40;
            Snapshot {
                window: WindowInfo {
                    index: i,
                    start_ns: start,
                    end_ns: start + 1_000_000_000,
                    wall_start_ms: 0,
                },
                threads: vec![
                    thread(101, "main", st(100, 20, 0, 0, 880), &[5, 3, 1]),
                    thread(
                        102,
                        "worker-1",
                        st(300 + k / 2, 100 + k, 50, 10, 540 - k - k / 2),
                        &[0, 2, 8, i, 0, 0, 0, 0, 0, 0, 1],
                    ),
                    // observed for only part of each window, as a thread that starts late
                    thread(
                        103,
                        NASTY,
                        st(200, 150 + k / 2, 0, 100, 300 - k / 2),
                        &[1, 0, 4],
                    ),
                ],
                resources: vec![],
                futex_wakes: vec![],
                wakeups: vec![],
                culprits: vec![],
                disks: vec![],
                loss: Loss::default(),
                overhead: vec![],
                runtimes: Vec::new(),
                throttles: Vec::new(),
            }
        })
        .collect();
    let mut zero = out[9].clone();
    zero.window.index = 10;
    zero.window.start_ns = zero.window.end_ns;
    out.push(zero);
    out
}

/// Records `windows` through the real format; `finish` false leaves it
/// ended early, as a killed recorder would.
fn record(windows: &[Snapshot], finish: bool) -> Vec<u8> {
    let buf = SharedBuf::default();
    let mut rec = Recorder::from_writer(buf.clone(), "memory", &header()).unwrap();
    for w in windows {
        rec.write_window(w).unwrap();
    }
    if finish {
        rec.finish().unwrap();
    } else {
        drop(rec);
    }
    let bytes = buf.0.lock().unwrap().clone();
    bytes
}

/// Tags balance, attribute values are quoted, and every `&` starts an
/// entity: enough of XML to catch broken output and unescaped text.
pub(crate) fn assert_xmlish(svg: &str) {
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.ends_with("</svg>"));
    assert!(!svg.contains("<script"), "no scripts");
    assert!(!svg.contains("href"), "no external references");
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = svg;
    while let Some(open) = rest.find('<') {
        let text = &rest[..open];
        assert!(!text.contains('>'), "raw > in text: {text}");
        assert_entities(text);
        let close = rest[open..].find('>').expect("unclosed tag") + open;
        let tag = &rest[open + 1..close];
        assert!(!tag.contains('<'), "< inside a tag: {tag}");
        assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes: {tag}");
        assert_entities(tag);
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name), "mismatched </{name}>");
        } else if !tag.ends_with('/') {
            stack.push(tag.split_whitespace().next().unwrap());
        }
        rest = &rest[close + 1..];
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

fn assert_entities(s: &str) {
    for (i, _) in s.match_indices('&') {
        let ent = &s[i..];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                .iter()
                .any(|e| ent.starts_with(e)),
            "bare & at {}",
            &ent[..ent.len().min(12)]
        );
    }
}

fn synthetic_recording() -> Recording {
    Recording::from_bytes(&record(&synthetic(), true)).unwrap()
}

#[test]
fn stacked_top_is_the_average_thread_count() {
    let input = synthetic();
    let rec = synthetic_recording();
    let series = stacked_series(&rec);
    assert_eq!(series.len(), 10, "the zero-length window is skipped");
    for (w, (t, vals)) in input.iter().zip(&series) {
        let dur = (w.window.end_ns - w.window.start_ns) as f64;
        let expected: f64 = w
            .threads
            .iter()
            .map(|t| t.states.total_ns() as f64 / dur)
            .sum();
        let top: f64 = vals.iter().sum();
        assert!(
            (top - expected).abs() <= expected * 0.01,
            "window {}: stacked top {top}, expected {expected}",
            w.window.index
        );
        let runq: f64 = w
            .threads
            .iter()
            .map(|t| t.states.runq_ns as f64)
            .sum::<f64>()
            / dur;
        assert!((vals[1] - runq).abs() <= runq * 0.01);
        let mid = (w.window.start_ns + w.window.end_ns) as f64 / 2e9
            - input[0].window.start_ns as f64 / 1e9;
        assert!((t - mid).abs() < 1e-6, "t {t} vs {mid}");
    }
}

#[test]
fn states_svg_is_wellformed_with_a_legend_per_state() {
    let svg = states_svg(&synthetic_recording());
    assert_xmlish(&svg);
    assert_eq!(svg.matches("class=\"legend-entry\"").count(), NR_STATES);
    assert_eq!(svg.matches("class=\"area\"").count(), NR_STATES);
    for s in ThreadState::ALL {
        assert!(svg.contains(&format!(">{}: {}</text>", s.label(), state_words(s))));
        assert!(svg.contains(&format!("<title>{} (", s.label())));
    }
    assert!(svg.contains("font-family=\"sans-serif\""));
    assert!(svg.contains("average threads"));
}

#[test]
fn runq_bars_sum_to_the_merged_count() {
    let input = synthetic();
    let expected: u64 = input
        .iter()
        .filter(|w| w.window.duration_ns() > 0)
        .flat_map(|w| &w.threads)
        .map(|t| t.runq_hist.count())
        .sum();
    let rec = synthetic_recording();
    assert_eq!(merged_runq(&rec).count(), expected);
    let svg = runq_svg(&rec);
    assert_xmlish(&svg);
    let bars: u64 = svg
        .split("data-count=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].parse::<u64>().unwrap())
        .sum();
    assert_eq!(bars, expected);
    assert!(svg.contains(&format!("{expected} waits")));
    let h = merged_runq(&rec);
    let p99 = fmt_pow2_us(h.quantile_us(0.99).unwrap());
    assert!(svg.contains(&format!("p99 ≤ {p99}")), "{svg}");
    for label in ["2µs", "1ms"] {
        assert!(svg.contains(&format!(">{label}</text>")), "tick {label}");
    }
}

#[test]
fn recording_text_appears_only_escaped() {
    let plots = recording_plots(&record(&synthetic(), true)).unwrap();
    for svg in [&plots.states, &plots.runq] {
        assert!(!svg.contains(NASTY));
        assert!(!svg.contains("<script"));
        assert!(svg.contains("&lt;script&gt;&amp;&quot;"), "{svg}");
    }
    assert_eq!(escape_xml("a\u{1}b'"), "a\u{fffd}b&apos;");
}

#[test]
fn plots_report_windows_and_notes() {
    let plots = recording_plots(&record(&synthetic(), true)).unwrap();
    assert_eq!(plots.windows, 11);
    assert_eq!(
        plots.note.as_deref(),
        Some("1 window of zero length not plotted")
    );
    let early = recording_plots(&record(&synthetic()[..3], false)).unwrap();
    assert_eq!(early.windows, 3);
    assert!(early.note.unwrap().contains("recording ended early"));
}

#[test]
fn disk_bars_sum_every_submitter_and_name_the_quantiles() {
    let mut w = synthetic();
    for s in &mut w {
        s.disks.push(DiskIo {
            disk: "vda".into(),
            dev: "254:0".into(),
            tgid: 7,
            tid: 7,
            comm: "writer".into(),
            is_target: false,
            requests: 10,
            bytes: 1 << 20,
            write_bytes: 1 << 20,
            latency_ns: 10_000_000,
            // 9 fast requests and one slow one (bucket 12: 4-8 ms) each window
            latency_hist: Histogram::from_buckets(&[0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 1]),
            share: 1.0,
        });
    }
    let rec = Recording::from_bytes(&record(&w, true)).unwrap();
    // the zero-length window's disk I/O is not counted
    assert_eq!(merged_disk_latency(&rec).count(), 100);
    let svg = disk_latency_svg(&rec);
    assert_xmlish(&svg);
    assert!(
        svg.contains("100 requests, p50 ≤ 128µs, p99 ≤ 8ms"),
        "{svg}"
    );
    let none = disk_latency_svg(&synthetic_recording());
    assert!(none.contains("no block I/O recorded"), "{none}");
}

#[test]
fn empty_recording_says_so() {
    let plots = recording_plots(&record(&[], true)).unwrap();
    assert_eq!(plots.windows, 0);
    assert_xmlish(&plots.states);
    assert_xmlish(&plots.runq);
    assert!(plots
        .states
        .contains("no complete windows in this recording"));
    assert!(plots.runq.contains("no run-queue waits recorded"));
}

#[test]
fn garbage_is_an_error() {
    let err = recording_plots(b"GIF89a not a recording").unwrap_err();
    assert!(err.contains("not a holdup recording"), "{err}");
    assert!(recording_plots(b"").is_err());
}

#[test]
fn crafted_histograms_do_not_overflow() {
    let mut w = synthetic();
    w.truncate(2);
    w[0].threads[0].runq_hist = Histogram {
        buckets: vec![u64::MAX; 70],
    };
    w[1].threads[0].runq_hist = Histogram {
        buckets: vec![u64::MAX; 3],
    };
    let rec = Recording::from_bytes(&record(&w, true)).unwrap();
    assert!(merged_runq(&rec).buckets.len() <= NR_BUCKETS);
    assert_xmlish(&runq_svg(&rec));
}

#[test]
fn long_recordings_are_averaged_not_truncated() {
    let mut spans = Vec::new();
    for i in 0..1500 {
        let mut avg = [0.0; NR_STATES];
        avg[0] = if i % 2 == 0 { 1.0 } else { 3.0 };
        spans.push(Span {
            start: i as f64,
            end: i as f64 + 1.0,
            avg,
        });
    }
    let (d, per) = downsample(&spans, MAX_POINTS);
    assert!(d.len() <= MAX_POINTS);
    assert_eq!(per, 3);
    assert_eq!(d[0].end, 3.0);
    assert!((d[0].avg[0] - 5.0 / 3.0).abs() < 1e-9);
    assert_eq!(d[d.len() - 1].end, 1500.0);
}

#[test]
fn sleep_is_left_out_of_the_stack_only_when_it_swamps_the_busy_states() {
    // synthetic(): sleep is about as large as the busy states together.
    let balanced = states_svg(&synthetic_recording());
    assert!(!balanced.contains("not stacked"), "{balanced}");
    // 50 idle threads asleep beside the three busy ones.
    let mut windows = synthetic();
    for w in &mut windows {
        for k in 0..50 {
            w.threads
                .push(thread(1000 + k, "idle", st(0, 0, 0, 0, 1000), &[]));
        }
    }
    let rec = Recording::from_bytes(&record(&windows, true)).unwrap();
    let svg = states_svg(&rec);
    assert_xmlish(&svg);
    assert!(svg.contains("not stacked"), "{svg}");
    // the y axis fits the busy states (< 3 threads), not the 53 threads
    // in all, which would need ticks of 20 (x ticks stop at 10 s)
    let (top, step) = axis_top(53.0);
    assert!(top >= 53.0 && step >= 10.0);
    assert!(!svg.contains(">20<") && !svg.contains(">40<"), "{svg}");
}

proptest::proptest! {
    /// A recording damaged anywhere is plotted from what is readable,
    /// or refused with a message; never a panic.
    #[test]
    fn damaged_recordings_plot_or_error(
        at in 0usize..4096,
        flip in 1u8..=255,
        cut in 0usize..4096,
    ) {
        let mut bytes = record(&synthetic(), true);
        let at = at % bytes.len();
        bytes[at] ^= flip;
        bytes.truncate(cut.max(1) % (bytes.len() + 1));
        if let Ok(p) = recording_plots(&bytes) {
            assert_xmlish(&p.states);
            assert_xmlish(&p.runq);
        }
    }
}
