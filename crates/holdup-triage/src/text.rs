//! The report as text: a first look that fits a screen.

use crate::report::{NamedBytes, NamedNs, Report};
use holdup_format as fmt;
use std::fmt::Write;

/// Most CPUs listed (the ones with the most run-queue wait).
const CPU_ROWS: usize = 8;
/// Most processes listed.
const PROCESS_ROWS: usize = 6;

fn names_ns(v: &[NamedNs]) -> String {
    v.iter()
        .map(|n| format!("{} ({}) {}", n.name, n.pid, fmt::ns(n.ns as f64)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn names_bytes(v: &[NamedBytes]) -> String {
    v.iter()
        .map(|n| {
            let who = if n.pid == 0 {
                format!("{} (kernel)", n.name)
            } else {
                format!("{} ({})", n.name, n.pid)
            };
            format!("{who} {}", fmt::bytes(n.bytes))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn opt_us(v: Option<u64>) -> String {
    v.map_or("-".to_string(), |u| fmt::us(u as f64))
}

/// Renders the report.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "holdup triage of {} ({}, {} CPUs) at {}: {:.1} s, {} windows",
        r.host,
        r.kernel,
        r.cpus,
        fmt::utc_ms(r.started_unix_ms as i64),
        r.duration_s,
        r.windows
    );
    if let Some(why) = &r.stopped_early {
        let _ = writeln!(o, "STOPPED EARLY: {why}");
    }

    let _ = writeln!(
        o,
        "\nHeld up most (run queue + D-state; diagnosed one process at a time):"
    );
    if r.processes.is_empty() {
        let _ = writeln!(o, "  no process waited for a CPU or a disk");
    }
    for p in r.processes.iter().take(PROCESS_ROWS) {
        let _ = writeln!(
            o,
            "  {} ({}) {}: runq {}, iowait {}, D {}, futex {}, cpu {}  [{} thr, {}]",
            p.comm,
            p.pid,
            if p.findings.iter().any(|f| f.significant) {
                "HELD UP"
            } else {
                ""
            },
            fmt::ns(p.runq_ns as f64),
            fmt::ns(p.iowait_ns as f64),
            fmt::ns(p.other_d_ns as f64),
            fmt::ns(p.futex_ns as f64),
            fmt::ns(p.on_cpu_ns as f64),
            p.threads,
            if p.cgroup.is_empty() { "/" } else { &p.cgroup },
        );
        for f in p.findings.iter().filter(|f| f.significant).take(2) {
            let culprits = if f.culprits.is_empty() {
                String::new()
            } else {
                format!(" — by {}", f.culprits.join(", "))
            };
            let _ = writeln!(o, "    {}{}", f.title, culprits);
        }
        if !p.ran_instead.is_empty() && p.runq_ns > 0 {
            let _ = writeln!(o, "    ran instead: {}", names_ns(&p.ran_instead));
        }
        if !p.other_submitters.is_empty() && p.iowait_ns + p.other_d_ns > 0 {
            let _ = writeln!(
                o,
                "    other disk submitters: {}",
                names_bytes(&p.other_submitters)
            );
        }
    }
    if !r.cgroups.is_empty() {
        let _ = writeln!(o, "\nCgroups held up most:");
        let mut t = fmt::table(&["CGROUP", "PROCS", "RUNQ", "D-STATE"], &[1, 2, 3]);
        for c in &r.cgroups {
            t.add_row(vec![
                fmt::truncate(&c.path, 60),
                c.processes.to_string(),
                fmt::ns(c.runq_ns as f64),
                fmt::ns(c.d_ns as f64),
            ]);
        }
        o.push_str(&fmt::indented(&t, 2));
    }

    let _ = writeln!(
        o,
        "\nCPUs: run-queue wait p50 {} p99 {} ({} waits); ran while others waited: {}",
        opt_us(r.cpu.runq_p50_us),
        opt_us(r.cpu.runq_p99_us),
        r.cpu.runq_waits,
        if r.cpu.ran_instead.is_empty() {
            "-".to_string()
        } else {
            names_ns(&r.cpu.ran_instead)
        }
    );
    let mut cpus = r.cpu.per_cpu.clone();
    cpus.sort_by(|a, b| {
        (b.runq_ns_per_s.unwrap_or(0.0), b.busy)
            .partial_cmp(&(a.runq_ns_per_s.unwrap_or(0.0), a.busy))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    if !cpus.is_empty() {
        let mut t = fmt::table(
            &["CPU", "BUSY", "IRQ", "STEAL", "RUNQ", "MEAN WAIT"],
            &[1, 2, 3, 4, 5],
        );
        for c in cpus.iter().take(CPU_ROWS) {
            t.add_row(vec![
                c.cpu.to_string(),
                fmt::pct(c.busy),
                fmt::pct(c.irq),
                fmt::pct(c.steal),
                c.runq_ns_per_s.map_or("-".into(), fmt::ms_per_s),
                c.mean_runq_ns.map_or("-".into(), fmt::ns),
            ]);
        }
        o.push_str(&fmt::indented(&t, 2));
    }
    if r.throttled.is_empty() {
        let _ = writeln!(o, "Throttling (cpu.stat): no cgroup was throttled");
    } else {
        let _ = writeln!(o, "Throttling (cpu.stat):");
        for t in &r.throttled {
            let _ = writeln!(
                o,
                "  {}: throttled {} of {} periods, {}",
                t.path,
                t.periods,
                t.of_periods,
                fmt::us(t.throttled_us as f64)
            );
        }
    }
    if !r.pressure.is_empty() {
        let p: Vec<String> = r
            .pressure
            .iter()
            .map(|p| {
                format!(
                    "{} some {}{} (avg10 {:.1}%)",
                    p.resource,
                    fmt::pct(p.some),
                    p.full
                        .map(|f| format!(" full {}", fmt::pct(f)))
                        .unwrap_or_default(),
                    p.some_avg10
                )
            })
            .collect();
        let _ = writeln!(o, "Pressure during the run: {}", p.join("; "));
    }

    if !r.disks.is_empty() {
        let _ = writeln!(o, "\nDisks:");
        for d in &r.disks {
            let _ = writeln!(
                o,
                "  {}: {} requests, {}, mean {}, p50 {} p99 {}",
                d.disk,
                d.requests,
                fmt::bytes(d.bytes),
                fmt::ns(d.mean_ns),
                opt_us(d.p50_us),
                opt_us(d.p99_us)
            );
            let hist: Vec<String> = d
                .hist
                .buckets
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| format!("<{}:{c}", fmt::us((1u64 << (i + 1)) as f64)))
                .collect();
            if !hist.is_empty() {
                let _ = writeln!(o, "    latency {}", hist.join(" "));
            }
            let _ = writeln!(o, "    top submitters: {}", names_bytes(&d.submitters));
        }
    }
    if !r.locks.is_empty() {
        let _ = writeln!(o, "\nHottest futexes (waited on by 2+ threads):");
        for l in r.locks.iter().take(3) {
            let _ = writeln!(
                o,
                "  {}: {} in {} waits by {} threads of {}; woken by {}",
                l.resource,
                fmt::ns(l.wait_ns as f64),
                l.waits,
                l.waiters,
                l.processes.join(", "),
                if l.wakers.is_empty() {
                    "-".to_string()
                } else {
                    l.wakers.join(", ")
                }
            );
        }
    }
    if !r.peers.is_empty() {
        let _ = writeln!(o, "\nSlowest peers (outgoing connections):");
        for p in r.peers.iter().take(3) {
            let _ = writeln!(
                o,
                "  {}: {} in {} waits, p99 {}, by {}",
                p.peer,
                fmt::ns(p.wait_ns as f64),
                p.waits,
                opt_us(p.p99_us),
                p.waiters.join(", ")
            );
        }
    }
    let progs: Vec<String> = r
        .cost
        .programs
        .iter()
        .take(3)
        .map(|(n, ns, _)| format!("{n} {}", fmt::ns(*ns as f64)))
        .collect();
    let _ = writeln!(
        o,
        "\nholdup's cost: BPF {} = {}% of one CPU (budget {}); recording {}; {}",
        fmt::ns(r.cost.bpf_ns as f64),
        fmt::rate(r.cost.cpu_fraction * 100.0),
        fmt::pct(r.cost.budget),
        fmt::bytes(r.cost.recording_bytes),
        if progs.is_empty() {
            "no program ran".to_string()
        } else {
            progs.join(", ")
        }
    );
    for n in &r.notes {
        let _ = writeln!(o, "note: {n}");
    }
    o
}
