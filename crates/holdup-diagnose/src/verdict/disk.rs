//! Disk contention: the device, the service's share of it, and the other heavy submitters.

use super::*;

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
    let mut v = base_verdict(VerdictKind::DiskContention, m, g);
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
