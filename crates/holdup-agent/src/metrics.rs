//! The agent's counters, fed one window at a time, and their exposition in
//! the Prometheus text format (0.0.4) or OpenMetrics 1.0.
//!
//! Histograms are classic (`_bucket{le}`) with holdup's log2 buckets: the
//! kernel's bucket `i` holds `[2^i, 2^(i+1))` µs, so the bounds are
//! 2 µs, 4 µs, ... 2^26 µs (67 s), then `+Inf`. (Prometheus's native
//! histograms need the protobuf exposition and power-of-two bounds in the
//! base unit, which microsecond buckets are not; see docs/AGENT.md.)

use holdup_diagnose::states::{breakdown, name_pattern, SourceFacts};
use holdup_diagnose::Category;
use holdup_model::{Histogram, Snapshot, ThreadState, NR_BUCKETS};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

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
    fn add(&mut self, h: &Histogram, sum_ns: u64) {
        for (a, b) in self.buckets.iter_mut().zip(&h.buckets) {
            *a += b;
        }
        self.sum_ns += sum_ns;
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
        let l = &snap.loss;
        for (kind, n) in [
            ("thread_map_full", l.thread_map_full),
            ("resource_map_full", l.resource_map_full),
            ("wake_map_full", l.wake_map_full),
            ("culprit_map_full", l.culprit_map_full),
            ("disk_map_full", l.disk_map_full),
            ("threads_untracked", l.threads_untracked),
            ("bio_inflight_full", l.bio_inflight_full),
            ("ringbuf_drops", l.ringbuf_drops),
            ("threads_missed", l.threads_missed),
        ] {
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

    /// The exposition; `openmetrics` picks OpenMetrics 1.0 over the Prometheus text format.
    pub fn render(&self, own: &OwnCost, openmetrics: bool) -> String {
        let mut o = Out {
            s: String::new(),
            om: openmetrics,
        };
        o.family(
            "holdup_thread_state_seconds",
            "counter",
            "Time the service's threads spent in each scheduling state.",
        );
        for ((svc, role, st), ns) in &self.state_ns {
            o.sample(
                "holdup_thread_state_seconds_total",
                &[
                    ("service", svc),
                    ("role", role),
                    ("state", state_label(*st)),
                ],
                secs(*ns),
            );
        }
        o.family(
            "holdup_holdup_seconds",
            "counter",
            "Time the service's threads spent per hold-up category (what they waited on, as holdup diagnose splits it).",
        );
        for ((svc, role, c), ns) in &self.category_ns {
            o.sample(
                "holdup_holdup_seconds_total",
                &[
                    ("service", svc),
                    ("role", role),
                    ("category", category_label(*c)),
                ],
                secs(*ns),
            );
        }
        o.family(
            "holdup_runqueue_waits",
            "counter",
            "Run-queue waits that ended.",
        );
        for ((svc, role), n) in &self.runq_waits {
            o.sample(
                "holdup_runqueue_waits_total",
                &[("service", svc), ("role", role)],
                *n as f64,
            );
        }
        o.family(
            "holdup_runqueue_latency_seconds",
            "histogram",
            "Run-queue wait latency of the service's threads (_sum is the run-queue time).",
        );
        for (svc, h) in &self.runq_hist {
            o.histogram("holdup_runqueue_latency_seconds", &[("service", svc)], h);
        }
        o.family(
            "holdup_wait_latency_seconds",
            "histogram",
            "Blocking wait latency per kind of wait (futex, file-read, recv, poll, ...).",
        );
        for ((svc, kind), h) in &self.wait_hist {
            o.histogram(
                "holdup_wait_latency_seconds",
                &[("service", svc), ("kind", kind)],
                h,
            );
        }
        o.family(
            "holdup_disk_latency_seconds",
            "histogram",
            "Block I/O latency (queue + device) per disk and submitting service (other: not a watched thread).",
        );
        for ((disk, svc), h) in &self.disk_hist {
            o.histogram(
                "holdup_disk_latency_seconds",
                &[("disk", disk), ("service", svc)],
                h,
            );
        }
        o.family(
            "holdup_disk_bytes",
            "counter",
            "Block I/O bytes per disk, submitting service and direction.",
        );
        for ((disk, svc, op), b) in &self.disk_bytes {
            o.sample(
                "holdup_disk_bytes_total",
                &[("disk", disk), ("service", svc), ("op", op)],
                *b as f64,
            );
        }
        o.family(
            "holdup_culprit_seconds",
            "counter",
            "CPU time other tasks held while the service's threads waited in the run queue, by task name (top K per service, the rest other).",
        );
        for ((svc, culprit), ns) in &self.culprit_ns {
            o.sample(
                "holdup_culprit_seconds_total",
                &[("service", svc), ("culprit", culprit)],
                secs(*ns),
            );
        }
        o.family(
            "holdup_service_threads",
            "gauge",
            "Threads of the service seen in the last window.",
        );
        for (svc, n) in &self.threads {
            o.sample("holdup_service_threads", &[("service", svc)], *n as f64);
        }
        o.family(
            "holdup_bpf_cpu_seconds",
            "counter",
            "CPU time holdup's BPF programs ran (kernel BPF stats).",
        );
        for (prog, (ns, _)) in &self.bpf_ns {
            o.sample(
                "holdup_bpf_cpu_seconds_total",
                &[("program", prog)],
                secs(*ns),
            );
        }
        o.family(
            "holdup_bpf_runs",
            "counter",
            "Runs of holdup's BPF programs.",
        );
        for (prog, (_, runs)) in &self.bpf_ns {
            o.sample("holdup_bpf_runs_total", &[("program", prog)], *runs as f64);
        }
        o.family(
            "holdup_agent_cpu_seconds",
            "counter",
            "CPU time of the agent process itself (user space and its system calls).",
        );
        o.sample(
            "holdup_agent_cpu_seconds_total",
            &[("mode", "user")],
            own.user_s,
        );
        o.sample(
            "holdup_agent_cpu_seconds_total",
            &[("mode", "system")],
            own.system_s,
        );
        o.family(
            "holdup_agent_resident_memory_bytes",
            "gauge",
            "Resident memory of the agent process.",
        );
        o.sample(
            "holdup_agent_resident_memory_bytes",
            &[],
            own.rss_bytes as f64,
        );
        o.family(
            "holdup_lost",
            "counter",
            "What holdup could not account (map full, untracked threads, ring-buffer drops, ...).",
        );
        for (kind, n) in &self.loss {
            o.sample("holdup_lost_total", &[("kind", kind)], *n as f64);
        }
        o.family(
            "holdup_windows",
            "counter",
            "Windows each collector closed.",
        );
        for (c, n) in &self.windows {
            o.sample("holdup_windows_total", &[("collector", c)], *n as f64);
        }
        if o.om {
            o.s.push_str("# EOF\n");
        }
        o.s
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

struct Out {
    s: String,
    om: bool,
}

impl Out {
    /// A family's header. OpenMetrics names a counter family without its
    /// `_total`; the Prometheus text format names it as its samples.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let total;
        let name = if !self.om && kind == "counter" {
            total = format!("{name}_total");
            &total
        } else {
            name
        };
        let _ = writeln!(self.s, "# HELP {name} {help}");
        let _ = writeln!(self.s, "# TYPE {name} {kind}");
        if self.om && name.ends_with("_seconds") {
            let _ = writeln!(self.s, "# UNIT {name} seconds");
        } else if self.om && name.ends_with("_bytes") {
            let _ = writeln!(self.s, "# UNIT {name} bytes");
        }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.s.push_str(name);
        if !labels.is_empty() {
            self.s.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.s.push(',');
                }
                let _ = write!(self.s, "{k}=\"{}\"", escape(val));
            }
            self.s.push('}');
        }
        let _ = writeln!(self.s, " {v}");
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Hist) {
        let bucket = format!("{name}_bucket");
        let mut cum = 0u64;
        for i in 0..SERVED_BUCKETS {
            cum += h.buckets[i];
            let le = format!("{}", (1u64 << (i + 1)) as f64 / 1e6);
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&bucket, &l, cum as f64);
        }
        let count: u64 = h.buckets.iter().sum();
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.sample(&bucket, &l, count as f64);
        self.sample(&format!("{name}_sum"), labels, secs(h.sum_ns));
        self.sample(&format!("{name}_count"), labels, count as f64);
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
    fn histograms_are_cumulative_and_end_in_inf() {
        let mut o = Out {
            s: String::new(),
            om: false,
        };
        let mut h = Hist::default();
        h.add(&Histogram::from_buckets(&[1, 0, 2]), 5_000);
        o.histogram("x_seconds", &[("service", "s\"q")], &h);
        assert!(
            o.s.contains("x_seconds_bucket{service=\"s\\\"q\",le=\"0.000002\"} 1\n"),
            "{}",
            o.s
        );
        assert!(o.s.contains("le=\"0.000008\"} 3\n"), "{}", o.s);
        assert!(o.s.contains("le=\"+Inf\"} 3\n"), "{}", o.s);
        assert!(
            o.s.contains("x_seconds_sum{service=\"s\\\"q\"} 0.000005\n"),
            "{}",
            o.s
        );
    }

    #[test]
    fn openmetrics_ends_with_eof_and_names_families_without_total() {
        let r = Registry::new(5, 20);
        let om = r.render(&OwnCost::default(), true);
        assert!(om.ends_with("# EOF\n"));
        assert!(om.contains("# TYPE holdup_agent_cpu_seconds counter\n"));
        assert!(om.contains("holdup_agent_cpu_seconds_total{mode=\"user\"} 0\n"));
        let text = r.render(&OwnCost::default(), false);
        assert!(!text.contains("# EOF"));
    }
}
