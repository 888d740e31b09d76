//! Slow external service: the peer the service waits for.

use super::*;

/// Without a baseline, a peer that answers in at least this many µs per
/// wait while taking at least [`ALONE_PEER_SHARE`] of the busy time holds
/// the service up, below the share threshold.
pub const ALONE_PEER_SLOW_US: f64 = 2000.0;
/// See [`ALONE_PEER_SLOW_US`].
pub const ALONE_PEER_SHARE: f64 = 0.6;

/// Without a baseline, a watched local peer that takes this share of the
/// busy time is examined for its own hold-ups.
pub const ALONE_FOLLOW_SHARE: f64 = 0.3;

/// A peer is slower when its answers take at least this factor longer per wait.
pub const PEER_SLOWER: f64 = 1.15;

pub(super) fn candidate(
    m: &Model,
    b: &[WinRef],
    i: &[WinRef],
    g: &Growth,
    missing: &mut Vec<String>,
) -> Candidate {
    let role = m.roles[g.role].name.clone();
    #[derive(Default)]
    struct P {
        ns: [f64; 2],
        waits: [f64; 2],
        hist: [Histogram; 2],
    }
    let mut peers: BTreeMap<String, P> = BTreeMap::new();
    for (which, period) in [(0usize, b), (1usize, i)] {
        for w in period {
            let s = m.snapshot(*w);
            let f = m.facts(*w);
            for r in &s.resources {
                if m.role_of_thread(*w, r.tid) != Some(g.role) {
                    continue;
                }
                if !matches!(
                    r.kind,
                    WaitKind::SockRecv | WaitKind::SockSend | WaitKind::Connect
                ) {
                    continue;
                }
                let Resource::Socket(sock) = &r.resource else {
                    continue;
                };
                if f.direction(sock) != Direction::Outbound {
                    continue;
                }
                let p = peers.entry(sock.peer.clone()).or_default();
                p.ns[which] += r.wait_ns as f64;
                p.waits[which] += r.waits as f64;
                p.hist[which].merge(&r.hist);
            }
            for e in &s.wakeups {
                if e.wait_kind != Some(WaitKind::Mux)
                    || m.role_of_thread(*w, e.wakee_tid) != Some(g.role)
                {
                    continue;
                }
                if let Waker::Socket(sock) = &e.waker {
                    if f.direction(sock) == Direction::Outbound {
                        let p = peers.entry(sock.peer.clone()).or_default();
                        p.ns[which] += e.sleep_ns as f64;
                        p.waits[which] += e.count as f64;
                    }
                }
            }
        }
    }
    let (bs, is) = (m.period_secs(b), m.period_secs(i));
    let mut v = base_verdict(VerdictKind::SlowExternalService, m, g);
    v.evidence.push(time_line(m, g));
    let mut rows: Vec<(String, P)> = peers.into_iter().collect();
    rows.sort_by(|x, y| {
        (y.1.ns[1] / is - y.1.ns[0] / bs).total_cmp(&(x.1.ns[1] / is - x.1.ns[0] / bs))
    });
    let mut leads_to = "a peer service".to_string();
    for (peer, p) in rows.iter().take(3) {
        let per = |w: usize| {
            if p.waits[w] > 0.0 {
                p.ns[w] / p.waits[w] / 1e3
            } else {
                0.0
            }
        };
        v.culprits.push(Named {
            kind: NamedKind::Peer,
            name: peer.clone(),
            ids: Vec::new(),
            detail: format!(
                "waited {}; {} per wait{}, {} waits/s",
                ba(
                    g.alone,
                    fmt::ms_per_s(p.ns[0] / bs),
                    fmt::ms_per_s(p.ns[1] / is)
                ),
                ba(g.alone, fmt::us(per(0)), fmt::us(per(1))),
                hist_q(&p.hist[1], 0.99)
                    .map(|q| format!(" (p99 {})", fmt::us(q)))
                    .unwrap_or_default(),
                ba(
                    g.alone,
                    format!("{:.0}", p.waits[0] / bs),
                    format!("{:.0}", p.waits[1] / is)
                )
            ),
        });
    }
    if let Some(c) = v.culprits.first() {
        leads_to = format!("peer {}", c.name);
        v.evidence.push(format!("peer {}: {}", c.name, c.detail));
        let p = &rows[0].1;
        let per = |w: usize| {
            if p.waits[w] > 0.0 {
                p.ns[w] / p.waits[w] / 1e3
            } else {
                0.0
            }
        };
        v.summary = format!(
            "{role} waits for the peer {}: {}, {} per request",
            c.name,
            change(g),
            ba(g.alone, fmt::us(per(0)), fmt::us(per(1)))
        );
        if g.alone
            && !v.significant
            && g.share_after >= ALONE_PEER_SHARE
            && per(1) >= ALONE_PEER_SLOW_US
        {
            // Without a baseline a share alone cannot tell a healthy proxy
            // from a stalled one; answers that take milliseconds while the
            // peer holds most of the request can.
            v.significant = true;
            v.score = v.score.max(0.6);
            v.evidence.push(format!(
                "the peer takes {} per wait and {} of the busy time (a slow peer without a baseline: ≥ {} per wait and ≥ {})",
                fmt::us(per(1)),
                fmt::pct(g.share_after),
                fmt::us(ALONE_PEER_SLOW_US),
                fmt::pct(ALONE_PEER_SHARE)
            ));
        }
        if !g.alone && per(0) > 0.0 && per(1) < PEER_SLOWER * per(0) {
            // A slow peer answers more slowly; more waits at the old speed
            // is more calls (or noise), not a slower service.
            v.significant = false;
            v.score = v.score.min(0.3);
            v.evidence.push(format!(
                "the peer answers as fast as before ({} → {} per wait): not slower",
                fmt::us(per(0)),
                fmt::us(per(1))
            ));
        }
    } else {
        v.summary = format!(
            "{role} waits on outgoing connections: {}; the peer address was not resolved",
            change(g)
        );
        if g.significant {
            missing.push("the peer of the outgoing waits was not resolved (no socket addresses in the wait records)".into());
        }
    }
    Candidate {
        verdict: v,
        leads_to,
    }
}

/// The role of the watched threads that serve `addr` (their sockets' local
/// address is the peer address `role` waits on), other than `role`: a local
/// peer the collector followed, or one watched with the service.
pub(super) fn local_peer_role(m: &Model, i: &[WinRef], role: usize, addr: &str) -> Option<usize> {
    let mut by_role: BTreeMap<usize, u64> = BTreeMap::new();
    for w in i {
        let s = m.snapshot(*w);
        let served = s
            .resources
            .iter()
            .filter_map(|r| match &r.resource {
                Resource::Socket(sock) if sock.local == addr => Some((r.tid, r.wait_ns)),
                _ => None,
            })
            .chain(s.wakeups.iter().filter_map(|e| match &e.waker {
                Waker::Socket(sock) if sock.local == addr => Some((e.wakee_tid, e.sleep_ns)),
                _ => None,
            }));
        for (tid, ns) in served {
            if let Some(r) = m.role_of_thread(*w, tid).filter(|r| *r != role) {
                *by_role.entry(r).or_default() += ns.max(1);
            }
        }
    }
    by_role
        .into_iter()
        .max_by_key(|(_, ns)| *ns)
        .map(|(r, _)| r)
}

/// Kinds that say why a local peer is slow on their own; a peer that only
/// sleeps, waits for its own peer or is busy with its work stays "a slow
/// peer".
const PEER_ROOT_CAUSES: [VerdictKind; 5] = [
    VerdictKind::CpuContention,
    VerdictKind::CpuThrottled,
    VerdictKind::DiskContention,
    VerdictKind::DiskThrottled,
    VerdictKind::LockContention,
];

/// A significant root cause in a local peer's role ranks above the slow-peer
/// verdict that led to it, and says so.
pub(super) fn blame_through_local_peers(
    m: &Model,
    local_peers: &[(usize, String, f64, usize)],
    candidates: &mut [Candidate],
) {
    for (peer_role, addr, peer_score, caller) in local_peers {
        let name = &m.roles[*peer_role].name;
        for c in candidates.iter_mut() {
            let v = &mut c.verdict;
            if !v.significant
                || !PEER_ROOT_CAUSES.contains(&v.kind)
                || v.role.as_deref() != Some(name.as_str())
            {
                continue;
            }
            v.score = v.score.max(peer_score + 0.01).min(1.0);
            v.evidence.insert(
                0,
                format!(
                    "{} waits for the peer {addr}, which is {name} on this host (watched as a local peer): this is what holds the peer up",
                    m.roles[*caller].name
                ),
            );
        }
    }
}
