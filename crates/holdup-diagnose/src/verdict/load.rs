//! More load, and the verdicts when no hold-up stands out.

use super::*;

pub(super) fn more_load(m: &Model, b: &[WinRef], i: &[WinRef], roles: &[usize]) -> Option<Verdict> {
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
    // More load needs the service's own work to grow: more CPU, fewer idle
    // moments, or exact receive counts; client connections or wake-up
    // proxies alone are not enough (an unchanged service's clients churn).
    let works_more = (cpu_growth >= 0.03 && cpu_delta >= MIN_DELTA) || idle_down;
    let mut count_ratio: f64 = 1.0;
    if clients_up && works_more {
        count_ratio = count_ratio.max(ratio(&cl_b, &cl_i));
    }
    if calls_up {
        count_ratio = count_ratio.max(ratio(&calls_b, &calls_i));
    } else if req_up && works_more {
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
    let busy_after = 1.0 - mean(&idle_i);
    let saturated = busy_after >= 0.85;
    // More work only holds requests up when it eats the spare capacity: the
    // entry threads idle less, or are saturated. With idle time steady or
    // up, the service absorbed it (a closed-loop client simply got faster).
    let holds_up = idle_down || saturated;
    let mut score = cpu_score.max(count_score);
    let significant = (cpu_significant || count_score > 0.0) && holds_up;
    if !holds_up {
        score = score.min(0.3);
    }
    let names: Vec<String> = roles.iter().map(|r| m.roles[*r].name.clone()).collect();
    let mut evidence = vec![format!(
        "the entry threads ({}) used {:.2} → {:.2} CPU-seconds per second",
        names.join(", "),
        mean(&cpu_b),
        mean(&cpu_i)
    )];
    evidence.push(format!(
        "their idle time (waiting for clients or work) {} → {}",
        fmt::pct(mean(&idle_b)),
        fmt::pct(mean(&idle_i))
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
            fmt::pct(mean(&idle_b)),
            fmt::pct(mean(&idle_i))
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
                fmt::pct(busy_after)
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

pub(super) fn no_change(
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

/// Without a baseline, entry threads on a CPU at least this share of their
/// time are saturated by their own work.
pub const ALONE_SATURATED: f64 = 0.85;

/// Without a baseline: the entry threads are saturated by their own work
/// (on-CPU nearly all the time, no contended wait), or None.
pub(super) fn busy_alone(m: &Model, i: &[WinRef], roles: &[usize]) -> Option<Verdict> {
    let (mut cpu, mut obs) = (0u64, 0u64);
    for w in i {
        for r in roles {
            let c = m.cell(*w, *r);
            cpu += c.cats[Category::OnCpu.index()];
            obs += c.observed_ns;
        }
    }
    if obs == 0 {
        return None;
    }
    let share = cpu as f64 / obs as f64;
    let per_window: Vec<f64> = i
        .iter()
        .filter_map(|w| {
            let (mut c, mut o) = (0u64, 0u64);
            for r in roles {
                let cell = m.cell(*w, *r);
                c += cell.cats[Category::OnCpu.index()];
                o += cell.observed_ns;
            }
            (o > 0).then(|| c as f64 / o as f64)
        })
        .collect();
    let significant = share >= ALONE_SATURATED;
    let cpu_s = |c: &crate::model::RoleWindow| c.cats[Category::OnCpu.index()] as f64 / 1e9;
    let names: Vec<String> = roles.iter().map(|r| m.roles[*r].name.clone()).collect();
    let rate = mean(&m.rates(i, roles, cpu_s));
    Some(Verdict {
        kind: VerdictKind::MoreLoad,
        score: if significant { 0.6 + 0.4 * share } else { 0.3 * share },
        significant,
        summary: format!(
            "the service is busy with its own work: its entry threads ({}) run on a CPU {} of their time ({rate:.2} CPU-s/s) and no wait holds them up; requests queue behind each other (load, not contention)",
            names.join(", "),
            fmt::pct(share)
        ),
        role: names.first().cloned(),
        culprits: vec![Named {
            kind: NamedKind::Clients,
            name: "clients".into(),
            ids: Vec::new(),
            detail: format!("keep the entry threads on-CPU {} of the time", fmt::pct(share)),
        }],
        evidence: vec![format!(
            "entry threads on a CPU {} of their time; saturation is ≥ {} (no baseline: judged alone)",
            fmt::pct(share),
            fmt::pct(ALONE_SATURATED)
        )],
        comparisons: vec![Comparison::new(
            "entry threads on a CPU",
            "fraction of thread time",
            &[],
            &per_window,
        )],
        confidence: super::confidence_alone(&per_window),
    })
}

/// Without a baseline, when no hold-up passes its threshold: "nothing is
/// holding it up", with the largest waits for the record.
pub(super) fn nothing_holds_it_up(
    m: &Model,
    i: &[WinRef],
    roles: &[usize],
    strongest: f64,
    others: &[Verdict],
) -> Verdict {
    let mut shares: Vec<Growth> = roles
        .iter()
        .flat_map(|r| CauseFamily::ALL.map(|f| assess_alone(m, i, *r, f)))
        .filter(|g| g.share_after >= 0.01)
        .collect();
    shares.sort_by(|x, y| y.share_after.total_cmp(&x.share_after));
    let names: Vec<String> = roles.iter().map(|r| m.roles[*r].name.clone()).collect();
    let mut evidence: Vec<String> = shares
        .iter()
        .take(3)
        .map(|g| {
            format!(
                "{} {}: {} of its busy time (a cause needs {})",
                m.roles[g.role].name,
                g.family.words(),
                fmt::pct(g.share_after),
                fmt::pct(alone_threshold(g.family))
            )
        })
        .collect();
    let cpu = |c: &crate::model::RoleWindow| c.cats[Category::OnCpu.index()] as f64 / 1e9;
    evidence.push(format!(
        "entry threads' CPU use {:.2} CPU-s/s",
        mean(&m.rates(i, roles, cpu))
    ));
    for o in others.iter().filter(|o| o.score > 0.1) {
        evidence.push(format!(
            "below its threshold: {} ({})",
            o.kind.title(),
            o.summary
        ));
    }
    let largest = shares
        .first()
        .map(|g| {
            format!(
                "; its largest wait is {} ({} of busy time)",
                g.family.words(),
                fmt::pct(g.share_after)
            )
        })
        .unwrap_or_default();
    let per_window = shares
        .first()
        .map(|g| g.basis_after.clone())
        .unwrap_or_default();
    let mut conf = super::confidence_alone(&per_window);
    conf.text = format!(
        "{} windows judged alone (no baseline); no hold-up took its threshold's share of the busy time",
        i.len()
    );
    Verdict {
        kind: VerdictKind::NothingHoldsItUp,
        score: (1.0 - strongest).max(0.5),
        significant: false,
        summary: format!(
            "nothing is holding {} up: no wait takes a large share of its busy time{largest}",
            if names.is_empty() {
                "the service".to_string()
            } else {
                names.join(", ")
            }
        ),
        role: names.first().cloned(),
        culprits: Vec::new(),
        evidence,
        comparisons: Vec::new(),
        confidence: conf,
    }
}
