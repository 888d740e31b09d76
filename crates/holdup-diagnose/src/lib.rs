//! holdup's diagnosis: from window [`Snapshot`]s to ranked causes of a
//! degradation, with evidence.
//!
//! The input is snapshots only: the analysis does not know whether they came
//! from a live collector or from a recording, so `holdup diagnose --pid P`
//! and `holdup diagnose incident.rec` run the same code. Pure computation, no
//! I/O: unit-testable with synthetic windows.
//!
//! Steps (docs/DIAGNOSE.md explains each):
//! 1. thread-state analysis ([`states`]): every thread's window split into
//!    categories (on-CPU, run queue, iowait, lock vs hand-off futex waits,
//!    client vs peer sockets, ...), threads grouped into roles ([`model`]);
//! 2. entry-point threads: those serving clients;
//! 3. baseline vs incident ([`split`]): ranges, two recordings, an SLO
//!    series, or the change point of the entry threads' states;
//! 4. the thread dependency graph ([`graph`]);
//! 5. selective tracking and verdicts ([`verdict`]);
//! 6. a text report under a screen ([`text`]) and JSON (serde).

#![warn(missing_docs)]

pub mod graph;
pub mod model;
pub mod split;
pub mod states;
pub mod stats;
pub mod text;
pub mod verdict;

pub use graph::Graph;
pub use model::Source;
pub use split::{SloSeries, SplitReport, SplitRequest, TimeRange};
pub use states::Category;
pub use verdict::{Mode, PathStep, Verdict, VerdictKind};

use holdup_model::Snapshot;
use model::{Model, WinRef};
use serde::Serialize;

/// What to diagnose.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// What was watched, for the report ("pid 1234", a file name).
    pub target: String,
    /// The run to diagnose (live windows or a recording's).
    pub windows: &'a [Snapshot],
    /// Label of `windows` ("live", the file name).
    pub label: &'a str,
    /// A separate baseline recording's windows and label, when given.
    pub baseline_windows: Option<(&'a [Snapshot], &'a str)>,
    /// How to choose the baseline and the incident.
    pub split: SplitRequest,
}

/// Time shares of one role in the baseline and the incident.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoleStates {
    /// Role name (thread-name pattern).
    pub role: String,
    /// Process name.
    pub process: String,
    /// Serves clients.
    pub entry: bool,
    /// How it serves clients (entry roles).
    pub entry_how: Vec<String>,
    /// Most client connections seen in one window (entry roles).
    pub clients: u64,
    /// Threads seen in the baseline.
    pub threads_baseline: usize,
    /// Threads seen in the incident.
    pub threads_incident: usize,
    /// Per category: mean fraction of thread time (categories below 0.5% in both omitted).
    pub states: Vec<StateShare>,
}

/// One category's share of thread time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StateShare {
    /// Category.
    pub category: Category,
    /// Baseline, 0..=1.
    pub baseline: f64,
    /// Incident, 0..=1.
    pub incident: f64,
}

/// The entry roles' state vector in one window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelinePoint {
    /// Source label.
    pub source: String,
    /// Window index in the run.
    pub window: u64,
    /// Start, s from the source's first window.
    pub t_s: f64,
    /// "baseline", "incident" or "" (in neither).
    pub period: &'static str,
    /// Fraction of the entry threads' time per category (same order as [`Category::ALL`]).
    pub states: Vec<f64>,
}

/// The diagnosis.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diagnosis {
    /// What was watched.
    pub target: String,
    /// Windows analysed (all sources).
    pub windows: usize,
    /// Window length, ms (of the first window).
    pub window_ms: u64,
    /// Baseline against incident, or the incident judged alone.
    pub mode: Mode,
    /// How baseline and incident were chosen.
    pub split: SplitReport,
    /// Entry roles and how they serve clients.
    pub entry: Vec<RoleStates>,
    /// Thread states of the busiest roles (entry roles first).
    pub roles: Vec<RoleStates>,
    /// Ranked causes, most likely first; never empty.
    pub verdicts: Vec<Verdict>,
    /// Selective tracking from the entry threads to the resource.
    pub path: Vec<PathStep>,
    /// Who wakes whom.
    pub graph: Graph,
    /// Data that is missing or weak, in plain words.
    pub missing: Vec<String>,
    /// The entry threads' states per window.
    pub timeline: Vec<TimelinePoint>,
}

impl Diagnosis {
    /// The most likely cause.
    pub fn top(&self) -> &Verdict {
        &self.verdicts[0]
    }
}

/// An automatic watch with fewer active windows than this is judged alone:
/// each side of a split would have under 6 windows.
pub const MIN_AUTO_COMPARE_WINDOWS: usize = 12;

/// Under a weak automatic split, verdicts scoring less than this are weak
/// signals, not causes.
pub const WEAK_SPLIT_MIN_SCORE: f64 = 0.5;

/// Fewer windows than this are not enough to judge, even alone.
pub const MIN_ALONE_WINDOWS: usize = 2;

/// Most roles listed in [`Diagnosis::roles`].
pub const MAX_ROLES: usize = 8;

/// Durations above this (146 years) are impossible: a collector glitch
/// (e.g. a negative time difference stored unsigned).
pub const IMPOSSIBLE_NS: u64 = 1 << 62;

/// Copies of the windows with impossible durations set to 0, and how many
/// there were; None when every value is plausible.
pub fn sanitize(windows: &[Snapshot]) -> Option<(Vec<Snapshot>, usize)> {
    fn fix(v: &mut u64, n: &mut usize) {
        if *v > IMPOSSIBLE_NS {
            *v = 0;
            *n += 1;
        }
    }
    // Copy only when something needs fixing: a copy of every window would
    // double the memory a long recording takes.
    let clean = windows.iter().all(|s| {
        let ok = |v: u64| v <= IMPOSSIBLE_NS;
        s.threads.iter().all(|t| {
            let st = &t.states;
            [
                st.on_cpu_ns,
                st.runq_ns,
                st.iowait_ns,
                st.other_d_ns,
                st.sleep_ns,
                t.runq_unattributed_ns,
            ]
            .into_iter()
            .all(ok)
                && t.waits.iter().all(|w| ok(w.ns))
        }) && s.resources.iter().all(|r| ok(r.wait_ns))
            && s.wakeups.iter().all(|e| ok(e.sleep_ns))
            && s.culprits.iter().all(|c| ok(c.ns))
            && s.disks.iter().all(|d| ok(d.latency_ns))
    });
    if clean {
        return None;
    }
    let mut out = windows.to_vec();
    let mut n = 0;
    for s in &mut out {
        for t in &mut s.threads {
            let st = &mut t.states;
            for v in [
                &mut st.on_cpu_ns,
                &mut st.runq_ns,
                &mut st.iowait_ns,
                &mut st.other_d_ns,
                &mut st.sleep_ns,
                &mut t.runq_unattributed_ns,
            ] {
                fix(v, &mut n);
            }
            for w in &mut t.waits {
                fix(&mut w.ns, &mut n);
            }
        }
        for r in &mut s.resources {
            fix(&mut r.wait_ns, &mut n);
        }
        for e in &mut s.wakeups {
            fix(&mut e.sleep_ns, &mut n);
        }
        for c in &mut s.culprits {
            fix(&mut c.ns, &mut n);
        }
        for d in &mut s.disks {
            fix(&mut d.latency_ns, &mut n);
        }
    }
    (n > 0).then_some((out, n))
}

/// Diagnoses a run.
pub fn diagnose(input: &Input) -> Diagnosis {
    let fixed_run = sanitize(input.windows);
    let fixed_base = input.baseline_windows.and_then(|(w, _)| sanitize(w));
    let glitches = fixed_run.as_ref().map_or(0, |f| f.1) + fixed_base.as_ref().map_or(0, |f| f.1);
    let mut sources = Vec::new();
    if let Some((w, label)) = input.baseline_windows {
        let windows = fixed_base.as_ref().map_or(w, |f| f.0.as_slice());
        sources.push(Source { label, windows });
    }
    sources.push(Source {
        label: input.label,
        windows: fixed_run.as_ref().map_or(input.windows, |f| f.0.as_slice()),
    });
    let sources: Vec<Source> = sources
        .into_iter()
        .filter(|s| !s.windows.is_empty())
        .collect();
    let m = Model::build(&sources);
    let mut missing = Vec::new();
    if glitches > 0 {
        missing.push(format!(
            "{glitches} recorded duration(s) were impossible (over 146 years: a collector glitch) and were ignored"
        ));
    }
    if input.baseline_windows.is_some_and(|(w, _)| w.is_empty()) {
        missing.push("the baseline recording has no windows".into());
    }
    if input.windows.is_empty() {
        missing.push("the run has no windows".into());
    }
    let periods = if m.sources.is_empty() {
        split::Periods {
            baseline: Vec::new(),
            incident: Vec::new(),
            report: SplitReport {
                method: split::SplitMethod::None,
                baseline: split::PeriodInfo {
                    source: String::new(),
                    from_s: 0.0,
                    to_s: 0.0,
                    windows: 0,
                },
                incident: split::PeriodInfo {
                    source: String::new(),
                    from_s: 0.0,
                    to_s: 0.0,
                    windows: 0,
                },
                detail: "no windows".into(),
                slo: None,
                explained: None,
            },
        }
    } else {
        split::choose(&m, &input.split)
    };
    let mut periods = periods;
    let mode = if periods.report.method == split::SplitMethod::NoBaseline {
        Mode::IncidentOnly
    } else {
        Mode::Compare
    };
    // A weak automatic split may be noise: only a strong verdict counts.
    let weak = periods
        .report
        .explained
        .is_some_and(|e| e < split::WEAK_SPLIT);
    let min_score = if weak { WEAK_SPLIT_MIN_SCORE } else { 0.0 };
    let mut outcome = verdict::decide(&m, &periods.baseline, &periods.incident, mode, min_score);
    let mut mode = mode;
    // No change in the watch (the automatic split found none that matters,
    // or the run is too short to split): it may have been attached during
    // the incident. Judge the active windows alone; if a hold-up stands out,
    // that is the answer.
    let auto = matches!(
        periods.report.method,
        split::SplitMethod::ChangePoint | split::SplitMethod::None
    );
    let quiet = matches!(
        outcome.verdicts[0].kind,
        VerdictKind::NoSignificantChange | VerdictKind::InsufficientData
    );
    let short_watch = auto
        && (MIN_ALONE_WINDOWS..MIN_AUTO_COMPARE_WINDOWS)
            .contains(&(periods.baseline.len() + periods.incident.len()));
    if mode == Mode::Compare && auto && (quiet || short_watch) && !m.sources.is_empty() {
        let mut roles = m.entry_roles();
        if roles.is_empty() {
            roles = (0..m.roles.len()).collect();
        }
        let all: Vec<WinRef> = (0..m.sources[0].0.windows.len())
            .map(|idx| WinRef { src: 0, idx })
            .collect();
        let (active, _) = split::active_windows(&m, &all, &roles);
        let alone = verdict::decide(&m, &[], &active, Mode::IncidentOnly, 0.0);
        // A short watch has too few windows on each side for "no change" to
        // mean much: what it shows is judged alone, healthy or not.
        let short = (MIN_ALONE_WINDOWS..MIN_AUTO_COMPARE_WINDOWS).contains(&active.len());
        if alone.verdicts[0].significant || short {
            let why = if periods.report.method == split::SplitMethod::None || short {
                "too few windows to compare"
            } else {
                "no significant change between the stretches of the watch"
            };
            periods.report = SplitReport {
                method: split::SplitMethod::NoBaseline,
                baseline: split::PeriodInfo {
                    source: String::new(),
                    from_s: 0.0,
                    to_s: 0.0,
                    windows: 0,
                },
                incident: split::period_info(&m, &active),
                detail: format!(
                    "{why} ({}), so the active windows were judged alone{}",
                    periods.report.detail,
                    if alone.verdicts[0].significant {
                        ": the hold-up was there all along"
                    } else {
                        ""
                    }
                ),
                slo: None,
                explained: None,
            };
            periods.baseline = Vec::new();
            periods.incident = active;
            outcome = alone;
            mode = Mode::IncidentOnly;
        }
    }
    let (b, i) = (&periods.baseline, &periods.incident);
    missing.extend(outcome.missing);
    let graph = graph::build(&m, b, i);

    let role_states = |r: usize| -> RoleStates {
        let role = &m.roles[r];
        let states = Category::ALL
            .iter()
            .filter_map(|c| {
                let fb = stats::mean(&m.fractions(b, r, &[*c]));
                let fi = stats::mean(&m.fractions(i, r, &[*c]));
                (fb >= 0.005 || fi >= 0.005).then_some(StateShare {
                    category: *c,
                    baseline: fb,
                    incident: fi,
                })
            })
            .collect();
        RoleStates {
            role: role.name.clone(),
            process: role.process.clone(),
            entry: role.entry,
            entry_how: role.entry_how.iter().cloned().collect(),
            clients: b
                .iter()
                .chain(i)
                .map(|w| m.cell(*w, r).clients)
                .max()
                .unwrap_or(0),
            threads_baseline: m.thread_count(b, r),
            threads_incident: m.thread_count(i, r),
            states,
        }
    };
    let entry: Vec<RoleStates> = m.entry_roles().into_iter().map(role_states).collect();
    let roles: Vec<RoleStates> = (0..m.roles.len())
        .filter(|r| {
            b.iter()
                .chain(i)
                .any(|w| m.cell(*w, *r).busy_ns() > 0 || m.roles[*r].entry)
        })
        .take(MAX_ROLES)
        .map(role_states)
        .collect();

    let entry_roles = m.entry_roles();
    let mut timeline = Vec::new();
    for (si, (src, _)) in m.sources.iter().enumerate() {
        let first = src.windows[0].window.start_ns;
        for (idx, s) in src.windows.iter().enumerate() {
            let w = WinRef { src: si, idx };
            let mut v = vec![0.0; states::NCAT];
            let mut obs = 0u64;
            for r in &entry_roles {
                let c = m.cell(w, *r);
                obs += c.observed_ns;
                for (k, x) in v.iter_mut().enumerate() {
                    *x += c.cats[k] as f64;
                }
            }
            if obs > 0 {
                for x in &mut v {
                    *x = (*x / obs as f64 * 1000.0).round() / 1000.0;
                }
            }
            timeline.push(TimelinePoint {
                source: src.label.to_string(),
                window: s.window.index,
                t_s: s.window.start_ns.saturating_sub(first) as f64 / 1e9,
                period: if b.contains(&w) {
                    "baseline"
                } else if i.contains(&w) {
                    "incident"
                } else {
                    ""
                },
                states: v,
            });
        }
    }
    Diagnosis {
        target: input.target.clone(),
        windows: m.sources.iter().map(|(s, _)| s.windows.len()).sum(),
        window_ms: m
            .sources
            .first()
            .map(|(s, _)| s.windows[0].window.duration_ns() / 1_000_000)
            .unwrap_or(0),
        mode,
        split: periods.report,
        entry,
        roles,
        verdicts: outcome.verdicts,
        path: outcome.path,
        graph,
        missing,
        timeline,
    }
}
