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
