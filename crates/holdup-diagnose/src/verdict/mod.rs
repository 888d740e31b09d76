//! Selective tracking and verdicts.
//!
//! Tracking starts from the entry roles, takes the hold-up that grew most
//! between baseline and incident (or, without a baseline, the one that takes
//! most of their busy time), and follows it: a hand-off to the role that
//! signals, a lock to what its holders wait on while holding it, until a
//! resource explains it. Each examined role's hold-ups become candidate
//! verdicts with their evidence; the candidates are scored and ranked. The
//! answer is never empty: "no significant change", "more load" or "nothing
//! holds it up" when no hold-up stands out.
//!
//! One file per cause: [`cpu`], [`disk`], [`lock`], [`handoff`], [`peer`],
//! [`load`] (more load, and the quiet verdicts); [`growth`] measures a cause
//! family in a role, with the thresholds that make it significant.

pub mod cpu;
pub mod disk;
pub mod growth;
pub mod handoff;
pub mod load;
pub mod lock;
pub mod peer;

pub use growth::*;

use crate::model::{Model, WinRef};
use crate::states::{Category, CauseFamily, Direction, FutexKey, FutexUse};
use crate::stats::{cliffs_delta, mean, Dist};
use crate::text::{self, ba, change, comm_list, hist_q, named_with_ids, time_line};
use holdup_format as fmt;
use holdup_model::{Histogram, Resource, WaitKind, Waker};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The kind of cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// Other processes took the CPUs the service's threads needed.
    CpuContention,
    /// The service's own threads compete for too few CPUs.
    CpuSaturation,
    /// Runnable while the CPU ran nothing else: its CPU limit throttles it.
    CpuThrottled,
    /// The service waits for a disk that others (or itself) keep busy.
    DiskContention,
    /// The service waits for I/O that spends little time at the disk: held
    /// before the device (a cgroup I/O limit, writeback throttling).
    DiskThrottled,
    /// The service's threads wait for a lock held by each other.
    LockContention,
    /// A stage the request path hands work to is slow.
    HandoffStall,
    /// A peer the service calls answers slowly.
    SlowExternalService,
    /// More time sleeping in other system calls.
    OtherWait,
    /// More requests, served without a contended wait.
    MoreLoad,
    /// Nothing that holds the service up changed.
    NoSignificantChange,
    /// Judged without a baseline: no hold-up takes a large share of the
    /// service's busy time.
    NothingHoldsItUp,
    /// Not enough data to compare.
    InsufficientData,
}

impl VerdictKind {
    /// Title for people.
    pub fn title(self) -> &'static str {
        match self {
            VerdictKind::CpuContention => "CPU contention",
            VerdictKind::CpuSaturation => "CPU saturation by the service's own load",
            VerdictKind::CpuThrottled => "CPU throttled by its own limit",
            VerdictKind::DiskContention => "disk contention",
            VerdictKind::DiskThrottled => "disk I/O throttled before the device",
            VerdictKind::LockContention => "lock contention",
            VerdictKind::HandoffStall => "hand-off stall",
            VerdictKind::SlowExternalService => "slow external service",
            VerdictKind::OtherWait => "more sleeping in other system calls",
            VerdictKind::MoreLoad => "more load",
            VerdictKind::NoSignificantChange => "no significant change",
            VerdictKind::NothingHoldsItUp => "nothing is holding it up",
            VerdictKind::InsufficientData => "not enough data",
        }
    }
}

/// What a culprit is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NamedKind {
    /// Another process (or the service's own, for saturation).
    Process,
    /// A group of the service's threads.
    Role,
    /// One thread.
    Thread,
    /// A futex.
    Futex,
    /// A peer address.
    Peer,
    /// A disk.
    Disk,
    /// A cgroup.
    Cgroup,
    /// A file.
    File,
    /// The service's clients.
    Clients,
}

/// Something a verdict names.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Named {
    /// What it is.
    pub kind: NamedKind,
    /// Its name (comm, role, address, disk, file).
    pub name: String,
    /// Process or thread ids, when they exist.
    pub ids: Vec<u32>,
    /// One line of evidence about it.
    pub detail: String,
}

/// A metric compared between baseline and incident windows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// What is measured.
    pub what: String,
    /// Unit of the values.
    pub unit: String,
    /// Per-window values in the baseline.
    pub baseline: Dist,
    /// In the incident.
    pub incident: Dist,
    /// Cliff's delta of incident against baseline (1: every incident window higher).
    pub cliffs_delta: f64,
}

impl Comparison {
    pub(super) fn new(what: impl Into<String>, unit: &str, b: &[f64], i: &[f64]) -> Comparison {
        Comparison {
            what: what.into(),
            unit: unit.into(),
            baseline: Dist::of(b),
            incident: Dist::of(i),
            cliffs_delta: cliffs_delta(b, i),
        }
    }
}

/// How sure a verdict is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Enough windows, clearly separated.
    High,
    /// Some overlap or few windows.
    Medium,
    /// Weak.
    Low,
}

/// Confidence of a verdict's main comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Confidence {
    /// Level.
    pub level: Level,
    /// Baseline windows.
    pub baseline_windows: usize,
    /// Incident windows.
    pub incident_windows: usize,
    /// Cliff's delta of the main metric.
    pub cliffs_delta: f64,
    /// Plain words.
    pub text: String,
}

pub(super) fn confidence(b: &[f64], i: &[f64], pct: bool) -> Confidence {
    let d = cliffs_delta(b, i);
    let (nb, ni) = (b.len(), i.len());
    let level = if nb >= 5 && ni >= 5 && d.abs() >= 0.8 {
        Level::High
    } else if nb >= 3 && ni >= 3 && d.abs() >= 0.5 {
        Level::Medium
    } else {
        Level::Low
    };
    let (db, di) = (Dist::of(b), Dist::of(i));
    let f = |v: f64| {
        if pct {
            format!("{:.0}%", v * 100.0)
        } else {
            fmt::rate(v)
        }
    };
    let text = format!(
        "{nb} baseline vs {ni} incident windows; per-window p10-p90 {}-{} before, {}-{} after; Cliff's delta {:.2}",
        f(db.p10),
        f(db.p90),
        f(di.p10),
        f(di.p90),
        d
    );
    Confidence {
        level,
        baseline_windows: nb,
        incident_windows: ni,
        cliffs_delta: d,
        text,
    }
}

/// Confidence of a judgement without a baseline: how many windows, and how
/// steady the per-window values are.
pub(super) fn confidence_alone(i: &[f64]) -> Confidence {
    let d = Dist::of(i);
    let n = i.len();
    let steady = d.p10 > 0.0 && d.p90 <= 3.0 * d.p10;
    let level = if n >= 5 && steady {
        Level::High
    } else if n >= 3 {
        Level::Medium
    } else {
        Level::Low
    };
    Confidence {
        level,
        baseline_windows: 0,
        incident_windows: n,
        cliffs_delta: 0.0,
        text: format!(
            "{n} windows judged alone (no baseline); per-window p10-p90 {:.0}%-{:.0}%",
            d.p10 * 100.0,
            d.p90 * 100.0
        ),
    }
}

/// A ranked cause.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// Kind of cause.
    pub kind: VerdictKind,
    /// 0..=1; verdicts are sorted by it.
    pub score: f64,
    /// The change is large and separates the periods (otherwise a weak signal).
    pub significant: bool,
    /// One sentence in plain words.
    pub summary: String,
    /// The role of the service it concerns.
    pub role: Option<String>,
    /// Who or what causes it, most important first.
    pub culprits: Vec<Named>,
    /// Evidence lines (before → after numbers).
    pub evidence: Vec<String>,
    /// The numbers behind it.
    pub comparisons: Vec<Comparison>,
    /// How sure.
    pub confidence: Confidence,
}

/// One step of the selective tracking.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PathStep {
    /// Role examined.
    pub role: String,
    /// An entry role.
    pub entry: bool,
    /// Threads in it (incident).
    pub threads: usize,
    /// The hold-up that grew most.
    pub wait: String,
    /// Its share of the role's thread time, baseline.
    pub baseline: f64,
    /// Incident.
    pub incident: f64,
    /// Where it leads: the next role (hand-off) or the resource that explains it.
    pub leads_to: String,
}

/// Everything the analysis decided.
pub struct Outcome {
    /// Ranked verdicts (never empty).
    pub verdicts: Vec<Verdict>,
    /// The tracking path.
    pub path: Vec<PathStep>,
    /// Missing or weak data.
    pub missing: Vec<String>,
}

/// A candidate verdict before ranking.
pub(super) struct Candidate {
    pub(super) verdict: Verdict,
    /// What the path step leads to.
    pub(super) leads_to: String,
}

/// How the verdicts are reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Baseline against incident: what grew.
    Compare,
    /// The incident alone: what takes the entry threads' busy time, against
    /// stated thresholds ([`alone_threshold`]).
    IncidentOnly,
}

/// Runs the tracking and produces the verdicts. With [`Mode::IncidentOnly`]
/// `b` is ignored. Verdicts scoring under `min_score` are weak signals, not causes.
pub fn decide(m: &Model, b: &[WinRef], i: &[WinRef], mode: Mode, min_score: f64) -> Outcome {
    let alone = mode == Mode::IncidentOnly;
    let b: &[WinRef] = if alone { &[] } else { b };
    let mut missing = Vec::new();
    let too_few = if alone {
        i.is_empty().then(|| {
            (
                "no windows to judge".to_string(),
                "not enough data: no windows in the incident".to_string(),
            )
        })
    } else {
        (b.len() < 2 || i.len() < 2).then(|| {
            let what = if b.is_empty() && i.is_empty() {
                "no windows at all".to_string()
            } else {
                format!("{} baseline and {} incident window(s)", b.len(), i.len())
            };
            (
                format!("{what}: a comparison needs at least 2 windows on each side (collect longer, e.g. --duration 60s, or give --baseline/--incident ranges)"),
                format!("not enough data to compare: {what}; holdup needs a baseline and an incident period"),
            )
        })
    };
    if let Some((why, summary)) = too_few {
        missing.push(why);
        return Outcome {
            verdicts: vec![Verdict {
                kind: VerdictKind::InsufficientData,
                score: 1.0,
                significant: false,
                summary,
                role: None,
                culprits: Vec::new(),
                evidence: Vec::new(),
                comparisons: Vec::new(),
                confidence: confidence(&[], &[], true),
            }],
            path: Vec::new(),
            missing,
        };
    }

    let mut start_roles = m.entry_roles();
    if start_roles.is_empty() {
        missing.push(
            "no entry thread found (none accepted, received on, or polled client sockets in these windows): every thread was examined instead, so waits for clients may look like hold-ups".into(),
        );
        // Threads that did anything.
        start_roles = (0..m.roles.len())
            .filter(|&r| {
                b.iter()
                    .chain(i)
                    .any(|w| m.cell(*w, r).busy_ns() > m.window_secs(*w) as u64 * 10_000_000)
            })
            .collect();
    }

    // Selective tracking: examined roles with their weight.
    let mut examined: Vec<(usize, f64)> = start_roles.iter().map(|&r| (r, 1.0)).collect();
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut path: Vec<PathStep> = Vec::new();
    let mut visited: BTreeSet<usize> = BTreeSet::new();
    let mut k = 0;
    while k < examined.len() && k < 12 {
        let (role, weight) = examined[k];
        k += 1;
        if !visited.insert(role) {
            continue;
        }
        let growths: Vec<Growth> = CauseFamily::ALL
            .iter()
            .map(|f| {
                if alone {
                    assess_alone(m, i, role, *f)
                } else {
                    assess(m, b, i, role, *f)
                }
            })
            .collect();
        let mut best: Option<(&Growth, String)> = None;
        for g in &growths {
            if g.impact <= 0.0 {
                continue;
            }
            let Some(c) = candidate(m, b, i, g, &mut missing) else {
                continue;
            };
            let mut c = c;
            c.verdict.score *= weight;
            if g.family == CauseFamily::Handoff && g.significant {
                if let Some(next) = slow_stage(m, i, role) {
                    if !visited.contains(&next) {
                        examined.push((next, (weight * g.score).max(0.3)));
                    }
                }
            }
            if best.as_ref().is_none_or(|(bg, _)| g.score > bg.score) {
                best = Some((g, c.leads_to.clone()));
            }
            candidates.push(c);
        }
        let threads = m.thread_count(i, role);
        // Follow the holder: a lock whose holders are themselves held up
        // while they hold it (waiting for the disk, a CPU, a peer) is a
        // symptom; what holds the holders up is the cause.
        let mut holder_step = None;
        if let Some((g, _)) = best
            .as_ref()
            .filter(|(g, _)| g.family == CauseFamily::Lock && g.significant)
        {
            if let Some((hg, hc, words)) = lock::holders_held_up(m, b, i, role, alone, &mut missing)
            {
                let mut hc = hc;
                hc.verdict.score = hc.verdict.score.max(g.score * weight) + 0.01;
                hc.verdict.significant = true;
                hc.verdict.evidence.insert(
                    0,
                    format!(
                        "{} waits for a lock ({}); its holders ({}) are {} while they hold it: {}",
                        m.roles[role].name,
                        text::change(g),
                        m.roles[hg.role].name,
                        words,
                        text::change(&hg)
                    ),
                );
                holder_step = Some(PathStep {
                    role: format!("{} (lock holders)", m.roles[hg.role].name),
                    entry: m.roles[hg.role].entry,
                    threads: m.thread_count(i, hg.role),
                    wait: words.to_string(),
                    baseline: mean(&hg.before),
                    incident: mean(&hg.after),
                    leads_to: hc.leads_to.clone(),
                });
                candidates.push(hc);
            }
        }
        if let Some((g, leads_to)) = best {
            if g.significant || path.is_empty() {
                path.push(PathStep {
                    role: m.roles[role].name.clone(),
                    entry: m.roles[role].entry,
                    threads,
                    wait: g.family.words().to_string(),
                    baseline: mean(&g.before),
                    incident: mean(&g.after),
                    leads_to: if holder_step.is_some() {
                        "the lock's holders".into()
                    } else {
                        leads_to
                    },
                });
            }
        }
        path.extend(holder_step);
    }

    // Load.
    let load = if alone {
        load::busy_alone(m, i, &start_roles)
    } else {
        load::more_load(m, b, i, &start_roles)
    };

    // Merge candidates per kind: keep the strongest.
    let mut by_kind: BTreeMap<VerdictKind, Verdict> = BTreeMap::new();
    for c in candidates {
        let v = c.verdict;
        match by_kind.get(&v.kind) {
            Some(old) if old.score >= v.score => {}
            _ => {
                by_kind.insert(v.kind, v);
            }
        }
    }
    if let Some(l) = load {
        by_kind.insert(VerdictKind::MoreLoad, l);
    }
    let mut verdicts: Vec<Verdict> = by_kind.into_values().collect();
    for v in &mut verdicts {
        if v.score < min_score {
            v.significant = false;
        }
        if !v.significant {
            v.score = v.score.min(0.4);
        }
    }
    // Signals too small to mean anything are not listed.
    verdicts.retain(|v| v.significant || v.score >= 0.02);
    let any_significant = verdicts.iter().any(|v| v.significant);
    if !any_significant {
        let strongest = verdicts.iter().map(|v| v.score).fold(0.0, f64::max);
        verdicts.push(if alone {
            load::nothing_holds_it_up(m, i, &start_roles, strongest, &verdicts)
        } else {
            load::no_change(m, b, i, &start_roles, strongest, &verdicts)
        });
    }
    verdicts.sort_by(|x, y| y.score.total_cmp(&x.score));

    // Data quality notes.
    let loss: u64 = b.iter().chain(i).map(|w| m.snapshot(*w).loss.total()).sum();
    if loss > 0 {
        missing.push(format!(
            "holdup lost {loss} entries or events in these windows (maps full or threads picked up late): numbers may be low"
        ));
    }
    if !m.sources.iter().any(|(_, f)| f.socket_calls)
        && verdicts.first().is_some_and(|v| {
            matches!(
                v.kind,
                VerdictKind::MoreLoad | VerdictKind::NoSignificantChange
            )
        })
    {
        missing.push(
            "request rates are estimated from wake-ups and blocking waits (per-call socket counting was off: run with --socket-calls for exact receive counts)".into(),
        );
    }
    missing.dedup();
    Outcome {
        verdicts,
        path,
        missing,
    }
}

/// The role that wakes a role's hand-off waits most in the incident.
pub(super) fn slow_stage(m: &Model, i: &[WinRef], role: usize) -> Option<usize> {
    let mut by_role: HashMap<usize, u64> = HashMap::new();
    for w in i {
        let s = m.snapshot(*w);
        let f = m.facts(*w);
        for e in &s.wakeups {
            if m.role_of_thread(*w, e.wakee_tid) != Some(role) {
                continue;
            }
            if let Waker::Thread { tgid, tid, .. } = &e.waker {
                if !f.tgids.contains(tgid) {
                    continue;
                }
                let handoff_kind = matches!(
                    e.wait_kind,
                    Some(WaitKind::Futex | WaitKind::FileRead | WaitKind::Mux)
                );
                if !handoff_kind {
                    continue;
                }
                if e.wait_kind == Some(WaitKind::Futex) && f.are_kin(*tid, e.wakee_tid) {
                    // a peer of its own role woke it: a lock, not a hand-off
                    continue;
                }
                if let Some(r) = m.role_of_thread(*w, *tid) {
                    if r != role {
                        *by_role.entry(r).or_default() += e.sleep_ns;
                    }
                }
            }
        }
    }
    by_role.into_iter().max_by_key(|(_, v)| *v).map(|(r, _)| r)
}

pub(super) fn base_verdict(kind: VerdictKind, m: &Model, g: &Growth) -> Verdict {
    let name = &m.roles[g.role].name;
    let words = g.family.words();
    let (basis, unit, is_pct) = if g.per_work_before.is_some() {
        (
            format!("{name}: {words}, per unit of CPU work"),
            "ns waited per ns on-CPU",
            false,
        )
    } else {
        (
            format!("{name}: {words}, share of busy time"),
            "fraction of busy time",
            true,
        )
    };
    Verdict {
        kind,
        score: g.score,
        significant: g.significant,
        summary: String::new(),
        role: Some(name.clone()),
        culprits: Vec::new(),
        evidence: Vec::new(),
        comparisons: vec![
            Comparison::new(basis, unit, &g.basis_before, &g.basis_after),
            Comparison::new(
                format!("{name}: {words}"),
                "fraction of thread time",
                &g.before,
                &g.after,
            ),
        ],
        confidence: if g.alone {
            confidence_alone(&g.basis_after)
        } else {
            confidence(&g.basis_before, &g.basis_after, is_pct)
        },
    }
}

/// The cgroups of `role`'s threads in `period`, named as the place of a
/// limit that holds it up.
fn role_cgroups(m: &Model, period: &[WinRef], role: usize, detail: &str) -> Vec<Named> {
    let ids: BTreeSet<u64> = period
        .iter()
        .flat_map(|w| {
            m.snapshot(*w)
                .threads
                .iter()
                .filter(move |t| m.role_of_thread(*w, t.tid) == Some(role))
                .map(|t| t.cgroup_id)
        })
        .collect();
    ids.into_iter()
        .map(|id| Named {
            kind: NamedKind::Cgroup,
            name: format!("cgroup {id}"),
            ids: Vec::new(),
            detail: detail.into(),
        })
        .collect()
}

fn candidate(
    m: &Model,
    b: &[WinRef],
    i: &[WinRef],
    g: &Growth,
    missing: &mut Vec<String>,
) -> Option<Candidate> {
    Some(match g.family {
        CauseFamily::Cpu => cpu::candidate(m, b, i, g, missing),
        CauseFamily::Disk => disk::candidate(m, b, i, g, missing),
        CauseFamily::Lock => lock::candidate(m, b, i, g),
        CauseFamily::Handoff => handoff::candidate(m, b, i, g),
        CauseFamily::External => peer::candidate(m, b, i, g, missing),
        CauseFamily::OtherSleep => {
            let mut v = base_verdict(VerdictKind::OtherWait, m, g);
            v.summary = format!(
                "{} sleeps more in other system calls (nanosleep, wait, ...): {}",
                m.roles[g.role].name,
                change(g)
            );
            v.evidence.push(time_line(m, g));
            Candidate {
                verdict: v,
                leads_to: "sleeps in other system calls".into(),
            }
        }
    })
}
