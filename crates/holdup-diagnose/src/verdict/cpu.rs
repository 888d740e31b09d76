//! CPU contention (others ran instead) and CPU saturation (the service's own threads did).

use super::*;

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

/// Without a baseline, run-queue wait behind the service's own threads is
/// CPU saturation only above this share of its busy time.
pub const ALONE_OWN_RUNQ: f64 = 0.50;

/// When the tasks that ran instead explain less than this share of the
/// run-queue growth, and the CPU was idle through most of the wait holdup's
/// history covers, nobody ran: the service was throttled.
pub const NOBODY_RAN: f64 = 0.2;

/// When the time a role's cgroups spent throttled by their CPU quota
/// (cpu.stat) grew by at least this share of its run-queue growth (alone:
/// is this share of its run-queue wait), the quota is the cause, whoever
/// ran meanwhile.
pub const QUOTA_SHARE: f64 = 0.3;

/// The CPU-quota throttling of a role's cgroups over a baseline and an
/// incident.
struct QuotaThrottling {
    /// Throttled ns, baseline and incident.
    ns: [f64; 2],
    /// Enforcement periods and throttled periods in the incident.
    periods: [u64; 2],
    /// The cgroups, by path.
    cgroups: BTreeSet<String>,
    /// The role's processes in them.
    tgids: BTreeSet<u32>,
}

impl QuotaThrottling {
    fn throttled_share(&self) -> f64 {
        if self.periods[0] == 0 {
            0.0
        } else {
            self.periods[1] as f64 / self.periods[0] as f64
        }
    }
}

fn quota_throttling(m: &Model, b: &[WinRef], i: &[WinRef], role: usize) -> QuotaThrottling {
    let mut q = QuotaThrottling {
        ns: [0.0; 2],
        periods: [0; 2],
        cgroups: BTreeSet::new(),
        tgids: BTreeSet::new(),
    };
    for (which, period) in [(0usize, b), (1usize, i)] {
        for w in period {
            let s = m.snapshot(*w);
            let procs: BTreeSet<u32> = s
                .threads
                .iter()
                .filter(|t| m.role_of_thread(*w, t.tid) == Some(role))
                .map(|t| t.tgid)
                .collect();
            for t in &s.throttles {
                let ours: Vec<u32> = t
                    .tgids
                    .iter()
                    .copied()
                    .filter(|p| procs.contains(p))
                    .collect();
                if ours.is_empty() {
                    continue;
                }
                q.ns[which] += t.throttled_ns as f64;
                if which == 1 {
                    q.periods[0] += t.periods;
                    q.periods[1] += t.throttled_periods;
                    q.cgroups.insert(t.cgroup.clone());
                    q.tgids.extend(ours);
                }
            }
        }
    }
    q
}

pub(super) fn candidate(
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
            detail: format!(
                "held the CPU {} while {role} waited",
                ba(g.alone, fmt::ms_per_s(r.1), fmt::ms_per_s(r.2))
            ),
        })
        .collect();
    // Runnable while the CPU ran nothing else (the idle task held it, and
    // holdup's history covers the wait): not contention but a limit, the
    // cgroup's CPU quota throttling the service.
    let unattributed_growth = unattributed[1] as f64 / is - unattributed[0] as f64 / bs;
    // Of the wait holdup's history covers, the part no task ran in.
    let covered_growth = (runq_growth - unattributed_growth.max(0.0)).max(0.0);
    let idle_growth = covered_growth - culprit_growth;
    let idle_throttled = runq_growth > 0.0
        && culprit_growth < NOBODY_RAN * runq_growth
        && idle_growth > 0.5 * covered_growth;
    // The kernel's own count (cpu.stat) of the time the quota held the
    // role's cgroups off the CPUs: on a busy host the throttled time is
    // also credited to whoever ran meanwhile, so the idle test above fails.
    let quota = quota_throttling(m, b, i, g.role);
    let (q_b, q_i) = (quota.ns[0] / bs, quota.ns[1] / is);
    let runq_rate = [runq[0] as f64 / bs, runq[1] as f64 / is];
    let quota_throttled = if g.alone {
        runq_rate[1] > 0.0 && q_i >= QUOTA_SHARE * runq_rate[1]
    } else {
        runq_growth > 0.0 && q_i - q_b >= QUOTA_SHARE * runq_growth
    };
    let throttled = idle_throttled || quota_throttled;
    let kind = if throttled {
        VerdictKind::CpuThrottled
    } else if saturation {
        VerdictKind::CpuSaturation
    } else {
        VerdictKind::CpuContention
    };
    let mut v = base_verdict(kind, m, g);
    v.evidence.push(time_line(m, g));
    if g.alone && saturation && g.share_after < ALONE_OWN_RUNQ {
        // Without a baseline, threads of one service queueing for the CPUs
        // behind each other is how a busy service runs on few cores; only a
        // large share is a hold-up of its own.
        v.significant = false;
        v.score = v.score.min(0.3);
        v.evidence.push(format!(
            "the service's own threads ran instead: below the {} threshold for its own run-queue wait",
            fmt::pct(ALONE_OWN_RUNQ)
        ));
    }
    let (hb, hi) = (runq_hist(m, b, g.role), runq_hist(m, i, g.role));
    if let (Some(b50), Some(b99), Some(i50), Some(i99)) = (
        hist_q(&hb, 0.5),
        hist_q(&hb, 0.99),
        hist_q(&hi, 0.5),
        hist_q(&hi, 0.99),
    ) {
        v.evidence.push(format!(
            "run-queue latency p50 {}, p99 {} (log2 histogram bucket bounds)",
            ba(g.alone, fmt::us(b50), fmt::us(i50)),
            ba(g.alone, fmt::us(b99), fmt::us(i99))
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
                fmt::ms_per_s(rows.iter().find(|r| r.0 == c.name).map_or(0.0, |r| r.2))
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
    if throttled && quota_throttled {
        v.summary = format!(
            "{role} waits for a CPU because its cgroup's CPU quota runs out: {}; the quota held it off the CPUs {} (cpu.max or cfs_quota_us)",
            change(g),
            ba(g.alone, fmt::ms_per_s(q_b), fmt::ms_per_s(q_i))
        );
        v.evidence.push(format!(
            "cpu.stat of {}: throttled {} ({} of its enforcement periods in the incident), against {} of run-queue wait",
            quota.cgroups.iter().cloned().collect::<Vec<_>>().join(", "),
            ba(g.alone, fmt::ms_per_s(q_b), fmt::ms_per_s(q_i)),
            fmt::pct(quota.throttled_share()),
            ba(g.alone, fmt::ms_per_s(runq_rate[0]), fmt::ms_per_s(runq_rate[1]))
        ));
        if !culprits.is_empty() {
            v.evidence.push(format!(
                "others ran meanwhile ({}), but the quota, not they, kept it off the CPUs",
                culprits
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        v.culprits = quota
            .cgroups
            .iter()
            .map(|cg| Named {
                kind: NamedKind::Cgroup,
                name: cg.clone(),
                ids: quota.tgids.iter().copied().collect(),
                detail: "the service's cgroup: its CPU quota".into(),
            })
            .collect();
        return Candidate {
            verdict: v,
            leads_to: "its own CPU quota (throttled)".into(),
        };
    }
    if throttled {
        v.summary = format!(
            "{role} waits for a CPU while no other task holds it: {}; its CPU limit throttles it (a cgroup CPU quota, cpu.max or cfs_quota_us)",
            change(g)
        );
        v.evidence.push(format!(
            "{} more run-queue wait while the CPU was idle (who ran instead: {}; wait older than holdup's history: {})",
            fmt::ms_per_s(runq_growth),
            fmt::ms_per_s(culprit_growth),
            fmt::ms_per_s(unattributed_growth.max(0.0))
        ));
        v.culprits = role_cgroups(m, i, g.role, "the service's cgroup: its CPU limit");
        return Candidate {
            verdict: v,
            leads_to: "its own CPU limit (throttled)".into(),
        };
    }
    if runq_growth > 0.0 && culprit_growth < 0.3 * runq_growth {
        // Little of the extra wait is anyone's CPU time: weak evidence.
        v.score *= 0.5;
        v.significant = v.significant && v.score >= 0.2;
        v.evidence.push(format!(
            "who ran instead explains only {} of the {} more run-queue wait",
            fmt::ms_per_s(culprit_growth),
            fmt::ms_per_s(runq_growth)
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
