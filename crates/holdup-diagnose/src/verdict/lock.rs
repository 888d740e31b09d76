//! Lock contention: the lock, its waiters and its holders.

use super::*;

pub(super) fn candidate(m: &Model, b: &[WinRef], i: &[WinRef], g: &Growth) -> Candidate {
    let role = m.roles[g.role].name.clone();
    // futex label -> ([wait ns b, i], [waits b, i], waiters (src, tid), per-window wait/waits, hist i)
    #[derive(Clone, Default)]
    struct F {
        ns: [f64; 2],
        waits: [f64; 2],
        waiters: BTreeSet<(usize, u32)>,
        waiter_pids: BTreeSet<u32>,
        hist: Histogram,
        keys: BTreeSet<FutexKey>,
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
                let Some(key) = FutexKey::of(&r.resource) else {
                    continue;
                };
                if f.futex_use.get(&key) != Some(&FutexUse::Lock) {
                    continue;
                }
                let e = futexes.entry(r.resource.to_string()).or_default();
                e.keys.insert(key);
                e.ns[which] += r.wait_ns as f64;
                e.waits[which] += r.waits as f64;
                if which == 1 {
                    e.waiters.insert((w.src, r.tid));
                    e.waiter_pids.insert(r.tgid);
                    e.hist.merge(&r.hist);
                }
            }
        }
    }
    let (bs, is) = (m.period_secs(b), m.period_secs(i));
    let growth = |f: &F| f.ns[1] / is - f.ns[0] / bs;
    let mut top = futexes
        .iter()
        .max_by(|x, y| growth(x.1).total_cmp(&growth(y.1)))
        .map(|(l, f)| (l.clone(), f.clone()));
    // A lock manager puts each waiter on a semaphore or condition variable
    // of its own: no single futex carries the wait. Name them together.
    let total: f64 = futexes.values().map(|f| growth(f).max(0.0)).sum();
    let spread: Vec<&F> = futexes.values().filter(|f| growth(f) > 0.0).collect();
    // The member futexes when the waits are grouped, largest first.
    let mut members: Vec<(&String, &F)> = Vec::new();
    if let Some((_, t)) = &top {
        if spread.len() >= 3 && growth(t) < PER_WAITER_SHARE * total {
            let mut all = F::default();
            for f in &spread {
                for k in 0..2 {
                    all.ns[k] += f.ns[k];
                    all.waits[k] += f.waits[k];
                }
                all.waiters.extend(f.waiters.iter().copied());
                all.waiter_pids.extend(f.waiter_pids.iter().copied());
                all.hist.merge(&f.hist);
                all.keys.extend(f.keys.iter().copied());
            }
            let label = format!(
                "{} per-waiter futexes (a lock manager's wait queue)",
                spread.len()
            );
            top = Some((label, all));
            members = futexes.iter().filter(|(_, f)| growth(f) > 0.0).collect();
            members.sort_by(|x, y| growth(y.1).total_cmp(&growth(x.1)));
        }
    }
    let mut v = base_verdict(VerdictKind::LockContention, m, g);
    v.evidence.push(time_line(m, g));
    let mut culprits = Vec::new();
    let mut leads_to = "a lock".to_string();
    if let Some((label, f)) = &top {
        let label = label.clone();
        leads_to = label.clone();
        // Holders: who woke waiters of this futex in the incident.
        let mut holders: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        for w in i {
            let s = m.snapshot(*w);
            for fw in &s.futex_wakes {
                {
                    if FutexKey::of(&fw.futex).is_some_and(|k| f.keys.contains(&k)) {
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
            "{label}: waited {}, {} per blocking wait (p99 {})",
            ba(
                g.alone,
                fmt::ms_per_s(f.ns[0] / bs),
                fmt::ms_per_s(f.ns[1] / is)
            ),
            ba(g.alone, fmt::us(per_wait(0)), fmt::us(per_wait(1))),
            hist_q(&f.hist, 0.99).map(fmt::us).unwrap_or_default()
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
            ids: match f.keys.iter().next() {
                Some(FutexKey::Private { tgid, .. }) if f.keys.len() == 1 => vec![*tgid],
                _ => f.waiter_pids.iter().copied().collect(),
            },
            detail: format!(
                "waited {}",
                ba(
                    g.alone,
                    fmt::ms_per_s(f.ns[0] / bs),
                    fmt::ms_per_s(f.ns[1] / is)
                )
            ),
        });
        for (name, mf) in members.iter().take(3) {
            culprits.push(Named {
                kind: NamedKind::Futex,
                name: (*name).clone(),
                ids: mf.waiter_pids.iter().copied().collect(),
                detail: format!(
                    "one waiter's futex: waited {}",
                    ba(
                        g.alone,
                        fmt::ms_per_s(mf.ns[0] / bs),
                        fmt::ms_per_s(mf.ns[1] / is)
                    )
                ),
            });
        }
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
        // No lock futex: the waits end when a peer of the role signals the
        // waiter some other way (a latch: a signal or a pipe ending a poll).
        let holders = holder_role(m, i, g.role);
        let holder_name = m.roles[holders].name.clone();
        culprits.push(Named {
            kind: NamedKind::Role,
            name: holder_name.clone(),
            ids: Vec::new(),
            detail: "its threads end the waits when they release (they signal the next waiter)"
                .into(),
        });
        v.evidence.push(format!(
            "{role} sleeps until a peer of its own role ({holder_name}) signals it: a lock whose waiters sleep on a latch (poll, pipe or signal) rather than a futex"
        ));
        v.summary = format!(
            "{role} waits for a lock: {}; the waits are ended by {holder_name} releasing it",
            change(g)
        );
    }
    v.culprits = culprits;
    Candidate {
        verdict: v,
        leads_to,
    }
}

/// The role whose threads end `role`'s lock waits (the holders, who wake the
/// next waiter when they release), by the sleep time they ended.
fn holder_role(m: &Model, i: &[WinRef], role: usize) -> usize {
    let mut by_role: BTreeMap<usize, u64> = BTreeMap::new();
    for w in i {
        let f = m.facts(*w);
        for e in &m.snapshot(*w).wakeups {
            if m.role_of_thread(*w, e.wakee_tid) != Some(role) {
                continue;
            }
            if let Waker::Thread { tid, .. } = &e.waker {
                if f.are_kin(*tid, e.wakee_tid) {
                    if let Some(r) = m.role_of_thread(*w, *tid) {
                        *by_role.entry(r).or_default() += e.sleep_ns;
                    }
                }
            }
        }
    }
    by_role
        .into_iter()
        .max_by_key(|(_, ns)| *ns)
        .map_or(role, |(r, _)| r)
}

/// Families that can hold a lock's holder up while it holds the lock and
/// explain the lock wait (its own sleeps and hand-offs are part of the
/// critical section's work, not a cause outside it).
const HOLDER_CAUSES: [CauseFamily; 3] =
    [CauseFamily::Disk, CauseFamily::Cpu, CauseFamily::External];

/// When the futex with the most growth carries less than this share of it
/// (and at least 3 share it), the waits are on per-waiter futexes.
pub const PER_WAITER_SHARE: f64 = 0.5;

/// Without a baseline, a cause holds a lock's holders up when it takes this
/// many times its own threshold of their busy time outside lock waits.
pub const HOLDER_FACTOR: f64 = 2.0;

/// What holds the holders of `role`'s locks up while they hold them, when
/// that is a cause of its own: the growth (or, without a baseline, the share
/// of the holders' busy time outside lock waits) and its candidate verdict.
pub(super) fn holders_held_up(
    m: &Model,
    b: &[WinRef],
    i: &[WinRef],
    role: usize,
    alone: bool,
    missing: &mut Vec<String>,
) -> Option<(Growth, Candidate, &'static str)> {
    let holders = holder_role(m, i, role);
    let mut best: Option<(Growth, Candidate, &'static str)> = None;
    for family in HOLDER_CAUSES {
        let mut words = family.words();
        let g = if alone {
            let mut g = assess_alone(m, i, holders, family);
            let cats: Vec<Category> = family.categories().collect();
            let (mut part, mut busy) = (0u64, 0u64);
            for w in i {
                let c = m.cell(*w, holders);
                part += c.sum(&cats);
                busy += c.busy_ns().saturating_sub(c.sum(&[Category::FutexLock]));
            }
            g.share_after = if busy > 0 {
                part as f64 / busy as f64
            } else {
                0.0
            };
            g.impact = g.share_after;
            // The holders' wait must dominate what they do outside the lock
            // to explain the lock wait on its own; a disk that other
            // processes keep busy needs only the disk's own threshold.
            let factor = if family == CauseFamily::Disk && others_disk_share(m, i) >= 0.3 {
                1.0
            } else {
                HOLDER_FACTOR
            };
            let threshold = (factor * alone_threshold(family)).min(0.8);
            g.score = (g.share_after / threshold).min(2.0) / 2.0;
            g.significant = g.share_after >= threshold && part > 0;
            g
        } else {
            // The lock wait grows in the same threads and inflates their busy
            // time, so the holders' share of it may stay flat while their
            // wait per unit of CPU work climbs: judge them by the latter.
            // When the lock cuts throughput, every other wait grows per unit
            // of CPU work; the holders must also spend more of their time in
            // it.
            let mut g = assess(m, b, i, holders, family);
            let (before, after) = (mean(&g.before), mean(&g.after));
            g.significant = g.per_work_before.is_some()
                && g.impact >= MIN_IMPACT
                && g.delta >= MIN_DELTA
                && g.score >= 0.2
                && after >= HOLDER_TIME_GROWTH * before + 0.005;
            // A holder preempted by another process keeps the others
            // asleep on the lock instead of queueing for the CPU: the
            // holders' run-queue share can even fall while the part of it
            // spent behind other processes climbs. That makes a contended
            // lock worse; a lock that was hardly waited for before is a new
            // hot spot of its own, whatever else runs.
            let contended_before =
                m.busy_share(b, role, &[Category::FutexLock]) >= PREEMPTION_MIN_LOCK_SHARE;
            if !g.significant && family == CauseFamily::Cpu && contended_before {
                let f = foreign_runq_growth(m, b, i, holders);
                if f.significant {
                    words = FOREIGN_RUNQ;
                    g = f;
                }
            }
            g
        };
        if !g.significant {
            continue;
        }
        let Some(mut c) = super::candidate(m, b, i, &g, missing) else {
            continue;
        };
        if words == FOREIGN_RUNQ {
            // Its share of the holders' busy time hardly moves (the lock
            // wait grows with it): say what grew.
            let (pb, pi) = (
                g.per_work_before.unwrap_or(0.0),
                g.per_work_after.unwrap_or(0.0),
            );
            let names: Vec<&str> = c.verdict.culprits.iter().map(|n| n.name.as_str()).collect();
            let who = if holders == role {
                format!(
                    "{}'s threads hold the lock they wait for",
                    m.roles[role].name
                )
            } else {
                format!(
                    "{} holds the lock {} waits for",
                    m.roles[holders].name, m.roles[role].name
                )
            };
            c.verdict.summary = format!(
                "{who} and lose the CPU to other processes meanwhile: {:.2} → {:.2} ms behind them per ms of CPU work{}",
                pb,
                pi,
                if names.is_empty() {
                    String::new()
                } else {
                    format!("; ran instead: {}", names.join(", "))
                }
            );
        }
        // Holders queueing for the CPUs behind the service's own threads is
        // the lock's own load, not a cause outside it.
        if c.verdict.kind == VerdictKind::CpuSaturation || !c.verdict.significant {
            continue;
        }
        if best.as_ref().is_none_or(|(x, _, _)| g.score > x.score) {
            best = Some((g, c, words));
        }
    }
    best
}

/// Run-queue wait of `role` behind processes other than the service's (the
/// tasks that ran instead, as the collector credits them), per unit of its
/// CPU work, baseline against incident: the CPU family's growth measured on
/// that part of the run queue alone.
pub(super) fn foreign_runq_growth(m: &Model, b: &[WinRef], i: &[WinRef], role: usize) -> Growth {
    let foreign = |w: WinRef| -> u64 {
        m.snapshot(w)
            .culprits
            .iter()
            .filter(|c| m.role_of_thread(w, c.victim_tid) == Some(role) && !m.is_service(w, c.tgid))
            .map(|c| c.ns)
            .sum()
    };
    // Per window: (foreign run-queue ns, on-CPU ns, busy ns, observed ns).
    let series = |period: &[WinRef]| -> Vec<[f64; 4]> {
        period
            .iter()
            .map(|w| {
                let c = m.cell(*w, role);
                [
                    foreign(*w) as f64,
                    c.cats[Category::OnCpu.index()] as f64,
                    c.busy_ns() as f64,
                    c.observed_ns as f64,
                ]
            })
            .filter(|x| x[3] > 0.0)
            .collect()
    };
    let (sb, si) = (series(b), series(i));
    let total = |s: &[[f64; 4]], k: usize| s.iter().map(|x| x[k]).sum::<f64>();
    let ratios = |s: &[[f64; 4]]| -> Vec<f64> {
        s.iter()
            .filter(|x| x[1] >= MIN_CPU_SHARE * x[3])
            .map(|x| x[0] / x[1])
            .collect()
    };
    let share = |s: &[[f64; 4]]| {
        let busy = total(s, 2);
        if busy > 0.0 {
            total(s, 0) / busy
        } else {
            0.0
        }
    };
    let fractions = |s: &[[f64; 4]]| s.iter().map(|x| x[0] / x[3]).collect::<Vec<f64>>();
    let works = |s: &[[f64; 4]]| total(s, 3) > 0.0 && total(s, 1) >= MIN_CPU_SHARE * total(s, 3);
    let (basis_before, basis_after) = (ratios(&sb), ratios(&si));
    let (per_work_before, per_work_after, impact) = if works(&sb) && works(&si) {
        let (pb, pi) = (total(&sb, 0) / total(&sb, 1), total(&si, 0) / total(&si, 1));
        let stretch = total(&sb, 2) / total(&sb, 1);
        (Some(pb), Some(pi), (pi - pb) / stretch)
    } else {
        (None, None, 0.0)
    };
    let delta = cliffs_delta(&basis_before, &basis_after);
    // The holders' own requests slow down by `impact`, but every waiter
    // sleeps through a preempted holder's delay: what counts is how much
    // that delay grew against what it was.
    let relative = match (per_work_before, per_work_after) {
        (Some(pb), Some(pi)) if pb > 0.0 => pi / pb - 1.0,
        (Some(_), Some(pi)) if pi > 0.0 => HOLDER_FOREIGN_GROWTH,
        _ => 0.0,
    };
    let score = score_of(relative, delta, 1.0);
    let typical_worse =
        !basis_after.is_empty() && Dist::of(&basis_after).p50 > Dist::of(&basis_before).p90;
    let significant = relative >= HOLDER_FOREIGN_GROWTH - 1.0
        && per_work_after.unwrap_or(0.0) - per_work_before.unwrap_or(0.0) >= HOLDER_FOREIGN_MIN
        && delta >= MIN_DELTA
        && typical_worse;
    Growth {
        role,
        family: CauseFamily::Cpu,
        before: fractions(&sb),
        after: fractions(&si),
        share_before: share(&sb),
        share_after: share(&si),
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

/// Holder preemption is a cause only of a lock that took at least this
/// share of the waiters' busy time in the baseline already.
pub const PREEMPTION_MIN_LOCK_SHARE: f64 = 0.05;

/// The holders' cause when their run-queue wait behind other processes grew.
const FOREIGN_RUNQ: &str = "waiting for a CPU held by other processes";

/// In compare mode, the lock holders' run-queue wait behind other processes
/// per unit of their CPU work must grow by this factor to explain a lock's
/// growth (a preempted holder keeps every waiter asleep).
pub const HOLDER_FOREIGN_GROWTH: f64 = 1.5;

/// ... and by at least this much, ns waited per ns of CPU work (a tenth of
/// their work's time).
pub const HOLDER_FOREIGN_MIN: f64 = 0.1;

/// In compare mode, the holders' time in a cause must grow by this factor
/// (of their thread time) for it to explain a lock's growth.
pub const HOLDER_TIME_GROWTH: f64 = 1.1;

/// The share of all block I/O bytes in `i` submitted by processes other
/// than the service.
fn others_disk_share(m: &Model, i: &[WinRef]) -> f64 {
    let (mut others, mut all) = (0u64, 0u64);
    for w in i {
        for d in &m.snapshot(*w).disks {
            all += d.bytes;
            if !(d.is_target || m.is_service(*w, d.tgid)) {
                others += d.bytes;
            }
        }
    }
    if all == 0 {
        0.0
    } else {
        others as f64 / all as f64
    }
}
