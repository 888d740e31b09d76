//! The analysed run: every window's threads broken down into categories and
//! grouped into roles (a pool of 64 workers is one role), plus per-window
//! load signals. Built once from the sources; everything else reads it.

use crate::states::{breakdown, load_signals, name_pattern, Breakdown, Category, SourceFacts};
use holdup_model::Snapshot;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Windows from one place: a live run or a recording.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    /// Human label ("live", a file name).
    pub label: &'a str,
    /// Its windows, in time order.
    pub windows: &'a [Snapshot],
}

/// One window of one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WinRef {
    /// Source index.
    pub src: usize,
    /// Window index within the source's slice.
    pub idx: usize,
}

/// Threads with the same role: same process, same name pattern, same
/// behaviour (entry point or not).
#[derive(Clone, Debug)]
pub struct Role {
    /// Display name (the thread-name pattern, disambiguated when needed).
    pub name: String,
    /// Process name.
    pub process: String,
    /// Thread-name pattern.
    pub pattern: String,
    /// Entry-point role.
    pub entry: bool,
    /// Threads (source, tid).
    pub threads: BTreeSet<(usize, u32)>,
    /// Thread names seen.
    pub comms: BTreeSet<String>,
    /// How its threads serve clients (entry roles).
    pub entry_how: BTreeSet<String>,
}

/// A role in one window: the sum over its threads.
#[derive(Clone, Debug, Default)]
pub struct RoleWindow {
    /// Threads observed.
    pub threads: u32,
    /// Time observed, summed over threads, ns.
    pub observed_ns: u64,
    /// Time per category, summed over threads, ns.
    pub cats: Breakdown,
    /// Request-rate proxy (wake-ups by client data, accepts, blocking receives).
    pub requests: u64,
    /// Receive calls on client sockets (per-call socket counting only).
    pub recv_calls: u64,
    /// Distinct client connections seen.
    pub clients: u64,
}

impl RoleWindow {
    /// Sum of some categories, ns.
    pub fn sum(&self, cats: &[Category]) -> u64 {
        cats.iter().map(|c| self.cats[c.index()]).sum()
    }

    /// Time that is not idle, ns.
    pub fn busy_ns(&self) -> u64 {
        Category::ALL
            .iter()
            .filter(|c| !c.is_idle())
            .map(|c| self.cats[c.index()])
            .sum()
    }
}

/// The whole analysed run.
pub struct Model<'a> {
    /// The sources and what was learned from each.
    pub sources: Vec<(Source<'a>, SourceFacts)>,
    /// Roles, entry roles first, then by time not idle.
    pub roles: Vec<Role>,
    /// Role of each (source, tid).
    pub role_of: HashMap<(usize, u32), usize>,
    /// `cells[src][window][role]`.
    pub cells: Vec<Vec<Vec<RoleWindow>>>,
}

impl<'a> Model<'a> {
    /// Breaks every window of every source down and groups threads into roles.
    pub fn build(sources: &[Source<'a>]) -> Model<'a> {
        let sources: Vec<(Source<'a>, SourceFacts)> = sources
            .iter()
            .map(|s| (*s, SourceFacts::learn(s.windows)))
            .collect();
        // Roles. A (process, pattern) whose threads are all entry points in
        // one source and all not in another (two recordings) stays one role.
        type Key = (String, String, bool);
        // (process, pattern) -> ((source, entry) pairs seen, any entry thread)
        type Flags = (BTreeSet<(usize, bool)>, bool);
        let mut flags: HashMap<(String, String), Flags> = HashMap::new();
        for (si, (src, facts)) in sources.iter().enumerate() {
            for t in src.windows.iter().flat_map(|s| &s.threads) {
                let e = flags
                    .entry((
                        name_pattern(&facts.process_name(t.tgid)),
                        name_pattern(&t.comm),
                    ))
                    .or_default();
                let entry = facts.is_entry(t.tid);
                e.0.insert((si, entry));
                e.1 |= entry;
            }
        }
        let mixed_within_source = |pk: &(String, String)| -> bool {
            let set = &flags[pk].0;
            set.iter().any(|(s, f)| set.contains(&(*s, !f)))
        };
        let mut keys: BTreeMap<Key, Role> = BTreeMap::new();
        let mut thread_key: HashMap<(usize, u32), Key> = HashMap::new();
        for (si, (src, facts)) in sources.iter().enumerate() {
            for s in src.windows {
                for t in &s.threads {
                    if thread_key.contains_key(&(si, t.tid)) {
                        continue;
                    }
                    // Prefork workers named worker-1, worker-2 are one role.
                    let process = name_pattern(&facts.process_name(t.tgid));
                    let pattern = name_pattern(&t.comm);
                    let pk = (process.clone(), pattern.clone());
                    let entry = if mixed_within_source(&pk) {
                        facts.is_entry(t.tid)
                    } else {
                        flags[&pk].1
                    };
                    let key = (process.clone(), pattern.clone(), entry);
                    let role = keys.entry(key.clone()).or_insert_with(|| Role {
                        name: pattern.clone(),
                        process,
                        pattern,
                        entry,
                        threads: BTreeSet::new(),
                        comms: BTreeSet::new(),
                        entry_how: BTreeSet::new(),
                    });
                    role.threads.insert((si, t.tid));
                    role.comms.insert(t.comm.clone());
                    if let Some(how) = facts.entry_threads.get(&t.tid) {
                        role.entry_how.insert(how.clone());
                    }
                    thread_key.insert((si, t.tid), key);
                }
            }
        }
        // Order: entry roles first, then by busy time over the run.
        let mut busy: HashMap<Key, u64> = HashMap::new();
        for (si, (src, _)) in sources.iter().enumerate() {
            for s in src.windows {
                for t in &s.threads {
                    let st = &t.states;
                    *busy.entry(thread_key[&(si, t.tid)].clone()).or_default() +=
                        st.on_cpu_ns + st.runq_ns + st.iowait_ns + st.other_d_ns;
                }
            }
        }
        let mut ordered: Vec<(Key, Role)> = keys.into_iter().collect();
        ordered.sort_by(|(ka, a), (kb, b)| {
            b.entry
                .cmp(&a.entry)
                .then(busy[kb].cmp(&busy[ka]))
                .then(ka.cmp(kb))
        });
        // Disambiguate names shared by several roles.
        let mut count: HashMap<String, usize> = HashMap::new();
        for (_, r) in &ordered {
            *count.entry(r.pattern.clone()).or_default() += 1;
        }
        let mut index_of: HashMap<Key, usize> = HashMap::new();
        let mut roles = Vec::new();
        for (i, (k, mut r)) in ordered.into_iter().enumerate() {
            if count[&r.pattern] > 1 {
                r.name = format!(
                    "{} ({}{})",
                    r.pattern,
                    r.process,
                    if r.entry { ", entry" } else { "" }
                );
            }
            index_of.insert(k, i);
            roles.push(r);
        }
        let role_of: HashMap<(usize, u32), usize> = thread_key
            .into_iter()
            .map(|(k, key)| (k, index_of[&key]))
            .collect();

        // Cells.
        let mut cells = Vec::new();
        for (si, (src, facts)) in sources.iter().enumerate() {
            let mut per_win = Vec::new();
            for s in src.windows {
                let mut row = vec![RoleWindow::default(); roles.len()];
                let mut clients: Vec<BTreeSet<String>> = vec![BTreeSet::new(); roles.len()];
                for t in &s.threads {
                    let r = role_of[&(si, t.tid)];
                    let b = breakdown(s, t, facts);
                    let cell = &mut row[r];
                    cell.threads += 1;
                    cell.observed_ns += b.iter().sum::<u64>();
                    for (sum, v) in cell.cats.iter_mut().zip(b) {
                        *sum += v;
                    }
                    if roles[r].entry {
                        let l = load_signals(s, t.tid, facts);
                        cell.requests += l.requests;
                        cell.recv_calls += l.recv_calls;
                        clients[r].extend(l.clients);
                    }
                }
                for (cell, c) in row.iter_mut().zip(clients) {
                    cell.clients = c.len() as u64;
                }
                per_win.push(row);
            }
            cells.push(per_win);
        }
        Model {
            sources,
            roles,
            role_of,
            cells,
        }
    }

    /// The snapshot of a window.
    pub fn snapshot(&self, w: WinRef) -> &'a Snapshot {
        &self.sources[w.src].0.windows[w.idx]
    }

    /// Facts of a window's source.
    pub fn facts(&self, w: WinRef) -> &SourceFacts {
        &self.sources[w.src].1
    }

    /// A role in a window.
    pub fn cell(&self, w: WinRef, role: usize) -> &RoleWindow {
        &self.cells[w.src][w.idx][role]
    }

    /// Length of a window, s.
    pub fn window_secs(&self, w: WinRef) -> f64 {
        (self.snapshot(w).window.duration_ns().max(1)) as f64 / 1e9
    }

    /// Total length of some windows, s.
    pub fn period_secs(&self, period: &[WinRef]) -> f64 {
        // never 0: a per-second rate over an empty period is 0, not NaN
        period
            .iter()
            .map(|w| self.window_secs(*w))
            .sum::<f64>()
            .max(1e-9)
    }

    /// Role of a thread of a window's source.
    pub fn role_of_thread(&self, w: WinRef, tid: u32) -> Option<usize> {
        self.role_of.get(&(w.src, tid)).copied()
    }

    /// Entry roles (empty when no thread serves clients).
    pub fn entry_roles(&self) -> Vec<usize> {
        (0..self.roles.len())
            .filter(|&r| self.roles[r].entry)
            .collect()
    }

    /// Per-window fraction of a role's observed time in `cats` (windows where
    /// the role was not observed are skipped).
    pub fn fractions(&self, period: &[WinRef], role: usize, cats: &[Category]) -> Vec<f64> {
        period
            .iter()
            .filter_map(|w| {
                let c = self.cell(*w, role);
                (c.observed_ns > 0).then(|| c.sum(cats) as f64 / c.observed_ns as f64)
            })
            .collect()
    }

    /// Per-window sums over several roles of `value(cell)` per second of window.
    pub fn rates(
        &self,
        period: &[WinRef],
        roles: &[usize],
        value: impl Fn(&RoleWindow) -> f64,
    ) -> Vec<f64> {
        period
            .iter()
            .filter(|w| roles.iter().any(|r| self.cell(**w, *r).observed_ns > 0))
            .map(|w| {
                roles.iter().map(|r| value(self.cell(*w, *r))).sum::<f64>() / self.window_secs(*w)
            })
            .collect()
    }

    /// Over a period, the share of a role's busy (not idle) time in `cats`.
    pub fn busy_share(&self, period: &[WinRef], role: usize, cats: &[Category]) -> f64 {
        let (mut part, mut busy) = (0u64, 0u64);
        for w in period {
            let c = self.cell(*w, role);
            part += c.sum(cats);
            busy += c.busy_ns();
        }
        if busy == 0 {
            0.0
        } else {
            part as f64 / busy as f64
        }
    }

    /// Number of distinct threads of a role observed in a period.
    pub fn thread_count(&self, period: &[WinRef], role: usize) -> usize {
        let mut seen = BTreeSet::new();
        for w in period {
            for t in &self.snapshot(*w).threads {
                if self.role_of_thread(*w, t.tid) == Some(role) {
                    seen.insert((w.src, t.tid));
                }
            }
        }
        seen.len()
    }

    /// Whether a tgid belongs to the service in a window's source.
    pub fn is_service(&self, w: WinRef, tgid: u32) -> bool {
        self.facts(w).tgids.contains(&tgid)
    }
}
