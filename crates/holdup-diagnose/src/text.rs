//! The diagnosis as plain text for people: under a screen, most likely cause
//! first, with the evidence.

use crate::model::Model;
use crate::split::SplitMethod;
use crate::states::Category;
use crate::stats::mean;
use crate::verdict::Growth;
use crate::verdict::Level;
use crate::Diagnosis;
use holdup_format as fmt;
use holdup_model::Histogram;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Verdicts shown in full (the others get one line).
pub const DETAILED_VERDICTS: usize = 2;
/// Evidence lines shown for a detailed verdict.
pub const EVIDENCE_LINES: usize = 5;
/// Table columns (categories) shown.
pub const STATE_COLUMNS: usize = 7;

fn level(l: Level) -> &'static str {
    match l {
        Level::High => "high",
        Level::Medium => "medium",
        Level::Low => "low",
    }
}

/// Renders the diagnosis.
pub fn render(d: &Diagnosis) -> String {
    let mut o = String::new();
    let alone = d.mode == crate::Mode::IncidentOnly;
    let _ = writeln!(
        o,
        "holdup diagnose: {} ({} windows of {} ms)",
        d.target, d.windows, d.window_ms
    );
    let s = &d.split;
    if s.method == SplitMethod::NoBaseline {
        let _ = writeln!(
            o,
            "no baseline: the incident {:.0}-{:.0}s ({} windows) judged alone",
            s.incident.from_s, s.incident.to_s, s.incident.windows
        );
    } else if s.method != SplitMethod::None {
        let src = |p: &crate::split::PeriodInfo| {
            if s.method == SplitMethod::TwoRecordings {
                format!("{} ", p.source)
            } else {
                String::new()
            }
        };
        let _ = writeln!(
            o,
            "baseline {}{:.0}-{:.0}s ({} windows) vs incident {}{:.0}-{:.0}s ({} windows)",
            src(&s.baseline),
            s.baseline.from_s,
            s.baseline.to_s,
            s.baseline.windows,
            src(&s.incident),
            s.incident.from_s,
            s.incident.to_s,
            s.incident.windows
        );
    }
    let _ = writeln!(o, "  {}", s.detail);
    if let Some(slo) = &s.slo {
        let _ = writeln!(
            o,
            "  SLO series: median {:.1} → {:.1}, p90 {:.1} → {:.1}",
            slo.baseline.p50, slo.incident.p50, slo.baseline.p90, slo.incident.p90
        );
    }
    if d.entry.is_empty() {
        let _ = writeln!(o, "entry threads: none found (see below)");
    } else {
        let parts: Vec<String> = d
            .entry
            .iter()
            .map(|e| {
                let n = e.threads_incident.max(e.threads_baseline);
                let mut how = e.entry_how.first().cloned().unwrap_or_default();
                if e.clients > 0 {
                    how += &format!(", {} seen", e.clients);
                }
                format!(
                    "{} ({n} thread{}; {how})",
                    e.role,
                    if n == 1 { "" } else { "s" }
                )
            })
            .collect();
        let _ = writeln!(o, "entry threads: {}", parts.join(", "));
    }
    let _ = writeln!(o);
    for (n, v) in d.verdicts.iter().enumerate() {
        if n >= 5 {
            break;
        }
        let _ = writeln!(
            o,
            "{}. {} (score {:.2}, confidence {}{})",
            n + 1,
            v.kind.title(),
            v.score,
            level(v.confidence.level),
            if v.significant || n == 0 {
                ""
            } else {
                ", weak"
            }
        );
        let _ = writeln!(o, "   {}", v.summary);
        if n < DETAILED_VERDICTS {
            for e in v.evidence.iter().take(EVIDENCE_LINES) {
                let _ = writeln!(o, "   - {e}");
            }
            if n == 0 {
                let _ = writeln!(o, "   confidence: {}", v.confidence.text);
            }
        }
    }
    if !d.path.is_empty() {
        let steps: Vec<String> = d
            .path
            .iter()
            .map(|p| {
                format!(
                    "{}{} [{} {}]",
                    p.role,
                    if p.entry { " (entry)" } else { "" },
                    p.wait,
                    ba(alone, fmt::pct(p.baseline), fmt::pct(p.incident))
                )
            })
            .collect();
        let last = d
            .path
            .last()
            .map(|p| p.leads_to.clone())
            .unwrap_or_default();
        let _ = writeln!(o, "\npath: {} ⇒ {}", steps.join(" → "), last);
    }

    // Thread states table.
    if !d.roles.is_empty() {
        let mut cols: Vec<(Category, f64)> = Category::ALL
            .iter()
            .map(|c| {
                let m = d
                    .roles
                    .iter()
                    .flat_map(|r| r.states.iter())
                    .filter(|s| s.category == *c)
                    .map(|s| s.baseline.max(s.incident))
                    .fold(0.0, f64::max);
                (*c, m)
            })
            .filter(|(_, m)| *m >= 0.01)
            .collect();
        cols.sort_by(|a, b| b.1.total_cmp(&a.1));
        cols.truncate(STATE_COLUMNS);
        cols.sort_by_key(|(c, _)| c.index());
        let _ = writeln!(
            o,
            "\nthread states (% of thread time, {}):",
            if alone {
                "incident"
            } else {
                "baseline→incident"
            }
        );
        let _ = write!(o, "  {:<24} {:>4}", "ROLE", "THR");
        for (c, _) in &cols {
            let _ = write!(o, " {:>11}", c.label());
        }
        let _ = writeln!(o);
        for r in d.roles.iter().take(6) {
            let mut name: String = r.role.chars().take(if r.entry { 21 } else { 24 }).collect();
            if r.entry {
                name += " >";
            }
            let _ = write!(
                o,
                "  {:<24} {:>4}",
                name,
                r.threads_incident.max(r.threads_baseline)
            );
            for (c, _) in &cols {
                let (b, i) = r
                    .states
                    .iter()
                    .find(|s| s.category == *c)
                    .map_or((0.0, 0.0), |s| (s.baseline, s.incident));
                let cell = if alone {
                    format!("{:.0}", i * 100.0)
                } else {
                    format!("{:.0}→{:.0}", b * 100.0, i * 100.0)
                };
                let _ = write!(o, " {cell:>11}");
            }
            let _ = writeln!(o);
        }
        let _ = writeln!(o, "  (> entry role)");
    }
    if !d.missing.is_empty() {
        let _ = writeln!(o, "\nmissing or weak data:");
        for m in &d.missing {
            let _ = writeln!(o, "  - {m}");
        }
    }
    o
}

// Wording shared by the verdicts.

/// "19% → 43% of its busy time, ~+57% per request".
pub(crate) fn change(g: &Growth) -> String {
    if g.alone {
        return format!("{} of its busy time", fmt::pct(g.share_after));
    }
    format!(
        "{} → {} of its busy time{}",
        fmt::pct(g.share_before),
        fmt::pct(g.share_after),
        if g.per_work_before.is_some() && g.impact.abs() >= 0.005 {
            format!(", ≈{:+.0}% time per request", g.impact * 100.0)
        } else {
            String::new()
        }
    )
}

/// "1, 2, 3 and 4 more".
pub(crate) fn id_list(ids: &[u32]) -> String {
    let shown: Vec<String> = ids.iter().take(3).map(|p| p.to_string()).collect();
    if ids.len() > 3 {
        format!("{} and {} more", shown.join(", "), ids.len() - 3)
    } else {
        shown.join(", ")
    }
}

/// Thread names, compressed to "pattern (N threads)" for pools.
pub(crate) fn comm_list<'a>(comms: impl Iterator<Item = &'a String>) -> String {
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
pub(crate) fn named_with_ids(name: &str, ids: &[u32]) -> String {
    if ids.is_empty() {
        name.to_string()
    } else {
        format!("{name} (pid {})", id_list(ids))
    }
}

pub(crate) fn hist_q(h: &Histogram, q: f64) -> Option<f64> {
    h.quantile_us(q).map(|v| v as f64)
}

pub(crate) fn time_line(m: &Model, g: &Growth) -> String {
    if g.alone {
        return format!(
            "{} {}: {} ({} of all its time; above the {} threshold in {} of the windows)",
            m.roles[g.role].name,
            g.family.words(),
            change(g),
            fmt::pct(mean(&g.after)),
            fmt::pct(crate::verdict::alone_threshold(g.family)),
            fmt::pct(g.delta)
        );
    }
    let mut line = format!(
        "{} {}: {} ({} → {} of all its time)",
        m.roles[g.role].name,
        g.family.words(),
        change(g),
        fmt::pct(mean(&g.before)),
        fmt::pct(mean(&g.after))
    );
    if let (Some(b), Some(i)) = (g.per_work_before, g.per_work_after) {
        line += &format!("; {b:.2} → {i:.2} ms waited per ms of CPU work");
    }
    line
}

/// "before → after", or just "after" when judged without a baseline.
pub(crate) fn ba(alone: bool, before: String, after: String) -> String {
    if alone {
        after
    } else {
        format!("{before} → {after}")
    }
}
