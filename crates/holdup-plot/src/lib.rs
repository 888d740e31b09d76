//! SVG plots of holdup recordings and probe output, shared by the
//! workbench's web UI and `holdup report`: thread states over time as
//! stacked areas, log2 latency histograms (run queue, disk) with p50/p99,
//! and charts of bpftrace maps ([`bpftrace`]).
//!
//! Pure string building with no plotting dependency (the plots are few and
//! fixed, and hover titles, classes and data attributes are what the pages
//! and tests read), no scripts and no external references, so the output can
//! be inlined into a page or served as `image/svg+xml` as it is. Every text
//! that comes from a recording goes through [`escape_xml`]: thread names and
//! command lines are chosen by the traced programs, not by holdup.

use holdup_model::{Histogram, Snapshot, ThreadState, NR_BUCKETS};
use holdup_record::{ReadStatus, Recording};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// `write!` into a String, which cannot fail.
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

pub mod bpftrace;
pub use bpftrace::{bpftrace_charts, BpftraceChart};

/// Number of stacked thread states (metrics 1-5).
pub const NR_STATES: usize = ThreadState::ALL.len();

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 320.0;
/// Plot area shared by both plots; the states plot keeps room for its legend.
const LEFT: f64 = 60.0;
const TOP: f64 = 52.0;
const BOTTOM: f64 = 270.0;
const STATES_RIGHT: f64 = 556.0;
const RIGHT: f64 = 700.0;
/// More points than pixels only bloats the SVG; longer recordings are averaged.
const MAX_POINTS: usize = 600;

/// Both plots of one recording, ready to inline into a page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plots {
    /// Thread states over time ([`states_svg`]).
    pub states: String,
    /// Run-queue latency histogram ([`runq_svg`]).
    pub runq: String,
    /// Complete windows read from the recording.
    pub windows: usize,
    /// What a viewer should know about the data, e.g. "recording ended early: ...".
    pub note: Option<String>,
}

/// Both plots for recording bytes, or a clear error for bytes that are not a readable recording.
pub fn recording_plots(bytes: &[u8]) -> Result<Plots, String> {
    let rec = Recording::from_bytes(bytes).map_err(|e| e.to_string())?;
    let mut notes = Vec::new();
    if rec.status != ReadStatus::Complete {
        notes.push(rec.status.describe());
    }
    let zero = rec
        .windows
        .iter()
        .filter(|w| w.window.duration_ns() == 0)
        .count();
    if zero > 0 {
        notes.push(format!(
            "{zero} {} of zero length not plotted",
            if zero == 1 { "window" } else { "windows" }
        ));
    }
    Ok(Plots {
        states: states_svg(&rec),
        runq: runq_svg(&rec),
        windows: rec.windows.len(),
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    })
}

/// Escapes text for XML content and attribute values. Characters XML 1.0
/// forbids even as references (most control characters, which thread names
/// may hold) become U+FFFD so the document stays well-formed.
pub fn escape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// thread states

/// Colour of each state, in [`ThreadState::ALL`] order: the states that hold
/// threads up stand out, sleep is a quiet grey (Okabe-Ito, colour-blind safe).
const STATE_COLOURS: [&str; NR_STATES] = ["#009e73", "#d55e00", "#0072b2", "#cc79a7", "#c8c8c8"];

/// Words for the legend, next to the label `holdup top` uses.
fn state_words(s: ThreadState) -> &'static str {
    match s {
        ThreadState::OnCpu => "on CPU",
        ThreadState::RunQueue => "wait for CPU",
        ThreadState::IoWait => "I/O wait",
        ThreadState::OtherD => "uninterruptible",
        ThreadState::Sleep => "sleeping",
    }
}

/// One plotted window (or several averaged ones): span in seconds since the
/// first plotted window's start, and average threads in each state.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: f64,
    end: f64,
    avg: [f64; NR_STATES],
}

/// Finite and not negative, so no NaN or inf reaches a coordinate.
fn clean(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 {
        v
    } else {
        0.0
    }
}

/// Windows with a time span, in time order (a recording is in file order,
/// which should be time order, but sorting costs little and keeps the
/// polygons simple).
fn timed_windows(rec: &Recording) -> Vec<&Snapshot> {
    let mut ws: Vec<&Snapshot> = rec
        .windows
        .iter()
        .filter(|w| w.window.duration_ns() > 0)
        .collect();
    ws.sort_by_key(|w| w.window.start_ns);
    ws
}

fn spans(rec: &Recording) -> Vec<Span> {
    let ws = timed_windows(rec);
    let Some(origin) = ws.first().map(|w| w.window.start_ns) else {
        return Vec::new();
    };
    ws.iter()
        .map(|w| {
            let dur = w.window.duration_ns() as f64;
            let mut avg = [0.0; NR_STATES];
            for t in &w.threads {
                for (i, s) in ThreadState::ALL.iter().enumerate() {
                    avg[i] += t.states.get(*s) as f64;
                }
            }
            for a in &mut avg {
                *a = clean(*a / dur);
            }
            Span {
                start: (w.window.start_ns - origin) as f64 / 1e9,
                end: (w.window.end_ns - origin) as f64 / 1e9,
                avg,
            }
        })
        .collect()
}

/// One point per window with a time span: time of the window's middle in
/// seconds since the first such window's start, and the average number of
/// threads in each state (sum over threads of state time / window length),
/// in [`ThreadState::ALL`] order. The values are per state, not cumulative:
/// the stacked top is their sum.
pub fn stacked_series(rec: &Recording) -> Vec<(f64, [f64; NR_STATES])> {
    spans(rec)
        .iter()
        .map(|s| ((s.start + s.end) / 2.0, s.avg))
        .collect()
}

/// Averages runs of consecutive spans, weighted by their length, so that at
/// most `max` remain.
fn downsample(spans: &[Span], max: usize) -> (Vec<Span>, usize) {
    let per = spans.len().div_ceil(max.max(1)).max(1);
    if per == 1 {
        return (spans.to_vec(), 1);
    }
    let merged = spans
        .chunks(per)
        .map(|c| {
            let mut avg = [0.0; NR_STATES];
            let mut len = 0.0;
            for s in c {
                let l = s.end - s.start;
                len += l;
                for (a, v) in avg.iter_mut().zip(s.avg) {
                    *a += v * l;
                }
            }
            for a in &mut avg {
                *a = clean(*a / len);
            }
            Span {
                start: c[0].start,
                end: c[c.len() - 1].end,
                avg,
            }
        })
        .collect();
    (merged, per)
}

/// A thread's last name and its time in each state over the plotted windows, ns.
type ThreadTotal<'a> = (&'a str, [f64; NR_STATES]);

/// Thread states over time as stacked areas (one SVG).
pub fn states_svg(rec: &Recording) -> String {
    let title = "Thread states over time";
    if rec.windows.is_empty() {
        return message_svg(title, "no complete windows in this recording");
    }
    let all = spans(rec);
    if all.is_empty() {
        return message_svg(
            title,
            &format!(
                "no windows with a time span in this recording (all {} have zero length)",
                rec.windows.len()
            ),
        );
    }
    let (spans, per) = downsample(&all, MAX_POINTS);

    // Points: the middle of each span, plus the outer edges so the areas
    // cover the whole time axis (and a single window is not a zero-width area).
    let mut pts: Vec<(f64, [f64; NR_STATES])> = Vec::with_capacity(spans.len() + 2);
    pts.push((spans[0].start, spans[0].avg));
    pts.extend(spans.iter().map(|s| ((s.start + s.end) / 2.0, s.avg)));
    let last = spans[spans.len() - 1];
    pts.push((last.end, last.avg));

    // Idle threads asleep can outnumber the busy ones a hundred to one (a
    // host-wide recording): then stacking sleep on top flattens every state
    // that matters. Leave it out of the stack and say so.
    let sleep_i = ThreadState::ALL
        .iter()
        .position(|s| *s == ThreadState::Sleep)
        .unwrap_or(NR_STATES - 1);
    let state_mean = |i: usize| {
        all.iter()
            .map(|p| p.avg[i] * (p.end - p.start))
            .sum::<f64>()
            / all.iter().map(|p| p.end - p.start).sum::<f64>().max(1e-9)
    };
    let sleep_mean = clean(state_mean(sleep_i));
    let busy_mean: f64 = (0..NR_STATES)
        .filter(|&i| i != sleep_i)
        .map(|i| clean(state_mean(i)))
        .sum();
    let hide_sleep = busy_mean > 0.0 && sleep_mean > 3.0 * busy_mean;
    if hide_sleep {
        for p in &mut pts {
            p.1[sleep_i] = 0.0;
        }
    }

    let x_max = clean(last.end).max(1e-9);
    let y_peak = pts
        .iter()
        .map(|(_, v)| v.iter().sum::<f64>())
        .fold(0.0, f64::max);
    let (y_top, y_step) = axis_top(y_peak);
    let px = |t: f64| LEFT + clean(t / x_max).min(1.0) * (STATES_RIGHT - LEFT);
    let py = |v: f64| BOTTOM - clean(v / y_top).min(1.0) * (BOTTOM - TOP);

    let mut out = String::new();
    svg_open(&mut out, title);
    let total_s = all.iter().map(|s| s.end - s.start).sum::<f64>();
    let mut sub = format!(
        "{} · {} {} over {} s",
        shorten(&rec.header.target.to_string(), 60),
        all.len(),
        if all.len() == 1 { "window" } else { "windows" },
        fmt_tick(last.end, 0.1),
    );
    if per > 1 {
        w!(sub, " · each point averages {per} windows");
    }
    if hide_sleep {
        w!(sub, " · sleep (mean {sleep_mean:.1} threads) not stacked");
    }
    heading(&mut out, title, &sub);

    y_grid(&mut out, y_top, y_step, STATES_RIGHT, fmt_tick);
    let x_step = nice_step(x_max, 6.0);
    let mut i = 0u32;
    loop {
        let t = f64::from(i) * x_step;
        if t > x_max * (1.0 + 1e-9) || i > 50 {
            break;
        }
        let x = px(t);
        w!(
            out,
            r##"<line x1="{x:.1}" y1="{BOTTOM}" x2="{x:.1}" y2="{:.1}" stroke="#333333"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            BOTTOM + 4.0,
            BOTTOM + 16.0,
            fmt_tick(t, x_step)
        );
        i += 1;
    }

    // Which threads contribute most to each state, for the hover text.
    let mut per_thread: BTreeMap<(u32, u32), ThreadTotal> = BTreeMap::new();
    for w in timed_windows(rec) {
        for t in &w.threads {
            let e = per_thread
                .entry((t.tgid, t.tid))
                .or_insert((t.comm.as_str(), [0.0; NR_STATES]));
            e.0 = t.comm.as_str();
            for (i, s) in ThreadState::ALL.iter().enumerate() {
                e.1[i] += t.states.get(*s) as f64;
            }
        }
    }

    let mut lower = vec![0.0; pts.len()];
    for (si, s) in ThreadState::ALL.iter().enumerate() {
        let upper: Vec<f64> = lower
            .iter()
            .zip(&pts)
            .map(|(lo, (_, v))| lo + v[si])
            .collect();
        let mut d = String::new();
        for (k, ((t, _), hi)) in pts.iter().zip(&upper).enumerate() {
            w!(
                d,
                "{}{:.1} {:.1} ",
                if k == 0 { "M" } else { "L" },
                px(*t),
                py(*hi)
            );
        }
        for ((t, _), lo) in pts.iter().zip(&lower).rev() {
            w!(d, "L{:.1} {:.1} ", px(*t), py(*lo));
        }
        d.push('Z');

        let mean = clean(
            all.iter()
                .map(|p| p.avg[si] * (p.end - p.start))
                .sum::<f64>()
                / total_s.max(1e-9),
        );
        let peak = all.iter().map(|p| p.avg[si]).fold(0.0, f64::max);
        let mut hover = format!(
            "{} ({}): mean {:.2} threads, peak {:.2}",
            s.label(),
            state_words(*s),
            mean,
            peak
        );
        let mut top: Vec<(u32, &str, f64)> = per_thread
            .iter()
            .map(|(&(_, tid), (comm, ns))| (tid, *comm, ns[si]))
            .filter(|(_, _, ns)| *ns > 0.0)
            .collect();
        top.sort_by(|a, b| b.2.total_cmp(&a.2));
        for (k, (tid, comm, ns)) in top.iter().take(3).enumerate() {
            w!(
                hover,
                "{}{comm} ({tid}) {:.2}",
                if k == 0 { "; most: " } else { ", " },
                clean(ns / 1e9 / total_s.max(1e-9))
            );
        }
        w!(
            out,
            r#"<path class="area" d="{d}" fill="{}" stroke="none"><title>{}</title></path>"#,
            STATE_COLOURS[si],
            escape_xml(&hover)
        );
        lower = upper;
    }
    axes(&mut out, STATES_RIGHT);
    axis_labels(
        &mut out,
        "time since the first window's start (s)",
        "average threads in each state",
        STATES_RIGHT,
    );

    // Legend top to bottom in the order the areas are stacked on screen.
    for (k, (si, s)) in ThreadState::ALL.iter().enumerate().rev().enumerate() {
        let y = TOP + 8.0 + 20.0 * k as f64;
        w!(
            out,
            r#"<g class="legend-entry"><rect x="{:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}">{}: {}</text></g>"#,
            STATES_RIGHT + 12.0,
            y - 10.0,
            STATE_COLOURS[si],
            STATES_RIGHT + 30.0,
            y,
            escape_xml(s.label()),
            state_words(*s)
        );
    }
    out.push_str("</svg>");
    out
}

// ---------------------------------------------------------------------------
// run-queue latency

/// Run-queue latency of the whole recording: `runq_hist` of every thread in
/// every window with a time span, merged (see [`merge_saturating`]).
pub fn merged_runq(rec: &Recording) -> Histogram {
    merge_saturating(
        timed_windows(rec)
            .into_iter()
            .flat_map(|w| w.threads.iter().map(|t| &t.runq_hist)),
    )
}

/// Block I/O latency of the whole recording: `latency_hist` of every
/// submitter on every disk in every window with a time span, merged.
pub fn merged_disk_latency(rec: &Recording) -> Histogram {
    merge_saturating(
        timed_windows(rec)
            .into_iter()
            .flat_map(|w| w.disks.iter().map(|d| &d.latency_hist)),
    )
}

/// Merges histograms. Buckets past the model's [`NR_BUCKETS`] fold into the
/// last one and counts saturate, so a crafted file cannot overflow (or
/// panic) the quantile and label arithmetic.
pub fn merge_saturating<'a>(hists: impl IntoIterator<Item = &'a Histogram>) -> Histogram {
    let mut b = vec![0u64; NR_BUCKETS];
    for h in hists {
        for (i, c) in h.buckets.iter().enumerate() {
            let i = i.min(NR_BUCKETS - 1);
            b[i] = b[i].saturating_add(*c);
        }
    }
    // Halve until the total fits a u64 (Histogram::count sums unchecked);
    // real recordings are many orders of magnitude below this.
    while b.iter().try_fold(0u64, |a, c| a.checked_add(*c)).is_none() {
        for c in &mut b {
            *c /= 2;
        }
    }
    Histogram::from_buckets(&b)
}

/// Readable size of a power-of-two number of microseconds ("512µs", "1ms",
/// "2s"); binary steps, so "1ms" is 1024µs, as the axis says.
fn fmt_pow2_us(us: u64) -> String {
    if us < 1 << 10 {
        format!("{us}µs")
    } else if us < 1 << 20 {
        format!("{}ms", us >> 10)
    } else {
        format!("{}s", us >> 20)
    }
}

/// Run-queue latency histogram of the whole recording (one SVG).
pub fn runq_svg(rec: &Recording) -> String {
    log2_hist_svg(
        &Log2Hist {
            title: "Run-queue latency",
            what: "waits",
            empty: "no run-queue waits recorded",
            x_label: "time runnable before getting a CPU (log2 buckets; 1ms = 1024µs, 1s = 1024ms)",
            colour: "#d55e00",
        },
        &merged_runq(rec),
        &format!(
            "{} · all threads, all windows",
            shorten(&rec.header.target.to_string(), 60)
        ),
    )
}

/// Block I/O latency histogram of the whole recording, every submitter on
/// every disk (one SVG).
pub fn disk_latency_svg(rec: &Recording) -> String {
    log2_hist_svg(
        &Log2Hist {
            title: "Disk latency",
            what: "requests",
            empty: "no block I/O recorded (or recorded with --sched-only)",
            x_label: "block request latency, queue + device (log2 buckets; 1ms = 1024µs)",
            colour: "#0072b2",
        },
        &merged_disk_latency(rec),
        &format!(
            "{} · every process's requests on the disks the target used",
            shorten(&rec.header.target.to_string(), 60)
        ),
    )
}

/// The words of one log2 latency histogram.
pub struct Log2Hist<'a> {
    /// Title, followed by the count and p50/p99.
    pub title: &'a str,
    /// What is counted ("waits").
    pub what: &'a str,
    /// What to say when there is nothing.
    pub empty: &'a str,
    /// X axis label.
    pub x_label: &'a str,
    /// Bar colour.
    pub colour: &'a str,
}

/// A log2-µs histogram as bars with p50/p99 in the heading (one SVG).
pub fn log2_hist_svg(words: &Log2Hist, h: &Histogram, sub: &str) -> String {
    let title = words.title;
    let total = h.count();
    if total == 0 {
        return message_svg(title, words.empty);
    }
    let first = h.buckets.iter().position(|&c| c > 0).unwrap_or(0);
    let mut lo = first;
    let mut hi = h.buckets.len() - 1;
    // At least 8 bars, so a narrow distribution is shown with its context.
    while hi - lo + 1 < 8 && (lo > 0 || hi < NR_BUCKETS - 1) {
        lo = lo.saturating_sub(1);
        if hi - lo + 1 < 8 && hi < NR_BUCKETS - 1 {
            hi += 1;
        }
    }
    let count = |i: usize| h.buckets.get(i).copied().unwrap_or(0);
    let peak = (lo..=hi).map(count).max().unwrap_or(0);
    let (mut y_top, mut y_step) = axis_top(peak as f64);
    if y_step < 1.0 {
        // counts are whole: no ticks at 0.5
        y_step = 1.0;
        y_top = y_top.ceil().max(1.0);
    }
    let n = (hi - lo + 1) as f64;
    let bw = (RIGHT - LEFT) / n;
    let px = |i: usize| LEFT + (i - lo) as f64 * bw;
    let py = |v: f64| BOTTOM - clean(v / y_top).min(1.0) * (BOTTOM - TOP);

    let mut out = String::new();
    svg_open(&mut out, title);
    let q = |p: f64| h.quantile_us(p).map_or("?".to_string(), fmt_pow2_us);
    let head = format!(
        "{title}: {} {}, p50 ≤ {}, p99 ≤ {}",
        fmt_count(total as f64),
        words.what,
        q(0.5),
        q(0.99)
    );
    heading(&mut out, &head, sub);
    y_grid(&mut out, y_top, y_step, RIGHT, |v, _| fmt_count(v));

    for i in lo..=hi {
        let c = count(i);
        let x = px(i);
        let range = if i == 0 {
            "<2µs".to_string()
        } else {
            format!("{}–{}", fmt_pow2_us(1 << i), fmt_pow2_us(1 << (i + 1)))
        };
        w!(
            out,
            r##"<rect class="bar" data-count="{c}" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {} {} ({:.1}%)</title></rect>"##,
            x + 1.0,
            py(c as f64),
            (bw - 2.0).max(0.5),
            BOTTOM - py(c as f64),
            words.colour,
            escape_xml(&range),
            c,
            words.what,
            clean(c as f64 * 100.0 / total as f64)
        );
    }
    // Ticks on bucket edges, labelled with the edge value; thinned so the
    // labels do not overlap.
    let every = (42.0 / bw).ceil().max(1.0) as usize;
    for e in (lo..=hi + 1).filter(|e| (e - lo) % every == 0) {
        let x = LEFT + (e - lo) as f64 * bw;
        let label = if e == 0 {
            "0".to_string()
        } else {
            fmt_pow2_us(1 << e)
        };
        w!(
            out,
            r##"<line x1="{x:.1}" y1="{BOTTOM}" x2="{x:.1}" y2="{:.1}" stroke="#333333"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            BOTTOM + 4.0,
            BOTTOM + 16.0,
            escape_xml(&label)
        );
    }
    axes(&mut out, RIGHT);
    axis_labels(&mut out, words.x_label, words.what, RIGHT);
    out.push_str("</svg>");
    out
}

// ---------------------------------------------------------------------------
// shared drawing

fn svg_open(out: &mut String, label: &str) {
    w!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="11" fill="#222222" role="img" aria-label="{}"><rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##,
        escape_xml(label)
    );
}

/// A valid SVG that only says why there is nothing to plot.
fn message_svg(title: &str, message: &str) -> String {
    let mut out = String::new();
    svg_open(&mut out, title);
    w!(
        out,
        r##"<text x="{:.1}" y="24" font-size="15" font-weight="bold">{}</text><text class="message" x="{:.1}" y="{:.1}" text-anchor="middle" font-size="14" fill="#666666">{}</text></svg>"##,
        LEFT,
        escape_xml(title),
        WIDTH / 2.0,
        HEIGHT / 2.0,
        escape_xml(message)
    );
    out
}

fn heading(out: &mut String, title: &str, sub: &str) {
    w!(
        out,
        r##"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text><text x="{LEFT}" y="38" fill="#555555">{}</text>"##,
        escape_xml(title),
        escape_xml(sub)
    );
}

/// Horizontal grid lines with their values on the left.
fn y_grid(out: &mut String, top: f64, step: f64, right: f64, fmt: impl Fn(f64, f64) -> String) {
    let n = (top / step).round().clamp(1.0, 50.0) as u32;
    for k in 0..=n {
        let v = f64::from(k) * step;
        let y = BOTTOM - (v / top) * (BOTTOM - TOP);
        w!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 6.0,
            y + 4.0,
            escape_xml(&fmt(v, step))
        );
    }
}

fn axes(out: &mut String, right: f64) {
    w!(
        out,
        r##"<path d="M{LEFT} {TOP}V{BOTTOM}H{right}" fill="none" stroke="#333333"/>"##
    );
}

fn axis_labels(out: &mut String, x: &str, y: &str, right: f64) {
    w!(
        out,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555555">{}</text><text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle" fill="#555555">{}</text>"##,
        (LEFT + right) / 2.0,
        BOTTOM + 34.0,
        escape_xml(x),
        (TOP + BOTTOM) / 2.0,
        escape_xml(y)
    );
}

/// At most `max` characters, so a long command line stays inside the plot.
fn shorten(s: &str, max: usize) -> String {
    holdup_format::truncate(s, max)
}

/// A 1, 2 or 5 times a power of ten step that cuts `range` into about `ticks` parts.
fn nice_step(range: f64, ticks: f64) -> f64 {
    let raw = range / ticks;
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Top of a y axis from 0 that holds `peak`, and its tick step.
fn axis_top(peak: f64) -> (f64, f64) {
    let peak = clean(peak);
    if peak == 0.0 {
        return (1.0, 0.25);
    }
    let step = nice_step(peak, 4.0);
    ((peak / step).ceil().max(1.0) * step, step)
}

/// A tick value with as many decimals as the step needs.
fn fmt_tick(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 || step.is_nan() || step <= 0.0 {
        0
    } else {
        (-step.log10().floor()).clamp(0.0, 6.0) as usize
    };
    format!("{:.*}", decimals, clean(v))
}

/// A count, shortened past 9999 ("12.5k", "3.1M").
fn fmt_count(v: f64) -> String {
    let v = clean(v);
    if v < 10_000.0 {
        format!("{v:.0}")
    } else if v < 1e6 {
        format!("{:.1}k", v / 1e3)
    } else if v < 1e9 {
        format!("{:.1}M", v / 1e6)
    } else {
        format!("{:.1}G", v / 1e9)
    }
}

#[cfg(test)]
pub(crate) mod tests;
