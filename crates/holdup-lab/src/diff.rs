//! `holdup diff`: a baseline and an incident side by side, per role and per
//! resource — hold-ups, thread states, waits per resource with their
//! latency percentiles, who ran instead, disk shares — each with its change
//! and whether the change is significant, sorted by impact.
//!
//! The periods, roles and statistics are the diagnosis's: the windows are
//! split by `holdup_diagnose::split::choose` (two recordings, or two ranges
//! of one), threads are grouped by its [`Model`], the hold-up families are
//! measured by its `assess` (the same significance as its verdicts), and
//! every other row is judged on its per-window distributions (Cliff's
//! delta, p10–p90), never on means alone.

use holdup_diagnose::model::{Model, WinRef};
use holdup_diagnose::split::{self, SplitRequest};
use holdup_diagnose::states::{name_pattern, port_of, Category, CauseFamily};
use holdup_diagnose::stats::{cliffs_delta, Dist};
use holdup_diagnose::verdict::{assess, MIN_DELTA, MIN_IMPACT};
use holdup_diagnose::{Diagnosis, Input, Source, SplitReport};
use holdup_format as fmt;
use holdup_model::{Histogram, Resource, Snapshot};
use serde::Serialize;
use std::collections::BTreeMap;

/// Most roles compared (the busiest, entry roles first).
pub const MAX_ROLES: usize = 12;

/// What a row compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    /// A hold-up family of a role (the diagnosis's own measure).
    Holdup,
    /// A thread-state category of a role.
    State,
    /// Waits of a role on one resource.
    Wait,
    /// A task that held the CPU while a role waited for it.
    Culprit,
    /// A submitter's share of a disk's bytes, or the disk's latency.
    Disk,
}

/// Unit of a row's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A fraction of time, 0..=1.
    Share,
    /// Time per second of window, ns/s.
    NsPerS,
    /// Bytes per second.
    BytesPerS,
}

/// Latency percentiles of the two periods (from their merged histograms).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Percentiles {
    /// Baseline p50, µs (bucket upper bound).
    pub baseline_p50_us: Option<u64>,
    /// Baseline p99, µs.
    pub baseline_p99_us: Option<u64>,
    /// Incident p50, µs.
    pub incident_p50_us: Option<u64>,
    /// Incident p99, µs.
    pub incident_p99_us: Option<u64>,
}

/// One compared quantity.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// What kind of row.
    pub section: Section,
    /// The role (or the disk, for disk rows).
    pub role: String,
    /// What is compared (a category, a resource, a task, a submitter).
    pub what: String,
    /// Unit of `baseline`/`incident`.
    pub unit: Unit,
    /// Per-window values, baseline.
    pub baseline: Dist,
    /// Per-window values, incident.
    pub incident: Dist,
    /// Incident mean − baseline mean.
    pub change: f64,
    /// `change` relative to the baseline mean (None when it was 0).
    pub relative: Option<f64>,
    /// Cliff's delta of the incident's windows against the baseline's.
    pub cliffs_delta: f64,
    /// Large enough and separated enough to count.
    pub significant: bool,
    /// Time per second the change moved (thread time, CPU time held, or
    /// request latency), ns/s: the sort key.
    pub impact_ns_per_s: f64,
    /// Latency percentiles, for rows with a histogram.
    pub latency: Option<Percentiles>,
    /// For hold-up rows: the diagnosis's estimate of the slow-down per
    /// request (0.5: ≈+50% time per request).
    pub per_request: Option<f64>,
}

/// The diff of two periods.
#[derive(Clone, Debug, Serialize)]
pub struct Diff {
    /// How the periods were chosen.
    pub split: SplitReport,
    /// The diagnosis of the incident against the baseline (its top verdict
    /// heads the text).
    pub diagnosis: Diagnosis,
    /// Every row, significant first, then by impact.
    pub rows: Vec<Row>,
}

/// A per-window value is a change when incident and baseline windows are
/// separated (|Cliff's delta| ≥ the diagnosis's [`MIN_DELTA`]) and the mean
/// moved by at least [`MIN_IMPACT`] of itself and by more than `floor`.
fn significant(b: &[f64], i: &[f64], floor: f64) -> (f64, bool) {
    let d = cliffs_delta(b, i);
    let (mb, mi) = (Dist::of(b).mean, Dist::of(i).mean);
    let change = mi - mb;
    let sig = d.abs() >= MIN_DELTA
        && change.abs() > floor
        && change.abs() >= MIN_IMPACT * mb.abs()
        && (change > 0.0) == (d > 0.0);
    (d, sig)
}

#[allow(clippy::too_many_arguments)]
fn row(
    section: Section,
    role: &str,
    what: String,
    unit: Unit,
    b: &[f64],
    i: &[f64],
    floor: f64,
    impact_ns_per_s: f64,
) -> Row {
    let (db, di) = (Dist::of(b), Dist::of(i));
    let (d, sig) = significant(b, i, floor);
    let change = di.mean - db.mean;
    Row {
        section,
        role: role.to_string(),
        what,
        unit,
        relative: (db.mean.abs() > 1e-12).then(|| change / db.mean),
        baseline: db,
        incident: di,
        change,
        cliffs_delta: d,
        significant: sig,
        impact_ns_per_s,
        latency: None,
        per_request: None,
    }
}

fn percentiles(b: &Histogram, i: &Histogram) -> Option<Percentiles> {
    (b.count() + i.count() > 0).then(|| Percentiles {
        baseline_p50_us: b.quantile_us(0.5),
        baseline_p99_us: b.quantile_us(0.99),
        incident_p50_us: i.quantile_us(0.5),
        incident_p99_us: i.quantile_us(0.99),
    })
}

/// A resource's name that is the same in two recordings of one service
/// (client sockets differ by their ephemeral ports: they are one row).
fn resource_key(r: &Resource) -> String {
    match r {
        Resource::Socket(s) => {
            let ephemeral = |a: &str| port_of(a).is_some_and(|p| p >= 32768);
            if s.peer.is_empty() {
                format!("{} listening {}", s.proto, s.local)
            } else if ephemeral(&s.peer) && !ephemeral(&s.local) {
                format!("{} clients of {}", s.proto, s.local)
            } else {
                format!("{} to {}", s.proto, s.peer)
            }
        }
        Resource::Futex { uaddr, .. } => format!("futex {uaddr:#x}"),
        Resource::File {
            file_type, name, ..
        } => {
            if name.is_empty() {
                file_type.clone()
            } else {
                format!("{file_type} {}", name_pattern(name))
            }
        }
        other => other.to_string(),
    }
}

/// Per-window sums, one series per key, over a period.
struct Series {
    /// key -> per-window values, one per window of the period (0 when absent).
    values: BTreeMap<(String, String), Vec<f64>>,
    hists: BTreeMap<(String, String), Histogram>,
}

impl Series {
    fn new() -> Series {
        Series {
            values: BTreeMap::new(),
            hists: BTreeMap::new(),
        }
    }
    fn add(&mut self, key: (String, String), n: usize, idx: usize, v: f64) {
        self.values.entry(key).or_insert_with(|| vec![0.0; n])[idx] += v;
    }
    fn hist(&mut self, key: (String, String), h: &Histogram) {
        self.hists.entry(key).or_default().merge(h);
    }
}

/// Wait, culprit and disk series of a period.
fn collect(m: &Model, period: &[WinRef], roles: &[usize]) -> (Series, Series, Series) {
    let (mut waits, mut culprits, mut disks) = (Series::new(), Series::new(), Series::new());
    let n = period.len();
    for (k, w) in period.iter().enumerate() {
        let s: &Snapshot = m.snapshot(*w);
        let secs = m.window_secs(*w);
        let role_name = |tid: u32| {
            m.role_of_thread(*w, tid)
                .filter(|r| roles.contains(r))
                .map(|r| m.roles[r].name.clone())
        };
        for r in &s.resources {
            if let Some(role) = role_name(r.tid) {
                let what = match &r.resource {
                    // The call names the wait already ("epoll_wait epoll#7da7").
                    Resource::Mux { .. } => resource_key(&r.resource),
                    other => format!("{} {}", r.kind.label(), resource_key(other)),
                };
                let key = (role, what);
                waits.add(key.clone(), n, k, r.wait_ns as f64 / secs);
                waits.hist(key, &r.hist);
            }
        }
        for c in &s.culprits {
            if let Some(role) = role_name(c.victim_tid) {
                let who = if m.is_service(*w, c.tgid) {
                    format!("{} (the service)", name_pattern(&c.comm))
                } else {
                    name_pattern(&c.comm)
                };
                culprits.add((role, who), n, k, c.ns as f64 / secs);
            }
        }
        let mut disk_bytes: BTreeMap<String, f64> = BTreeMap::new();
        for d in &s.disks {
            *disk_bytes.entry(d.disk.clone()).or_default() += d.bytes as f64;
        }
        for d in &s.disks {
            let who = if d.is_target {
                format!("{} (the service)", name_pattern(&d.comm))
            } else if d.comm.is_empty() {
                "unknown".into()
            } else {
                name_pattern(&d.comm)
            };
            let total = disk_bytes[&d.disk].max(1.0);
            disks.add((d.disk.clone(), who.clone()), n, k, d.bytes as f64 / total);
            disks.add(
                (d.disk.clone(), format!("{who}\0bytes")),
                n,
                k,
                d.bytes as f64 / secs,
            );
            disks.hist((d.disk.clone(), "all submitters".into()), &d.latency_hist);
        }
        for (disk, bytes) in disk_bytes {
            disks.add((disk, "all submitters\0bytes".into()), n, k, bytes / secs);
        }
    }
    (waits, culprits, disks)
}

fn get<'a>(s: &'a Series, k: &(String, String), n: usize, zeros: &'a [f64]) -> &'a [f64] {
    s.values.get(k).map_or(&zeros[..n], |v| v.as_slice())
}

/// Compares the periods the request chooses. `baseline` is a separate
/// recording (source 0) when given; else `run` holds both periods.
pub fn diff(run: Source, baseline: Option<Source>, split_req: &SplitRequest, target: &str) -> Diff {
    let diagnosis = holdup_diagnose::diagnose(&Input {
        target: target.to_string(),
        windows: run.windows,
        label: run.label,
        baseline_windows: baseline.map(|b| (b.windows, b.label)),
        split: split_req.clone(),
    });
    let sources: Vec<Source> = baseline.into_iter().chain([run]).collect();
    let m = Model::build(&sources);
    let periods = split::choose(&m, split_req);
    let (b, i) = (&periods.baseline, &periods.incident);
    let roles: Vec<usize> = (0..m.roles.len())
        .filter(|r| {
            b.iter()
                .chain(i)
                .any(|w| m.cell(*w, *r).busy_ns() > 0 || m.roles[*r].entry)
        })
        .take(MAX_ROLES)
        .collect();
    let mut rows = Vec::new();
    let per_s = |ws: &[WinRef], r: usize, cats: &[Category]| -> Vec<f64> {
        ws.iter()
            .filter(|w| m.cell(**w, r).observed_ns > 0)
            .map(|w| m.cell(*w, r).sum(cats) as f64 / m.window_secs(*w))
            .collect()
    };
    let mean = |v: &[f64]| Dist::of(v).mean;
    for &r in &roles {
        let name = &m.roles[r].name;
        for f in CauseFamily::ALL {
            let g = assess(&m, b, i, r, f);
            if g.share_before < 0.005 && g.share_after < 0.005 {
                continue;
            }
            let cats: Vec<Category> = f.categories().collect();
            let impact = mean(&per_s(i, r, &cats)) - mean(&per_s(b, r, &cats));
            let mut x = row(
                Section::Holdup,
                name,
                f.words().to_string(),
                Unit::Share,
                &g.before,
                &g.after,
                0.0,
                impact,
            );
            // The diagnosis's own judgement of this family.
            x.significant = g.significant;
            x.cliffs_delta = g.delta;
            x.per_request = Some(g.impact);
            rows.push(x);
        }
        let mut rq_b = Histogram::default();
        let mut rq_i = Histogram::default();
        for (ws, h) in [(b, &mut rq_b), (i, &mut rq_i)] {
            for w in ws.iter() {
                for t in &m.snapshot(*w).threads {
                    if m.role_of_thread(*w, t.tid) == Some(r) {
                        h.merge(&t.runq_hist);
                    }
                }
            }
        }
        for c in Category::ALL {
            let (fb, fi) = (m.fractions(b, r, &[c]), m.fractions(i, r, &[c]));
            if mean(&fb) < 0.005 && mean(&fi) < 0.005 {
                continue;
            }
            // Idle time that moves is not a hold-up: no impact.
            let impact = if c.is_idle() {
                0.0
            } else {
                mean(&per_s(i, r, &[c])) - mean(&per_s(b, r, &[c]))
            };
            let mut x = row(
                Section::State,
                name,
                c.label().to_string(),
                Unit::Share,
                &fb,
                &fi,
                0.01,
                impact,
            );
            if c == Category::RunQueue {
                x.latency = percentiles(&rq_b, &rq_i);
            }
            rows.push(x);
        }
    }
    let (wb, cb, db) = collect(&m, b, &roles);
    let (wi, ci, di) = collect(&m, i, &roles);
    let zeros = vec![0.0; b.len().max(i.len())];
    let keys = |x: &Series, y: &Series| -> Vec<(String, String)> {
        let mut k: Vec<(String, String)> =
            x.values.keys().chain(y.values.keys()).cloned().collect();
        k.sort();
        k.dedup();
        k
    };
    // 10 ms/s of thread time: 1% of a thread.
    const TIME_FLOOR: f64 = 1e7;
    for k in keys(&wb, &wi) {
        let (vb, vi) = (get(&wb, &k, b.len(), &zeros), get(&wi, &k, i.len(), &zeros));
        if mean(vb).max(mean(vi)) < TIME_FLOOR / 2.0 {
            continue;
        }
        let mut x = row(
            Section::Wait,
            &k.0,
            k.1.clone(),
            Unit::NsPerS,
            vb,
            vi,
            TIME_FLOOR,
            mean(vi) - mean(vb),
        );
        let empty = Histogram::default();
        x.latency = percentiles(
            wb.hists.get(&k).unwrap_or(&empty),
            wi.hists.get(&k).unwrap_or(&empty),
        );
        rows.push(x);
    }
    for k in keys(&cb, &ci) {
        let (vb, vi) = (get(&cb, &k, b.len(), &zeros), get(&ci, &k, i.len(), &zeros));
        if mean(vb).max(mean(vi)) < TIME_FLOOR / 2.0 {
            continue;
        }
        rows.push(row(
            Section::Culprit,
            &k.0,
            format!("{} ran instead", k.1),
            Unit::NsPerS,
            vb,
            vi,
            TIME_FLOOR,
            mean(vi) - mean(vb),
        ));
    }
    let empty = Histogram::default();
    // A disk that moved under 1 MiB/s in both periods: its shares are noise.
    let busy_disk = |disk: &str| {
        let k = (disk.to_string(), "all submitters\0bytes".to_string());
        mean(get(&db, &k, b.len(), &zeros)).max(mean(get(&di, &k, i.len(), &zeros))) >= 1048576.0
    };
    for k in keys(&db, &di) {
        if k.1.contains('\0') || !busy_disk(&k.0) {
            continue;
        }
        let (vb, vi) = (get(&db, &k, b.len(), &zeros), get(&di, &k, i.len(), &zeros));
        if mean(vb).max(mean(vi)) < 0.02 {
            continue;
        }
        rows.push(row(
            Section::Disk,
            &k.0,
            format!("{}'s share of the bytes", k.1),
            Unit::Share,
            vb,
            vi,
            0.05,
            // A disk's requests overlap (their latencies add up to more
            // than a second per second): what they cost the service is in
            // its own wait rows, so disk rows are context, not impact.
            0.0,
        ));
    }
    for k in keys(&db, &di) {
        let Some(who) = k.1.strip_suffix("\0bytes") else {
            continue;
        };
        if who != "all submitters" {
            continue;
        }
        let (vb, vi) = (get(&db, &k, b.len(), &zeros), get(&di, &k, i.len(), &zeros));
        let mut x = row(
            Section::Disk,
            &k.0,
            "all submitters' bytes".into(),
            Unit::BytesPerS,
            vb,
            vi,
            1e6,
            0.0,
        );
        let hk = (k.0.clone(), "all submitters".to_string());
        x.latency = percentiles(
            db.hists.get(&hk).unwrap_or(&empty),
            di.hists.get(&hk).unwrap_or(&empty),
        );
        rows.push(x);
    }
    rows.sort_by(|a, b| {
        b.significant
            .cmp(&a.significant)
            .then(b.impact_ns_per_s.abs().total_cmp(&a.impact_ns_per_s.abs()))
            .then(a.section.cmp(&b.section))
    });
    Diff {
        split: periods.report,
        diagnosis,
        rows,
    }
}

fn value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Share => fmt::pct(v),
        Unit::NsPerS => fmt::ms_per_s(v),
        Unit::BytesPerS => fmt::bytes_rate(v),
    }
}

fn side(unit: Unit, d: &Dist) -> String {
    if d.n == 0 {
        return "-".into();
    }
    format!(
        "{} ({}-{})",
        value(unit, d.mean),
        value(unit, d.p10),
        value(unit, d.p90)
    )
}

fn latency(p: &Percentiles) -> String {
    let q = |v: Option<u64>| v.map_or("-".to_string(), |v| fmt::us(v as f64));
    format!(
        "p50 {} → {}, p99 {} → {}",
        q(p.baseline_p50_us),
        q(p.incident_p50_us),
        q(p.baseline_p99_us),
        q(p.incident_p99_us)
    )
}

/// The diff as text: the diagnosis's answer, then the `rows` rows with the
/// most impact (significant first).
pub fn render(d: &Diff, rows: usize) -> String {
    let s = &d.split;
    let period = |p: &split::PeriodInfo| {
        format!(
            "{}{:.1}-{:.1}s ({} windows)",
            if p.source.is_empty() {
                String::new()
            } else {
                format!("{} ", p.source)
            },
            p.from_s,
            p.to_s,
            p.windows
        )
    };
    let mut o = format!(
        "holdup diff: baseline {} vs incident {}\n",
        period(&s.baseline),
        period(&s.incident)
    );
    let top = d.diagnosis.top();
    o += &format!(
        "diagnosis: {} ({}): {}\n\n",
        top.kind.title(),
        if top.significant {
            "significant"
        } else {
            "not significant"
        },
        fmt::one_line(&top.summary, 200)
    );
    let mut t = fmt::table(
        &[
            "ROLE", "WHAT", "BASELINE", "INCIDENT", "CHANGE", "SIG", "IMPACT",
        ],
        &[2, 3, 4, 6],
    );
    let mut extra = Vec::new();
    for r in d.rows.iter().take(rows) {
        let change = match r.unit {
            Unit::Share => format!("{:+.1} pt", r.change * 100.0),
            u => {
                let sign = if r.change >= 0.0 { "+" } else { "-" };
                format!("{sign}{}", value(u, r.change.abs()))
            }
        };
        let change = match (r.per_request, r.relative) {
            (Some(p), _) => format!("{change} (≈{:+.0}%/req)", p * 100.0),
            (None, Some(rel)) if rel.abs() < 100.0 => format!("{change} ({:+.0}%)", rel * 100.0),
            _ => change,
        };
        t.add_row(vec![
            fmt::truncate(&r.role, 24),
            fmt::truncate(&r.what, 48),
            side(r.unit, &r.baseline),
            side(r.unit, &r.incident),
            change,
            if r.significant {
                format!("yes (δ {:.2})", r.cliffs_delta)
            } else {
                format!("no (δ {:.2})", r.cliffs_delta)
            },
            fmt::ms_per_s(r.impact_ns_per_s),
        ]);
        if let Some(p) = &r.latency {
            extra.push(format!("{} {}: {}", r.role, r.what, latency(p)));
        }
    }
    o += &fmt::indented(&t, 2);
    if d.rows.len() > rows {
        o += &format!(
            "  … {} more rows (--rows N, or --json)\n",
            d.rows.len() - rows
        );
    }
    if !extra.is_empty() {
        o += "\nlatency percentiles (baseline → incident):\n";
        for e in extra {
            o += &format!("  {e}\n");
        }
    }
    o += "\nvalues: per-window mean (p10-p90); SIG: separated windows (Cliff's δ) and a large enough change; IMPACT: thread time per second the change moved\n";
    o
}
