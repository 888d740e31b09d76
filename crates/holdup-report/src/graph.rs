//! The dependency graph as inline SVG: who wakes whom (the diagnosis's
//! graph: roles of the service in the middle, the other processes, clients,
//! peers and the kernel that wake them on the left) and who holds the
//! service up (the culprits of the significant verdicts, on the right, with
//! a red edge to the role they hold up).

use holdup_diagnose::graph::{Graph, NodeKind};
use holdup_diagnose::Diagnosis;
use holdup_plot::escape_xml;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Most wake edges drawn: the graph keeps 40, a page shows the largest.
pub const MAX_DRAWN_EDGES: usize = 14;
/// Most culprits drawn.
const MAX_CULPRITS: usize = 6;

const WIDTH: f64 = 960.0;
const BOX_W: f64 = 210.0;
const BOX_H: f64 = 26.0;
const ROW: f64 = 40.0;
const TOP: f64 = 60.0;
const COLS: [f64; 3] = [20.0, 375.0, 730.0];

/// One box to draw.
struct Box {
    label: String,
    col: usize,
    row: usize,
    fill: &'static str,
    stroke: &'static str,
    title: String,
}

fn kind_colours(kind: NodeKind, entry: bool) -> (&'static str, &'static str) {
    match kind {
        NodeKind::Role if entry => ("#dbe9f6", "#0b4f8a"),
        NodeKind::Role => ("#eef4fa", "#5b7da0"),
        NodeKind::Process => ("#eeeeee", "#666666"),
        NodeKind::Clients => ("#e3f4ea", "#2e7d4f"),
        NodeKind::Peer => ("#f1e6f5", "#7a3e91"),
        NodeKind::Kernel => ("#f7f3e3", "#8a7a2e"),
    }
}

fn kind_word(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Role => "role of the service",
        NodeKind::Process => "another process",
        NodeKind::Clients => "the service's clients",
        NodeKind::Peer => "a peer the service calls",
        NodeKind::Kernel => "interrupts, timers, disk completions",
    }
}

/// The graph of a diagnosis as one SVG element.
pub fn svg(d: &Diagnosis) -> String {
    let g: &Graph = &d.graph;
    let mut edges: Vec<_> = g.edges.iter().collect();
    edges.sort_by(|a, b| b.incident_ms_per_s.total_cmp(&a.incident_ms_per_s));
    edges.truncate(MAX_DRAWN_EDGES);

    let mut boxes: Vec<Box> = Vec::new();
    let mut at: BTreeMap<String, usize> = BTreeMap::new();
    let mut rows = [0usize; 3];
    let mut place = |id: &str, boxes: &mut Vec<Box>, rows: &mut [usize; 3]| -> usize {
        if let Some(&i) = at.get(id) {
            return i;
        }
        let node = g.nodes.iter().find(|n| n.id == id);
        let (label, kind, entry) = match node {
            Some(n) => (n.label.clone(), n.kind, n.entry),
            None => (id.to_string(), NodeKind::Process, false),
        };
        let col = if kind == NodeKind::Role { 1 } else { 0 };
        let (fill, stroke) = kind_colours(kind, entry);
        boxes.push(Box {
            title: format!(
                "{label}: {}{}",
                kind_word(kind),
                if entry { " (serves clients)" } else { "" }
            ),
            label,
            col,
            row: rows[col],
            fill,
            stroke,
        });
        rows[col] += 1;
        at.insert(id.to_string(), boxes.len() - 1);
        boxes.len() - 1
    };
    // Entry roles first, so the request path reads from the top.
    for n in g
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Role && n.entry)
    {
        if edges.iter().any(|e| e.wakee == n.id || e.waker == n.id) {
            place(&n.id, &mut boxes, &mut rows);
        }
    }
    let drawn: Vec<(usize, usize, String, f64, f64)> = edges
        .iter()
        .map(|e| {
            let a = place(&e.waker, &mut boxes, &mut rows);
            let b = place(&e.wakee, &mut boxes, &mut rows);
            (
                a,
                b,
                e.resource.clone(),
                e.incident_ms_per_s,
                e.baseline_ms_per_s,
            )
        })
        .collect();

    // Culprits of significant verdicts hold up a role.
    let mut holds: Vec<(usize, Option<usize>, String)> = Vec::new();
    for v in d.verdicts.iter().filter(|v| v.significant) {
        let role_box = v.role.as_ref().and_then(|r| {
            at.get(&format!("role:{r}")).copied().or_else(|| {
                let i = boxes.len();
                boxes.push(Box {
                    label: r.clone(),
                    col: 1,
                    row: rows[1],
                    fill: "#eef4fa",
                    stroke: "#5b7da0",
                    title: format!("{r}: role of the service"),
                });
                rows[1] += 1;
                at.insert(format!("role:{r}"), i);
                Some(i)
            })
        });
        for c in v.culprits.iter().take(MAX_CULPRITS) {
            if holds.len() >= MAX_CULPRITS {
                break;
            }
            let label = format!("{} {}", kind_name(&c.kind), c.name);
            boxes.push(Box {
                label: label.clone(),
                col: 2,
                row: rows[2],
                fill: "#fbe3dc",
                stroke: "#b83c14",
                title: format!("{label} — {}", c.detail),
            });
            rows[2] += 1;
            holds.push((boxes.len() - 1, role_box, v.kind.title().to_string()));
        }
    }

    let height = TOP + ROW * rows.iter().copied().max().unwrap_or(0).max(1) as f64 + 30.0;
    let mut o = String::new();
    let _ = write!(
        o,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="graph" viewBox="0 0 {WIDTH} {height:.0}" width="{WIDTH}" height="{height:.0}" font-family="sans-serif" font-size="11" role="img" aria-label="dependency graph"><rect width="{WIDTH}" height="{height:.0}" fill="#ffffff"/>"##
    );
    for (col, head) in COLS.iter().zip([
        "wakes them (processes, clients, peers, kernel)",
        "the service's roles",
        "holds them up (culprits)",
    ]) {
        let _ = write!(
            o,
            r##"<text x="{col}" y="30" font-size="13" font-weight="bold" fill="#333333">{head}</text>"##
        );
    }
    o.push_str(r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" fill="#555555"/></marker><marker id="arrow-red" viewBox="0 0 10 10" refX="10" refY="5" markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" fill="#b83c14"/></marker></defs>"##);
    let centre = |b: &Box| (COLS[b.col], TOP + ROW * b.row as f64 + BOX_H / 2.0);
    if drawn.is_empty() && holds.is_empty() {
        let _ = write!(
            o,
            r##"<text class="message" x="{:.0}" y="{:.0}" text-anchor="middle" fill="#666666" font-size="14">no wake-ups between known threads were recorded</text>"##,
            WIDTH / 2.0,
            TOP + 20.0
        );
    }
    let peak = drawn.iter().map(|e| e.3).fold(0.0, f64::max).max(1e-9);
    for (a, b, resource, inc, base) in &drawn {
        let (ax, ay) = centre(&boxes[*a]);
        let (bx, by) = centre(&boxes[*b]);
        let w = 1.0 + 5.0 * (inc / peak).sqrt();
        let title = escape_xml(&format!(
            "{} wakes {} ({resource}): {inc:.1} ms/s of sleep ended in the incident, {base:.1} in the baseline",
            boxes[*a].label, boxes[*b].label
        ));
        let d = if a == b || boxes[*a].col == boxes[*b].col {
            // Within the middle column: an arc out to the right.
            let x = ax + BOX_W;
            format!(
                "M{x:.1} {ay:.1}C{:.1} {ay:.1} {:.1} {by:.1} {x:.1} {:.1}",
                x + 60.0,
                x + 60.0,
                by + if a == b { 8.0 } else { 0.0 }
            )
        } else {
            let (sx, tx) = (ax + BOX_W, bx);
            let mx = (sx + tx) / 2.0;
            format!("M{sx:.1} {ay:.1}C{mx:.1} {ay:.1} {mx:.1} {by:.1} {tx:.1} {by:.1}")
        };
        let _ = write!(
            o,
            r##"<path class="edge" d="{d}" fill="none" stroke="#555555" stroke-opacity="0.7" stroke-width="{w:.1}" marker-end="url(#arrow)"><title>{title}</title></path>"##
        );
        let (lx, ly) = if boxes[*a].col == boxes[*b].col {
            (ax + BOX_W + 50.0, (ay + by) / 2.0 - 3.0)
        } else {
            // A quarter of the way from the waker: edges that meet at one
            // role keep their labels apart.
            let sx = ax + BOX_W;
            (sx + (bx - sx) * 0.3, ay + (by - ay) * 0.2 - 4.0)
        };
        let _ = write!(
            o,
            r##"<text x="{lx:.1}" y="{ly:.1}" text-anchor="middle" font-size="10" fill="#444444">{} · {inc:.0} ms/s</text>"##,
            escape_xml(resource)
        );
    }
    for (c, role, why) in &holds {
        let (cx, cy) = centre(&boxes[*c]);
        let Some(r) = role else { continue };
        let (rx, ry) = centre(&boxes[*r]);
        let sx = rx + BOX_W;
        let mx = (sx + cx) / 2.0;
        let _ = write!(
            o,
            r##"<path class="holds" d="M{cx:.1} {cy:.1}C{mx:.1} {cy:.1} {mx:.1} {ry:.1} {sx:.1} {ry:.1}" fill="none" stroke="#b83c14" stroke-width="2.5" stroke-dasharray="6 3" marker-end="url(#arrow-red)"><title>{}</title></path>"##,
            escape_xml(&format!(
                "{} holds up {}: {why}",
                boxes[*c].label, boxes[*r].label
            ))
        );
    }
    for b in &boxes {
        let (x, y) = (COLS[b.col], TOP + ROW * b.row as f64);
        let _ = write!(
            o,
            r##"<g class="node"><rect x="{x:.1}" y="{y:.1}" width="{BOX_W}" height="{BOX_H}" rx="5" fill="{}" stroke="{}" stroke-width="1.5"/><text x="{:.1}" y="{:.1}" fill="#111111">{}</text><title>{}</title></g>"##,
            b.fill,
            b.stroke,
            x + 8.0,
            y + 17.0,
            escape_xml(&holdup_format::truncate(&b.label, 32)),
            escape_xml(&b.title)
        );
    }
    o.push_str("</svg>");
    o
}

fn kind_name(k: &holdup_diagnose::verdict::NamedKind) -> &'static str {
    use holdup_diagnose::verdict::NamedKind as K;
    match k {
        K::Process => "process",
        K::Role => "role",
        K::Thread => "thread",
        K::Futex => "lock",
        K::Peer => "peer",
        K::Disk => "disk",
        K::Cgroup => "cgroup",
        K::File => "file",
        K::Clients => "clients",
    }
}
