//! Selective tracking and verdicts.
//!
//! Tracking starts from the entry roles, takes the hold-up that grew most
//! between baseline and incident, and, when that is a hand-off, follows it to
//! the role that does the work, until a resource explains it. Each examined
//! role's grown hold-ups become candidate verdicts with their evidence; the
//! candidates are scored and ranked. When nothing grew, the verdict is "no
//! significant change" or "more load", never an empty answer.

use crate::model::{Model, WinRef};
use crate::states::{Category, CauseFamily, Direction, FutexUse};
use crate::stats::{cliffs_delta, mean, Dist};
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
    /// The service waits for a disk that others (or itself) keep busy.
    DiskContention,
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
    /// Not enough data to compare.
    InsufficientData,
}

impl VerdictKind {
    /// Title for people.
    pub fn title(self) -> &'static str {
        match self {
            VerdictKind::CpuContention => "CPU contention",
            VerdictKind::CpuSaturation => "CPU saturation by the service's own load",
            VerdictKind::DiskContention => "disk contention",
            VerdictKind::LockContention => "lock contention",
            VerdictKind::HandoffStall => "hand-off stall",
            VerdictKind::SlowExternalService => "slow external service",
            VerdictKind::OtherWait => "more sleeping in other system calls",
            VerdictKind::MoreLoad => "more load",
            VerdictKind::NoSignificantChange => "no significant change",
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
    fn new(what: impl Into<String>, unit: &str, b: &[f64], i: &[f64]) -> Comparison {
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

fn confidence(b: &[f64], i: &[f64], pct: bool) -> Confidence {
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
            fmt_rate(v)
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

/// Growth of one cause family in one role between the periods.
#[derive(Clone, Debug)]
pub struct Growth {
    /// Role.
    pub role: usize,
    /// Family.
    pub family: CauseFamily,
    /// Per-window fractions of thread time, baseline.
    pub before: Vec<f64>,
    /// Incident.
    pub after: Vec<f64>,
    /// Share of busy (not idle) time, baseline (pooled over windows).
    pub share_before: f64,
    /// Incident.
    pub share_after: f64,
    /// Wait per unit of CPU work (ns waited per ns on-CPU), baseline; None
    /// when the role did almost no CPU work.
    pub per_work_before: Option<f64>,
    /// Incident.
    pub per_work_after: Option<f64>,
    /// Estimated slow-down of the role's work caused by this family's growth:
    /// the growth of its wait per unit of CPU work, relative to the
    /// baseline's busy time per unit of CPU work (0.5: requests take ~50%
    /// longer). Falls back to the growth of the busy share without CPU work.
    pub impact: f64,
    /// The per-window values behind `impact` (wait per unit of CPU work, or
    /// share of busy time), baseline.
    pub basis_before: Vec<f64>,
    /// Incident.
    pub basis_after: Vec<f64>,
    /// Cliff's delta of `basis_after` against `basis_before`.
    pub delta: f64,
    /// 0..=1.
    pub score: f64,
    /// Large enough and separated enough to be a cause.
    pub significant: bool,
}

/// Smallest estimated slow-down that counts as a cause.
pub const MIN_IMPACT: f64 = 0.1;
/// Smallest Cliff's delta that counts.
pub const MIN_DELTA: f64 = 0.5;
/// Less CPU than this share of a role's observed time is "no CPU work".
pub const MIN_CPU_SHARE: f64 = 0.002;

/// Score from a growth and a separation.
pub fn score_of(growth: f64, delta: f64, scale: f64) -> f64 {
    if growth <= 0.0 {
        return 0.0;
    }
    (1.0 - (-growth / scale).exp()) * (0.25 + 0.75 * delta.max(0.0))
}

/// How a family grew in a role.
pub fn assess(m: &Model, b: &[WinRef], i: &[WinRef], role: usize, family: CauseFamily) -> Growth {
    let cats: Vec<Category> = family.categories().collect();
    let before = m.fractions(b, role, &cats);
    let after = m.fractions(i, role, &cats);
    let share_before = m.busy_share(b, role, &cats);
    let share_after = m.busy_share(i, role, &cats);
    // Pooled sums: (family, cpu, busy, observed) and per-window ratios.
    let sums = |period: &[WinRef]| -> ([f64; 4], Vec<f64>, Vec<f64>) {
        let mut t = [0f64; 4];
        let (mut ratios, mut shares) = (Vec::new(), Vec::new());
        for w in period {
            let c = m.cell(*w, role);
            let (f, cpu, busy, obs) = (
                c.sum(&cats) as f64,
                c.cats[Category::OnCpu.index()] as f64,
                c.busy_ns() as f64,
                c.observed_ns as f64,
            );
            t[0] += f;
            t[1] += cpu;
            t[2] += busy;
            t[3] += obs;
            if obs > 0.0 && cpu >= MIN_CPU_SHARE * obs {
                ratios.push(f / cpu);
            }
            if busy > 0.0 {
                shares.push(f / busy);
            }
        }
        (t, ratios, shares)
    };
    let (tb, rb, sb) = sums(b);
    let (ti, ri, si) = sums(i);
    let works = |t: &[f64; 4]| t[3] > 0.0 && t[1] >= MIN_CPU_SHARE * t[3];
    let (per_work_before, per_work_after, impact, basis_before, basis_after) =
        if works(&tb) && works(&ti) {
            let (pb, pi) = (tb[0] / tb[1], ti[0] / ti[1]);
            let stretch = tb[2] / tb[1];
            (Some(pb), Some(pi), (pi - pb) / stretch, rb, ri)
        } else {
            (None, None, share_after - share_before, sb, si)
        };
    let delta = cliffs_delta(&basis_before, &basis_after);
    let score = score_of(impact, delta, 0.25);
    let significant =
        impact >= MIN_IMPACT && delta >= MIN_DELTA && share_after > share_before && score >= 0.2;
    Growth {
        role,
        family,
        before,
        after,
        share_before,
        share_after,
        per_work_before,
        per_work_after,
        impact,
        basis_before,
        basis_after,
        delta,
        score,
        significant,
    }
}

/// "19% → 43% of its busy time, ~+57% per request".
fn change(g: &Growth) -> String {
    format!(
        "{} → {} of its busy time{}",
        pct(g.share_before),
        pct(g.share_after),
        if g.per_work_before.is_some() && g.impact.abs() >= 0.005 {
            format!(", ≈{:+.0}% time per request", g.impact * 100.0)
        } else {
            String::new()
        }
    )
}

fn fmt_rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// "1, 2, 3 and 4 more".
fn id_list(ids: &[u32]) -> String {
    let shown: Vec<String> = ids.iter().take(3).map(|p| p.to_string()).collect();
    if ids.len() > 3 {
        format!("{} and {} more", shown.join(", "), ids.len() - 3)
    } else {
        shown.join(", ")
    }
}

/// Thread names, compressed to "pattern (N threads)" for pools.
fn comm_list<'a>(comms: impl Iterator<Item = &'a String>) -> String {
    let mut by_pattern: BTreeMap<String, Vec<&String>> = BTreeMap::new();
    for c in comms {
        by_pattern
            .entry(crate::states::name_pattern(c))
            .or_default()
            .push(c);
    }
    by_pattern
        .into_iter()
        .map(|(p, v)| {
            if v.len() > 2 {
                format!("{p} ({} threads)", v.len())
            } else {
                v.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// "name (pid 1, 2)", or just the name without ids.
fn named_with_ids(name: &str, ids: &[u32]) -> String {
    if ids.is_empty() {
        name.to_string()
    } else {
        format!("{name} (pid {})", id_list(ids))
    }
}

fn ms(ns_per_s: f64) -> String {
    format!("{:.0} ms/s", ns_per_s / 1e6)
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn fmt_bytes_rate(b: f64) -> String {
    if b >= 1048576.0 {
        format!("{:.1} MiB/s", b / 1048576.0)
    } else {
        format!("{:.0} KiB/s", b / 1024.0)
    }
}

fn hist_q(h: &Histogram, q: f64) -> Option<f64> {
    h.quantile_us(q).map(|v| v as f64)
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
struct Candidate {
    verdict: Verdict,
    /// What the path step leads to.
    leads_to: String,
}

/// Runs the tracking and produces the verdicts.
pub fn decide(m: &Model, b: &[WinRef], i: &[WinRef]) -> Outcome {
    let mut missing = Vec::new();
    if b.len() < 2 || i.len() < 2 {
        let what = if b.is_empty() && i.is_empty() {
            "no windows at all".to_string()
        } else {
            format!("{} baseline and {} incident window(s)", b.len(), i.len())
        };
        missing.push(format!(
            "{what}: a comparison needs at least 2 windows on each side (collect longer, e.g. --duration 60s, or give --baseline/--incident ranges)"
        ));
        let verdict = Verdict {
            kind: VerdictKind::InsufficientData,
            score: 1.0,
            significant: false,
            summary: format!(
                "not enough data to compare: {what}; holdup needs a baseline and an incident period"
            ),
            role: None,
            culprits: Vec::new(),
            evidence: Vec::new(),
            comparisons: Vec::new(),
            confidence: confidence(&[], &[], true),
        };
        return Outcome {
            verdicts: vec![verdict],
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
            .map(|f| assess(m, b, i, role, *f))
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
        if let Some((g, leads_to)) = best {
            if g.significant || path.is_empty() {
                path.push(PathStep {
                    role: m.roles[role].name.clone(),
                    entry: m.roles[role].entry,
                    threads,
                    wait: g.family.words().to_string(),
                    baseline: mean(&g.before),
                    incident: mean(&g.after),
                    leads_to,
                });
            }
        }
    }

    // Load.
    let load = more_load(m, b, i, &start_roles);

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
        if !v.significant {
            v.score = v.score.min(0.4);
        }
    }
    // Signals too small to mean anything are not listed.
    verdicts.retain(|v| v.significant || v.score >= 0.02);
    let any_significant = verdicts.iter().any(|v| v.significant);
    if !any_significant {
        let strongest = verdicts.iter().map(|v| v.score).fold(0.0, f64::max);
        verdicts.push(no_change(m, b, i, &start_roles, strongest, &verdicts));
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
fn slow_stage(m: &Model, i: &[WinRef], role: usize) -> Option<usize> {
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
                if e.wait_kind == Some(WaitKind::Futex) {
                    let lock = f
                        .futex_use
                        .iter()
                        .any(|((_, a), u)| *a == e.resource_id && *u == FutexUse::Lock);
                    if lock {
                        continue;
                    }
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

fn base_verdict(kind: VerdictKind, m: &Model, g: &Growth) -> Verdict {
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
        confidence: confidence(&g.basis_before, &g.basis_after, is_pct),
    }
}

fn time_line(m: &Model, g: &Growth) -> String {
    let mut line = format!(
        "{} {}: {} ({} → {} of all its time)",
        m.roles[g.role].name,
        g.family.words(),
        change(g),
        pct(mean(&g.before)),
        pct(mean(&g.after))
    );
    if let (Some(b), Some(i)) = (g.per_work_before, g.per_work_after) {
        line += &format!("; {b:.2} → {i:.2} ms waited per ms of CPU work");
    }
    line
}

fn candidate(
    m: &Model,
    b: &[WinRef],
    i: &[WinRef],
    g: &Growth,
    missing: &mut Vec<String>,
) -> Option<Candidate> {
    Some(match g.family {
        CauseFamily::Cpu => cpu_candidate(m, b, i, g, missing),
        CauseFamily::Disk => disk_candidate(m, b, i, g, missing),
        CauseFamily::Lock => lock_candidate(m, b, i, g),
        CauseFamily::Handoff => handoff_candidate(m, b, i, g),
        CauseFamily::External => external_candidate(m, b, i, g, missing),
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

/// Run-queue latency histogram of a role over a period.
fn runq_hist(m: &Model, period: &[WinRef], role: usize) -> Histogram {
    let mut h = Histogram::default();
    for w in period {
        for t in &m.snapshot(*w).threads {
            if m.role_of_thread(*w, t.tid) == Some(role) {
                h.merge(&t.runq_hist);
            }
        }
    }
    h
}

fn cpu_candidate(
    m: &Model,
    b: &[WinRef],
    i: &[WinRef],
    g: &Growth,
    missing: &mut Vec<String>,
) -> Candidate {
    // Process names of culprit tgids: their main thread's name when it ran.
    let mut process_name: HashMap<(usize, u32), String> = HashMap::new();
    for w in b.iter().chain(i) {
        for c in &m.snapshot(*w).culprits {
            if c.tid == c.tgid {
                process_name.insert((w.src, c.tgid), c.comm.clone());
            }
        }
    }
    // Who ran instead, by process name: (ns baseline, ns incident, own, ids)
    let mut who: BTreeMap<String, (f64, f64, bool, BTreeSet<u32>)> = BTreeMap::new();
    let mut unattributed = [0u64; 2];
    let mut runq = [0u64; 2];
    for (which, period) in [(0usize, b), (1usize, i)] {
        for w in period {
            let s = m.snapshot(*w);
            for c in &s.culprits {
                if m.role_of_thread(*w, c.victim_tid) != Some(g.role) {
                    continue;
                }
                let own = m.is_service(*w, c.tgid);
                let name = process_name
                    .get(&(w.src, c.tgid))
                    .cloned()
                    .unwrap_or_else(|| crate::states::name_pattern(&c.comm));
                let e = who.entry(name).or_insert((0.0, 0.0, own, BTreeSet::new()));
                if which == 0 {
                    e.0 += c.ns as f64;
                } else {
                    e.1 += c.ns as f64;
                    e.3.insert(c.tgid);
                }
            }
            for t in &s.threads {
                if m.role_of_thread(*w, t.tid) == Some(g.role) {
                    unattributed[which] += t.runq_unattributed_ns;
                    runq[which] += t.states.runq_ns;
                }
            }
        }
    }
    let (bs, is) = (m.period_secs(b), m.period_secs(i));
    let mut rows: Vec<(String, f64, f64, bool, Vec<u32>)> = who
        .into_iter()
        .map(|(comm, (nb, ni, own, ids))| (comm, nb / bs, ni / is, own, ids.into_iter().collect()))
        .collect();
    let delta_of = |own: bool| -> f64 {
        rows.iter()
            .filter(|r| r.3 == own)
            .map(|r| r.2 - r.1)
            .sum::<f64>()
    };
    let (d_ext, d_own) = (delta_of(false), delta_of(true));
    let saturation = d_own > d_ext && d_own > 0.0;
    // How much of the extra run-queue wait the tasks that ran instead explain.
    let culprit_growth: f64 = rows.iter().map(|r| (r.2 - r.1).max(0.0)).sum();
    let runq_growth = runq[1] as f64 / is - runq[0] as f64 / bs;
    rows.retain(|r| r.3 == saturation);
    rows.sort_by(|x, y| (y.2 - y.1).total_cmp(&(x.2 - x.1)));
    let role = &m.roles[g.role].name;
    let culprits: Vec<Named> = rows
        .iter()
        .filter(|r| r.2 - r.1 >= 1e6)
        .take(3)
        .map(|r| Named {
            kind: NamedKind::Process,
            name: r.0.clone(),
            ids: r.4.clone(),
            detail: format!("held the CPU {} → {} while {role} waited", ms(r.1), ms(r.2)),
        })
        .collect();
    let kind = if saturation {
        VerdictKind::CpuSaturation
    } else {
        VerdictKind::CpuContention
    };
    let mut v = base_verdict(kind, m, g);
    v.evidence.push(time_line(m, g));
    let (hb, hi) = (runq_hist(m, b, g.role), runq_hist(m, i, g.role));
    if let (Some(b50), Some(b99), Some(i50), Some(i99)) = (
        hist_q(&hb, 0.5),
        hist_q(&hb, 0.99),
        hist_q(&hi, 0.5),
        hist_q(&hi, 0.99),
    ) {
        v.evidence.push(format!(
            "run-queue latency p50 {} → {}, p99 {} → {} (log2 histogram bucket bounds)",
            fmt_us(b50),
            fmt_us(i50),
            fmt_us(b99),
            fmt_us(i99)
        ));
    }
    for c in &culprits {
        v.evidence
            .push(format!("{} {}", named_with_ids(&c.name, &c.ids), c.detail));
    }
    let names: Vec<String> = culprits
        .iter()
        .map(|c| {
            format!(
                "{} ({})",
                c.name,
                ms(rows.iter().find(|r| r.0 == c.name).map_or(0.0, |r| r.2))
            )
        })
        .collect();
    v.summary = if saturation {
        format!(
            "{role} waits for a CPU behind the service's own threads: {}{}",
            change(g),
            if names.is_empty() {
                String::new()
            } else {
                format!("; they ran instead: {}", names.join(", "))
            }
        )
    } else {
        format!(
            "{role} waits for a CPU: {}{}",
            change(g),
            if names.is_empty() {
                "; holdup could not name who ran instead".to_string()
            } else {
                format!("; ran instead: {}", names.join(", "))
            }
        )
    };
    if runq_growth > 0.0 && culprit_growth < 0.3 * runq_growth {
        // Little of the extra wait is anyone's CPU time: weak evidence.
        v.score *= 0.5;
        v.significant = v.significant && v.score >= 0.2;
        v.evidence.push(format!(
            "who ran instead explains only {} of the {} more run-queue wait",
            ms(culprit_growth),
            ms(runq_growth)
        ));
    }
    if runq[1] > 0 && unattributed[1] as f64 > 0.3 * runq[1] as f64 {
        missing.push(format!(
            "{:.0}% of {role}'s run-queue wait was older than holdup's per-CPU history, so who ran instead is incomplete",
            100.0 * unattributed[1] as f64 / runq[1] as f64
        ));
    }
    if culprits.is_empty() && g.significant {
        missing.push(format!(
            "who ran instead while {role} waited was not recorded (culprits empty): the run-queue growth has no named culprit"
        ));
    }
    let leads_to = match culprits.first() {
        Some(c) => format!("CPU held by {}", c.name),
        None => "CPU (culprit unknown)".into(),
    };
    v.culprits = culprits;
    Candidate {
        verdict: v,
        leads_to,
    }
}

fn disk_candidate(
    m: &Model,
    b: &[WinRef],
    i: &[WinRef],
    g: &Growth,
    missing: &mut Vec<String>,
) -> Candidate {
    let role = m.roles[g.role].name.clone();
    // The service's file waits, by file name.
    let mut files: BTreeMap<String, [f64; 2]> = BTreeMap::new();
    // Disks: name -> [service bytes b, total bytes b, service bytes i, total i]
    let mut disks: BTreeMap<String, [f64; 4]> = BTreeMap::new();
    // Other submitters: comm -> [bytes b, bytes i], pids
    let mut others: BTreeMap<String, ([f64; 2], BTreeSet<u32>)> = BTreeMap::new();
    // Service IO latency: [lat ns, requests] per period
    let mut lat = [[0f64; 2]; 2];
    let mut lat_hist = [Histogram::default(), Histogram::default()];
    for (which, period) in [(0usize, b), (1usize, i)] {
        for w in period {
            let s = m.snapshot(*w);
            for r in &s.resources {
                if m.role_of_thread(*w, r.tid) != Some(g.role) {
                    continue;
                }
                if !matches!(r.kind, WaitKind::FileRead | WaitKind::FileWrite) {
                    continue;
                }
                if let Resource::File {
                    file_type, name, ..
                } = &r.resource
                {
                    if file_type == "pipe" {
                        continue;
                    }
                    files.entry(r.resource.to_string()).or_default()[which] += r.wait_ns as f64;
                    let _ = name;
                }
            }
            for d in &s.disks {
                let e = disks.entry(d.disk.clone()).or_default();
                e[which * 2 + 1] += d.bytes as f64;
                if d.is_target || m.is_service(*w, d.tgid) {
                    e[which * 2] += d.bytes as f64;
                    lat[which][0] += d.latency_ns as f64;
                    lat[which][1] += d.requests as f64;
                    lat_hist[which].merge(&d.latency_hist);
                } else {
                    let o = others.entry(d.comm.clone()).or_default();
                    o.0[which] += d.bytes as f64;
                    if which == 1 && d.tgid != 0 {
                        o.1.insert(d.tgid);
                    }
                }
            }
        }
    }
    let (bs, is) = (m.period_secs(b), m.period_secs(i));
    let mut v = base_verdict(VerdictKind::DiskContention, m, g);
    v.evidence.push(time_line(m, g));
    let mut file_rows: Vec<(String, f64, f64)> = files
        .into_iter()
        .map(|(f, x)| (f, x[0] / bs, x[1] / is))
        .collect();
    file_rows.sort_by(|x, y| (y.2 - y.1).total_cmp(&(x.2 - x.1)));
    if let Some(f) = file_rows.first() {
        v.evidence.push(format!(
            "{role} blocked on {}: {} → {}",
            f.0,
            ms(f.1),
            ms(f.2)
        ));
    }
    // The disk the service uses most in the incident.
    let main_disk = disks
        .iter()
        .max_by(|x, y| (x.1[2] + x.1[0]).total_cmp(&(y.1[2] + y.1[0])))
        .filter(|(_, x)| x[1] + x[3] > 0.0)
        .map(|(n, x)| (n.clone(), *x));
    let mut culprits = Vec::new();
    let mut own_growth = false;
    if let Some((disk, x)) = &main_disk {
        let share_b = if x[1] > 0.0 { x[0] / x[1] } else { 0.0 };
        let share_i = if x[3] > 0.0 { x[2] / x[3] } else { 0.0 };
        v.evidence.push(format!(
            "disk {disk}: the service's share of its bytes {} → {} (service {} → {}, all submitters {} → {})",
            pct(share_b),
            pct(share_i),
            fmt_bytes_rate(x[0] / bs),
            fmt_bytes_rate(x[2] / is),
            fmt_bytes_rate(x[1] / bs),
            fmt_bytes_rate(x[3] / is),
        ));
        if lat[0][1] > 0.0 && lat[1][1] > 0.0 {
            let (lb, li) = (lat[0][0] / lat[0][1] / 1e3, lat[1][0] / lat[1][1] / 1e3);
            let p99 = |h: &Histogram| hist_q(h, 0.99).map(fmt_us).unwrap_or_default();
            v.evidence.push(format!(
                "the service's disk requests took {} → {} on average (p99 {} → {})",
                fmt_us(lb),
                fmt_us(li),
                p99(&lat_hist[0]),
                p99(&lat_hist[1])
            ));
        }
        let service_delta = x[2] / is - x[0] / bs;
        let mut rows: Vec<(String, f64, f64, Vec<u32>)> = others
            .into_iter()
            .map(|(c, (v, ids))| (c, v[0] / bs, v[1] / is, ids.into_iter().collect()))
            .collect();
        rows.sort_by(|p, q| (q.2 - q.1).total_cmp(&(p.2 - p.1)));
        let other_delta: f64 = rows.iter().map(|r| (r.2 - r.1).max(0.0)).sum();
        own_growth = service_delta > other_delta && service_delta > 0.0;
        for r in rows
            .iter()
            .filter(|r| r.2 - r.1 >= 256.0 * 1024.0 || (x[3] > 0.0 && r.2 * is / x[3] >= 0.1))
            .take(3)
        {
            let share = if x[3] > 0.0 { r.2 * is / x[3] } else { 0.0 };
            culprits.push(Named {
                kind: NamedKind::Process,
                name: r.0.clone(),
                ids: r.3.clone(),
                detail: format!(
                    "wrote/read {} → {} on {disk} ({} of the disk's bytes in the incident)",
                    fmt_bytes_rate(r.1),
                    fmt_bytes_rate(r.2),
                    pct(share)
                ),
            });
        }
        for c in &culprits {
            v.evidence
                .push(format!("{} {}", named_with_ids(&c.name, &c.ids), c.detail));
        }
        culprits.push(Named {
            kind: NamedKind::Disk,
            name: disk.clone(),
            ids: Vec::new(),
            detail: format!("the service's share {} → {}", pct(share_b), pct(share_i)),
        });
    } else if g.significant {
        missing.push(
            "no block I/O was seen on any disk in these windows: the disk waits may be on a network filesystem or page-cache writeback holdup cannot attribute".into(),
        );
    }
    if let Some(f) = file_rows.first() {
        culprits.push(Named {
            kind: NamedKind::File,
            name: f.0.clone(),
            ids: Vec::new(),
            detail: format!("blocked {} → {}", ms(f.1), ms(f.2)),
        });
    }
    let first = culprits
        .iter()
        .find(|c| c.kind == NamedKind::Process)
        .map(|c| named_with_ids(&c.name, &c.ids[..c.ids.len().min(1)]));
    let disk_name = main_disk.as_ref().map(|d| d.0.clone());
    v.summary = match (&first, own_growth) {
        (_, true) => format!(
            "{role} waits for the disk{}: {}; the service's own I/O grew",
            disk_name
                .as_deref()
                .map(|d| format!(" {d}"))
                .unwrap_or_default(),
            change(g)
        ),
        (Some(f), false) => format!(
            "{role} waits for the disk{}: {}; heavy other submitter: {f}",
            disk_name
                .as_deref()
                .map(|d| format!(" {d}"))
                .unwrap_or_default(),
            change(g)
        ),
        (None, false) => format!(
            "{role} waits for the disk{}: {}; no other heavy submitter was seen",
            disk_name
                .as_deref()
                .map(|d| format!(" {d}"))
                .unwrap_or_default(),
            change(g)
        ),
    };
    let leads_to = match (&first, &disk_name) {
        (Some(f), Some(d)) => format!("disk {d} kept busy by {f}"),
        (None, Some(d)) => format!("disk {d}"),
        _ => "disk / files".into(),
    };
    v.culprits = culprits;
    Candidate {
        verdict: v,
        leads_to,
    }
}

fn lock_candidate(m: &Model, b: &[WinRef], i: &[WinRef], g: &Growth) -> Candidate {
    let role = m.roles[g.role].name.clone();
    // futex label -> ([wait ns b, i], [waits b, i], waiters (src, tid), per-window wait/waits, hist i)
    #[derive(Default)]
    struct F {
        ns: [f64; 2],
        waits: [f64; 2],
        waiters: BTreeSet<(usize, u32)>,
        hist: Histogram,
        key: (u32, u64),
    }
    let mut futexes: BTreeMap<String, F> = BTreeMap::new();
    for (which, period) in [(0usize, b), (1usize, i)] {
        for w in period {
            let s = m.snapshot(*w);
            let f = m.facts(*w);
            for r in &s.resources {
                if r.kind != WaitKind::Futex || m.role_of_thread(*w, r.tid) != Some(g.role) {
                    continue;
                }
                let Resource::Futex { tgid, uaddr } = r.resource else {
                    continue;
                };
                if f.futex_use.get(&(tgid, uaddr)) != Some(&FutexUse::Lock) {
                    continue;
                }
                let e = futexes.entry(r.resource.to_string()).or_default();
                e.key = (tgid, uaddr);
                e.ns[which] += r.wait_ns as f64;
                e.waits[which] += r.waits as f64;
                if which == 1 {
                    e.waiters.insert((w.src, r.tid));
                    e.hist.merge(&r.hist);
                }
            }
        }
    }
    let (bs, is) = (m.period_secs(b), m.period_secs(i));
    let top = futexes.iter().max_by(|x, y| {
        (x.1.ns[1] / is - x.1.ns[0] / bs).total_cmp(&(y.1.ns[1] / is - y.1.ns[0] / bs))
    });
    let mut v = base_verdict(VerdictKind::LockContention, m, g);
    v.evidence.push(time_line(m, g));
    let mut culprits = Vec::new();
    let mut leads_to = "a lock".to_string();
    if let Some((label, f)) = top {
        leads_to = label.clone();
        // Holders: who woke waiters of this futex in the incident.
        let mut holders: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        for w in i {
            let s = m.snapshot(*w);
            for fw in &s.futex_wakes {
                if let Resource::Futex { tgid, uaddr } = fw.futex {
                    if (tgid, uaddr) == f.key {
                        let comm = s
                            .thread(fw.waker_tid)
                            .map(|t| t.comm.clone())
                            .unwrap_or_else(|| format!("tid {}", fw.waker_tid));
                        holders.entry(comm).or_default().insert(fw.waker_tid);
                    }
                }
            }
        }
        let mut waiter_comms: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        for (src, tid) in &f.waiters {
            let comm = i
                .iter()
                .filter(|w| w.src == *src)
                .find_map(|w| m.snapshot(*w).thread(*tid).map(|t| t.comm.clone()))
                .unwrap_or_else(|| format!("tid {tid}"));
            waiter_comms.entry(comm).or_default().insert(*tid);
        }
        let per_wait = |which: usize| {
            if f.waits[which] > 0.0 {
                f.ns[which] / f.waits[which] / 1e3
            } else {
                0.0
            }
        };
        v.evidence.push(format!(
            "{label}: waited {} → {}, {} per blocking wait → {} (p99 {})",
            ms(f.ns[0] / bs),
            ms(f.ns[1] / is),
            fmt_us(per_wait(0)),
            fmt_us(per_wait(1)),
            hist_q(&f.hist, 0.99).map(fmt_us).unwrap_or_default()
        ));
        let same = holders.keys().all(|h| waiter_comms.contains_key(h));
        v.evidence.push(format!(
            "waiting threads: {}; holders (they wake the waiters when they unlock): {}{}",
            comm_list(waiter_comms.keys()),
            if holders.is_empty() {
                "not seen".to_string()
            } else {
                comm_list(holders.keys())
            },
            if same && !holders.is_empty() {
                " (the same threads: they serialise on this lock)"
            } else {
                ""
            }
        ));
        culprits.push(Named {
            kind: NamedKind::Futex,
            name: label.clone(),
            ids: vec![f.key.0],
            detail: format!("waited {} → {}", ms(f.ns[0] / bs), ms(f.ns[1] / is)),
        });
        let mut roles_named: BTreeSet<String> = BTreeSet::new();
        let mut threads: BTreeMap<&String, (BTreeSet<u32>, bool, bool)> = BTreeMap::new();
        for (comm, tids) in &waiter_comms {
            let e = threads.entry(comm).or_default();
            e.0.extend(tids);
            e.1 = true;
        }
        for (comm, tids) in &holders {
            let e = threads.entry(comm).or_default();
            e.0.extend(tids);
            e.2 = true;
        }
        for (comm, (tids, waiter, holder)) in threads {
            culprits.push(Named {
                kind: NamedKind::Thread,
                name: comm.clone(),
                ids: tids.iter().copied().collect(),
                detail: match (waiter, holder) {
                    (true, true) => "waits for the lock and holds it".into(),
                    (true, false) => "waits for the lock".into(),
                    _ => "holds the lock".into(),
                },
            });
            if let Some(w) = i.first() {
                if let Some(r) = tids.iter().find_map(|t| m.role_of_thread(*w, *t)) {
                    roles_named.insert(m.roles[r].name.clone());
                }
            }
        }
        for r in roles_named {
            culprits.push(Named {
                kind: NamedKind::Role,
                name: r,
                ids: Vec::new(),
                detail: "threads of this role wait for and hold the lock".into(),
            });
        }
        v.summary = format!(
            "{role} waits for a lock: {}; {label} is held and waited for by {}",
            change(g),
            comm_list(waiter_comms.keys())
        );
    } else {
        v.summary = format!("{role} waits for locks: {}", change(g));
    }
    v.culprits = culprits;
    Candidate {
        verdict: v,
        leads_to,
    }
}

fn handoff_candidate(m: &Model, b: &[WinRef], i: &[WinRef], g: &Growth) -> Candidate {
    let role = m.roles[g.role].name.clone();
    let mut v = base_verdict(VerdictKind::HandoffStall, m, g);
    v.evidence.push(time_line(m, g));
    let stage = slow_stage(m, i, g.role);
    let mut leads_to = "another thread".to_string();
    if let Some(st) = stage {
        let name = m.roles[st].name.clone();
        leads_to = format!("hand-off from {name}");
        // What the stage's own time did.
        let growths: Vec<Growth> = CauseFamily::ALL
            .iter()
            .map(|f| assess(m, b, i, st, *f))
            .collect();
        let worst = growths.iter().max_by(|x, y| x.score.total_cmp(&y.score));
        let cpu_b = m.fractions(b, st, &[Category::OnCpu]);
        let cpu_i = m.fractions(i, st, &[Category::OnCpu]);
        let stage_note = match worst {
            Some(w) if w.significant => format!(
                "{name} itself is held up {}: {} → {}",
                w.family.words(),
                pct(mean(&w.before)),
                pct(mean(&w.after))
            ),
            _ => format!(
                "{name} works more: on-CPU {} → {} of its time",
                pct(mean(&cpu_b)),
                pct(mean(&cpu_i))
            ),
        };
        v.evidence.push(stage_note.clone());
        v.culprits.push(Named {
            kind: NamedKind::Role,
            name: name.clone(),
            ids: Vec::new(),
            detail: stage_note,
        });
        v.summary = format!(
            "{role} waits for {name} to hand work back: {}; {name} is the slow stage",
            change(g)
        );
    } else {
        v.summary = format!(
            "{role} waits for other threads' signals: {}; the signalling thread was not seen",
            change(g)
        );
    }
    Candidate {
        verdict: v,
        leads_to,
    }
}

fn external_candidate(
    m: &Model,
    b: &[WinRef],
    i: &[WinRef],
    g: &Growth,
    missing: &mut Vec<String>,
) -> Candidate {
    let role = m.roles[g.role].name.clone();
    #[derive(Default)]
    struct P {
        ns: [f64; 2],
        waits: [f64; 2],
        hist: [Histogram; 2],
    }
    let mut peers: BTreeMap<String, P> = BTreeMap::new();
    for (which, period) in [(0usize, b), (1usize, i)] {
        for w in period {
            let s = m.snapshot(*w);
            let f = m.facts(*w);
            for r in &s.resources {
                if m.role_of_thread(*w, r.tid) != Some(g.role) {
                    continue;
                }
                if !matches!(
                    r.kind,
                    WaitKind::SockRecv | WaitKind::SockSend | WaitKind::Connect
                ) {
                    continue;
                }
                let Resource::Socket(sock) = &r.resource else {
                    continue;
                };
                if f.direction(sock) != Direction::Outbound {
                    continue;
                }
                let p = peers.entry(sock.peer.clone()).or_default();
                p.ns[which] += r.wait_ns as f64;
                p.waits[which] += r.waits as f64;
                p.hist[which].merge(&r.hist);
            }
            for e in &s.wakeups {
                if e.wait_kind != Some(WaitKind::Mux)
                    || m.role_of_thread(*w, e.wakee_tid) != Some(g.role)
                {
                    continue;
                }
                if let Waker::Socket(sock) = &e.waker {
                    if f.direction(sock) == Direction::Outbound {
                        let p = peers.entry(sock.peer.clone()).or_default();
                        p.ns[which] += e.sleep_ns as f64;
                        p.waits[which] += e.count as f64;
                    }
                }
            }
        }
    }
    let (bs, is) = (m.period_secs(b), m.period_secs(i));
    let mut v = base_verdict(VerdictKind::SlowExternalService, m, g);
    v.evidence.push(time_line(m, g));
    let mut rows: Vec<(String, P)> = peers.into_iter().collect();
    rows.sort_by(|x, y| {
        (y.1.ns[1] / is - y.1.ns[0] / bs).total_cmp(&(x.1.ns[1] / is - x.1.ns[0] / bs))
    });
    let mut leads_to = "a peer service".to_string();
    for (peer, p) in rows.iter().take(3) {
        let per = |w: usize| {
            if p.waits[w] > 0.0 {
                p.ns[w] / p.waits[w] / 1e3
            } else {
                0.0
            }
        };
        v.culprits.push(Named {
            kind: NamedKind::Peer,
            name: peer.clone(),
            ids: Vec::new(),
            detail: format!(
                "waited {} → {}; {} → {} per wait (p99 {}), {:.0} → {:.0} waits/s",
                ms(p.ns[0] / bs),
                ms(p.ns[1] / is),
                fmt_us(per(0)),
                fmt_us(per(1)),
                hist_q(&p.hist[1], 0.99).map(fmt_us).unwrap_or_default(),
                p.waits[0] / bs,
                p.waits[1] / is
            ),
        });
    }
    if let Some(c) = v.culprits.first() {
        leads_to = format!("peer {}", c.name);
        v.evidence.push(format!("peer {}: {}", c.name, c.detail));
        let p = &rows[0].1;
        let per = |w: usize| {
            if p.waits[w] > 0.0 {
                p.ns[w] / p.waits[w] / 1e3
            } else {
                0.0
            }
        };
        v.summary = format!(
            "{role} waits for the peer {}: {}, {} → {} per request",
            c.name,
            change(g),
            fmt_us(per(0)),
            fmt_us(per(1))
        );
    } else {
        v.summary = format!(
            "{role} waits on outgoing connections: {}; the peer address was not resolved",
            change(g)
        );
        if g.significant {
            missing.push("the peer of the outgoing waits was not resolved (no socket addresses in the wait records)".into());
        }
    }
    Candidate {
        verdict: v,
        leads_to,
    }
}

fn more_load(m: &Model, b: &[WinRef], i: &[WinRef], roles: &[usize]) -> Option<Verdict> {
    let cpu = |c: &crate::model::RoleWindow| c.cats[Category::OnCpu.index()] as f64 / 1e9;
    let (cpu_b, cpu_i) = (m.rates(b, roles, cpu), m.rates(i, roles, cpu));
    let idle_frac = |period: &[WinRef]| -> Vec<f64> {
        period
            .iter()
            .filter_map(|w| {
                let (mut idle, mut obs) = (0u64, 0u64);
                for r in roles {
                    let c = m.cell(*w, *r);
                    obs += c.observed_ns;
                    idle += c.observed_ns - c.busy_ns();
                }
                (obs > 0).then(|| idle as f64 / obs as f64)
            })
            .collect()
    };
    let (idle_b, idle_i) = (idle_frac(b), idle_frac(i));
    let req = |c: &crate::model::RoleWindow| c.requests as f64;
    let calls = |c: &crate::model::RoleWindow| c.recv_calls as f64;
    let clients = |c: &crate::model::RoleWindow| c.clients as f64;
    let (req_b, req_i) = (m.rates(b, roles, req), m.rates(i, roles, req));
    let (calls_b, calls_i) = (m.rates(b, roles, calls), m.rates(i, roles, calls));
    // Clients per window (not per second).
    let per_window = |period: &[WinRef]| -> Vec<f64> {
        period
            .iter()
            .map(|w| roles.iter().map(|r| clients(m.cell(*w, *r))).sum())
            .collect()
    };
    let (cl_b, cl_i) = (per_window(b), per_window(i));

    let cpu_growth = mean(&cpu_i) - mean(&cpu_b);
    let cpu_delta = cliffs_delta(&cpu_b, &cpu_i);
    let ratio = |x: &[f64], y: &[f64]| {
        let (mx, my) = (mean(x), mean(y));
        if mx > 0.0 {
            my / mx
        } else if my > 0.0 {
            f64::INFINITY
        } else {
            1.0
        }
    };
    let req_up = ratio(&req_b, &req_i) >= 1.2 && cliffs_delta(&req_b, &req_i) >= MIN_DELTA;
    let calls_up = mean(&calls_b) > 0.0
        && ratio(&calls_b, &calls_i) >= 1.2
        && cliffs_delta(&calls_b, &calls_i) >= MIN_DELTA;
    let clients_up = ratio(&cl_b, &cl_i) >= 1.25
        && mean(&cl_i) - mean(&cl_b) >= 2.0
        && cliffs_delta(&cl_b, &cl_i) >= MIN_DELTA;
    let idle_drop = mean(&idle_b) - mean(&idle_i);
    let idle_down = idle_drop >= 0.05 && cliffs_delta(&idle_b, &idle_i) <= -MIN_DELTA;
    let support = if req_up || calls_up || clients_up {
        1.0
    } else if idle_down {
        0.6
    } else {
        0.3
    };
    // Evidence from CPU: the entry threads work more.
    let cpu_score = score_of(cpu_growth, cpu_delta, 0.1) * support;
    let cpu_significant =
        cpu_growth >= 0.03 && cpu_delta >= MIN_DELTA && support >= 0.6 && cpu_score >= 0.2;
    // Evidence from counts: more clients or requests, even when the entry
    // threads were already saturated and could not work more.
    let mut count_ratio: f64 = 1.0;
    if clients_up {
        count_ratio = count_ratio.max(ratio(&cl_b, &cl_i));
    }
    if calls_up {
        count_ratio = count_ratio.max(ratio(&calls_b, &calls_i));
    } else if req_up {
        count_ratio = count_ratio.max(ratio(&req_b, &req_i));
    }
    let count_score = if count_ratio > 1.0 {
        0.45 + 0.4 * (count_ratio.min(1e6).log2() / 4.0).min(1.0)
    } else {
        0.0
    };
    if cpu_growth <= 0.0 && count_score == 0.0 {
        return None;
    }
    let score = cpu_score.max(count_score);
    let significant = cpu_significant || count_score > 0.0;
    let busy_after = 1.0 - mean(&idle_i);
    let saturated = busy_after >= 0.85;
    let names: Vec<String> = roles.iter().map(|r| m.roles[*r].name.clone()).collect();
    let mut evidence = vec![format!(
        "the entry threads ({}) used {:.2} → {:.2} CPU-seconds per second",
        names.join(", "),
        mean(&cpu_b),
        mean(&cpu_i)
    )];
    evidence.push(format!(
        "their idle time (waiting for clients or work) {} → {}",
        pct(mean(&idle_b)),
        pct(mean(&idle_i))
    ));
    if mean(&cl_b) + mean(&cl_i) > 0.0 {
        evidence.push(format!(
            "client connections seen per window {:.0} → {:.0}",
            mean(&cl_b),
            mean(&cl_i)
        ));
    }
    if mean(&req_b) + mean(&req_i) > 0.0 {
        evidence.push(format!(
            "requests (wake-ups by client data, accepts, blocking receives) {:.0} → {:.0} per second{}",
            mean(&req_b),
            mean(&req_i),
            if !req_up && idle_down {
                " (a busier thread blocks less often, so this proxy undercounts under load)"
            } else {
                ""
            }
        ));
    }
    if mean(&calls_b) > 0.0 {
        evidence.push(format!(
            "receive calls on client sockets {:.0} → {:.0} per second",
            mean(&calls_b),
            mean(&calls_i)
        ));
    }
    let mut what = Vec::new();
    if clients_up {
        what.push(format!(
            "client connections {:.0} → {:.0}",
            mean(&cl_b),
            mean(&cl_i)
        ));
    }
    if calls_up {
        what.push(format!(
            "receive calls {:.0} → {:.0}/s",
            mean(&calls_b),
            mean(&calls_i)
        ));
    } else if req_up {
        what.push(format!(
            "requests {:.0} → {:.0}/s",
            mean(&req_b),
            mean(&req_i)
        ));
    }
    if what.is_empty() && idle_down {
        what.push(format!(
            "idle time {} → {}",
            pct(mean(&idle_b)),
            pct(mean(&idle_i))
        ));
    }
    let work = if cpu_growth >= 0.03 {
        format!(
            "its entry threads' CPU use rose {:.2} → {:.2} CPU-s/s",
            mean(&cpu_b),
            mean(&cpu_i)
        )
    } else {
        format!(
            "its entry threads' CPU use stayed {:.2} → {:.2} CPU-s/s",
            mean(&cpu_b),
            mean(&cpu_i)
        )
    };
    let summary = format!(
        "the service got more work: {work}{}; none of their waits grew per request, so this is load, not contention{}",
        if what.is_empty() {
            String::new()
        } else {
            format!(" ({})", what.join(", "))
        },
        if saturated {
            format!(
                "; they were busy {} of the time, so extra requests queue (saturation by the service's own load)",
                pct(busy_after)
            )
        } else {
            String::new()
        }
    );
    let culprits = vec![Named {
        kind: NamedKind::Clients,
        name: "clients".into(),
        ids: Vec::new(),
        detail: if what.is_empty() {
            "more CPU work per second".into()
        } else {
            what.join(", ")
        },
    }];
    let mut comparisons = vec![Comparison::new(
        "entry threads' CPU use",
        "CPU-seconds per second",
        &cpu_b,
        &cpu_i,
    )];
    comparisons.push(Comparison::new(
        "entry threads' idle time",
        "fraction of thread time",
        &idle_b,
        &idle_i,
    ));
    comparisons.push(Comparison::new(
        "client connections",
        "per window",
        &cl_b,
        &cl_i,
    ));
    comparisons.push(Comparison::new("requests", "per second", &req_b, &req_i));
    Some(Verdict {
        kind: VerdictKind::MoreLoad,
        score,
        significant,
        summary,
        role: names.first().cloned(),
        culprits,
        evidence,
        comparisons,
        confidence: if count_score > cpu_score {
            confidence(&cl_b, &cl_i, false)
        } else {
            confidence(&cpu_b, &cpu_i, false)
        },
    })
}

fn no_change(
    m: &Model,
    b: &[WinRef],
    i: &[WinRef],
    roles: &[usize],
    strongest: f64,
    others: &[Verdict],
) -> Verdict {
    // The largest movement, to show what "no change" was measured against.
    let mut largest: Option<Growth> = None;
    for r in roles {
        for f in CauseFamily::ALL {
            let g = assess(m, b, i, *r, f);
            if largest.as_ref().is_none_or(|l| g.impact > l.impact) {
                largest = Some(g);
            }
        }
    }
    let mut evidence = Vec::new();
    let names: Vec<String> = roles.iter().map(|r| m.roles[*r].name.clone()).collect();
    let mut comparisons = Vec::new();
    let mut conf = confidence(&[], &[], true);
    if let Some(g) = &largest {
        evidence.push(format!(
            "largest change of a wait: {} {}: {} (Cliff's delta {:.2}; a cause needs ≈+{:.0}% per request and a delta of {:.1})",
            m.roles[g.role].name,
            g.family.words(),
            change(g),
            g.delta,
            MIN_IMPACT * 100.0,
            MIN_DELTA
        ));
        comparisons.push(Comparison::new(
            format!("{}: {}", m.roles[g.role].name, g.family.words()),
            "fraction of thread time",
            &g.before,
            &g.after,
        ));
        conf = confidence(&g.basis_before, &g.basis_after, g.per_work_before.is_none());
        conf.level = if b.len() >= 5 && i.len() >= 5 {
            Level::High
        } else if b.len() >= 3 && i.len() >= 3 {
            Level::Medium
        } else {
            Level::Low
        };
        conf.text = format!(
            "{} baseline vs {} incident windows compared; no wait grew enough to make requests {:.0}% slower with the windows separated",
            b.len(),
            i.len(),
            MIN_IMPACT * 100.0
        );
    }
    let cpu = |c: &crate::model::RoleWindow| c.cats[Category::OnCpu.index()] as f64 / 1e9;
    let (cb, ci) = (m.rates(b, roles, cpu), m.rates(i, roles, cpu));
    evidence.push(format!(
        "entry threads' CPU use {:.2} → {:.2} CPU-s/s",
        mean(&cb),
        mean(&ci)
    ));
    for o in others.iter().filter(|o| o.score > 0.1) {
        evidence.push(format!(
            "weak signal, not significant: {} ({})",
            o.kind.title(),
            o.summary
        ));
    }
    Verdict {
        kind: VerdictKind::NoSignificantChange,
        score: (1.0 - strongest).max(0.5),
        significant: false,
        summary: format!(
            "no significant change: the waits of {} did not grow and the load is steady",
            if names.is_empty() {
                "the service's threads".to_string()
            } else {
                names.join(", ")
            }
        ),
        role: names.first().cloned(),
        culprits: Vec::new(),
        evidence,
        comparisons,
        confidence: conf,
    }
}
