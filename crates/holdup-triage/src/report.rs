//! The triage report: from a host-wide run's windows and the host counters
//! read before and after it, what holds which process up and who causes it.
//!
//! The per-process diagnosis is holdup-diagnose's own (judged alone, one
//! process at a time, on the windows cut down to that process): this module
//! only picks the processes worth diagnosing and adds the host-wide views
//! (CPUs, cgroup throttling, pressure, disks, locks, peers, holdup's cost).
//!
//! Why this file is long (~950 lines): each host-wide view (CPUs,
//! throttling, pressure, disks, locks, peers, cost) is a small builder over
//! the same windows, and they share the picking and cutting helpers here;
//! the text rendering is in `text.rs`.

use crate::host::{CgroupCpu, CpuCounters, HostFacts, Psi};
use holdup_diagnose::{SplitRequest, VerdictKind};
use holdup_model::{Histogram, Resource, Snapshot, WaitKind};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Processes diagnosed (the most held up by run queue and D-state waits).
pub const DIAGNOSED_BY_STATES: usize = 8;
/// More processes diagnosed: the most time in futex waits (lock candidates).
pub const DIAGNOSED_BY_FUTEX: usize = 3;
/// Rows of each ranked list.
pub const ROWS: usize = 5;

/// Host counters read at the start and the end of the run.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Per-CPU scheduler counters.
    pub cpus: Vec<CpuCounters>,
    /// Per-cgroup CPU counters.
    pub cgroups: Vec<CgroupCpu>,
    /// Pressure.
    pub psi: Vec<Psi>,
}

impl Counters {
    /// Reads them now.
    pub fn read() -> Counters {
        Counters {
            cpus: crate::host::read_cpu_counters(),
            cgroups: crate::host::read_cgroups().0,
            psi: crate::host::read_psi(),
        }
    }
}

/// The whole report (`--json` prints it; the text is rendered from it).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Host name.
    pub host: String,
    /// Kernel release.
    pub kernel: String,
    /// Online CPUs.
    pub cpus: usize,
    /// When the run started, Unix ms.
    pub started_unix_ms: u64,
    /// Length of the run, s.
    pub duration_s: f64,
    /// Windows recorded.
    pub windows: usize,
    /// Why the run stopped before its duration, if it did.
    pub stopped_early: Option<String>,
    /// The processes held up most, with their diagnosis.
    pub processes: Vec<HeldUpProcess>,
    /// The cgroups held up most.
    pub cgroups: Vec<HeldUpCgroup>,
    /// Host-wide run-queue latency and per-CPU counters.
    pub cpu: CpuReport,
    /// Cgroups throttled by their CPU limit during the run.
    pub throttled: Vec<Throttled>,
    /// Pressure during the run.
    pub pressure: Vec<Pressure>,
    /// Per disk: latency and top submitters.
    pub disks: Vec<DiskReport>,
    /// Futexes waited on longest, host-wide.
    pub locks: Vec<LockReport>,
    /// Peers answering slowest, host-wide.
    pub peers: Vec<PeerReport>,
    /// holdup's own cost.
    pub cost: Cost,
    /// What is missing or weak.
    pub notes: Vec<String>,
}

/// One process and what holds it up.
#[derive(Clone, Debug, Serialize)]
pub struct HeldUpProcess {
    /// Process id.
    pub pid: u32,
    /// Its name (the main thread's, else the first thread's).
    pub comm: String,
    /// Its cgroup path.
    pub cgroup: String,
    /// Threads seen.
    pub threads: usize,
    /// Run-queue wait, ns.
    pub runq_ns: u64,
    /// iowait, ns.
    pub iowait_ns: u64,
    /// Other D-state sleep, ns.
    pub other_d_ns: u64,
    /// Futex waits, ns (locks, and idle pools' condition variables).
    pub futex_ns: u64,
    /// On-CPU time, ns.
    pub on_cpu_ns: u64,
    /// Who ran on the CPU while its threads waited, most first.
    pub ran_instead: Vec<NamedNs>,
    /// Who else submitted I/O to the disks it used, most bytes first.
    pub other_submitters: Vec<NamedBytes>,
    /// holdup-diagnose's findings, judged alone, strongest first.
    pub findings: Vec<Finding>,
}

impl HeldUpProcess {
    /// The involuntary hold-up: run queue and D-state sleep.
    pub fn held_up_ns(&self) -> u64 {
        self.runq_ns + self.iowait_ns + self.other_d_ns
    }
}

/// A process (or thread) and a time.
#[derive(Clone, Debug, Serialize)]
pub struct NamedNs {
    /// Name.
    pub name: String,
    /// Process id.
    pub pid: u32,
    /// Time, ns.
    pub ns: u64,
}

/// A submitter and its bytes.
#[derive(Clone, Debug, Serialize)]
pub struct NamedBytes {
    /// Name.
    pub name: String,
    /// Process id (0: the kernel, e.g. writeback).
    pub pid: u32,
    /// Bytes.
    pub bytes: u64,
    /// Requests.
    pub requests: u64,
}

/// One verdict of the diagnosis of a process.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// Kind of cause.
    pub kind: VerdictKind,
    /// Its title.
    pub title: String,
    /// Above holdup-diagnose's threshold.
    pub significant: bool,
    /// One sentence.
    pub summary: String,
    /// Who or what causes it.
    pub culprits: Vec<String>,
}

/// A cgroup's hold-up.
#[derive(Clone, Debug, Serialize)]
pub struct HeldUpCgroup {
    /// Path.
    pub path: String,
    /// Processes seen in it.
    pub processes: usize,
    /// Run-queue wait, ns.
    pub runq_ns: u64,
    /// iowait + other D, ns.
    pub d_ns: u64,
}

/// Run-queue latency host-wide and per CPU.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CpuReport {
    /// p50 of every run-queue wait on the host, µs (log2 bucket bound).
    pub runq_p50_us: Option<u64>,
    /// p99, µs.
    pub runq_p99_us: Option<u64>,
    /// Waits counted.
    pub runq_waits: u64,
    /// Per CPU.
    pub per_cpu: Vec<CpuLine>,
    /// Who held CPUs while others waited, host-wide, most first.
    pub ran_instead: Vec<NamedNs>,
}

/// One CPU during the run.
#[derive(Clone, Debug, Serialize)]
pub struct CpuLine {
    /// CPU number.
    pub cpu: usize,
    /// Busy fraction (user, nice, system).
    pub busy: f64,
    /// irq + softirq fraction.
    pub irq: f64,
    /// Stolen fraction.
    pub steal: f64,
    /// Mean run-queue wait per time slice, ns (schedstat; None without it).
    pub mean_runq_ns: Option<f64>,
    /// Run-queue wait per second of run, ns/s (schedstat).
    pub runq_ns_per_s: Option<f64>,
}

/// A cgroup throttled by cpu.max.
#[derive(Clone, Debug, Serialize)]
pub struct Throttled {
    /// Path.
    pub path: String,
    /// Periods throttled during the run.
    pub periods: u64,
    /// Of this many periods.
    pub of_periods: u64,
    /// Time throttled during the run, µs.
    pub throttled_us: u64,
}

/// Pressure of one resource during the run.
#[derive(Clone, Debug, Serialize)]
pub struct Pressure {
    /// "cpu", "io", "memory".
    pub resource: String,
    /// Fraction of the run some task stalled.
    pub some: f64,
    /// Fraction of the run all non-idle tasks stalled.
    pub full: Option<f64>,
    /// avg10 at the end (percent).
    pub some_avg10: f64,
}

/// One disk.
#[derive(Clone, Debug, Serialize)]
pub struct DiskReport {
    /// Name.
    pub disk: String,
    /// Requests completed.
    pub requests: u64,
    /// Bytes.
    pub bytes: u64,
    /// Mean latency, ns.
    pub mean_ns: f64,
    /// p50, µs.
    pub p50_us: Option<u64>,
    /// p99, µs.
    pub p99_us: Option<u64>,
    /// The latency histogram (log2 µs buckets).
    pub hist: Histogram,
    /// Top submitters.
    pub submitters: Vec<NamedBytes>,
}

/// A futex host-wide.
#[derive(Clone, Debug, Serialize)]
pub struct LockReport {
    /// The futex.
    pub resource: String,
    /// Wait time, ns.
    pub wait_ns: u64,
    /// Waits.
    pub waits: u64,
    /// Waiting threads.
    pub waiters: usize,
    /// Processes (names) of the waiters.
    pub processes: Vec<String>,
    /// Threads that woke the waiters (release the lock), most first.
    pub wakers: Vec<String>,
}

/// A peer host-wide.
#[derive(Clone, Debug, Serialize)]
pub struct PeerReport {
    /// Peer address.
    pub peer: String,
    /// Who waits for it.
    pub waiters: Vec<String>,
    /// Wait time, ns.
    pub wait_ns: u64,
    /// Waits.
    pub waits: u64,
    /// p99 wait, µs.
    pub p99_us: Option<u64>,
}

/// holdup's own cost during the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cost {
    /// BPF run time, ns.
    pub bpf_ns: u64,
    /// As a fraction of one CPU over the run.
    pub cpu_fraction: f64,
    /// The budget (fraction of one CPU).
    pub budget: f64,
    /// Costliest programs: name, ns, runs.
    pub programs: Vec<(String, u64, u64)>,
    /// Recording size, bytes.
    pub recording_bytes: u64,
    /// Events lost.
    pub lost: u64,
}

/// What a report is built from.
pub struct Inputs<'a> {
    /// The run's windows.
    pub windows: &'a [Snapshot],
    /// Host facts.
    pub facts: &'a HostFacts,
    /// Counters at the start.
    pub before: &'a Counters,
    /// Counters at the end.
    pub after: &'a Counters,
    /// Wall time of the run, s.
    pub duration_s: f64,
    /// Start, Unix ms.
    pub started_unix_ms: u64,
    /// Why it stopped early.
    pub stopped_early: Option<String>,
    /// Cost budget, fraction of one CPU.
    pub budget: f64,
    /// Recording size, bytes.
    pub recording_bytes: u64,
}

#[derive(Default)]
struct ProcAcc {
    comm: String,
    main_comm: Option<String>,
    cgroup_id: u64,
    tids: BTreeSet<u32>,
    runq: u64,
    iowait: u64,
    other_d: u64,
    futex: u64,
    on_cpu: u64,
}

/// Builds the report.
pub fn build(inp: &Inputs) -> Report {
    let mut cg_names = holdup_collect::target::CgroupNames::default();
    let mut procs: BTreeMap<u32, ProcAcc> = BTreeMap::new();
    let mut comm_of: HashMap<u32, String> = HashMap::new();
    let mut runq_hist = Histogram::default();
    for s in inp.windows {
        for t in &s.threads {
            comm_of.insert(t.tid, t.comm.clone());
            let p = procs.entry(t.tgid).or_default();
            if t.tid == t.tgid {
                p.main_comm = Some(t.comm.clone());
            }
            if p.comm.is_empty() {
                p.comm = t.comm.clone();
            }
            p.cgroup_id = t.cgroup_id;
            p.tids.insert(t.tid);
            p.runq += t.states.runq_ns;
            p.iowait += t.states.iowait_ns;
            p.other_d += t.states.other_d_ns;
            p.on_cpu += t.states.on_cpu_ns;
            p.futex += t
                .waits
                .iter()
                .filter(|w| w.kind == WaitKind::Futex)
                .map(|w| w.ns)
                .sum::<u64>();
            runq_hist.merge(&t.runq_hist);
        }
    }
    for p in procs.values_mut() {
        if let Some(m) = p.main_comm.take() {
            p.comm = m;
        }
    }
    let proc_name = |pid: u32| -> String {
        procs
            .get(&pid)
            .map(|p| p.comm.clone())
            .or_else(|| comm_of.get(&pid).cloned())
            .unwrap_or_else(|| format!("pid {pid}"))
    };

    // Candidates: the most held up by states, then the most futex-bound.
    let mut by_states: Vec<u32> = procs.keys().copied().collect();
    by_states.sort_by_key(|p| {
        let a = &procs[p];
        std::cmp::Reverse(a.runq + a.iowait + a.other_d)
    });
    let mut chosen: Vec<u32> = by_states
        .iter()
        .copied()
        .filter(|p| {
            let a = &procs[p];
            a.runq + a.iowait + a.other_d > 0
        })
        .take(DIAGNOSED_BY_STATES)
        .collect();
    let mut by_futex: Vec<u32> = procs
        .keys()
        .copied()
        .filter(|p| procs[p].futex > 0)
        .collect();
    by_futex.sort_by_key(|p| std::cmp::Reverse(procs[p].futex));
    for p in by_futex.into_iter().take(DIAGNOSED_BY_FUTEX) {
        if !chosen.contains(&p) {
            chosen.push(p);
        }
    }

    let mut processes: Vec<HeldUpProcess> = chosen
        .iter()
        .map(|&pid| {
            let a = &procs[&pid];
            let findings = diagnose_process(inp.windows, pid, &a.comm);
            HeldUpProcess {
                pid,
                comm: a.comm.clone(),
                cgroup: cg_names.name(a.cgroup_id),
                threads: a.tids.len(),
                runq_ns: a.runq,
                iowait_ns: a.iowait,
                other_d_ns: a.other_d,
                futex_ns: a.futex,
                on_cpu_ns: a.on_cpu,
                ran_instead: ran_instead(inp.windows, Some(pid), &proc_name),
                other_submitters: other_submitters(inp.windows, pid),
                findings,
            }
        })
        .collect();
    // Processes with a significant finding first, then by hold-up.
    processes.sort_by_key(|p| {
        (
            !p.findings.iter().any(|f| f.significant),
            std::cmp::Reverse(p.held_up_ns()),
        )
    });

    let mut cgroups: BTreeMap<u64, (BTreeSet<u32>, u64, u64)> = BTreeMap::new();
    for (pid, a) in &procs {
        let c = cgroups.entry(a.cgroup_id).or_default();
        c.0.insert(*pid);
        c.1 += a.runq;
        c.2 += a.iowait + a.other_d;
    }
    let mut cgroups: Vec<HeldUpCgroup> = cgroups
        .into_iter()
        .filter(|(_, c)| c.1 + c.2 > 0)
        .map(|(id, c)| HeldUpCgroup {
            path: match cg_names.name(id) {
                n if n.is_empty() => format!("cgroup id {id}"),
                n => n,
            },
            processes: c.0.len(),
            runq_ns: c.1,
            d_ns: c.2,
        })
        .collect();
    cgroups.sort_by_key(|c| std::cmp::Reverse(c.runq_ns + c.d_ns));
    cgroups.truncate(ROWS);

    let mut notes = Vec::new();
    let lost: u64 = inp.windows.iter().map(|s| s.loss.total()).sum();
    if lost > 0 {
        notes.push(format!(
            "{lost} events were lost (maps full or threads picked up late): totals are lower bounds"
        ));
    }
    if inp.windows.is_empty() {
        notes.push("no window was recorded".to_string());
    }
    if inp.after.cpus.iter().any(|c| c.run_delay.is_none()) {
        notes.push("no /proc/schedstat (kernel without CONFIG_SCHEDSTATS): no per-CPU run-queue wait; the host-wide p50/p99 are holdup's own".to_string());
    }
    notes.extend(inp.facts.missing.iter().cloned());

    let bpf_ns: u64 = inp.windows.iter().map(|s| s.overhead_ns()).sum();
    let mut progs: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for s in inp.windows {
        for p in &s.overhead {
            let e = progs.entry(p.name.clone()).or_default();
            e.0 += p.run_time_ns;
            e.1 += p.run_cnt;
        }
    }
    let mut programs: Vec<(String, u64, u64)> =
        progs.into_iter().map(|(n, (ns, c))| (n, ns, c)).collect();
    programs.sort_by_key(|p| std::cmp::Reverse(p.1));
    programs.truncate(ROWS);

    Report {
        host: inp.facts.hostname.clone(),
        kernel: inp
            .facts
            .kernel
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string(),
        cpus: inp.facts.cpus,
        started_unix_ms: inp.started_unix_ms,
        duration_s: inp.duration_s,
        windows: inp.windows.len(),
        stopped_early: inp.stopped_early.clone(),
        processes,
        cgroups,
        cpu: CpuReport {
            runq_p50_us: runq_hist.quantile_us(0.5),
            runq_p99_us: runq_hist.quantile_us(0.99),
            runq_waits: runq_hist.count(),
            per_cpu: per_cpu(inp.before, inp.after, inp.duration_s),
            ran_instead: ran_instead(inp.windows, None, &proc_name),
        },
        throttled: throttled(inp.before, inp.after),
        pressure: pressure(inp.before, inp.after, inp.duration_s),
        disks: disks(inp.windows, &proc_name),
        locks: locks(inp.windows, &proc_name, &comm_of),
        peers: peers(inp.windows, &proc_name),
        cost: Cost {
            bpf_ns,
            cpu_fraction: if inp.duration_s > 0.0 {
                bpf_ns as f64 / (inp.duration_s * 1e9)
            } else {
                0.0
            },
            budget: inp.budget,
            programs,
            recording_bytes: inp.recording_bytes,
            lost,
        },
        notes,
    }
}

/// The windows as if only process `pid` had been the target: its threads,
/// waits, wake-ups and culprits; every disk submitter (the others are who
/// it competes with), marked as target or not.
pub fn only_process(windows: &[Snapshot], pid: u32) -> Vec<Snapshot> {
    windows
        .iter()
        .map(|s| Snapshot {
            window: s.window.clone(),
            threads: s
                .threads
                .iter()
                .filter(|t| t.tgid == pid)
                .cloned()
                .collect(),
            resources: s
                .resources
                .iter()
                .filter(|r| r.tgid == pid)
                .cloned()
                .collect(),
            futex_wakes: s.futex_wakes.clone(),
            wakeups: s
                .wakeups
                .iter()
                .filter(|w| w.wakee_tgid == pid)
                .cloned()
                .collect(),
            culprits: s
                .culprits
                .iter()
                .filter(|c| c.victim_tgid == pid)
                .cloned()
                .collect(),
            disks: s
                .disks
                .iter()
                .map(|d| {
                    let mut d = d.clone();
                    d.is_target = d.tgid == pid;
                    d
                })
                .collect(),
            loss: s.loss.clone(),
            overhead: Vec::new(),
            runtimes: s
                .runtimes
                .iter()
                .filter(|r| r.tgid == pid)
                .cloned()
                .collect(),
            throttles: s
                .throttles
                .iter()
                .filter(|t| t.tgids.contains(&pid))
                .cloned()
                .collect(),
        })
        .collect()
}

/// holdup-diagnose on one process, judged alone.
fn diagnose_process(windows: &[Snapshot], pid: u32, comm: &str) -> Vec<Finding> {
    let mine = only_process(windows, pid);
    let label = format!("pid {pid}");
    let d = holdup_diagnose::diagnose(&holdup_diagnose::Input {
        target: format!("{comm} (pid {pid})"),
        windows: &mine,
        label: &label,
        baseline_windows: None,
        split: SplitRequest {
            no_baseline: true,
            ..SplitRequest::default()
        },
    });
    d.verdicts
        .iter()
        .filter(|v| {
            !matches!(
                v.kind,
                VerdictKind::NothingHoldsItUp
                    | VerdictKind::NoSignificantChange
                    | VerdictKind::InsufficientData
            ) || v.significant
        })
        .take(3)
        .map(|v| Finding {
            kind: v.kind,
            title: v.kind.title().to_string(),
            significant: v.significant,
            summary: v.summary.clone(),
            culprits: v
                .culprits
                .iter()
                .take(3)
                .map(|c| {
                    if c.ids.is_empty() {
                        c.name.clone()
                    } else {
                        format!("{} ({})", c.name, c.ids[0])
                    }
                })
                .collect(),
        })
        .collect()
}

/// Who ran while `victim`'s threads (or anyone's) waited for a CPU, by process.
fn ran_instead(
    windows: &[Snapshot],
    victim: Option<u32>,
    proc_name: &dyn Fn(u32) -> String,
) -> Vec<NamedNs> {
    let mut by: HashMap<u32, (String, u64)> = HashMap::new();
    for s in windows {
        for c in &s.culprits {
            if victim.is_some_and(|v| v != c.victim_tgid || c.tgid == v) {
                continue;
            }
            let e = by.entry(c.tgid).or_insert_with(|| (c.comm.clone(), 0));
            e.1 += c.ns;
        }
    }
    // Named by process (a thread's name says less: "worker-3").
    let mut v: Vec<NamedNs> = by
        .into_iter()
        .map(|(pid, (comm, ns))| {
            let name = proc_name(pid);
            NamedNs {
                name: if name.starts_with("pid ") { comm } else { name },
                pid,
                ns,
            }
        })
        .collect();
    v.sort_by_key(|n| std::cmp::Reverse(n.ns));
    v.truncate(3);
    v
}

/// Other processes' I/O on the disks `pid` used.
fn other_submitters(windows: &[Snapshot], pid: u32) -> Vec<NamedBytes> {
    let used: BTreeSet<&str> = windows
        .iter()
        .flat_map(|s| s.disks.iter())
        .filter(|d| d.tgid == pid)
        .map(|d| d.disk.as_str())
        .collect();
    let mut by: HashMap<u32, NamedBytes> = HashMap::new();
    for d in windows.iter().flat_map(|s| s.disks.iter()) {
        if d.tgid == pid || !used.contains(d.disk.as_str()) {
            continue;
        }
        let e = by.entry(d.tgid).or_insert_with(|| NamedBytes {
            name: d.comm.clone(),
            pid: d.tgid,
            bytes: 0,
            requests: 0,
        });
        e.bytes += d.bytes;
        e.requests += d.requests;
    }
    let mut v: Vec<NamedBytes> = by.into_values().collect();
    v.sort_by_key(|n| std::cmp::Reverse(n.bytes));
    v.truncate(3);
    v
}

fn per_cpu(before: &Counters, after: &Counters, duration_s: f64) -> Vec<CpuLine> {
    after
        .cpus
        .iter()
        .filter_map(|a| {
            let b = before.cpus.iter().find(|b| b.cpu == a.cpu)?;
            let ticks = a.total_ticks.saturating_sub(b.total_ticks).max(1) as f64;
            let delay = match (a.run_delay, b.run_delay) {
                (Some(x), Some(y)) => {
                    Some((x.0.saturating_sub(y.0) as f64, x.1.saturating_sub(y.1)))
                }
                _ => None,
            };
            Some(CpuLine {
                cpu: a.cpu,
                busy: a.busy_ticks.saturating_sub(b.busy_ticks) as f64 / ticks,
                irq: a.irq_ticks.saturating_sub(b.irq_ticks) as f64 / ticks,
                steal: a.steal_ticks.saturating_sub(b.steal_ticks) as f64 / ticks,
                mean_runq_ns: delay.map(|(d, n)| if n > 0 { d / n as f64 } else { 0.0 }),
                runq_ns_per_s: delay.map(|(d, _)| d / duration_s.max(1e-3)),
            })
        })
        .collect()
}

fn throttled(before: &Counters, after: &Counters) -> Vec<Throttled> {
    let mut v: Vec<Throttled> = after
        .cgroups
        .iter()
        .filter_map(|a| {
            let b = before
                .cgroups
                .iter()
                .find(|b| b.id == a.id && b.path == a.path)?;
            let periods = a.nr_throttled.saturating_sub(b.nr_throttled);
            (periods > 0).then(|| Throttled {
                path: a.path.clone(),
                periods,
                of_periods: a.nr_periods.saturating_sub(b.nr_periods),
                throttled_us: a.throttled_usec.saturating_sub(b.throttled_usec),
            })
        })
        .collect();
    v.sort_by_key(|t| std::cmp::Reverse(t.throttled_us));
    v.truncate(ROWS);
    v
}

fn pressure(before: &Counters, after: &Counters, duration_s: f64) -> Vec<Pressure> {
    let us = (duration_s * 1e6).max(1.0);
    after
        .psi
        .iter()
        .filter_map(|a| {
            let b = before.psi.iter().find(|b| b.resource == a.resource)?;
            Some(Pressure {
                resource: a.resource.clone(),
                some: a.some.total_us.saturating_sub(b.some.total_us) as f64 / us,
                full: match (a.full, b.full) {
                    (Some(fa), Some(fb)) => {
                        Some(fa.total_us.saturating_sub(fb.total_us) as f64 / us)
                    }
                    _ => None,
                },
                some_avg10: a.some.avg10,
            })
        })
        .collect()
}

fn disks(windows: &[Snapshot], proc_name: &dyn Fn(u32) -> String) -> Vec<DiskReport> {
    let mut by: BTreeMap<String, (DiskReport, HashMap<u32, NamedBytes>, u64)> = BTreeMap::new();
    for d in windows.iter().flat_map(|s| s.disks.iter()) {
        let e = by.entry(d.disk.clone()).or_insert_with(|| {
            (
                DiskReport {
                    disk: d.disk.clone(),
                    requests: 0,
                    bytes: 0,
                    mean_ns: 0.0,
                    p50_us: None,
                    p99_us: None,
                    hist: Histogram::default(),
                    submitters: Vec::new(),
                },
                HashMap::new(),
                0,
            )
        });
        e.0.requests += d.requests;
        e.0.bytes += d.bytes;
        e.0.hist.merge(&d.latency_hist);
        e.2 += d.latency_ns;
        let s = e.1.entry(d.tgid).or_insert_with(|| NamedBytes {
            name: if d.tgid == 0 {
                d.comm.clone()
            } else {
                let n = proc_name(d.tgid);
                if n.starts_with("pid ") {
                    d.comm.clone()
                } else {
                    n
                }
            },
            pid: d.tgid,
            bytes: 0,
            requests: 0,
        });
        s.bytes += d.bytes;
        s.requests += d.requests;
    }
    let mut v: Vec<DiskReport> = by
        .into_values()
        .map(|(mut r, subs, lat)| {
            r.mean_ns = if r.requests > 0 {
                lat as f64 / r.requests as f64
            } else {
                0.0
            };
            r.p50_us = r.hist.quantile_us(0.5);
            r.p99_us = r.hist.quantile_us(0.99);
            let mut s: Vec<NamedBytes> = subs.into_values().collect();
            s.sort_by_key(|n| std::cmp::Reverse((n.bytes, n.requests)));
            s.truncate(3);
            r.submitters = s;
            r
        })
        .collect();
    v.sort_by_key(|d| std::cmp::Reverse(d.requests));
    v.truncate(ROWS);
    v
}

fn locks(
    windows: &[Snapshot],
    proc_name: &dyn Fn(u32) -> String,
    comm_of: &HashMap<u32, String>,
) -> Vec<LockReport> {
    struct Acc {
        wait: u64,
        waits: u64,
        tids: BTreeSet<u32>,
        pids: BTreeSet<u32>,
        wakers: HashMap<u32, u64>,
    }
    let mut by: HashMap<Resource, Acc> = HashMap::new();
    for r in windows.iter().flat_map(|s| s.resources.iter()) {
        if r.kind != WaitKind::Futex {
            continue;
        }
        let e = by.entry(r.resource.clone()).or_insert_with(|| Acc {
            wait: 0,
            waits: 0,
            tids: BTreeSet::new(),
            pids: BTreeSet::new(),
            wakers: HashMap::new(),
        });
        e.wait += r.wait_ns;
        e.waits += r.waits;
        e.tids.insert(r.tid);
        e.pids.insert(r.tgid);
    }
    for w in windows.iter().flat_map(|s| s.futex_wakes.iter()) {
        if let Some(e) = by.get_mut(&w.futex) {
            *e.wakers.entry(w.waker_tid).or_default() += w.woken;
        }
    }
    // A lock is waited on by several threads and released by wakes; one
    // waiter, or waiters nobody woke, are threads parked on a condition
    // variable, not contention.
    let mut v: Vec<LockReport> = by
        .into_iter()
        .filter(|(_, a)| a.tids.len() >= 2 && a.waits > 0 && !a.wakers.is_empty())
        .map(|(res, a)| {
            let mut wakers: Vec<(u32, u64)> = a.wakers.into_iter().collect();
            wakers.sort_by_key(|w| std::cmp::Reverse(w.1));
            LockReport {
                resource: res.to_string(),
                wait_ns: a.wait,
                waits: a.waits,
                waiters: a.tids.len(),
                processes: a
                    .pids
                    .iter()
                    .map(|p| format!("{} ({p})", proc_name(*p)))
                    .collect(),
                wakers: wakers
                    .iter()
                    .take(3)
                    .map(|(tid, _)| {
                        format!(
                            "{} ({tid})",
                            comm_of.get(tid).cloned().unwrap_or_else(|| "?".into())
                        )
                    })
                    .collect(),
            }
        })
        .collect();
    v.sort_by_key(|l| std::cmp::Reverse(l.wait_ns));
    v.truncate(ROWS);
    v
}

/// The port of "addr:port" (IPv6 in brackets or not).
fn port(addr: &str) -> Option<u16> {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

fn peers(windows: &[Snapshot], proc_name: &dyn Fn(u32) -> String) -> Vec<PeerReport> {
    let mut by: BTreeMap<String, (BTreeSet<u32>, u64, u64, Histogram)> = BTreeMap::new();
    for r in windows.iter().flat_map(|s| s.resources.iter()) {
        let Resource::Socket(a) = &r.resource else {
            continue;
        };
        if a.peer.is_empty() || !matches!(r.kind, WaitKind::SockRecv | WaitKind::Connect) {
            continue;
        }
        // The calling side of a connection has the higher (ephemeral) port:
        // a server's wait on its client is idle time, not a slow peer.
        let (Some(lp), Some(pp)) = (port(&a.local), port(&a.peer)) else {
            continue;
        };
        if lp <= pp {
            continue;
        }
        let e = by.entry(a.peer.clone()).or_default();
        e.0.insert(r.tgid);
        e.1 += r.wait_ns;
        e.2 += r.waits;
        e.3.merge(&r.hist);
    }
    let mut v: Vec<PeerReport> = by
        .into_iter()
        .map(|(peer, (pids, ns, waits, h))| PeerReport {
            peer,
            waiters: pids
                .iter()
                .map(|p| format!("{} ({p})", proc_name(*p)))
                .collect(),
            wait_ns: ns,
            waits,
            p99_us: h.quantile_us(0.99),
        })
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.wait_ns));
    v.truncate(ROWS);
    v
}

#[cfg(test)]
mod tests;
