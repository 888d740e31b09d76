//! A short human summary of a recording, for `holdup inspect FILE`.
//!
//! [`summarize`] adds up every window; [`Summary`]'s `Display` prints it as
//! compact plain text, and it serializes to JSON for scripts.

use crate::{ReadStatus, RecordingHeader};
use holdup_format as human;
use holdup_model::{Loss, Resource, Snapshot, StateTimes, ThreadState, WaitKind};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::fmt;

/// Threads listed.
pub const TOP_THREADS: usize = 15;
/// Resources listed.
pub const TOP_RESOURCES: usize = 10;
/// Culprits listed.
pub const TOP_CULPRITS: usize = 10;
/// Disk rows listed.
pub const TOP_DISKS: usize = 10;
/// BPF programs listed.
pub const TOP_PROGRAMS: usize = 8;

/// Totals of a recording.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// What was watched (human form).
    pub target: String,
    /// Host name.
    pub host: String,
    /// Kernel release.
    pub kernel: String,
    /// holdup version that wrote the recording.
    pub holdup_version: String,
    /// File format version.
    pub format_version: u32,
    /// Snapshot schema version.
    pub schema_version: u32,
    /// holdup's command line.
    pub argv: Vec<String>,
    /// Start, Unix ms.
    pub started_unix_ms: u64,
    /// Window length, ms.
    pub interval_ms: u64,
    /// Windows summarized.
    pub windows: u64,
    /// Index of the first window.
    pub first_window: Option<u64>,
    /// Index of the last window.
    pub last_window: Option<u64>,
    /// From the first window's start to the last one's end, ns.
    pub span_ns: u64,
    /// Sum of window lengths, ns.
    pub windows_ns: u64,
    /// Distinct threads seen.
    pub thread_count: usize,
    /// Top threads by time not sleeping.
    pub threads: Vec<ThreadSummary>,
    /// Distinct (kind, resource) pairs waited on.
    pub resource_count: usize,
    /// Top resources by wait time.
    pub resources: Vec<ResourceSummary>,
    /// Distinct culprit tasks.
    pub culprit_count: usize,
    /// Top culprits by CPU time held while target threads waited.
    pub culprits: Vec<CulpritSummary>,
    /// Distinct (disk, submitter) pairs.
    pub disk_count: usize,
    /// Top disk submitters by bytes.
    pub disks: Vec<DiskSummary>,
    /// Loss counters added over all windows.
    pub loss: Loss,
    /// holdup's own BPF cost.
    pub overhead: OverheadSummary,
    /// How reading the recording ended, when known.
    pub status: Option<ReadStatus>,
}

/// One thread over the whole recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ThreadSummary {
    /// Process id.
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    /// Last name seen.
    pub comm: String,
    /// Time in each state, summed, ns.
    pub states: StateTimes,
    /// Total observed time, ns.
    pub observed_ns: u64,
    /// Windows the thread appeared in.
    pub windows: u64,
    /// It exited during the recording.
    pub exited: bool,
}

impl ThreadSummary {
    /// Observed time not in interruptible sleep, ns.
    pub fn busy_ns(&self) -> u64 {
        self.observed_ns.saturating_sub(self.states.sleep_ns)
    }

    /// Share of observed time in a state, percent.
    pub fn percent(&self, s: ThreadState) -> f64 {
        pct(self.states.get(s), self.observed_ns)
    }
}

/// One resource over the whole recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResourceSummary {
    /// Kind of wait.
    pub kind: WaitKind,
    /// The resource.
    pub resource: Resource,
    /// Blocked time, all threads, ns.
    pub wait_ns: u64,
    /// Blocking waits.
    pub waits: u64,
    /// Distinct threads that waited on it.
    pub threads: usize,
}

/// A task that ran while target threads waited for a CPU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CulpritSummary {
    /// Process id.
    pub tgid: u32,
    /// Name.
    pub comm: String,
    /// cgroup path (last seen), may be empty.
    pub cgroup: String,
    /// CPU time held while target threads waited, ns.
    pub ns: u64,
    /// Distinct target threads it delayed.
    pub victims: usize,
}

/// Block IO of one submitter on one disk.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DiskSummary {
    /// Disk name.
    pub disk: String,
    /// Submitter process (0 when unknown).
    pub tgid: u32,
    /// Submitter name.
    pub comm: String,
    /// The submitter is a target thread.
    pub is_target: bool,
    /// Completed requests.
    pub requests: u64,
    /// Bytes.
    pub bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Sum of request latencies, ns.
    pub latency_ns: u64,
    /// Share of the disk's bytes over the recording, 0..=1.
    pub share: f64,
}

/// holdup's BPF cost.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OverheadSummary {
    /// BPF run time over all windows, ns.
    pub total_run_time_ns: u64,
    /// Mean BPF run time per window, ns.
    pub mean_ns_per_window: u64,
    /// BPF run time as a share of one CPU over the windows, 0..=1.
    pub cpu_fraction: f64,
    /// Top programs by run time.
    pub programs: Vec<ProgramSummary>,
}

/// One BPF program over the recording.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProgramSummary {
    /// Program name.
    pub name: String,
    /// Runs.
    pub run_cnt: u64,
    /// Run time, ns.
    pub run_time_ns: u64,
    /// Mean cost per run, ns.
    pub ns_per_run: f64,
}

/// Adds up `windows` into a summary.
pub fn summarize(header: &RecordingHeader, windows: &[Snapshot]) -> Summary {
    #[derive(Default)]
    struct Res {
        wait_ns: u64,
        waits: u64,
        threads: BTreeSet<u32>,
    }
    #[derive(Default)]
    struct Cul {
        cgroup: String,
        ns: u64,
        victims: BTreeSet<u32>,
    }

    let mut threads: HashMap<(u32, u32), ThreadSummary> = HashMap::new();
    let mut resources: HashMap<(WaitKind, &Resource), Res> = HashMap::new();
    let mut culprits: HashMap<(u32, &str), Cul> = HashMap::new();
    let mut disks: HashMap<(&str, u32, &str), DiskSummary> = HashMap::new();
    let mut progs: HashMap<&str, ProgramSummary> = HashMap::new();
    let mut loss = Loss::default();
    let mut windows_ns = 0u64;

    for w in windows {
        windows_ns += w.window.duration_ns();
        for t in &w.threads {
            let e = threads
                .entry((t.tgid, t.tid))
                .or_insert_with(|| ThreadSummary {
                    tgid: t.tgid,
                    tid: t.tid,
                    comm: String::new(),
                    states: StateTimes::default(),
                    observed_ns: 0,
                    windows: 0,
                    exited: false,
                });
            e.comm.clone_from(&t.comm);
            e.states.on_cpu_ns += t.states.on_cpu_ns;
            e.states.runq_ns += t.states.runq_ns;
            e.states.iowait_ns += t.states.iowait_ns;
            e.states.other_d_ns += t.states.other_d_ns;
            e.states.sleep_ns += t.states.sleep_ns;
            e.observed_ns += t.states.total_ns();
            e.windows += 1;
            e.exited |= t.exited;
        }
        for r in &w.resources {
            let e = resources.entry((r.kind, &r.resource)).or_default();
            e.wait_ns += r.wait_ns;
            e.waits += r.waits;
            e.threads.insert(r.tid);
        }
        for c in &w.culprits {
            let e = culprits.entry((c.tgid, c.comm.as_str())).or_default();
            e.ns += c.ns;
            e.victims.insert(c.victim_tid);
            if !c.cgroup.is_empty() {
                e.cgroup.clone_from(&c.cgroup);
            }
        }
        for d in &w.disks {
            let e = disks
                .entry((d.disk.as_str(), d.tgid, d.comm.as_str()))
                .or_insert_with(|| DiskSummary {
                    disk: d.disk.clone(),
                    tgid: d.tgid,
                    comm: d.comm.clone(),
                    is_target: false,
                    requests: 0,
                    bytes: 0,
                    write_bytes: 0,
                    latency_ns: 0,
                    share: 0.0,
                });
            e.is_target |= d.is_target;
            e.requests += d.requests;
            e.bytes += d.bytes;
            e.write_bytes += d.write_bytes;
            e.latency_ns += d.latency_ns;
        }
        loss.add(&w.loss);
        for p in &w.overhead {
            let e = progs
                .entry(p.name.as_str())
                .or_insert_with(|| ProgramSummary {
                    name: p.name.clone(),
                    run_cnt: 0,
                    run_time_ns: 0,
                    ns_per_run: 0.0,
                });
            e.run_cnt += p.run_cnt;
            e.run_time_ns += p.run_time_ns;
        }
    }

    let thread_count = threads.len();
    let mut threads: Vec<ThreadSummary> = threads.into_values().collect();
    threads.sort_by(|a, b| {
        b.busy_ns()
            .cmp(&a.busy_ns())
            .then(a.tid.cmp(&b.tid))
            .then(a.tgid.cmp(&b.tgid))
    });
    threads.truncate(TOP_THREADS);

    let resource_count = resources.len();
    let mut resources: Vec<ResourceSummary> = resources
        .into_iter()
        .map(|((kind, resource), r)| ResourceSummary {
            kind,
            resource: resource.clone(),
            wait_ns: r.wait_ns,
            waits: r.waits,
            threads: r.threads.len(),
        })
        .collect();
    resources.sort_by(|a, b| {
        b.wait_ns
            .cmp(&a.wait_ns)
            .then_with(|| a.kind.cmp(&b.kind))
            .then_with(|| a.resource.cmp(&b.resource))
    });
    resources.truncate(TOP_RESOURCES);

    let culprit_count = culprits.len();
    let mut culprits: Vec<CulpritSummary> = culprits
        .into_iter()
        .map(|((tgid, comm), c)| CulpritSummary {
            tgid,
            comm: comm.to_string(),
            cgroup: c.cgroup,
            ns: c.ns,
            victims: c.victims.len(),
        })
        .collect();
    culprits.sort_by(|a, b| {
        b.ns.cmp(&a.ns)
            .then(a.tgid.cmp(&b.tgid))
            .then_with(|| a.comm.cmp(&b.comm))
    });
    culprits.truncate(TOP_CULPRITS);

    let mut disk_bytes: HashMap<String, u64> = HashMap::new();
    for d in disks.values() {
        *disk_bytes.entry(d.disk.clone()).or_default() += d.bytes;
    }
    let disk_count = disks.len();
    let mut disks: Vec<DiskSummary> = disks.into_values().collect();
    for d in &mut disks {
        let total = disk_bytes.get(&d.disk).copied().unwrap_or(0);
        d.share = if total == 0 {
            0.0
        } else {
            d.bytes as f64 / total as f64
        };
    }
    disks.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then_with(|| a.disk.cmp(&b.disk))
            .then(a.tgid.cmp(&b.tgid))
            .then_with(|| a.comm.cmp(&b.comm))
    });
    disks.truncate(TOP_DISKS);

    let total_run_time_ns: u64 = progs.values().map(|p| p.run_time_ns).sum();
    let mut programs: Vec<ProgramSummary> = progs.into_values().collect();
    for p in &mut programs {
        p.ns_per_run = if p.run_cnt == 0 {
            0.0
        } else {
            p.run_time_ns as f64 / p.run_cnt as f64
        };
    }
    programs.sort_by(|a, b| {
        b.run_time_ns
            .cmp(&a.run_time_ns)
            .then_with(|| a.name.cmp(&b.name))
    });
    programs.truncate(TOP_PROGRAMS);
    let n = windows.len() as u64;
    let overhead = OverheadSummary {
        total_run_time_ns,
        mean_ns_per_window: total_run_time_ns.checked_div(n).unwrap_or(0),
        cpu_fraction: if windows_ns == 0 {
            0.0
        } else {
            total_run_time_ns as f64 / windows_ns as f64
        },
        programs,
    };

    let span_ns = match (
        windows.iter().map(|w| w.window.start_ns).min(),
        windows.iter().map(|w| w.window.end_ns).max(),
    ) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => 0,
    };

    Summary {
        target: header.target.to_string(),
        host: header.host.clone(),
        kernel: header.kernel.clone(),
        holdup_version: header.holdup_version.clone(),
        format_version: header.format_version,
        schema_version: header.schema_version,
        argv: header.argv.clone(),
        started_unix_ms: header.started_unix_ms,
        interval_ms: header.interval_ms,
        windows: n,
        first_window: windows.first().map(|w| w.window.index),
        last_window: windows.last().map(|w| w.window.index),
        span_ns,
        windows_ns,
        thread_count,
        threads,
        resource_count,
        resources,
        culprit_count,
        culprits,
        disk_count,
        disks,
        loss,
        overhead,
        status: None,
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "holdup recording: {} windows", self.windows)?;
        if self.interval_ms > 0 {
            write!(f, " of {} ms", self.interval_ms)?;
        }
        if let (Some(a), Some(b)) = (self.first_window, self.last_window) {
            write!(f, " (windows {a}-{b}) spanning {:.1} s", secs(self.span_ns))?;
        }
        if self.started_unix_ms > 0 {
            write!(
                f,
                ", started {}",
                human::utc_ms(i64::try_from(self.started_unix_ms).unwrap_or(i64::MAX))
            )?;
        }
        writeln!(f)?;
        if let Some(st) = &self.status {
            writeln!(f, "status:  {st}")?;
        }
        writeln!(f, "target:  {}", self.target)?;
        if !self.argv.is_empty() {
            writeln!(f, "command: {}", self.argv.join(" "))?;
        }
        writeln!(
            f,
            "host:    {}, kernel {}, holdup {} (format {}, schema {})",
            self.host, self.kernel, self.holdup_version, self.format_version, self.schema_version
        )?;

        writeln!(f)?;
        if self.threads.is_empty() {
            writeln!(f, "threads: none seen")?;
        } else {
            writeln!(
                f,
                "threads: {} seen; top {} by time not sleeping (seconds, % of observed time)",
                self.thread_count,
                self.threads.len()
            )?;
            let mut header = vec!["TID".to_string(), "COMM".to_string()];
            header.extend(ThreadState::ALL.iter().map(|s| s.label().to_uppercase()));
            let header: Vec<&str> = header.iter().map(String::as_str).collect();
            let right: Vec<usize> = (0..header.len()).filter(|c| *c != 1).collect();
            let mut t = human::table(&header, &right);
            for th in &self.threads {
                let mut row = vec![th.tid.to_string(), human::truncate(&th.comm, 16)];
                row.extend(
                    ThreadState::ALL.iter().map(|s| {
                        format!("{:.3} {:>4.0}%", secs(th.states.get(*s)), th.percent(*s))
                    }),
                );
                if th.exited {
                    row.push("(exited)".into());
                }
                t.add_row(row);
            }
            f.write_str(&human::indented(&t, 2))?;
        }

        writeln!(f)?;
        if self.resources.is_empty() {
            writeln!(f, "resources: no blocking waits seen")?;
        } else {
            writeln!(
                f,
                "top resources by wait time ({} of {}):",
                self.resources.len(),
                self.resource_count
            )?;
            let mut t = human::table(&["KIND", "WAIT s", "WAITS", "THR", "RESOURCE"], &[1, 2, 3]);
            for r in &self.resources {
                t.add_row(vec![
                    r.kind.label().to_string(),
                    format!("{:.3}", secs(r.wait_ns)),
                    r.waits.to_string(),
                    r.threads.to_string(),
                    r.resource.to_string(),
                ]);
            }
            f.write_str(&human::indented(&t, 2))?;
        }

        writeln!(f)?;
        if self.culprits.is_empty() {
            writeln!(f, "who ran instead: nobody delayed the target threads")?;
        } else {
            writeln!(
                f,
                "who ran instead ({} of {} tasks; CPU time they held while target threads waited):",
                self.culprits.len(),
                self.culprit_count
            )?;
            let mut t = human::table(&["PID", "COMM", "TIME s", "VICTIMS", "CGROUP"], &[0, 2, 3]);
            for c in &self.culprits {
                t.add_row(vec![
                    c.tgid.to_string(),
                    human::truncate(&c.comm, 16),
                    format!("{:.3}", secs(c.ns)),
                    c.victims.to_string(),
                    c.cgroup.clone(),
                ]);
            }
            f.write_str(&human::indented(&t, 2))?;
        }

        writeln!(f)?;
        if self.disks.is_empty() {
            writeln!(f, "disks: no block IO seen")?;
        } else {
            writeln!(
                f,
                "disks ({} of {} submitters; share of the disk's bytes):",
                self.disks.len(),
                self.disk_count
            )?;
            let mut t = human::table(
                &[
                    "DISK", "PID", "COMM", "BYTES", "SHARE", "REQS", "MEAN LAT", "",
                ],
                &[1, 3, 4, 5, 6],
            );
            for d in &self.disks {
                let lat = if d.requests == 0 {
                    0.0
                } else {
                    d.latency_ns as f64 / d.requests as f64
                };
                t.add_row(vec![
                    human::truncate(&d.disk, 8),
                    d.tgid.to_string(),
                    human::truncate(&d.comm, 16),
                    human::bytes(d.bytes),
                    format!("{:.1}%", d.share * 100.0),
                    d.requests.to_string(),
                    human::ns(lat),
                    if d.is_target { "(target)" } else { "" }.to_string(),
                ]);
            }
            f.write_str(&human::indented(&t, 2))?;
        }

        writeln!(f)?;
        let total = self.loss.total();
        if total == 0 {
            writeln!(f, "loss: none")?;
        } else {
            let parts: Vec<String> = self
                .loss
                .counters()
                .iter()
                .filter(|(_, v)| *v > 0)
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            writeln!(
                f,
                "loss: {total} ({}); some totals above are undercounted",
                parts.join(", ")
            )?;
        }
        let o = &self.overhead;
        write!(
            f,
            "BPF overhead: {} per window on average",
            human::ns(o.mean_ns_per_window as f64)
        )?;
        if o.cpu_fraction > 0.0 {
            write!(f, " ({:.3}% of one CPU)", o.cpu_fraction * 100.0)?;
        }
        writeln!(f)?;
        if !o.programs.is_empty() {
            let mut t = human::table(&["PROGRAM", "RUNS", "PER RUN", "TOTAL"], &[1, 2, 3]);
            for p in &o.programs {
                t.add_row(vec![
                    human::truncate(&p.name, 28),
                    p.run_cnt.to_string(),
                    human::ns(p.ns_per_run),
                    human::ns(p.run_time_ns as f64),
                ]);
            }
            f.write_str(&human::indented(&t, 2))?;
        }
        Ok(())
    }
}
