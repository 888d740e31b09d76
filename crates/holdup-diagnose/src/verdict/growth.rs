//! How a cause family grew in a role between the periods, and the
//! thresholds that make a growth a cause.

use crate::model::{Model, WinRef};
use crate::states::{Category, CauseFamily};
use crate::stats::cliffs_delta;

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
    /// Judged without a baseline: `share_after` against the family's
    /// threshold ([`alone_threshold`]); the "before" fields are empty or 0.
    pub alone: bool,
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
    // Most incident windows must be worse than nearly all baseline windows:
    // one odd window (a load that stops, a checkpoint) moves the pooled
    // sums, not the median.
    let typical_worse =
        crate::stats::Dist::of(&basis_after).p50 > crate::stats::Dist::of(&basis_before).p90;
    let significant = impact >= MIN_IMPACT
        && delta >= MIN_DELTA
        && share_after > share_before
        && score >= 0.2
        && typical_worse;
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
        alone: false,
    }
}

/// Without a baseline, a family is a cause when it takes at least this share
/// of the role's busy (not idle) time. Chosen so that healthy services under
/// load stay below (their run queue, own fsyncs and lock hand-overs take
/// a few percent to a few tens of percent) and a hold-up that makes requests
/// take markedly longer is above; docs/DIAGNOSE.md lists them.
pub fn alone_threshold(family: CauseFamily) -> f64 {
    match family {
        // Runnable but not running: time lost to whoever holds the CPUs.
        CauseFamily::Cpu => 0.20,
        // A service that syncs its writes waits for its own I/O: only a
        // large share counts.
        CauseFamily::Disk => 0.35,
        // Threads of the service blocking each other.
        CauseFamily::Lock => 0.25,
        CauseFamily::Handoff => 0.40,
        // A proxy or a service with a backend always waits for it (a healthy
        // proxy in front of a 1 ms backend: ~80%): only when the peer takes
        // nearly all of the request does it hold it up.
        CauseFamily::External => 0.90,
        CauseFamily::OtherSleep => 0.60,
    }
}

/// How much a family takes of a role's busy time in the incident alone
/// (no baseline): the share against [`alone_threshold`].
pub fn assess_alone(m: &Model, i: &[WinRef], role: usize, family: CauseFamily) -> Growth {
    let cats: Vec<Category> = family.categories().collect();
    let after = m.fractions(i, role, &cats);
    let share = m.busy_share(i, role, &cats);
    let shares: Vec<f64> = i
        .iter()
        .filter_map(|w| {
            let c = m.cell(*w, role);
            let busy = c.busy_ns();
            (busy > 0).then(|| c.sum(&cats) as f64 / busy as f64)
        })
        .collect();
    let threshold = alone_threshold(family);
    // Steadiness: the share of windows above the threshold.
    let steady = if shares.is_empty() {
        0.0
    } else {
        shares.iter().filter(|s| **s >= threshold).count() as f64 / shares.len() as f64
    };
    // Busy time that is nearly nothing is not worth a verdict.
    let busy_ns: u64 = i.iter().map(|w| m.cell(*w, role).busy_ns()).sum();
    let enough_work = busy_ns as f64 >= MIN_ALONE_BUSY * m.period_secs(i) * 1e9;
    let score = if share <= 0.0 {
        0.0
    } else {
        (share / threshold).min(2.0) / 2.0 * (0.5 + 0.5 * steady)
    };
    // Sleeps the service chose (nanosleep, wait4) are listed, never a cause
    // on their own: without a baseline nothing says they are not its work.
    let significant =
        enough_work && share >= threshold && steady >= 0.5 && family != CauseFamily::OtherSleep;
    Growth {
        role,
        family,
        before: Vec::new(),
        after,
        share_before: 0.0,
        share_after: share,
        per_work_before: None,
        per_work_after: None,
        impact: share,
        basis_before: Vec::new(),
        basis_after: shares,
        delta: steady,
        score,
        significant,
        alone: true,
    }
}

/// Without a baseline, roles busier than this (CPU-seconds of non-idle time
/// per second) are judged; below it they did next to nothing.
pub const MIN_ALONE_BUSY: f64 = 0.02;
