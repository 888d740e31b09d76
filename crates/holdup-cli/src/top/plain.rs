//! The plain view of `holdup top`: a text frame per window (works over ssh
//! and into pipes, no curses), or one JSON object per window with `--json`.

use crate::sink::Sink;
use anyhow::Result;
use holdup_model::{Snapshot, ThreadState, Waker};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;

const BAR: usize = 30;

/// The plain view: a frame (or a JSON line) per window on stdout.
pub struct View {
    /// One JSON object per window instead of text.
    pub json: bool,
    /// Clear the screen before each frame.
    pub tty: bool,
    /// What is watched, for the first line.
    pub target: String,
    /// Threads to show.
    pub rows: usize,
}

impl Sink for View {
    fn window(&mut self, snap: &Snapshot) -> Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer(&mut out, snap)?;
            writeln!(out)?;
        } else {
            if self.tty {
                write!(out, "\x1b[H\x1b[2J")?;
            }
            write!(out, "{}", render(snap, &self.target, self.rows))?;
        }
        out.flush()?;
        Ok(())
    }
}

pub(super) fn pct(ns: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        ns as f64 * 100.0 / of as f64
    }
}

fn ms(ns: u64) -> String {
    if ns >= 10_000_000_000 {
        format!("{:.1}s", ns as f64 / 1e9)
    } else {
        format!("{:.1}ms", ns as f64 / 1e6)
    }
}

/// One text frame for a window.
pub fn render(s: &Snapshot, target: &str, rows: usize) -> String {
    let win = s.window.duration_ns().max(1);
    let mut o = String::new();
    let overhead = s.overhead_ns();
    let _ = writeln!(
        o,
        "holdup  {target}  window #{} ({:.2}s)  threads {}  holdup cost {} ({:.2}% of one CPU)  loss: {}",
        s.window.index,
        win as f64 / 1e9,
        s.threads.len(),
        ms(overhead),
        pct(overhead, win),
        s.loss
    );
    let _ = writeln!(
        o,
        "bar: # on-CPU  r run-queue  i iowait  D other-D  . sleep"
    );
    let _ = writeln!(
        o,
        "{:<16} {:>8} {:>6} {:>6} {:>6} {:>6} {:>6}  {:<BAR$}  MOST BLOCKED ON",
        "THREAD", "TID", "CPU%", "RUNQ%", "IOW%", "D%", "SLP%", ""
    );
    let mut threads: Vec<_> = s.threads.iter().collect();
    threads.sort_by_key(|t| std::cmp::Reverse(t.states.total_ns() - t.states.sleep_ns));
    for t in threads.iter().take(rows) {
        let st = &t.states;
        let mut bar = String::new();
        let mut used = 0;
        for (state, ch) in ThreadState::ALL.iter().zip(['#', 'r', 'i', 'D', '.']) {
            let n = ((st.get(*state) as f64 / win as f64) * BAR as f64).round() as usize;
            let n = n.min(BAR - used);
            bar.extend(std::iter::repeat_n(ch, n));
            used += n;
        }
        bar.extend(std::iter::repeat_n(' ', BAR - used));
        let top_wait = t
            .waits
            .iter()
            .max_by_key(|w| w.ns)
            .filter(|w| w.ns > 0)
            .map(|w| format!("{} {:.0}%", w.kind.label(), pct(w.ns, win)))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "{:<16} {:>8} {:>6.1} {:>6.1} {:>6.1} {:>6.1} {:>6.1}  {bar}  {top_wait}{}",
            holdup_format::truncate(&t.comm, 16),
            t.tid,
            pct(st.on_cpu_ns, win),
            pct(st.runq_ns, win),
            pct(st.iowait_ns, win),
            pct(st.other_d_ns, win),
            pct(st.sleep_ns, win),
            if t.exited { " (exited)" } else { "" }
        );
    }
    if threads.len() > rows {
        let _ = writeln!(o, "... {} more threads", threads.len() - rows);
    }

    // Resources: aggregate over threads.
    let mut res: HashMap<(String, String), (u64, u64, usize)> = HashMap::new();
    for r in &s.resources {
        let e = res
            .entry((r.kind.label().to_string(), r.resource.to_string()))
            .or_default();
        e.0 += r.wait_ns;
        e.1 += r.waits;
        e.2 += 1;
    }
    let mut res: Vec<_> = res.into_iter().filter(|(_, v)| v.0 > 0).collect();
    res.sort_by_key(|(_, v)| std::cmp::Reverse(v.0));
    if !res.is_empty() {
        let _ = writeln!(o, "\nWAITED ON (blocked time, all target threads)");
        for ((kind, name), (ns, waits, nthreads)) in res.iter().take(8) {
            let _ = writeln!(
                o,
                "  {:<10} {:<48} {:>9}  {:>6} waits  {} thread(s)",
                kind,
                holdup_format::truncate(name, 48),
                ms(*ns),
                waits,
                nthreads
            );
        }
    }

    // Who ran instead, per culprit.
    let mut cul: HashMap<(u32, String, String), (u64, std::collections::BTreeSet<u32>)> =
        HashMap::new();
    for c in &s.culprits {
        let e = cul
            .entry((c.tgid, c.comm.clone(), c.cgroup.clone()))
            .or_default();
        e.0 += c.ns;
        e.1.insert(c.victim_tid);
    }
    let mut cul: Vec<_> = cul.into_iter().collect();
    cul.sort_by_key(|(_, v)| std::cmp::Reverse(v.0));
    if !cul.is_empty() {
        let _ = writeln!(
            o,
            "\nWHO RAN INSTEAD (CPU held while target threads waited in the run queue)"
        );
        for ((tgid, comm, cg), (ns, victims)) in cul.iter().take(5) {
            let _ = writeln!(
                o,
                "  {:<16} pid {:<8} {:>9}  from {} thread(s)  cgroup {}",
                comm,
                tgid,
                ms(*ns),
                victims.len(),
                cg
            );
        }
    }

    // Who woke whom.
    let mut wake: HashMap<String, (u64, u64)> = HashMap::new();
    for w in &s.wakeups {
        let who = match &w.waker {
            Waker::Thread { comm, tid, .. } => format!("{comm} ({tid})"),
            Waker::Socket(a) => format!("data on {a}"),
            Waker::Kernel => "kernel (irq/timer)".into(),
        };
        let kind = w.wait_kind.map(|k| k.label()).unwrap_or("sleep");
        let e = wake.entry(format!("{who} -> {kind}")).or_default();
        e.0 += w.count;
        e.1 += w.sleep_ns;
    }
    let mut wake: Vec<_> = wake.into_iter().collect();
    wake.sort_by_key(|(_, v)| std::cmp::Reverse(v.1));
    if !wake.is_empty() {
        let _ = writeln!(o, "\nWHO WOKE THEM (wake-ups, and the sleep they ended)");
        for (k, (n, ns)) in wake.iter().take(5) {
            let _ = writeln!(
                o,
                "  {:<56} {:>7} wake-ups  {:>9}",
                holdup_format::truncate(k, 56),
                n,
                ms(*ns)
            );
        }
    }

    if !s.disks.is_empty() {
        let _ = writeln!(o, "\nDISKS (all submitters)");
        for d in s.disks.iter().take(5) {
            let _ = writeln!(
                o,
                "  {:<8} {:<16} pid {:<8} {:>6} req {:>10.1} MiB  share {:>5.1}%  {}",
                d.disk,
                holdup_format::truncate(&d.comm, 16),
                d.tgid,
                d.requests,
                d.bytes as f64 / 1048576.0,
                d.share * 100.0,
                if d.is_target { "(target)" } else { "" }
            );
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdup_model::{Culprit, Loss, StateTimes, ThreadWindow, WindowInfo};

    fn snapshot() -> Snapshot {
        let thread = |tid, comm: &str, on_cpu_ns, runq_ns, sleep_ns| ThreadWindow {
            tgid: 10,
            tid,
            comm: comm.into(),
            cgroup_id: 0,
            states: StateTimes {
                on_cpu_ns,
                runq_ns,
                iowait_ns: 0,
                other_d_ns: 0,
                sleep_ns,
            },
            runq_count: 0,
            runq_hist: Default::default(),
            runq_unattributed_ns: 0,
            preempted: 0,
            waits: vec![],
            exited: false,
        };
        let culprit = |victim_tid, ns| Culprit {
            victim_tgid: 10,
            victim_tid,
            tgid: 99,
            tid: 99,
            comm: "hog".into(),
            cgroup_id: 1,
            cgroup: "/batch".into(),
            ns,
        };
        Snapshot {
            window: WindowInfo {
                index: 3,
                start_ns: 0,
                end_ns: 1_000_000_000,
                wall_start_ms: 0,
            },
            threads: vec![
                thread(11, "idle", 0, 0, 1_000_000_000),
                thread(12, "busy", 500_000_000, 500_000_000, 0),
            ],
            resources: vec![],
            futex_wakes: vec![],
            wakeups: vec![],
            culprits: vec![culprit(11, 1_000_000), culprit(12, 400_000_000)],
            disks: vec![],
            loss: Loss::default(),
            overhead: vec![],
            runtimes: Vec::new(),
            throttles: Vec::new(),
        }
    }

    #[test]
    fn busiest_thread_first_with_a_proportional_bar() {
        let text = render(&snapshot(), "pid 10", 10);
        let busy = text.lines().position(|l| l.starts_with("busy")).unwrap();
        let idle = text.lines().position(|l| l.starts_with("idle")).unwrap();
        assert!(
            busy < idle,
            "threads not sorted by time not sleeping:\n{text}"
        );
        let line = text.lines().nth(busy).unwrap();
        assert!(
            line.contains(&format!("{}{}", "#".repeat(15), "r".repeat(15))),
            "{line}"
        );
        assert!(line.contains("50.0"), "{line}");
    }

    #[test]
    fn culprits_are_summed_per_process_with_distinct_victims() {
        let text = render(&snapshot(), "pid 10", 10);
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("hog"))
            .unwrap();
        assert!(
            line.contains("401.0ms")
                && line.contains("from 2 thread(s)")
                && line.contains("/batch"),
            "{line}"
        );
        assert!(text.contains("loss: none"));
    }

    #[test]
    fn rows_are_capped() {
        let text = render(&snapshot(), "pid 10", 1);
        assert!(text.contains("... 1 more threads"));
    }
}
