//! From a diagnosed incident to the contention that regenerates it: which
//! generators, with which recorded quantities, or why it cannot be done
//! from outside the service.

use holdup_diagnose::verdict::NamedKind;
use holdup_diagnose::{Diagnosis, VerdictKind};
use holdup_model::{Resource, Snapshot, WaitKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One thing that regenerates part of the recorded contention.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Contention {
    /// CPU hogs on the service's CPUs.
    CpuHogs {
        /// The recorded culprit's name (for the report).
        like: String,
        /// Hog threads.
        threads: u32,
        /// CPU each hog may use (its cgroup's quota), in CPUs.
        share: f64,
    },
    /// A writer on the service's filesystem.
    DiskWriter {
        /// The recorded heavy submitter's name.
        like: String,
        /// Bytes written per second.
        bytes_per_s: f64,
        /// Size of each write (the recorded request size), bytes.
        block_bytes: u64,
        /// An fsync after this many writes (1: every write).
        fsync_every: u32,
    },
    /// A delay proxy in front of the recorded peer.
    SlowPeer {
        /// The recorded peer address.
        peer: String,
        /// Delay added to each answer, ms.
        delay_ms: f64,
    },
    /// More of the client load.
    MoreLoad {
        /// Copies of the load command in the incident phase (None: as
        /// many as it takes to reach `service_cpu`, measured in the lab).
        copies: Option<u32>,
        /// The service's recorded CPU use in the incident, CPU-s/s.
        service_cpu: f64,
    },
}

/// What `holdup reproduce` will do for an incident.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// The incident's top verdict kind.
    pub verdict: String,
    /// Its summary.
    pub summary: String,
    /// The incident was judged alone (no baseline): the lab run is too
    /// (the contention runs from its start).
    pub judged_alone: bool,
    /// The generators, empty when it cannot be reproduced.
    pub contention: Vec<Contention>,
    /// Why it cannot be reproduced from outside, and what to do instead.
    pub cannot: Option<String>,
}

/// Windows of the diagnosis's incident period (by window index).
fn incident_windows<'a>(d: &Diagnosis, windows: &'a [Snapshot]) -> Vec<&'a Snapshot> {
    let wanted: BTreeSet<u64> = d
        .timeline
        .iter()
        .filter(|p| p.period == "incident")
        .map(|p| p.window)
        .collect();
    windows
        .iter()
        .filter(|s| wanted.contains(&s.window.index))
        .collect()
}

fn secs(ws: &[&Snapshot]) -> f64 {
    ws.iter()
        .map(|s| s.window.duration_ns() as f64 / 1e9)
        .sum::<f64>()
        .max(1e-9)
}

/// The service's CPU use per second over some windows, CPU-s/s.
fn service_cpu(ws: &[&Snapshot]) -> f64 {
    let ns: u64 = ws
        .iter()
        .flat_map(|s| &s.threads)
        .map(|t| t.states.on_cpu_ns)
        .sum();
    ns as f64 / 1e9 / secs(ws)
}

fn baseline_windows<'a>(d: &Diagnosis, windows: &'a [Snapshot]) -> Vec<&'a Snapshot> {
    let wanted: BTreeSet<u64> = d
        .timeline
        .iter()
        .filter(|p| p.period == "baseline")
        .map(|p| p.window)
        .collect();
    windows
        .iter()
        .filter(|s| wanted.contains(&s.window.index))
        .collect()
}

fn cpu_hogs(d: &Diagnosis, ws: &[&Snapshot]) -> Option<Contention> {
    let named: Vec<String> = d
        .top()
        .culprits
        .iter()
        .filter(|c| c.kind == NamedKind::Process)
        .map(|c| c.name.clone())
        .collect();
    let like = named.first()?.clone();
    let service: BTreeSet<u32> = ws.iter().flat_map(|s| &s.threads).map(|t| t.tgid).collect();
    // Per culprit thread: CPU held while the service waited.
    let mut held: BTreeMap<u32, u64> = BTreeMap::new();
    let mut victims: BTreeSet<u32> = BTreeSet::new();
    for s in ws {
        for c in &s.culprits {
            if c.comm == like && !service.contains(&c.tgid) {
                *held.entry(c.tid).or_default() += c.ns;
                victims.insert(c.victim_tid);
            }
        }
    }
    let runq: u64 = ws
        .iter()
        .flat_map(|s| &s.threads)
        .filter(|t| victims.contains(&t.tid))
        .map(|t| t.states.runq_ns)
        .sum();
    let total = secs(ws) * 1e9;
    let heavy: Vec<u64> = held
        .values()
        .copied()
        .filter(|ns| *ns as f64 >= 0.05 * total)
        .collect();
    let threads = heavy.len().max(1) as u32;
    // The share of the service's run-queue wait each hog filled: a hog
    // that held the CPU for most of the wait wanted most of a CPU.
    let share = if runq > 0 {
        heavy.iter().sum::<u64>() as f64 / runq as f64 / threads as f64
    } else {
        1.0
    };
    Some(Contention::CpuHogs {
        like,
        threads,
        share: share.clamp(0.3, 1.0),
    })
}

fn disk_writer(d: &Diagnosis, ws: &[&Snapshot]) -> Option<Contention> {
    let named: BTreeSet<String> = d
        .top()
        .culprits
        .iter()
        .filter(|c| c.kind == NamedKind::Process)
        .map(|c| c.name.clone())
        .collect();
    let (mut bytes, mut writes, mut requests) = (0u64, 0u64, 0u64);
    let mut like = String::new();
    for s in ws {
        for io in &s.disks {
            if io.is_target || !(named.is_empty() || named.contains(&io.comm)) {
                continue;
            }
            bytes += io.bytes;
            writes += io.write_bytes;
            requests += io.requests;
            if like.is_empty() {
                like = io.comm.clone();
            }
        }
    }
    if bytes == 0 {
        return None;
    }
    // Request sizes are split by the block layer (at most 1 MiB here);
    // O_DIRECT needs a multiple of 4 KiB.
    let block = (bytes / requests.max(1)).clamp(4096, 1 << 20) / 4096 * 4096;
    Some(Contention::DiskWriter {
        like,
        bytes_per_s: writes.max(bytes / 2) as f64 / secs(ws),
        block_bytes: block,
        fsync_every: 1,
    })
}

fn slow_peer(d: &Diagnosis, ws: &[&Snapshot]) -> Option<Contention> {
    let peer = d
        .top()
        .culprits
        .iter()
        .find(|c| c.kind == NamedKind::Peer)?
        .name
        .clone();
    let (mut ns, mut waits) = (0u64, 0u64);
    for s in ws {
        for r in &s.resources {
            if let Resource::Socket(sock) = &r.resource {
                if sock.peer == peer && matches!(r.kind, WaitKind::SockRecv | WaitKind::Mux) {
                    ns += r.wait_ns;
                    waits += r.waits;
                }
            }
        }
    }
    let delay_ms = if waits > 0 {
        ns as f64 / waits as f64 / 1e6
    } else {
        10.0
    };
    Some(Contention::SlowPeer {
        peer,
        delay_ms: delay_ms.clamp(0.1, 5000.0),
    })
}

/// What cannot be made from outside the service, and what to do instead.
fn cannot(kind: VerdictKind, d: &Diagnosis) -> Option<String> {
    let role = d.top().role.clone().unwrap_or_else(|| "the service".into());
    Some(match kind {
        VerdictKind::LockContention => format!(
            "the incident is lock contention inside the service ({role}'s threads wait for each other): a lock inside a process cannot be regenerated from outside it. Instead: run the lab copy under the recorded load with more concurrency (more client connections: --load with a larger connection count, more worker threads), or use the service's own knob that lengthens the critical section (a debug or configuration setting); `holdup diagnose` on that run shows whether the same lock builds up"
        ),
        VerdictKind::HandoffStall => format!(
            "the incident is a slow stage inside the service ({role} hands work to another of its threads): that stage's slowness is inside the process and cannot be regenerated from outside. Instead: reproduce what holds the slow stage up (see the diagnosis's path) or slow that stage with the service's own settings"
        ),
        VerdictKind::CpuThrottled => "the incident is the service's own CPU limit: holdup does not change the lab copy's limits. Instead: start the lab copy under the same limit (systemd-run -p CPUQuota=N% ..., or its cgroup's cpu.max) and run `holdup reproduce` with no contention, or `holdup record` it".to_string(),
        VerdictKind::OtherWait => "the incident is more sleeping in other system calls (sleeps the service chose): nothing outside the service makes it sleep. Instead: look at the service's own timers and waits".to_string(),
        VerdictKind::NoSignificantChange | VerdictKind::NothingHoldsItUp | VerdictKind::InsufficientData => format!(
            "the incident's diagnosis found nothing that holds the service up ({}): there is no contention to regenerate",
            kind.title()
        ),
        _ => return None,
    })
}

/// The plan for an incident from its diagnosis and windows.
pub fn plan(d: &Diagnosis, windows: &[Snapshot]) -> Plan {
    let top = d.top();
    let ws = incident_windows(d, windows);
    let judged_alone = d.mode == holdup_diagnose::Mode::IncidentOnly;
    let mut contention = Vec::new();
    let mut why = cannot(top.kind, d);
    let missing = |what: &str| {
        Some(format!(
            "the incident's diagnosis is {} but the recording does not say {what}, so there is nothing to regenerate it with",
            top.kind.title()
        ))
    };
    match top.kind {
        VerdictKind::CpuContention => match cpu_hogs(d, &ws) {
            Some(c) => contention.push(c),
            None => why = missing("which process took the CPU"),
        },
        VerdictKind::DiskContention => match disk_writer(d, &ws) {
            Some(c) => contention.push(c),
            None => {
                why = Some(
                    "the incident is disk contention by the service's own I/O (no other submitter was seen): more of the service's own load regenerates it (--load)".into(),
                );
            }
        },
        VerdictKind::SlowExternalService => match slow_peer(d, &ws) {
            Some(c) => contention.push(c),
            None => why = missing("which peer was slow"),
        },
        VerdictKind::MoreLoad | VerdictKind::CpuSaturation => {
            let cpu = service_cpu(&ws);
            let copies = (!judged_alone).then(|| {
                let before = service_cpu(&baseline_windows(d, windows)).max(1e-3);
                (cpu / before).round().clamp(2.0, 8.0) as u32
            });
            contention.push(Contention::MoreLoad {
                copies,
                service_cpu: cpu,
            });
        }
        _ => {}
    }
    Plan {
        verdict: crate::fingerprint::kind_name(top.kind),
        summary: top.summary.clone(),
        judged_alone,
        cannot: if contention.is_empty() { why } else { None },
        contention,
    }
}
