//! The thread dependency graph: who woke whom (waker → wakee), labelled with
//! the resource of the wait and the sleep time the wake-ups ended, for the
//! baseline and the incident. Nodes are roles of the service, other
//! processes, the service's clients, the peers it calls, and the kernel.

use crate::model::{Model, WinRef};
use crate::states::Direction;
use holdup_model::{WaitKind, Waker};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// What a node stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// A role of the service (a group of its threads).
    Role,
    /// Another process's threads.
    Process,
    /// The service's clients (data arriving on client sockets).
    Clients,
    /// A peer the service called.
    Peer,
    /// Interrupts, timers, disk completions.
    Kernel,
}

/// A node.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Node {
    /// Stable id ("role:NAME", "process:COMM", "peer:ADDR", "clients", "kernel").
    pub id: String,
    /// Label for people.
    pub label: String,
    /// Kind.
    pub kind: NodeKind,
    /// An entry-point role.
    pub entry: bool,
}

/// A waker → wakee edge.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Edge {
    /// Waker node id.
    pub waker: String,
    /// Wakee node id.
    pub wakee: String,
    /// Resource of the wait: futex, pipe/file, disk, socket, poll, timer/other, none.
    pub resource: String,
    /// Sleep time ended per second in the baseline, ms/s.
    pub baseline_ms_per_s: f64,
    /// In the incident, ms/s.
    pub incident_ms_per_s: f64,
    /// Wake-ups per second in the incident.
    pub incident_wakeups_per_s: f64,
}

/// The graph.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Graph {
    /// Nodes.
    pub nodes: Vec<Node>,
    /// Edges, largest incident time first.
    pub edges: Vec<Edge>,
}

/// Most edges kept.
pub const MAX_EDGES: usize = 40;

fn resource_label(kind: Option<WaitKind>, waker: &Waker) -> &'static str {
    match kind {
        Some(WaitKind::Futex) => "futex",
        Some(WaitKind::FileRead | WaitKind::FileWrite) => {
            if matches!(waker, Waker::Kernel) {
                "disk"
            } else {
                "pipe/file"
            }
        }
        Some(WaitKind::SockRecv | WaitKind::SockSend | WaitKind::Accept | WaitKind::Connect) => {
            "socket"
        }
        Some(WaitKind::Mux) => {
            if matches!(waker, Waker::Socket(_)) {
                "socket (poll)"
            } else {
                "poll"
            }
        }
        Some(WaitKind::Other) => "timer/other",
        None => "none",
    }
}

/// Builds the graph over both periods.
pub fn build(m: &Model, baseline: &[WinRef], incident: &[WinRef]) -> Graph {
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    // (waker, wakee, resource) -> [baseline ns, incident ns, incident count]
    let mut edges: BTreeMap<(String, String, String), [f64; 3]> = BTreeMap::new();
    let periods = [(baseline, 0usize), (incident, 1usize)];
    for (period, which) in periods {
        for w in period {
            let s = m.snapshot(*w);
            let facts = m.facts(*w);
            for e in &s.wakeups {
                let Some(wr) = m.role_of_thread(*w, e.wakee_tid) else {
                    continue;
                };
                let role = &m.roles[wr];
                let wakee = format!("role:{}", role.name);
                nodes.entry(wakee.clone()).or_insert_with(|| Node {
                    id: wakee.clone(),
                    label: role.name.clone(),
                    kind: NodeKind::Role,
                    entry: role.entry,
                });
                let (waker, label, kind, entry) = match &e.waker {
                    Waker::Thread { tgid, tid, comm } => match m.role_of_thread(*w, *tid) {
                        Some(r) if facts.tgids.contains(tgid) => (
                            format!("role:{}", m.roles[r].name),
                            m.roles[r].name.clone(),
                            NodeKind::Role,
                            m.roles[r].entry,
                        ),
                        _ => (
                            format!("process:{comm}"),
                            format!("{comm} (other process)"),
                            NodeKind::Process,
                            false,
                        ),
                    },
                    Waker::Socket(sock) => {
                        if facts.direction(sock) == Direction::Outbound {
                            (
                                format!("peer:{}", sock.peer),
                                format!("peer {}", sock.peer),
                                NodeKind::Peer,
                                false,
                            )
                        } else {
                            (
                                "clients".to_string(),
                                "clients".to_string(),
                                NodeKind::Clients,
                                false,
                            )
                        }
                    }
                    Waker::Kernel => (
                        "kernel".to_string(),
                        "kernel (irq, timer, disk)".to_string(),
                        NodeKind::Kernel,
                        false,
                    ),
                };
                nodes.entry(waker.clone()).or_insert_with(|| Node {
                    id: waker.clone(),
                    label,
                    kind,
                    entry,
                });
                let res = resource_label(e.wait_kind, &e.waker).to_string();
                let v = edges.entry((waker, wakee, res)).or_default();
                v[which] += e.sleep_ns as f64;
                if which == 1 {
                    v[2] += e.count as f64;
                }
            }
        }
    }
    let bs = m.period_secs(baseline).max(1e-9);
    let is = m.period_secs(incident).max(1e-9);
    let mut out: Vec<Edge> = edges
        .into_iter()
        .map(|((waker, wakee, resource), v)| Edge {
            waker,
            wakee,
            resource,
            baseline_ms_per_s: if baseline.is_empty() {
                0.0
            } else {
                v[0] / 1e6 / bs
            },
            incident_ms_per_s: if incident.is_empty() {
                0.0
            } else {
                v[1] / 1e6 / is
            },
            incident_wakeups_per_s: if incident.is_empty() { 0.0 } else { v[2] / is },
        })
        .filter(|e| e.baseline_ms_per_s >= 0.5 || e.incident_ms_per_s >= 0.5)
        .collect();
    out.sort_by(|a, b| {
        b.incident_ms_per_s
            .max(b.baseline_ms_per_s)
            .total_cmp(&a.incident_ms_per_s.max(a.baseline_ms_per_s))
    });
    out.truncate(MAX_EDGES);
    let used: std::collections::BTreeSet<&String> =
        out.iter().flat_map(|e| [&e.waker, &e.wakee]).collect();
    let nodes = nodes
        .into_values()
        .filter(|n| used.contains(&n.id))
        .collect();
    Graph { nodes, edges: out }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl Graph {
    /// The graph in Graphviz DOT (render with `dot -Tsvg`).
    pub fn to_dot(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "digraph holdup {{");
        let _ = writeln!(out, "  rankdir=LR;");
        let _ = writeln!(out, "  node [fontname=\"Helvetica\"];");
        let _ = writeln!(
            out,
            "  label=\"who wakes whom: resource, sleep time ended (baseline -> incident, ms/s)\";"
        );
        for n in &self.nodes {
            let shape = match n.kind {
                NodeKind::Role => "box",
                NodeKind::Process => "box",
                NodeKind::Clients | NodeKind::Peer => "ellipse",
                NodeKind::Kernel => "diamond",
            };
            let style = match (n.kind, n.entry) {
                (NodeKind::Role, true) => "bold",
                (NodeKind::Process, _) => "dashed",
                _ => "solid",
            };
            let _ = writeln!(
                out,
                "  \"{}\" [label=\"{}{}\" shape={shape} style={style}];",
                dot_escape(&n.id),
                dot_escape(&n.label),
                if n.entry { "\\n(entry)" } else { "" }
            );
        }
        for e in &self.edges {
            let width = (1.0 + e.incident_ms_per_s / 200.0).min(6.0);
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\" [label=\"{}\\n{:.0} -> {:.0} ms/s\" penwidth={width:.1}];",
                dot_escape(&e.waker),
                dot_escape(&e.wakee),
                dot_escape(&e.resource),
                e.baseline_ms_per_s,
                e.incident_ms_per_s
            );
        }
        let _ = writeln!(out, "}}");
        out
    }
}
