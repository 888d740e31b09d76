//! The agent's counters, fed one window at a time, as the metric families
//! `/metrics` serves ([`crate::exposition`] writes them).
//!
//! Classic histograms (`_bucket{le}`) carry holdup's log2 buckets: the
//! kernel's bucket `i` holds `[2^i, 2^(i+1))` µs, so the bounds are
//! 2 µs, 4 µs, ... 2^26 µs (67 s), then `+Inf`. The protobuf exposition
//! adds native histograms of the same buckets ([`crate::proto`]).

use crate::exposition::{self, Family, Format};
use holdup_diagnose::states::{breakdown, name_pattern, SourceFacts};
use holdup_diagnose::Category;
use holdup_model::{Histogram, Snapshot, ThreadState, NR_BUCKETS};
use std::collections::{BTreeMap, BTreeSet};

/// Bucket bounds served: 2^1 .. 2^26 µs, then +Inf.
const SERVED_BUCKETS: usize = 26;

/// Label value of everything beyond a cardinality bound.
pub const OTHER: &str = "other";

/// A latency histogram's running totals.
#[derive(Clone, Debug, Default)]
pub struct Hist {
    buckets: [u64; NR_BUCKETS],
    sum_ns: u64,
}

impl Hist {
    /// Adds a window's histogram and the sum of its values.
    pub fn add(&mut self, h: &Histogram, sum_ns: u64) {
        for (a, b) in self.buckets.iter_mut().zip(&h.buckets) {
            *a += b;
        }
        self.sum_ns += sum_ns;
    }

    /// The kernel's buckets: `[i]` counts values in `[2^i, 2^(i+1))` µs (0: below 2 µs).
    pub fn buckets(&self) -> &[u64; NR_BUCKETS] {
        &self.buckets
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Sum of the values, seconds.
    pub fn sum_seconds(&self) -> f64 {
        secs(self.sum_ns)
    }

    /// The classic buckets served (without `+Inf`): upper bound in seconds
    /// (2 µs, 4 µs, ... 2^26 µs) and the cumulative count.
    pub fn classic_buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.buckets[..SERVED_BUCKETS]
            .iter()
            .enumerate()
            .scan(0u64, |cum, (i, n)| {
                *cum += n;
                Some(((1u64 << (i + 1)) as f64 / 1e6, *cum))
            })
    }
}

/// Names that get their own label value, first come first served up to a
/// bound; a name admitted later counts from its admission on (what it had
/// before stays in `other`), so every exposed counter only rises.
#[derive(Clone, Debug, Default)]
struct Bounded {
    admitted: BTreeSet<String>,
}

impl Bounded {
    fn label<'a>(&mut self, name: &'a str, bound: usize, eligible: bool) -> &'a str {
        if self.admitted.contains(name) {
            return name;
        }
        if eligible && self.admitted.len() < bound {
            self.admitted.insert(name.to_string());
            return name;
        }
        OTHER
    }
}

/// The culprit names of one service that have their own label: at most K
/// at any time. Each name's score is its culprit time per window, averaged
/// over about ten windows. A name that is not labelled gets a label when,
/// in one window, it held more than twice the lowest labelled score, and
/// that name loses its label (its series stops rising; what it does next
/// counts under `other`). Every exposed counter only rises, and a new hog
/// is named within a window or two even when quieter names took the slots
/// first.
#[derive(Clone, Debug, Default)]
struct TopK {
    scores: BTreeMap<String, f64>,
}

/// Weight of the newest window in a culprit's score.
const SCORE_WEIGHT: f64 = 0.1;

impl TopK {
    fn has(&self, name: &str) -> bool {
        self.scores.contains_key(name)
    }

    fn window(&mut self, names: &BTreeMap<String, u64>, k: usize) {
        for (name, score) in self.scores.iter_mut() {
            let ns = names.get(name).copied().unwrap_or(0) as f64;
            *score = *score * (1.0 - SCORE_WEIGHT) + ns * SCORE_WEIGHT;
        }
        let mut ranked: Vec<(&String, u64)> = names.iter().map(|(n, ns)| (n, *ns)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for (name, ns) in ranked.into_iter().take(k) {
            if self.has(name) || ns == 0 {
                continue;
            }
            if self.scores.len() < k {
                self.scores.insert(name.clone(), ns as f64);
                continue;
            }
            let (lowest, low) = self
                .scores
                .iter()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map(|(n, s)| (n.clone(), *s))
                .expect("k > 0 names");
            if ns as f64 > 2.0 * low {
                self.scores.remove(&lowest);
                self.scores.insert(name.clone(), ns as f64);
            }
        }
    }
}

/// Everything `/metrics` serves, accumulated since the agent started.
#[derive(Default)]
pub struct Registry {
    top_culprits: usize,
    max_roles: usize,
    state_ns: BTreeMap<(String, String, ThreadState), u64>,
    category_ns: BTreeMap<(String, String, Category), u64>,
    runq_waits: BTreeMap<(String, String), u64>,
    runq_hist: BTreeMap<String, Hist>,
    wait_hist: BTreeMap<(String, &'static str), Hist>,
    disk_hist: BTreeMap<(String, String), Hist>,
    disk_bytes: BTreeMap<(String, String, &'static str), u64>,
    culprit_ns: BTreeMap<(String, String), u64>,
    threads: BTreeMap<String, u64>,
    roles: BTreeMap<String, Bounded>,
    culprits: BTreeMap<String, TopK>,
    bpf_ns: BTreeMap<String, (u64, u64)>,
    loss: BTreeMap<&'static str, u64>,
    windows: BTreeMap<String, u64>,
}

/// Per-window inputs besides the snapshot.
pub struct WindowInput<'a> {
    /// The collector's label.
    pub collector: &'a str,
    /// The snapshot.
    pub snap: &'a Snapshot,
    /// Service of each thread of `snap.threads` (None: unclaimed).
    pub services: &'a [Option<String>],
    /// Facts learned from the collector's recent windows (for the categories).
    pub facts: &'a SourceFacts,
}

impl Registry {
    /// An empty registry with the given label bounds.
    pub fn new(top_culprits: usize, max_roles: usize) -> Registry {
        Registry {
            top_culprits,
            max_roles,
            ..Default::default()
        }
    }

    /// Adds one window.
    pub fn add(&mut self, w: &WindowInput) {
        let snap = w.snap;
        *self.windows.entry(w.collector.to_string()).or_default() += 1;
        let mut service_of_tid = BTreeMap::new();
        let mut threads: BTreeMap<String, u64> = BTreeMap::new();
        for (t, svc) in snap.threads.iter().zip(w.services) {
            let Some(svc) = svc else { continue };
            service_of_tid.insert(t.tid, svc.clone());
            *threads.entry(svc.clone()).or_default() += 1;
            let pattern = name_pattern(&t.comm);
            let role = self
                .roles
                .entry(svc.clone())
                .or_default()
                .label(&pattern, self.max_roles, true)
                .to_string();
            for s in ThreadState::ALL {
                let ns = t.states.get(s);
                if ns > 0 {
                    *self
                        .state_ns
                        .entry((svc.clone(), role.clone(), s))
                        .or_default() += ns;
                }
            }
            let cats = breakdown(snap, t, w.facts);
            for c in Category::ALL {
                let ns = cats[c.index()];
                if ns > 0 {
                    *self
                        .category_ns
                        .entry((svc.clone(), role.clone(), c))
                        .or_default() += ns;
                }
            }
            *self.runq_waits.entry((svc.clone(), role)).or_default() += t.runq_count;
            self.runq_hist
                .entry(svc.clone())
                .or_default()
                .add(&t.runq_hist, t.states.runq_ns);
        }
        // Services seen in this collector's last window (a gauge).
        for (svc, n) in threads {
            self.threads.insert(svc, n);
        }
        for r in &snap.resources {
            let Some(svc) = service_of_tid.get(&r.tid) else {
                continue;
            };
            self.wait_hist
                .entry((svc.clone(), kind_label(r.kind)))
                .or_default()
                .add(&r.hist, r.wait_ns);
        }
        for d in &snap.disks {
            let svc = match service_of_tid.get(&d.tid) {
                Some(s) if d.is_target => s.clone(),
                _ => OTHER.to_string(),
            };
            self.disk_hist
                .entry((d.disk.clone(), svc.clone()))
                .or_default()
                .add(&d.latency_hist, d.latency_ns);
            let read = d.bytes.saturating_sub(d.write_bytes);
            *self
                .disk_bytes
                .entry((d.disk.clone(), svc.clone(), "read"))
                .or_default() += read;
            *self
                .disk_bytes
                .entry((d.disk.clone(), svc, "write"))
                .or_default() += d.write_bytes;
        }
        self.add_culprits(snap, &service_of_tid);
        for p in &snap.overhead {
            let e = self.bpf_ns.entry(p.name.clone()).or_default();
            e.0 += p.run_time_ns;
            e.1 += p.run_cnt;
        }
        for (kind, n) in snap.loss.counters() {
            *self.loss.entry(kind).or_default() += n;
        }
    }

    /// Culprits per service: the K names with their own label are those
    /// of [`TopK`]; the rest of each window's culprit time goes to `other`.
    fn add_culprits(&mut self, snap: &Snapshot, service_of_tid: &BTreeMap<u32, String>) {
        let mut per_svc: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
        for c in &snap.culprits {
            let Some(svc) = service_of_tid.get(&c.victim_tid) else {
                continue;
            };
            *per_svc
                .entry(svc)
                .or_default()
                .entry(name_pattern(&c.comm))
                .or_default() += c.ns;
        }
        for (svc, names) in per_svc {
            let top = self.culprits.entry(svc.to_string()).or_default();
            top.window(&names, self.top_culprits);
            for (name, ns) in names {
                let label = if top.has(&name) {
                    name
                } else {
                    OTHER.to_string()
                };
                *self.culprit_ns.entry((svc.to_string(), label)).or_default() += ns;
            }
        }
    }

    /// Everything served, as families (written by [`exposition::render`]).
    pub fn families<'a>(&'a self, own: &OwnCost) -> Vec<Family<'a>> {
        use exposition::Kind::{self, Counter, Gauge};
        use exposition::Value::{Histogram as H, Number as N};
        let mut out = Vec::new();
        let mut f = Family::new(
            "holdup_thread_state_seconds",
            Counter,
            "Time the service's threads spent in each scheduling state.",
        );
        for ((svc, role, st), ns) in &self.state_ns {
            f.push(
                &[
                    ("service", svc),
                    ("role", role),
                    ("state", state_label(*st)),
                ],
                N(secs(*ns)),
            );
        }
        out.push(f);
        let mut f = Family::new(
            "holdup_holdup_seconds",
            Counter,
            "Time the service's threads spent per hold-up category (what they waited on, as holdup diagnose splits it).",
        );
        for ((svc, role, c), ns) in &self.category_ns {
            f.push(
                &[
                    ("service", svc),
                    ("role", role),
                    ("category", category_label(*c)),
                ],
                N(secs(*ns)),
            );
        }
        out.push(f);
        let mut f = Family::new(
            "holdup_runqueue_waits",
            Counter,
            "Run-queue waits that ended.",
        );
        for ((svc, role), n) in &self.runq_waits {
            f.push(&[("service", svc), ("role", role)], N(*n as f64));
        }
        out.push(f);
        let mut f = Family::new(
            "holdup_runqueue_latency_seconds",
            Kind::Histogram,
            "Run-queue wait latency of the service's threads (_sum is the run-queue time).",
        );
        for (svc, h) in &self.runq_hist {
            f.push(&[("service", svc)], H(h));
        }
        out.push(f);
        let mut f = Family::new(
            "holdup_wait_latency_seconds",
            Kind::Histogram,
            "Blocking wait latency per kind of wait (futex, file-read, recv, poll, ...).",
        );
        for ((svc, kind), h) in &self.wait_hist {
            f.push(&[("service", svc), ("kind", kind)], H(h));
        }
        out.push(f);
        let mut f = Family::new(
            "holdup_disk_latency_seconds",
            Kind::Histogram,
            "Block I/O latency (queue + device) per disk and submitting service (other: not a watched thread).",
        );
        for ((disk, svc), h) in &self.disk_hist {
            f.push(&[("disk", disk), ("service", svc)], H(h));
        }
        out.push(f);
        let mut f = Family::new(
            "holdup_disk_bytes",
            Counter,
            "Block I/O bytes per disk, submitting service and direction.",
        );
        for ((disk, svc, op), b) in &self.disk_bytes {
            f.push(
                &[("disk", disk), ("service", svc), ("op", op)],
                N(*b as f64),
            );
        }
        out.push(f);
        let mut f = Family::new(
            "holdup_culprit_seconds",
            Counter,
            "CPU time other tasks held while the service's threads waited in the run queue, by task name (top K per service, the rest other).",
        );
        for ((svc, culprit), ns) in &self.culprit_ns {
            f.push(&[("service", svc), ("culprit", culprit)], N(secs(*ns)));
        }
        out.push(f);
        let mut f = Family::new(
            "holdup_service_threads",
            Gauge,
            "Threads of the service seen in the last window.",
        );
        for (svc, n) in &self.threads {
            f.push(&[("service", svc)], N(*n as f64));
        }
        out.push(f);
        let mut f = Family::new(
            "holdup_bpf_cpu_seconds",
            Counter,
            "CPU time holdup's BPF programs ran (kernel BPF stats).",
        );
        for (prog, (ns, _)) in &self.bpf_ns {
            f.push(&[("program", prog)], N(secs(*ns)));
        }
        out.push(f);
        let mut f = Family::new("holdup_bpf_runs", Counter, "Runs of holdup's BPF programs.");
        for (prog, (_, runs)) in &self.bpf_ns {
            f.push(&[("program", prog)], N(*runs as f64));
        }
        out.push(f);
        let mut f = Family::new(
            "holdup_agent_cpu_seconds",
            Counter,
            "CPU time of the agent process itself (user space and its system calls).",
        );
        f.push(&[("mode", "user")], N(own.user_s));
        f.push(&[("mode", "system")], N(own.system_s));
        out.push(f);
        let mut f = Family::new(
            "holdup_agent_resident_memory_bytes",
            Gauge,
            "Resident memory of the agent process.",
        );
        f.push(&[], N(own.rss_bytes as f64));
        out.push(f);
        let mut f = Family::new(
            "holdup_lost",
            Counter,
            "What holdup could not account (map full, untracked threads, ring-buffer drops, ...).",
        );
        for (kind, n) in &self.loss {
            f.push(&[("kind", kind)], N(*n as f64));
        }
        out.push(f);
        let mut f = Family::new("holdup_windows", Counter, "Windows each collector closed.");
        for (c, n) in &self.windows {
            f.push(&[("collector", c)], N(*n as f64));
        }
        out.push(f);
        out
    }

    /// The exposition in `format`.
    pub fn render(&self, own: &OwnCost, format: Format) -> Vec<u8> {
        exposition::render(&self.families(own), format)
    }
}

/// The agent process's own cost, read at scrape time.
#[derive(Clone, Copy, Debug, Default)]
pub struct OwnCost {
    /// User CPU, seconds.
    pub user_s: f64,
    /// System CPU, seconds.
    pub system_s: f64,
    /// Resident set, bytes.
    pub rss_bytes: u64,
}

impl OwnCost {
    /// Reads getrusage and /proc/self/statm.
    pub fn now() -> OwnCost {
        // SAFETY: getrusage fills the struct it is given.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
        let rss_pages = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0);
        OwnCost {
            user_s: tv(ru.ru_utime),
            system_s: tv(ru.ru_stime),
            rss_bytes: rss_pages * page,
        }
    }
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// The `state` label: snake_case names, as in the snapshot schema.
pub fn state_label(s: ThreadState) -> &'static str {
    match s {
        ThreadState::OnCpu => "on_cpu",
        ThreadState::RunQueue => "run_queue",
        ThreadState::IoWait => "io_wait",
        ThreadState::OtherD => "other_d",
        ThreadState::Sleep => "sleep",
    }
}

/// The `category` label: the category's snake_case name.
pub fn category_label(c: Category) -> &'static str {
    match c {
        Category::OnCpu => "on_cpu",
        Category::RunQueue => "run_queue",
        Category::IoWait => "io_wait",
        Category::OtherD => "other_d",
        Category::Vfs => "vfs",
        Category::FutexLock => "futex_lock",
        Category::Handoff => "handoff",
        Category::WaitForWork => "wait_for_work",
        Category::RecvClient => "recv_client",
        Category::RecvPeer => "recv_peer",
        Category::Send => "send",
        Category::Accept => "accept",
        Category::Connect => "connect",
        Category::PollClient => "poll_client",
        Category::PollPeer => "poll_peer",
        Category::OtherSleep => "other_sleep",
    }
}

fn kind_label(k: holdup_model::WaitKind) -> &'static str {
    use holdup_model::WaitKind::*;
    match k {
        Futex => "futex",
        FileRead => "file_read",
        FileWrite => "file_write",
        SockRecv => "sock_recv",
        SockSend => "sock_send",
        Accept => "accept",
        Connect => "connect",
        Mux => "mux",
        Other => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_labels_never_take_back_a_name() {
        let mut b = Bounded::default();
        assert_eq!(b.label("a", 2, true), "a");
        assert_eq!(
            b.label("b", 2, false),
            OTHER,
            "not eligible: not in the window's top"
        );
        assert_eq!(b.label("c", 2, true), "c");
        assert_eq!(b.label("d", 2, true), OTHER, "full");
        assert_eq!(b.label("a", 2, false), "a", "admitted names stay");
    }

    #[test]
    fn a_new_big_culprit_takes_the_slot_of_the_quietest() {
        let mut top = TopK::default();
        let w = |v: &[(&str, u64)]| -> BTreeMap<String, u64> {
            v.iter().map(|(n, ns)| (n.to_string(), *ns)).collect()
        };
        top.window(&w(&[("a", 100), ("b", 10)]), 2);
        assert!(top.has("a") && top.has("b"));
        top.window(&w(&[("c", 15)]), 2);
        assert!(!top.has("c"), "not twice the lowest score yet");
        top.window(&w(&[("hog", 1000)]), 2);
        assert!(top.has("hog") && top.has("a") && !top.has("b"), "{top:?}");
    }

    #[test]
    fn an_empty_registry_renders_every_format() {
        let r = Registry::new(5, 20);
        let own = OwnCost::default();
        let om = String::from_utf8(r.render(&own, Format::OpenMetrics)).unwrap();
        assert!(om.contains("holdup_agent_cpu_seconds_total{mode=\"user\"} 0\n"));
        let text = String::from_utf8(r.render(&own, Format::Text)).unwrap();
        assert!(text.contains("# TYPE holdup_lost_total counter\n"));
        assert!(!r.render(&own, Format::Protobuf).is_empty());
    }
}
