//! One thread's window split into categories, and its request-rate
//! evidence.

use super::{
    parks_for_a_task_scheduler, Category, Direction, FutexKey, FutexUse, SourceFacts, NCAT,
};
use holdup_model::{Resource, Snapshot, ThreadWindow, WaitKind, Waker};
use std::collections::BTreeSet;

/// Per-category time of one thread in one window, ns.
pub type Breakdown = [u64; NCAT];

/// Splits a thread's window into categories. `entry_tids` are the entry
/// threads of the source (used to tell "waiting for work" from a hand-off).
pub fn breakdown(s: &Snapshot, t: &ThreadWindow, f: &SourceFacts) -> Breakdown {
    let mut b = [0u64; NCAT];
    let st = &t.states;
    b[Category::OnCpu.index()] = st.on_cpu_ns;
    b[Category::RunQueue.index()] = st.runq_ns;
    b[Category::IoWait.index()] = st.iowait_ns;
    b[Category::OtherD.index()] = st.other_d_ns;
    let is_entry = f.is_entry(t.tid);

    // Wake-ups of this thread, by what it waited on.
    let edges: Vec<_> = s.wakeups.iter().filter(|e| e.wakee_tid == t.tid).collect();
    let waker_of = |w: &Waker| match w {
        // A peer of its own role signals it: it waited for something they
        // share (a lock, or a latch a lock manager sets on release).
        Waker::Thread { tid, .. } if f.are_kin(*tid, t.tid) => WakerRole::Kin,
        Waker::Thread { tid, .. } if f.is_entry(*tid) => WakerRole::Upstream,
        _ => WakerRole::Other,
    };

    // The sleeping part (interruptible) to distribute.
    let mut sleep_parts = [0u64; NCAT];
    let d_time = st.iowait_ns + st.other_d_ns;
    let mut file_ns = 0u64;
    for w in &t.waits {
        match w.kind {
            WaitKind::Futex
                if f.go_tgids.contains(&t.tgid) || parks_for_a_task_scheduler(&t.comm) =>
            {
                // An idle worker parked by a user-space scheduler (Go's Ms,
                // tokio, ForkJoin): tasks that wait (for a lock, a channel,
                // the network) do not block threads.
                sleep_parts[Category::WaitForWork.index()] += w.ns;
            }
            WaitKind::Futex => {
                let (mut lock, mut other) = (0u64, 0u64);
                for r in s
                    .resources
                    .iter()
                    .filter(|r| r.tid == t.tid && r.kind == WaitKind::Futex)
                {
                    let usage =
                        FutexKey::of(&r.resource).and_then(|k| f.futex_use.get(&k).copied());
                    if usage == Some(FutexUse::Lock) {
                        lock += r.wait_ns;
                    } else {
                        other += r.wait_ns;
                    }
                }
                let (lock, other) = scale_pair(lock, other, w.ns);
                sleep_parts[Category::FutexLock.index()] += lock;
                // Wakes by its own role are the lock futexes', counted above.
                let fedges: Vec<_> = edges
                    .iter()
                    .filter(|e| {
                        e.wait_kind == Some(WaitKind::Futex) && waker_of(&e.waker) != WakerRole::Kin
                    })
                    .collect();
                split_handoff(
                    other,
                    is_entry,
                    fedges.iter().map(|e| (waker_of(&e.waker), e.sleep_ns)),
                    &mut sleep_parts,
                );
            }
            WaitKind::FileRead | WaitKind::FileWrite => {
                let (mut pipe, mut file) = (0u64, 0u64);
                for r in s
                    .resources
                    .iter()
                    .filter(|r| r.tid == t.tid && r.kind == w.kind)
                {
                    match &r.resource {
                        Resource::File { file_type, .. } if file_type == "pipe" => {
                            pipe += r.wait_ns
                        }
                        _ => file += r.wait_ns,
                    }
                }
                let (pipe, file) = scale_pair(pipe, file, w.ns);
                file_ns += file;
                let pedges: Vec<_> = edges
                    .iter()
                    .filter(|e| e.wait_kind == Some(w.kind))
                    .collect();
                split_handoff(
                    pipe,
                    is_entry,
                    pedges.iter().map(|e| (waker_of(&e.waker), e.sleep_ns)),
                    &mut sleep_parts,
                );
            }
            WaitKind::SockRecv => {
                let (mut client, mut peer) = (0u64, 0u64);
                for r in s
                    .resources
                    .iter()
                    .filter(|r| r.tid == t.tid && r.kind == WaitKind::SockRecv)
                {
                    match &r.resource {
                        Resource::Socket(sock) if f.direction(sock) == Direction::Outbound => {
                            peer += r.wait_ns
                        }
                        _ => client += r.wait_ns,
                    }
                }
                let (client, peer) = scale_pair(client, peer, w.ns);
                sleep_parts[Category::RecvClient.index()] += client;
                sleep_parts[Category::RecvPeer.index()] += peer;
            }
            WaitKind::SockSend => sleep_parts[Category::Send.index()] += w.ns,
            WaitKind::Accept => sleep_parts[Category::Accept.index()] += w.ns,
            WaitKind::Connect => sleep_parts[Category::Connect.index()] += w.ns,
            WaitKind::Mux => {
                let (mut client, mut peer, mut thread_up, mut thread_other, mut kin) =
                    (0, 0, 0, 0, 0);
                for e in edges.iter().filter(|e| e.wait_kind == Some(WaitKind::Mux)) {
                    match &e.waker {
                        Waker::Socket(sock) => {
                            if f.direction(sock) == Direction::Outbound {
                                peer += e.sleep_ns
                            } else {
                                client += e.sleep_ns
                            }
                        }
                        Waker::Thread { tgid, tid, .. } => {
                            if !f.tgids.contains(tgid) {
                                // A client process writing to us over loopback.
                                client += e.sleep_ns
                            } else if f.are_kin(*tid, t.tid) {
                                kin += e.sleep_ns
                            } else if f.is_entry(*tid) {
                                thread_up += e.sleep_ns
                            } else {
                                thread_other += e.sleep_ns
                            }
                        }
                        Waker::Kernel => client += e.sleep_ns,
                    }
                }
                let total = client + peer + thread_up + thread_other + kin;
                if total == 0 {
                    sleep_parts[Category::PollClient.index()] += w.ns;
                } else {
                    let part = |x: u64| ((w.ns as u128 * x as u128) / total as u128) as u64;
                    let (p, tu, to, k) =
                        (part(peer), part(thread_up), part(thread_other), part(kin));
                    sleep_parts[Category::PollPeer.index()] += p;
                    sleep_parts[Category::FutexLock.index()] += k;
                    if is_entry {
                        sleep_parts[Category::Handoff.index()] += tu + to;
                    } else {
                        sleep_parts[Category::WaitForWork.index()] += tu;
                        sleep_parts[Category::Handoff.index()] += to;
                    }
                    sleep_parts[Category::PollClient.index()] += w.ns - p - tu - to - k;
                }
            }
            WaitKind::Other => sleep_parts[Category::OtherSleep.index()] += w.ns,
        }
    }
    // File waits overlap with iowait / D time, already counted as states.
    sleep_parts[Category::Vfs.index()] += file_ns.saturating_sub(d_time);

    // The parts cannot exceed the sleep time; what is left is other sleep.
    let claimed: u64 = sleep_parts.iter().sum();
    if claimed > st.sleep_ns && claimed > 0 {
        let mut given = 0u64;
        for (i, v) in sleep_parts.iter_mut().enumerate() {
            *v = ((*v as u128 * st.sleep_ns as u128) / claimed as u128) as u64;
            given += *v;
            b[i] += *v;
        }
        b[Category::OtherSleep.index()] += st.sleep_ns - given;
    } else {
        for (i, v) in sleep_parts.iter().enumerate() {
            b[i] += v;
        }
        b[Category::OtherSleep.index()] += st.sleep_ns - claimed;
    }
    b
}

/// Scales (a, b) so that they add up to `total` (keeps the ratio; all to `b`... no:
/// when both are zero, everything goes to `b`).
fn scale_pair(a: u64, b: u64, total: u64) -> (u64, u64) {
    if a + b == 0 {
        return (0, total);
    }
    let sa = ((total as u128 * a as u128) / (a + b) as u128) as u64;
    (sa, total - sa)
}

/// Splits hand-off time into "waiting for work" (woken by an entry thread,
/// for a non-entry thread) and a hand-off on the request path.
fn split_handoff(
    ns: u64,
    is_entry: bool,
    edges: impl Iterator<Item = (WakerRole, u64)>,
    out: &mut [u64; NCAT],
) {
    if ns == 0 {
        return;
    }
    let (mut up, mut kin, mut other) = (0u64, 0u64, 0u64);
    for (role, sleep) in edges {
        match role {
            WakerRole::Upstream => up += sleep,
            WakerRole::Kin => kin += sleep,
            WakerRole::Other => other += sleep,
        }
    }
    // Woken by its own role's peers: a lock (or latch); the rest as before.
    let (k, ns) = scale_pair(kin, up + other, ns);
    out[Category::FutexLock.index()] += k;
    if ns == 0 {
        return;
    }
    if is_entry {
        out[Category::Handoff.index()] += ns;
        return;
    }
    if up + other == 0 {
        // Blocked all window with nobody waking it: an idle worker.
        out[Category::WaitForWork.index()] += ns;
        return;
    }
    let (w, h) = scale_pair(up, other, ns);
    out[Category::WaitForWork.index()] += w;
    out[Category::Handoff.index()] += h;
}

/// Who signalled a thread, relative to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WakerRole {
    /// A peer of its own role.
    Kin,
    /// An entry thread of another role (work handed down).
    Upstream,
    /// Anyone else.
    Other,
}

/// Request-rate evidence of one thread in one window.
#[derive(Clone, Debug, Default)]
pub struct LoadSignals {
    /// Wake-ups by client data, accepts and blocking receives on client sockets.
    pub requests: u64,
    /// Receive calls on client sockets (only with per-call socket counting).
    pub recv_calls: u64,
    /// Client connections seen (peer addresses).
    pub clients: BTreeSet<String>,
}

/// Request-rate evidence of a thread in a window.
pub fn load_signals(s: &Snapshot, tid: u32, f: &SourceFacts) -> LoadSignals {
    let mut l = LoadSignals::default();
    for r in s.resources.iter().filter(|r| r.tid == tid) {
        let Resource::Socket(sock) = &r.resource else {
            continue;
        };
        if f.direction(sock) != Direction::Inbound {
            continue;
        }
        match r.kind {
            WaitKind::Accept => l.requests += r.waits,
            WaitKind::SockRecv => {
                l.requests += r.waits;
                l.recv_calls += r.calls;
                if !sock.peer.is_empty() {
                    l.clients.insert(sock.peer.clone());
                }
            }
            WaitKind::SockSend if !sock.peer.is_empty() => {
                l.clients.insert(sock.peer.clone());
            }
            _ => {}
        }
    }
    for e in s.wakeups.iter().filter(|e| e.wakee_tid == tid) {
        if let Waker::Socket(sock) = &e.waker {
            if f.direction(sock) == Direction::Inbound && e.wait_kind == Some(WaitKind::Mux) {
                l.requests += e.count;
                // One wake-up may be a neighbour's socket credited by the
                // collector's "data ready on this CPU" heuristic; a client
                // sends more than one request a window.
                if !sock.peer.is_empty() && e.count >= 2 {
                    l.clients.insert(sock.peer.clone());
                }
            }
        }
    }
    l
}
