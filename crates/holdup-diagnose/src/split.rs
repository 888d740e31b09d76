//! Choosing the baseline and the incident: explicit time ranges, two
//! recordings, an SLO series the user supplies, or automatically, at the
//! change point of the entry threads' state vectors.

use crate::model::{Model, WinRef};
use crate::states::{Category, NCAT};
use crate::stats::Dist;
use serde::Serialize;
use std::fmt;

/// A time range relative to the start of a source's first window, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TimeRange {
    /// Start, s (inclusive).
    pub start_s: f64,
    /// End, s (exclusive); None: to the end.
    pub end_s: Option<f64>,
}

/// Parses "10s", "500ms", "2m", "1h" or a plain number of seconds.
fn parse_secs(s: &str) -> Result<f64, String> {
    holdup_format::parse_duration(s).map(|d| d.as_secs_f64())
}

impl TimeRange {
    /// Parses "START..END" ("0s..20s", "30s..", "..20s", "1m..2m").
    pub fn parse(s: &str) -> Result<TimeRange, String> {
        let Some((a, b)) = s.split_once("..") else {
            return Err(format!(
                "{s:?} is not a time range: write START..END, e.g. 0s..20s or 30s.."
            ));
        };
        let start_s = if a.trim().is_empty() {
            0.0
        } else {
            parse_secs(a)?
        };
        let end_s = if b.trim().is_empty() {
            None
        } else {
            Some(parse_secs(b)?)
        };
        if end_s.is_some_and(|e| e <= start_s) {
            return Err(format!("time range {s:?} ends before it starts"));
        }
        Ok(TimeRange { start_s, end_s })
    }

    /// Whether a time (s) is inside.
    pub fn contains(&self, t: f64) -> bool {
        t >= self.start_s && self.end_s.is_none_or(|e| t < e)
    }
}

impl fmt::Display for TimeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end_s {
            Some(e) => write!(f, "{}s..{}s", fmt_num(self.start_s), fmt_num(e)),
            None => write!(f, "{}s..", fmt_num(self.start_s)),
        }
    }
}

fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

/// An SLO series: (time, value) points, e.g. the p99 latency of every second.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SloSeries {
    /// Points: time in seconds (Unix time when `unix_time`, else from the
    /// start of the run) and the value (higher is worse).
    pub points: Vec<(f64, f64)>,
    /// Times are Unix seconds.
    pub unix_time: bool,
}

impl SloSeries {
    /// Parses one point per line: "VALUE" (one per second from the start of
    /// the run) or "TIME VALUE" (TIME in Unix seconds, or seconds from the
    /// start when below 1e9). Commas or tabs may separate; '#' starts a comment.
    pub fn parse(text: &str) -> Result<SloSeries, String> {
        let mut points = Vec::new();
        let mut unix_time = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|f| !f.is_empty())
                .collect();
            let num = |s: &str| {
                s.parse::<f64>().map_err(|_| {
                    format!(
                        "SLO series line {}: {s:?} is not a number (expected VALUE or TIME VALUE)",
                        i + 1
                    )
                })
            };
            let (t, v) = match fields.as_slice() {
                [v] => (points.len() as f64, num(v)?),
                [t, v, ..] => (num(t)?, num(v)?),
                [] => continue,
            };
            let is_unix = fields.len() >= 2 && t >= 1e9;
            if *unix_time.get_or_insert(is_unix) != is_unix {
                return Err(format!(
                    "SLO series line {}: mixes Unix times and relative times",
                    i + 1
                ));
            }
            points.push((t, v));
        }
        if points.is_empty() {
            return Err("the SLO series has no points".into());
        }
        Ok(SloSeries {
            points,
            unix_time: unix_time.unwrap_or(false),
        })
    }
}

/// How the two periods were chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitMethod {
    /// Time ranges the user gave.
    Ranges,
    /// A baseline recording and an incident recording.
    TwoRecordings,
    /// Change point of the entry threads' states.
    ChangePoint,
    /// Change point of the user's SLO series.
    Slo,
    /// No baseline: the incident judged alone (asked for, or no change in
    /// the watch).
    NoBaseline,
    /// Too few windows to split: no comparison.
    None,
}

/// One period in the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PeriodInfo {
    /// Source label.
    pub source: String,
    /// Start, s from the source's first window.
    pub from_s: f64,
    /// End, s.
    pub to_s: f64,
    /// Windows in it.
    pub windows: usize,
}

/// The SLO before and after.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SloComparison {
    /// Per-window SLO values in the baseline.
    pub baseline: Dist,
    /// In the incident.
    pub incident: Dist,
}

/// How the baseline and incident were chosen.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SplitReport {
    /// Method.
    pub method: SplitMethod,
    /// The baseline.
    pub baseline: PeriodInfo,
    /// The incident.
    pub incident: PeriodInfo,
    /// Plain words: how it was chosen and how clear the change is.
    pub detail: String,
    /// The SLO series, when given.
    pub slo: Option<SloComparison>,
    /// Automatic split: the share of the states' variance it explains
    /// (under [`WEAK_SPLIT`] the run may have no real change).
    pub explained: Option<f64>,
}

/// An automatic split explaining less of the variance than this is weak.
pub const WEAK_SPLIT: f64 = 0.3;

/// What the user asked for.
#[derive(Clone, Debug, Default)]
pub struct SplitRequest {
    /// Baseline range (of the baseline recording when there are two).
    pub baseline: Option<TimeRange>,
    /// Incident range.
    pub incident: Option<TimeRange>,
    /// SLO series.
    pub slo: Option<SloSeries>,
    /// Judge the incident alone (the --incident range, or every window the
    /// service was active in), with no baseline.
    pub no_baseline: bool,
}

/// The chosen periods.
pub struct Periods {
    /// Baseline windows.
    pub baseline: Vec<WinRef>,
    /// Incident windows.
    pub incident: Vec<WinRef>,
    /// How.
    pub report: SplitReport,
}

/// Seconds from the source's first window start to the middle of a window.
fn rel_mid_s(m: &Model, w: WinRef) -> f64 {
    let first = m.sources[w.src].0.windows[0].window.start_ns;
    let s = &m.snapshot(w).window;
    (s.start_ns.saturating_sub(first) as f64 + s.duration_ns() as f64 / 2.0) / 1e9
}

fn rel_bounds(m: &Model, ws: &[WinRef]) -> (f64, f64) {
    let Some(first) = ws.first() else {
        return (0.0, 0.0);
    };
    let src0 = m.sources[first.src].0.windows[0].window.start_ns;
    let from = m.snapshot(*first).window.start_ns.saturating_sub(src0) as f64 / 1e9;
    let last = ws.last().unwrap();
    let to = m.snapshot(*last).window.end_ns.saturating_sub(src0) as f64 / 1e9;
    (from, to)
}

/// Where a period lies, for the report.
pub fn period_info(m: &Model, ws: &[WinRef]) -> PeriodInfo {
    let (from_s, to_s) = rel_bounds(m, ws);
    PeriodInfo {
        source: ws
            .first()
            .map(|w| m.sources[w.src].0.label.to_string())
            .unwrap_or_default(),
        from_s,
        to_s,
        windows: ws.len(),
    }
}

/// The shape of a change found in a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segmentation {
    /// Windows `[k, n)` differ from `[0, k)`.
    Single(usize),
    /// Windows `[a, b)` differ from the rest, which look alike.
    Epidemic(usize, usize),
    /// Three different stretches `[0, a)`, `[a, b)`, `[b, n)`: the last is
    /// the incident, compared with whichever earlier stretch differs more
    /// from it (the first when the flag is set).
    Three(usize, usize, bool),
}

/// Finds the change points of multi-dimensional per-window rows: one split,
/// or two (a middle stretch that differs from both ends, or three different
/// stretches). Returns the shape and the share of the variance it explains
/// (0..=1). None with fewer than 4 rows.
pub fn change_point(rows: &[Vec<f64>]) -> Option<(Segmentation, f64)> {
    let n = rows.len();
    if n < 4 {
        return None;
    }
    // Each stretch needs enough windows that one odd window (a load that
    // stops, a checkpoint) cannot be a stretch of its own.
    let m = if n >= 12 {
        4
    } else if n >= 8 {
        3
    } else {
        2
    };
    let dims = rows[0].len();
    // Prefix sums for O(dims) segment costs.
    let mut s1 = vec![vec![0.0; dims]; n + 1];
    let mut s2 = vec![vec![0.0; dims]; n + 1];
    for i in 0..n {
        for d in 0..dims {
            s1[i + 1][d] = s1[i][d] + rows[i][d];
            s2[i + 1][d] = s2[i][d] + rows[i][d] * rows[i][d];
        }
    }
    let cost = |a: usize, b: usize| -> f64 {
        let len = (b - a) as f64;
        (0..dims)
            .map(|d| {
                let sum = s1[b][d] - s1[a][d];
                let sq = s2[b][d] - s2[a][d];
                (sq - sum * sum / len).max(0.0)
            })
            .sum()
    };
    let mean_of = |a: usize, b: usize| -> Vec<f64> {
        (0..dims)
            .map(|d| (s1[b][d] - s1[a][d]) / (b - a) as f64)
            .collect()
    };
    let dist = |x: &[f64], y: &[f64]| -> f64 {
        x.iter()
            .zip(y)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let total = cost(0, n);
    if total <= 1e-12 {
        return Some((Segmentation::Single(n / 2), 0.0));
    }
    let mut best_single = (f64::INFINITY, n / 2);
    for k in m..=n - m {
        let c = cost(0, k) + cost(k, n);
        if c < best_single.0 {
            best_single = (c, k);
        }
    }
    let mut best_three = (f64::INFINITY, 0, 0);
    if n >= 3 * m && n <= 2000 {
        for a in m..=n - 2 * m {
            for b in (a + m)..=(n - m) {
                let c = cost(0, a) + cost(a, b) + cost(b, n);
                if c < best_three.0 {
                    best_three = (c, a, b);
                }
            }
        }
    }
    if best_three.0 < 0.75 * best_single.0 {
        let (_, a, b) = best_three;
        let (ma, mb, mc) = (mean_of(0, a), mean_of(a, b), mean_of(b, n));
        let shape = if dist(&ma, &mc) < 0.5 * dist(&ma, &mb).min(dist(&mb, &mc)) {
            Segmentation::Epidemic(a, b)
        } else {
            Segmentation::Three(a, b, dist(&ma, &mc) >= dist(&mb, &mc))
        };
        Some((shape, 1.0 - best_three.0 / total))
    } else {
        Some((
            Segmentation::Single(best_single.1),
            1.0 - best_single.0 / total,
        ))
    }
}

/// Weight of the load dimensions (on-CPU and idle fractions) against the
/// hold-up shares in the change-point search.
pub const LOAD_WEIGHT: f64 = 0.5;

/// Per-window state vectors of some roles: each hold-up category's share of
/// their busy (not idle) time, which says what holds requests up whatever
/// the load, plus the on-CPU and idle fractions of their time and their
/// client connections relative to the most seen in a window (weighted by
/// [`LOAD_WEIGHT`]), which say how busy they are.
fn state_rows(m: &Model, windows: &[WinRef], roles: &[usize]) -> Vec<Vec<f64>> {
    let holdups: Vec<Category> = Category::ALL
        .into_iter()
        .filter(|c| c.cause().is_some())
        .collect();
    let mut rows = windows
        .iter()
        .map(|w| {
            let mut cats = [0u64; NCAT];
            let (mut obs, mut busy) = (0u64, 0u64);
            for r in roles {
                let c = m.cell(*w, *r);
                obs += c.observed_ns;
                busy += c.busy_ns();
                for (k, v) in cats.iter_mut().enumerate() {
                    *v += c.cats[k];
                }
            }
            let mut v: Vec<f64> = holdups
                .iter()
                .map(|c| {
                    if busy > 0 {
                        cats[c.index()] as f64 / busy as f64
                    } else {
                        0.0
                    }
                })
                .collect();
            let frac = |x: u64| if obs > 0 { x as f64 / obs as f64 } else { 0.0 };
            v.push(LOAD_WEIGHT * frac(cats[Category::OnCpu.index()]));
            v.push(LOAD_WEIGHT * frac(obs - busy));
            v.push(roles.iter().map(|r| m.cell(*w, *r).clients).sum::<u64>() as f64);
            v
        })
        .collect::<Vec<Vec<f64>>>();
    // Client connections, relative to the most seen in a window.
    let most = rows
        .iter()
        .filter_map(|r| r.last().copied())
        .fold(0.0, f64::max);
    for r in &mut rows {
        if let Some(c) = r.last_mut() {
            *c = if most > 0.0 {
                LOAD_WEIGHT * *c / most
            } else {
                0.0
            };
        }
    }
    rows
}

/// SLO value of each window (the worst point inside it; carried forward
/// from the previous window when no point falls inside).
fn slo_per_window(m: &Model, windows: &[WinRef], slo: &SloSeries) -> Vec<Option<f64>> {
    let mut out = Vec::with_capacity(windows.len());
    for w in windows {
        let s = &m.snapshot(*w).window;
        let (from, to) = if slo.unix_time {
            let start = s.wall_start_ms as f64 / 1e3;
            (start, start + s.duration_ns() as f64 / 1e9)
        } else {
            let first = m.sources[w.src].0.windows[0].window.start_ns;
            let start = s.start_ns.saturating_sub(first) as f64 / 1e9;
            (start, start + s.duration_ns() as f64 / 1e9)
        };
        let v = slo
            .points
            .iter()
            .filter(|(t, _)| *t >= from - 1e-9 && *t < to - 1e-9)
            .map(|(_, v)| *v)
            .fold(None, |acc: Option<f64>, v| {
                Some(acc.map_or(v, |a| a.max(v)))
            });
        out.push(v);
    }
    out
}

/// A window where the service's entry threads did less busy (not idle) work
/// than this share of their typical loaded level is idle: the service had
/// nothing to do (before the load started, after it stopped).
pub const IDLE_LEVEL: f64 = 0.05;
/// Below this busy time (CPU-seconds per second) a window is idle whatever
/// the loaded level.
pub const IDLE_FLOOR: f64 = 0.01;
/// A window right after an idle start doing less than this share of the
/// loaded level is the ramp (the load starting mid-window, data loading).
pub const RAMP_LEVEL: f64 = 0.6;

/// The windows where the service was active: leading idle windows and the
/// ramp after them, and trailing idle windows, are left out, so that an
/// idle or ramping stretch is never the baseline of a contention verdict.
/// Returns the active windows and a note on what was left out ("" if none).
pub fn active_windows(m: &Model, windows: &[WinRef], roles: &[usize]) -> (Vec<WinRef>, String) {
    // Idle: no busy (not idle) time at all, hold-ups included (a stalled
    // service is busy waiting, not idle). Ramp: little CPU work yet (busy
    // time would rise with the incident's hold-ups, not with the load).
    let per_s = |w: &WinRef, f: &dyn Fn(&crate::model::RoleWindow) -> u64| {
        roles.iter().map(|r| f(m.cell(*w, *r))).sum::<u64>() as f64 / 1e9 / m.window_secs(*w)
    };
    let activity: Vec<f64> = windows.iter().map(|w| per_s(w, &|c| c.busy_ns())).collect();
    let work: Vec<f64> = windows
        .iter()
        .map(|w| per_s(w, &|c| c.cats[Category::OnCpu.index()]))
        .collect();
    if activity.is_empty() {
        return (Vec::new(), String::new());
    }
    // A loaded level: the median of the busier half of the windows.
    let level_of = |v: &[f64]| {
        let mut sorted = v.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2..][(sorted.len() - sorted.len() / 2) / 2]
    };
    let (level, work_level) = (level_of(&activity), level_of(&work));
    // Idle needs both little busy time and little CPU work against their
    // levels: a light load whose incident piles up lock waits keeps its
    // CPU work, so it is not idle next to them.
    let idle = |k: usize| {
        activity[k] < IDLE_FLOOR
            || (activity[k] < IDLE_LEVEL * level && work[k] < IDLE_LEVEL * work_level)
    };
    // Before the service first did work, its sleeps are waits for work, not
    // hold-ups: a thread pool's idle workers sleep on a condition variable
    // (a futex) until the first client comes, and that is not a lock. A
    // service starved from the start queues instead (run queue, D state):
    // that is the incident, not idle.
    let queued: Vec<f64> = windows
        .iter()
        .map(|w| {
            per_s(w, &|c| {
                c.sum(&[Category::RunQueue, Category::IoWait, Category::OtherD])
            })
        })
        .collect();
    let before_work =
        |k: usize| idle(k) || (work[k] < IDLE_LEVEL * work_level && queued[k] < IDLE_LEVEL * level);
    let mut first = (0..activity.len())
        .find(|k| !before_work(*k))
        .unwrap_or(activity.len());
    let lead_idle = first;
    if lead_idle > 0 {
        while first < activity.len() && work[first] < RAMP_LEVEL * work_level {
            first += 1;
        }
    }
    let mut last = activity.len();
    while last > first && idle(last - 1) {
        last -= 1;
    }
    if first >= last {
        return (windows.to_vec(), String::new());
    }
    let at = |k: usize| rel_bounds(m, &windows[k..k + 1]).0;
    let mut notes = Vec::new();
    if lead_idle > 0 {
        notes.push(format!(
            "{:.0}s-{:.0}s the service was idle{} (not used as a baseline)",
            at(0),
            at(lead_idle.min(windows.len() - 1)),
            if first > lead_idle {
                format!(", then ramping up until {:.0}s", at(first))
            } else {
                String::new()
            }
        ));
    }
    if last < activity.len() {
        notes.push(format!("from {:.0}s it was idle again", at(last)));
    }
    (windows[first..last].to_vec(), notes.join("; "))
}

/// Chooses the periods.
pub fn choose(m: &Model, req: &SplitRequest) -> Periods {
    let all = |src: usize| -> Vec<WinRef> {
        (0..m.sources[src].0.windows.len())
            .map(|idx| WinRef { src, idx })
            .collect()
    };
    let in_range = |ws: Vec<WinRef>, r: Option<TimeRange>| -> Vec<WinRef> {
        match r {
            None => ws,
            Some(r) => ws
                .into_iter()
                .filter(|w| r.contains(rel_mid_s(m, *w)))
                .collect(),
        }
    };
    let finish =
        |baseline: Vec<WinRef>, incident: Vec<WinRef>, method: SplitMethod, detail: String| {
            let slo = req.slo.as_ref().map(|slo| {
                let vals = |ws: &[WinRef]| -> Vec<f64> {
                    slo_per_window(m, ws, slo).into_iter().flatten().collect()
                };
                SloComparison {
                    baseline: Dist::of(&vals(&baseline)),
                    incident: Dist::of(&vals(&incident)),
                }
            });
            Periods {
                report: SplitReport {
                    method,
                    baseline: period_info(m, &baseline),
                    incident: period_info(m, &incident),
                    detail,
                    slo,
                    explained: None,
                },
                baseline,
                incident,
            }
        };

    if m.sources.len() >= 2 {
        let b = in_range(all(0), req.baseline);
        let i = in_range(all(1), req.incident);
        let detail = format!(
            "baseline from {}{}, incident from {}{}",
            m.sources[0].0.label,
            req.baseline.map(|r| format!(" ({r})")).unwrap_or_default(),
            m.sources[1].0.label,
            req.incident.map(|r| format!(" ({r})")).unwrap_or_default(),
        );
        return finish(b, i, SplitMethod::TwoRecordings, detail);
    }
    let windows = all(0);
    if req.no_baseline && req.incident.is_some() {
        let inc = in_range(windows, req.incident);
        let detail = format!(
            "no baseline (asked for): the incident {} judged alone",
            req.incident.map(|r| r.to_string()).unwrap_or_default()
        );
        return finish(Vec::new(), inc, SplitMethod::NoBaseline, detail);
    }
    if req.baseline.is_some() || req.incident.is_some() {
        let (b, i) = match (req.baseline, req.incident) {
            (Some(b), Some(i)) => (
                in_range(windows.clone(), Some(b)),
                in_range(windows, Some(i)),
            ),
            (Some(b), None) => {
                let base = in_range(windows.clone(), Some(b));
                let inc = windows.into_iter().filter(|w| !base.contains(w)).collect();
                (base, inc)
            }
            (None, Some(i)) => {
                let inc = in_range(windows.clone(), Some(i));
                let base = windows.into_iter().filter(|w| !inc.contains(w)).collect();
                (base, inc)
            }
            (None, None) => unreachable!(),
        };
        let detail = format!(
            "time ranges given: baseline {}, incident {}",
            req.baseline
                .map(|r| r.to_string())
                .unwrap_or_else(|| "the other windows".into()),
            req.incident
                .map(|r| r.to_string())
                .unwrap_or_else(|| "the other windows".into()),
        );
        return finish(b, i, SplitMethod::Ranges, detail);
    }

    if let Some(slo) = &req.slo {
        let vals = slo_per_window(m, &windows, slo);
        let mut last = None;
        let filled: Vec<Vec<f64>> = vals
            .iter()
            .map(|v| {
                if v.is_some() {
                    last = *v;
                }
                vec![last
                    .or(vals.iter().flatten().next().copied())
                    .unwrap_or(0.0)]
            })
            .collect();
        if vals.iter().flatten().count() >= 4 {
            if let Some((seg, explained)) = change_point(&filled) {
                // Windows in stretches whose mean SLO is nearer the worst
                // stretch's than the best one's are the incident.
                let bounds: Vec<(usize, usize)> = match seg {
                    Segmentation::Single(k) => vec![(0, k), (k, windows.len())],
                    Segmentation::Epidemic(a, b) | Segmentation::Three(a, b, _) => {
                        vec![(0, a), (a, b), (b, windows.len())]
                    }
                };
                let mean_of = |(a, b): (usize, usize)| {
                    let v: Vec<f64> = (a..b).map(|k| filled[k][0]).collect();
                    crate::stats::mean(&v)
                };
                let means: Vec<f64> = bounds.iter().map(|r| mean_of(*r)).collect();
                let lo = means.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = means.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let (mut base, mut inc) = (Vec::new(), Vec::new());
                for (r, mean) in bounds.iter().zip(&means) {
                    let target = if *mean > (lo + hi) / 2.0 {
                        &mut inc
                    } else {
                        &mut base
                    };
                    target.extend_from_slice(&windows[r.0..r.1]);
                }
                let detail = format!(
                    "change point of the SLO series ({} points); the windows where it is worse are the incident; it explains {:.0}% of the SLO's variance",
                    slo.points.len(),
                    explained * 100.0
                );
                return finish(base, inc, SplitMethod::Slo, detail);
            }
        }
    }

    let mut roles = m.entry_roles();
    let what = if roles.is_empty() {
        roles = (0..m.roles.len()).collect();
        "every thread's states"
    } else {
        "the entry threads' states"
    };
    let (windows, left_out) = active_windows(m, &windows, &roles);
    let left_out = if left_out.is_empty() {
        left_out
    } else {
        format!("; {left_out}")
    };
    if req.no_baseline {
        return finish(
            Vec::new(),
            windows,
            SplitMethod::NoBaseline,
            format!("no baseline (asked for): the incident judged alone{left_out}"),
        );
    }
    // The change point also looks at the watched local peers the entry
    // threads call: a peer that slows down changes there first.
    let mut path_roles = roles.clone();
    path_roles.extend(
        local_peer_roles(m, &windows)
            .into_iter()
            .filter(|r| !roles.contains(r)),
    );
    let what = if path_roles.len() > roles.len() {
        "the entry threads' and their watched local peers' states"
    } else {
        what
    };
    let rows = state_rows(m, &windows, &path_roles);
    match change_point(&rows) {
        Some((seg, explained)) => {
            let (mut b, mut i) = split_sets(&windows, seg);
            // A watch started during the incident sees it end: the worse
            // side of a single change is the incident, whichever comes first.
            let ended = matches!(seg, Segmentation::Single(_))
                && badness(m, &b, &roles) > badness(m, &i, &roles);
            if ended {
                std::mem::swap(&mut b, &mut i);
            }
            let at = |k: usize| rel_bounds(m, &windows[k..k + 1]).0;
            let shape = match seg {
                Segmentation::Single(k) if ended => format!(
                    "one change at {:.0}s, after which the service was held up less: the \
                     stretch before it is the incident (it ended during the watch)",
                    at(k)
                ),
                Segmentation::Single(k) => format!("one change at {:.0}s", at(k)),
                Segmentation::Epidemic(a, b) => format!(
                    "a stretch {:.0}s-{:.0}s that differs from before and after",
                    at(a),
                    at(b)
                ),
                Segmentation::Three(a, b, _) => format!(
                    "changes at {:.0}s and {:.0}s: the last stretch is compared with the earlier \
                     one that differs more from it (choose others with --baseline/--incident)",
                    at(a),
                    at(b)
                ),
            };
            let detail = format!(
                "automatic: {shape} in {what} (hold-up shares of busy time, and load); it explains {:.0}% of their variance{}{left_out}",
                explained * 100.0,
                if explained < WEAK_SPLIT {
                    " (weak: the run may have no real change)"
                } else {
                    ""
                }
            );
            let mut p = finish(b, i, SplitMethod::ChangePoint, detail);
            p.report.explained = Some(explained);
            p
        }
        None => {
            let n = windows.len();
            finish(
                windows,
                Vec::new(),
                SplitMethod::None,
                format!(
                    "only {n} active window(s): too few to find a baseline and an incident (need at least 4){left_out}"
                ),
            )
        }
    }
}

/// Roles that serve connections whose both ends are watched (local peers
/// the collector followed).
fn local_peer_roles(m: &Model, windows: &[WinRef]) -> Vec<usize> {
    use holdup_model::{Resource, Waker};
    let mut out = std::collections::BTreeSet::new();
    for w in windows {
        let (s, f) = (m.snapshot(*w), m.facts(*w));
        let served = s
            .resources
            .iter()
            .filter_map(|r| match &r.resource {
                Resource::Socket(sock) => Some((r.tid, sock)),
                _ => None,
            })
            .chain(s.wakeups.iter().filter_map(|e| match &e.waker {
                Waker::Socket(sock) => Some((e.wakee_tid, sock)),
                _ => None,
            }));
        for (tid, sock) in served {
            if f.is_internal(sock) && f.direction(sock) == crate::states::Direction::Inbound {
                out.extend(m.role_of_thread(*w, tid));
            }
        }
    }
    out.into_iter().collect()
}

/// How badly some roles fared in a period: the share of their busy time
/// held up, plus the share of their time they were busy (more load).
fn badness(m: &Model, ws: &[WinRef], roles: &[usize]) -> f64 {
    let (mut held, mut busy, mut obs) = (0u64, 0u64, 0u64);
    for w in ws {
        for r in roles {
            let c = m.cell(*w, *r);
            held += Category::ALL
                .into_iter()
                .filter(|k| k.cause().is_some())
                .map(|k| c.cats[k.index()])
                .sum::<u64>();
            busy += c.busy_ns();
            obs += c.observed_ns;
        }
    }
    let ratio = |a: u64, b: u64| if b > 0 { a as f64 / b as f64 } else { 0.0 };
    ratio(held, busy) + ratio(busy, obs)
}

/// (baseline, incident) windows of a segmentation.
fn split_sets(windows: &[WinRef], seg: Segmentation) -> (Vec<WinRef>, Vec<WinRef>) {
    match seg {
        Segmentation::Single(k) => (windows[..k].to_vec(), windows[k..].to_vec()),
        Segmentation::Epidemic(a, b) => {
            let mut base = windows[..a].to_vec();
            base.extend_from_slice(&windows[b..]);
            (base, windows[a..b].to_vec())
        }
        Segmentation::Three(a, b, first) => {
            let base = if first { &windows[..a] } else { &windows[a..b] };
            (base.to_vec(), windows[b..].to_vec())
        }
    }
}

#[cfg(test)]
mod tests;
