//! Small statistics over per-window values: summaries of a distribution and
//! how well two distributions are separated.

use serde::Serialize;

/// Summary of a distribution of per-window values.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Dist {
    /// Number of values (windows).
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// 10th percentile.
    pub p10: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
}

impl Dist {
    /// Summarises `values` (empty gives all zeros).
    pub fn of(values: &[f64]) -> Dist {
        if values.is_empty() {
            return Dist::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Dist {
            n: v.len(),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p10: quantile_sorted(&v, 0.10),
            p50: quantile_sorted(&v, 0.50),
            p90: quantile_sorted(&v, 0.90),
        }
    }

    /// Spread between the 10th and 90th percentiles.
    pub fn spread(&self) -> f64 {
        self.p90 - self.p10
    }
}

/// Linear-interpolated quantile of sorted values.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            let w = pos - lo as f64;
            sorted[lo] * (1.0 - w) + sorted[hi] * w
        }
    }
}

/// Mean of values (0 when empty).
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// Cliff's delta of `after` against `before`: P(after > before) − P(after < before)
/// over all pairs, in −1..=1. 1 means every incident window is above every
/// baseline window; 0 means the two overlap completely.
pub fn cliffs_delta(before: &[f64], after: &[f64]) -> f64 {
    if before.is_empty() || after.is_empty() {
        return 0.0;
    }
    let (mut gt, mut lt) = (0usize, 0usize);
    for a in after {
        for b in before {
            // Differences below this are measurement noise, not an ordering.
            let eps = 1e-9_f64.max(1e-6 * a.abs().max(b.abs()));
            if a - b > eps {
                gt += 1;
            } else if b - a > eps {
                lt += 1;
            }
        }
    }
    (gt as f64 - lt as f64) / (before.len() * after.len()) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dist_quantiles_interpolate() {
        let d = Dist::of(&[4.0, 1.0, 3.0, 2.0, 5.0]);
        assert_eq!(d.n, 5);
        assert!((d.mean - 3.0).abs() < 1e-12);
        assert!((d.p50 - 3.0).abs() < 1e-12);
        assert!((d.p10 - 1.4).abs() < 1e-12);
        assert_eq!(Dist::of(&[]).n, 0);
    }

    #[test]
    fn cliffs_delta_measures_separation() {
        assert_eq!(cliffs_delta(&[1.0, 2.0], &[3.0, 4.0]), 1.0);
        assert_eq!(cliffs_delta(&[3.0, 4.0], &[1.0, 2.0]), -1.0);
        assert_eq!(cliffs_delta(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        assert_eq!(cliffs_delta(&[], &[1.0]), 0.0);
    }
}
