//! Disk contention: the device, the service's share of it, and the other
//! heavy submitters; or I/O held before the device (throttled).

use super::*;

/// When the service's own requests spent less than this share of its disk
/// wait at the device (median over windows, and at most a third of the
/// baseline's share), the wait is not at the disk: the I/O is held before
/// it. Under contention the share stays near or above 1 (its requests
/// queue at the device: etcd and PostgreSQL beside an fsync writer, 1.2 →
/// 0.9); a cgroup write limit took Redis's from 0.26 to 0.02.
pub const THROTTLE_DEVICE_SHARE: f64 = 0.15;

/// In compare mode the baseline's share must be this many times the
/// incident's.
pub const THROTTLE_DROP: f64 = 3.0;

/// Without a baseline only a share below this counts (a service whose
/// syncs wait mostly for the journal's writes has a small share anyway).
pub const THROTTLE_DEVICE_SHARE_ALONE: f64 = 0.05;

/// Per window of `period` in which `role` waited for the disk and the
/// service submitted block I/O: the time the service's requests spent at
/// the device (sum of their latencies, from queueing to completion) over
/// the role's disk wait. Windows without block I/O of its own are left out
/// (a network filesystem's waits never reach a block device).
fn device_shares(m: &Model, period: &[WinRef], role: usize, cats: &[Category]) -> Vec<f64> {
    period
        .iter()
        .filter_map(|w| {
            let wait = m.cell(*w, role).sum(cats);
            let (requests, at_device) = m
                .snapshot(*w)
                .disks
                .iter()
                .filter(|d| d.is_target || m.is_service(*w, d.tgid))
                .fold((0u64, 0u64), |(r, l), d| (r + d.requests, l + d.latency_ns));
            (wait > 0 && requests > 0).then(|| at_device as f64 / wait as f64)
        })
        .collect()
}

pub(super) fn candidate(
    m: &Model,
    b: &[WinRef],
    i: &[WinRef],
    g: &Growth,
    missing: &mut Vec<String>,
) -> Candidate {
    let role = m.roles[g.role].name.clone();
    // The service's file waits, by file name.
    let mut files: BTreeMap<String, [f64; 2]> = BTreeMap::new();
    // Disks: name -> [service bytes b, total bytes b, service bytes i, total i]
    let mut disks: BTreeMap<String, [f64; 4]> = BTreeMap::new();
    // Other submitters: comm -> [bytes b, bytes i], pids
    let mut others: BTreeMap<String, ([f64; 2], BTreeSet<u32>)> = BTreeMap::new();
    // Service IO latency: [lat ns, requests] per period
    let mut lat = [[0f64; 2]; 2];
    let mut lat_hist = [Histogram::default(), Histogram::default()];
    for (which, period) in [(0usize, b), (1usize, i)] {
        for w in period {
            let s = m.snapshot(*w);
            for r in &s.resources {
                if m.role_of_thread(*w, r.tid) != Some(g.role) {
                    continue;
                }
                if !matches!(r.kind, WaitKind::FileRead | WaitKind::FileWrite) {
                    continue;
                }
                if let Resource::File {
                    file_type, name, ..
                } = &r.resource
                {
                    if file_type == "pipe" {
                        continue;
                    }
                    files.entry(r.resource.to_string()).or_default()[which] += r.wait_ns as f64;
                    let _ = name;
                }
            }
            for d in &s.disks {
                let e = disks.entry(d.disk.clone()).or_default();
                e[which * 2 + 1] += d.bytes as f64;
                if d.is_target || m.is_service(*w, d.tgid) {
                    e[which * 2] += d.bytes as f64;
                    lat[which][0] += d.latency_ns as f64;
                    lat[which][1] += d.requests as f64;
                    lat_hist[which].merge(&d.latency_hist);
                } else {
                    let o = others.entry(d.comm.clone()).or_default();
                    o.0[which] += d.bytes as f64;
                    if which == 1 && d.tgid != 0 {
                        o.1.insert(d.tgid);
                    }
                }
            }
        }
    }
    let (bs, is) = (m.period_secs(b), m.period_secs(i));
    // Throttled: the service's requests spent a small part of its wait at
    // the device (and, comparing, a much smaller part than before).
    let cats: Vec<Category> = g.family.categories().collect();
    let (db, di) = (
        device_shares(m, b, g.role, &cats),
        device_shares(m, i, g.role, &cats),
    );
    let device_i = (!di.is_empty()).then(|| Dist::of(&di).p50);
    let device_b = (!db.is_empty()).then(|| Dist::of(&db).p50);
    let throttled = device_i.is_some_and(|x| {
        if g.alone {
            x < THROTTLE_DEVICE_SHARE_ALONE
        } else {
            x < THROTTLE_DEVICE_SHARE && device_b.is_some_and(|y| y >= THROTTLE_DROP * x)
        }
    });
    let kind = if throttled {
        VerdictKind::DiskThrottled
    } else {
        VerdictKind::DiskContention
    };
    let mut v = base_verdict(kind, m, g);
    v.evidence.push(time_line(m, g));
    let mut file_rows: Vec<(String, f64, f64)> = files
        .into_iter()
        .map(|(f, x)| (f, x[0] / bs, x[1] / is))
        .collect();
    file_rows.sort_by(|x, y| (y.2 - y.1).total_cmp(&(x.2 - x.1)));
    if let Some(f) = file_rows.first() {
        v.evidence.push(format!(
            "{role} blocked on {}: {}",
            f.0,
            ba(g.alone, fmt::ms_per_s(f.1), fmt::ms_per_s(f.2))
        ));
    }
    // The disk the service uses most in the incident.
    let main_disk = disks
        .iter()
        .max_by(|x, y| (x.1[2] + x.1[0]).total_cmp(&(y.1[2] + y.1[0])))
        .filter(|(_, x)| x[1] + x[3] > 0.0)
        .map(|(n, x)| (n.clone(), *x));
    let mut culprits = Vec::new();
    let mut own_growth = false;
    if let Some((disk, x)) = &main_disk {
        let share_b = if x[1] > 0.0 { x[0] / x[1] } else { 0.0 };
        let share_i = if x[3] > 0.0 { x[2] / x[3] } else { 0.0 };
        v.evidence.push(format!(
            "disk {disk}: the service's share of its bytes {} (service {}, all submitters {})",
            ba(g.alone, fmt::pct(share_b), fmt::pct(share_i)),
            ba(
                g.alone,
                fmt::bytes_rate(x[0] / bs),
                fmt::bytes_rate(x[2] / is)
            ),
            ba(
                g.alone,
                fmt::bytes_rate(x[1] / bs),
                fmt::bytes_rate(x[3] / is)
            ),
        ));
        if lat[0][1] > 0.0 && lat[1][1] > 0.0 {
            let (lb, li) = (lat[0][0] / lat[0][1] / 1e3, lat[1][0] / lat[1][1] / 1e3);
            let p99 = |h: &Histogram| hist_q(h, 0.99).map(fmt::us).unwrap_or_default();
            v.evidence.push(format!(
                "the service's disk requests took {} on average (p99 {})",
                ba(g.alone, fmt::us(lb), fmt::us(li)),
                ba(g.alone, p99(&lat_hist[0]), p99(&lat_hist[1]))
            ));
        }
        let service_delta = x[2] / is - x[0] / bs;
        let mut rows: Vec<(String, f64, f64, Vec<u32>)> = others
            .into_iter()
            .map(|(c, (v, ids))| (c, v[0] / bs, v[1] / is, ids.into_iter().collect()))
            .collect();
        rows.sort_by(|p, q| (q.2 - q.1).total_cmp(&(p.2 - p.1)));
        let other_delta: f64 = rows.iter().map(|r| (r.2 - r.1).max(0.0)).sum();
        own_growth = service_delta > other_delta && service_delta > 0.0;
        for r in rows
            .iter()
            .filter(|r| r.2 - r.1 >= 256.0 * 1024.0 || (x[3] > 0.0 && r.2 * is / x[3] >= 0.1))
            .take(3)
        {
            let share = if x[3] > 0.0 { r.2 * is / x[3] } else { 0.0 };
            culprits.push(Named {
                kind: NamedKind::Process,
                name: r.0.clone(),
                ids: r.3.clone(),
                detail: format!(
                    "wrote/read {} on {disk} ({} of the disk's bytes in the incident)",
                    ba(g.alone, fmt::bytes_rate(r.1), fmt::bytes_rate(r.2)),
                    fmt::pct(share)
                ),
            });
        }
        for c in &culprits {
            v.evidence
                .push(format!("{} {}", named_with_ids(&c.name, &c.ids), c.detail));
        }
        culprits.push(Named {
            kind: NamedKind::Disk,
            name: disk.clone(),
            ids: Vec::new(),
            detail: format!(
                "the service's share {}",
                ba(g.alone, fmt::pct(share_b), fmt::pct(share_i))
            ),
        });
    } else if g.significant {
        missing.push(
            "no block I/O was seen on any disk in these windows: the disk waits may be on a network filesystem or page-cache writeback holdup cannot attribute".into(),
        );
    }
    if let Some(f) = file_rows.first() {
        culprits.push(Named {
            kind: NamedKind::File,
            name: f.0.clone(),
            ids: Vec::new(),
            detail: format!(
                "blocked {}",
                ba(g.alone, fmt::ms_per_s(f.1), fmt::ms_per_s(f.2))
            ),
        });
    }
    let first = culprits
        .iter()
        .find(|c| c.kind == NamedKind::Process)
        .map(|c| named_with_ids(&c.name, &c.ids[..c.ids.len().min(1)]));
    let disk_name = main_disk.as_ref().map(|d| d.0.clone());
    v.summary = match (&first, own_growth) {
        (_, true) => format!(
            "{role} waits for the disk{}: {}; the service's own I/O grew",
            disk_name
                .as_deref()
                .map(|d| format!(" {d}"))
                .unwrap_or_default(),
            change(g)
        ),
        (Some(f), false) => format!(
            "{role} waits for the disk{}: {}; heavy other submitter: {f}",
            disk_name
                .as_deref()
                .map(|d| format!(" {d}"))
                .unwrap_or_default(),
            change(g)
        ),
        (None, false) => format!(
            "{role} waits for the disk{}: {}; no other heavy submitter was seen",
            disk_name
                .as_deref()
                .map(|d| format!(" {d}"))
                .unwrap_or_default(),
            change(g)
        ),
    };
    if throttled {
        let at_device = |x: Option<f64>| x.map(fmt::pct).unwrap_or_else(|| "-".into());
        v.summary = format!(
            "{role} waits for I/O that hardly reaches the disk{}: {}; its I/O is held before the device (a cgroup I/O limit: io.max or blkio.throttle, or writeback throttling)",
            disk_name
                .as_deref()
                .map(|d| format!(" {d}"))
                .unwrap_or_default(),
            change(g)
        );
        v.evidence.insert(
            1.min(v.evidence.len()),
            format!(
                "the service's requests spent {} of {role}'s disk wait at the device (median over windows)",
                ba(g.alone, at_device(device_b), at_device(device_i))
            ),
        );
        let mut named = role_cgroups(
            m,
            i,
            g.role,
            "the service's cgroup: its I/O limit, if it has one",
        );
        named.extend(
            culprits
                .into_iter()
                .filter(|c| c.kind != NamedKind::Process),
        );
        v.culprits = named;
        return Candidate {
            verdict: v,
            leads_to: "its I/O held before the device (throttled)".into(),
        };
    }
    let leads_to = match (&first, &disk_name) {
        (Some(f), Some(d)) => format!("disk {d} kept busy by {f}"),
        (None, Some(d)) => format!("disk {d}"),
        _ => "disk / files".into(),
    };
    v.culprits = culprits;
    Candidate {
        verdict: v,
        leads_to,
    }
}
