//! Server-side SVG plots of holdup recordings for the workbench web UI:
//! thread states over time and the run-queue latency histogram.
//!
//! Why this file is long: the SVG is drawn by hand (axes, ticks, legends,
//! stacked areas, bars) with its proptests beside it; moving it onto a
//! plotting crate with an SVG backend (issue 10) is not done yet.
//!
//! Pure string building: no plotting dependency, no scripts, no external
//! references, so the output can be inlined into a page or served as
//! `image/svg+xml` as it is. Every text that comes from a recording goes
//! through [`escape_xml`]: thread names and command lines are chosen by the
//! traced programs, not by holdup.

use holdup_model::{Histogram, Snapshot, ThreadState, NR_BUCKETS};
use holdup_record::{ReadStatus, Recording};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Number of stacked thread states (metrics 1-5).
pub const NR_STATES: usize = ThreadState::ALL.len();

/// `write!` into a String, which cannot fail.
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 320.0;
/// Plot area shared by both plots; the states plot keeps room for its legend.
const LEFT: f64 = 60.0;
const TOP: f64 = 52.0;
const BOTTOM: f64 = 270.0;
const STATES_RIGHT: f64 = 556.0;
const RUNQ_RIGHT: f64 = 700.0;
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
/// every window with a time span, merged. Buckets past the model's
/// [`NR_BUCKETS`] fold into the last one and counts saturate, so a crafted
/// file cannot overflow (or panic) the quantile and label arithmetic.
pub fn merged_runq(rec: &Recording) -> Histogram {
    let mut b = vec![0u64; NR_BUCKETS];
    for w in timed_windows(rec) {
        for t in &w.threads {
            for (i, c) in t.runq_hist.buckets.iter().enumerate() {
                let i = i.min(NR_BUCKETS - 1);
                b[i] = b[i].saturating_add(*c);
            }
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
    let title = "Run-queue latency";
    let h = merged_runq(rec);
    let total = h.count();
    if total == 0 {
        return message_svg(title, "no run-queue waits recorded");
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
    let bw = (RUNQ_RIGHT - LEFT) / n;
    let px = |i: usize| LEFT + (i - lo) as f64 * bw;
    let py = |v: f64| BOTTOM - clean(v / y_top).min(1.0) * (BOTTOM - TOP);

    let mut out = String::new();
    svg_open(&mut out, title);
    let q = |p: f64| h.quantile_us(p).map_or("?".to_string(), fmt_pow2_us);
    let head = format!(
        "{title}: {} waits, p50 ≤ {}, p99 ≤ {}",
        fmt_count(total as f64),
        q(0.5),
        q(0.99)
    );
    let sub = format!(
        "{} · all threads, all windows",
        shorten(&rec.header.target.to_string(), 60)
    );
    heading(&mut out, &head, &sub);
    y_grid(&mut out, y_top, y_step, RUNQ_RIGHT, |v, _| fmt_count(v));

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
            r##"<rect class="bar" data-count="{c}" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#d55e00"><title>{}: {} waits ({:.1}%)</title></rect>"##,
            x + 1.0,
            py(c as f64),
            (bw - 2.0).max(0.5),
            BOTTOM - py(c as f64),
            escape_xml(&range),
            c,
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
    axes(&mut out, RUNQ_RIGHT);
    axis_labels(
        &mut out,
        "time runnable before getting a CPU (log2 buckets; 1ms = 1024µs, 1s = 1024ms)",
        "waits",
        RUNQ_RIGHT,
    );
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

// ---------------------------------------------------------------------------
// bpftrace output (`bpftrace -f json`)

/// Most bars in one bpftrace map chart; the rest are summed as "other".
const MAX_BARS: usize = 20;

/// One chart of a bpftrace run's JSON output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BpftraceChart {
    /// The map it shows (`@name`).
    pub map: String,
    /// The SVG.
    pub svg: String,
}

/// Charts of a bpftrace `-f json` output: the last value of every keyed map
/// (top bars), every histogram (buckets), and every scalar map printed more
/// than once (its value over the prints). Lines that are not JSON, or JSON
/// of other types, are skipped: output may be cut at the output bound.
pub fn bpftrace_charts(output: &[u8]) -> Vec<BpftraceChart> {
    use serde_json::Value;
    // Keep the order of first appearance, the last value of each.
    let mut keyed: Vec<(String, Vec<(String, f64)>)> = Vec::new();
    let mut hists: Vec<(String, Vec<(String, f64)>)> = Vec::new();
    let mut scalars: Vec<(String, Vec<f64>)> = Vec::new();
    fn upsert<T>(v: &mut Vec<(String, T)>, k: &str, val: T) {
        match v.iter_mut().find(|(n, _)| n == k) {
            Some(e) => e.1 = val,
            None => v.push((k.to_string(), val)),
        }
    }
    for line in String::from_utf8_lossy(output).lines() {
        let Ok(j) = serde_json::from_str::<Value>(line.trim()) else {
            continue;
        };
        let Some(data) = j.get("data").and_then(Value::as_object) else {
            continue;
        };
        match j.get("type").and_then(Value::as_str) {
            Some("map") => {
                for (name, v) in data {
                    match v {
                        Value::Number(n) => {
                            let n = clean(n.as_f64().unwrap_or(0.0));
                            match scalars.iter_mut().find(|(k, _)| k == name) {
                                Some(e) => e.1.push(n),
                                None => scalars.push((name.clone(), vec![n])),
                            }
                        }
                        Value::Object(m) => {
                            let bars = m
                                .iter()
                                .filter_map(|(k, v)| Some((k.clone(), clean(v.as_f64()?))))
                                .collect();
                            upsert(&mut keyed, name, bars);
                        }
                        _ => {}
                    }
                }
            }
            Some("hist") | Some("lhist") => {
                for (name, v) in data {
                    let Some(buckets) = v.as_array() else {
                        continue;
                    };
                    let bars = buckets
                        .iter()
                        .filter_map(|b| {
                            let count = clean(b.get("count")?.as_f64()?);
                            let edge = |k: &str| b.get(k).and_then(Value::as_i64);
                            let label = match (edge("min"), edge("max")) {
                                (Some(lo), Some(hi)) => format!("{lo}–{hi}"),
                                (Some(lo), None) => format!("≥{lo}"),
                                (None, Some(hi)) => format!("<{hi}"),
                                (None, None) => "?".to_string(),
                            };
                            Some((label, count))
                        })
                        .collect();
                    upsert(&mut hists, name, bars);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (name, mut bars) in keyed {
        bars.sort_by(|a, b| b.1.total_cmp(&a.1));
        if bars.len() > MAX_BARS {
            let rest: f64 = bars[MAX_BARS - 1..].iter().map(|b| b.1).sum();
            let n = bars.len() - (MAX_BARS - 1);
            bars.truncate(MAX_BARS - 1);
            bars.push((format!("{n} others"), rest));
        }
        let svg = bars_svg(
            &format!("{name}: top keys"),
            "last printed value per key",
            &bars,
        );
        out.push(BpftraceChart { map: name, svg });
    }
    for (name, bars) in hists {
        let svg = bars_svg(&format!("{name}: histogram"), "count per bucket", &bars);
        out.push(BpftraceChart { map: name, svg });
    }
    for (name, values) in scalars.into_iter().filter(|(_, v)| v.len() > 1) {
        let svg = series_svg(&name, &values);
        out.push(BpftraceChart { map: name, svg });
    }
    out
}

/// Vertical bars with a label under each (rotated when there are many).
fn bars_svg(title: &str, sub: &str, bars: &[(String, f64)]) -> String {
    if bars.is_empty() {
        return message_svg(title, "the map was empty");
    }
    let peak = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    let (y_top, y_step) = axis_top(peak);
    let n = bars.len() as f64;
    let bw = (RUNQ_RIGHT - LEFT) / n;
    let py = |v: f64| BOTTOM - clean(v / y_top).min(1.0) * (BOTTOM - TOP);
    let mut out = String::new();
    svg_open(&mut out, title);
    heading(&mut out, title, sub);
    y_grid(&mut out, y_top, y_step, RUNQ_RIGHT, |v, _| fmt_count(v));
    for (i, (label, v)) in bars.iter().enumerate() {
        let x = LEFT + i as f64 * bw;
        let y = py(*v);
        w!(
            out,
            r##"<rect class="bar" x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="#0072b2"><title>{}: {}</title></rect>"##,
            x + bw * 0.1,
            bw * 0.8,
            (BOTTOM - y).max(0.0),
            escape_xml(label),
            fmt_count(*v)
        );
        let lx = x + bw / 2.0;
        let text = escape_xml(&shorten(label, 18));
        if bars.len() > 8 {
            w!(
                out,
                r##"<text x="{lx:.1}" y="{:.1}" font-size="9" text-anchor="end" transform="rotate(-35 {lx:.1} {:.1})">{text}</text>"##,
                BOTTOM + 12.0,
                BOTTOM + 12.0
            );
        } else {
            w!(
                out,
                r##"<text x="{lx:.1}" y="{:.1}" text-anchor="middle">{text}</text>"##,
                BOTTOM + 16.0
            );
        }
    }
    axes(&mut out, RUNQ_RIGHT);
    out.push_str("</svg>");
    out
}

/// A scalar map's value at each print, as a line.
fn series_svg(name: &str, values: &[f64]) -> String {
    let title = format!("{name} at each print");
    let peak = values.iter().copied().fold(0.0, f64::max);
    let (y_top, y_step) = axis_top(peak);
    let n = values.len().max(2) as f64 - 1.0;
    let px = |i: usize| LEFT + i as f64 / n * (RUNQ_RIGHT - LEFT);
    let py = |v: f64| BOTTOM - clean(v / y_top).clamp(0.0, 1.0) * (BOTTOM - TOP);
    let mut out = String::new();
    svg_open(&mut out, &title);
    heading(
        &mut out,
        &title,
        &format!(
            "{} prints, last {}",
            values.len(),
            fmt_count(*values.last().unwrap_or(&0.0))
        ),
    );
    y_grid(&mut out, y_top, y_step, RUNQ_RIGHT, |v, _| fmt_count(v));
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", px(i), py(*v)))
        .collect();
    w!(
        out,
        r##"<polyline class="series" points="{}" fill="none" stroke="#d55e00" stroke-width="2"/>"##,
        points.join(" ")
    );
    for (i, v) in values.iter().enumerate() {
        w!(
            out,
            r##"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="#d55e00"><title>print {}: {}</title></circle>"##,
            px(i),
            py(*v),
            i + 1,
            fmt_count(*v)
        );
    }
    axes(&mut out, RUNQ_RIGHT);
    axis_labels(&mut out, "print number", name, RUNQ_RIGHT);
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdup_model::{Loss, StateTimes, Target, ThreadWindow, WindowInfo, SCHEMA_VERSION};
    use holdup_record::{Recorder, RecordingHeader, FORMAT_VERSION};
    use std::io::{self, Write};
    use std::sync::{Arc, Mutex};

    const NASTY: &str = "<script>&\"";

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
    fn assert_xmlish(svg: &str) {
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

    /// Real `bpftrace -f json` output (0.17), trimmed, with a line cut at
    /// the output bound and a stray text line.
    const BPFTRACE_OUT: &str = r#"{"type": "attached_probes", "data": {"probes": 2}}
{"type": "map", "data": {"@ticks": 10}}
{"type": "map", "data": {"@ticks": 20}}
not json at all
{"type": "map", "data": {"@by": {"swapper/0": 24, "<b>&x": 3}}}
{"type": "hist", "data": {"@h": [{"min": 4, "max": 7, "count": 1}, {"min": 8, "max": 15, "count": 0}, {"min": 256, "max": 511, "count": 6}]}}
{"type": "map", "data": {"@ticks": 24}}
{"type": "map", "data": {"@cut": {"a"#;

    #[test]
    fn bpftrace_output_becomes_one_chart_per_map() {
        let charts = bpftrace_charts(BPFTRACE_OUT.as_bytes());
        let maps: Vec<&str> = charts.iter().map(|c| c.map.as_str()).collect();
        assert_eq!(maps, ["@by", "@h", "@ticks"]);
        for c in &charts {
            assert_xmlish(&c.svg);
        }
        // keyed map: one bar per key, biggest first, keys escaped
        let by = &charts[0].svg;
        assert_eq!(by.matches(r#"class="bar""#).count(), 2);
        assert!(by.find("swapper/0: 24").unwrap() < by.find("&lt;b&gt;&amp;x: 3").unwrap());
        assert!(!by.contains("<b>"));
        // histogram: every bucket, in order
        let h = &charts[1].svg;
        assert_eq!(h.matches(r#"class="bar""#).count(), 3);
        assert!(h.find("4–7").unwrap() < h.find("256–511").unwrap());
        // scalar printed three times: a series of three points
        let t = &charts[2].svg;
        assert_eq!(t.matches("<circle").count(), 3);
        assert!(t.contains("3 prints, last 24"));
    }

    #[test]
    fn bpftrace_maps_with_many_keys_keep_the_top_and_sum_the_rest() {
        let keys: Vec<String> = (0..30).map(|i| format!("\"k{i}\": {}", i + 1)).collect();
        let line = format!(
            r#"{{"type": "map", "data": {{"@m": {{{}}}}}}}"#,
            keys.join(", ")
        );
        let charts = bpftrace_charts(line.as_bytes());
        assert_eq!(charts.len(), 1);
        let svg = &charts[0].svg;
        assert_eq!(svg.matches(r#"class="bar""#).count(), MAX_BARS);
        assert!(svg.contains("k29: 30"));
        // keys k0..k10 (values 1..=11) are folded: 66 in all
        assert!(svg.contains("11 others: 66"), "{svg}");
    }

    #[test]
    fn bpftrace_output_without_maps_has_no_charts() {
        assert!(bpftrace_charts(b"").is_empty());
        assert!(bpftrace_charts(b"{\"type\": \"printf\", \"data\": \"hi\"}\n").is_empty());
        // a scalar printed once is a number, not a chart
        assert!(bpftrace_charts(b"{\"type\": \"map\", \"data\": {\"@n\": 5}}\n").is_empty());
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
        /// Whatever a run printed (cut anywhere, any bytes), the charts
        /// are built without panicking and are well-formed.
        #[test]
        fn bpftrace_charts_survive_any_output(
            cut in 0usize..BPFTRACE_OUT.len(),
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
        ) {
            let mut bytes = BPFTRACE_OUT.as_bytes()[..cut].to_vec();
            bytes.extend_from_slice(&junk);
            for c in bpftrace_charts(&bytes) {
                assert_xmlish(&c.svg);
            }
        }

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
}
