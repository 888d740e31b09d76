//! Charts of a bpftrace run's `-f json` output: keyed maps as top bars,
//! histograms as buckets, scalars printed more than once as a series.

use crate::{
    axes, axis_labels, axis_top, clean, escape_xml, fmt_count, heading, message_svg, shorten,
    svg_open, y_grid, BOTTOM, LEFT, RIGHT, TOP,
};
use serde::Serialize;
use std::fmt::Write as _;

/// Most bars in one bpftrace map chart; the rest are summed as "other".
const MAX_BARS: usize = 20;

/// One chart of a bpftrace run's JSON output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BpftraceChart {
    /// The map it shows (`@name`).
    pub map: String,
    /// The SVG.
    pub svg: String,
}

/// Charts of a bpftrace `-f json` output: the last value of every keyed map
/// (top bars), every histogram (buckets), and every scalar map printed more
/// than once (its value over the prints). Lines that are not JSON, or JSON
/// of other types, are skipped: output may be cut at the output bound.
pub fn bpftrace_charts(output: &[u8]) -> Vec<BpftraceChart> {
    use serde_json::Value;
    // Keep the order of first appearance, the last value of each.
    let mut keyed: Vec<(String, Vec<(String, f64)>)> = Vec::new();
    let mut hists: Vec<(String, Vec<(String, f64)>)> = Vec::new();
    let mut scalars: Vec<(String, Vec<f64>)> = Vec::new();
    fn upsert<T>(v: &mut Vec<(String, T)>, k: &str, val: T) {
        match v.iter_mut().find(|(n, _)| n == k) {
            Some(e) => e.1 = val,
            None => v.push((k.to_string(), val)),
        }
    }
    for line in String::from_utf8_lossy(output).lines() {
        let Ok(j) = serde_json::from_str::<Value>(line.trim()) else {
            continue;
        };
        let Some(data) = j.get("data").and_then(Value::as_object) else {
            continue;
        };
        match j.get("type").and_then(Value::as_str) {
            Some("map") => {
                for (name, v) in data {
                    match v {
                        Value::Number(n) => {
                            let n = clean(n.as_f64().unwrap_or(0.0));
                            match scalars.iter_mut().find(|(k, _)| k == name) {
                                Some(e) => e.1.push(n),
                                None => scalars.push((name.clone(), vec![n])),
                            }
                        }
                        Value::Object(m) => {
                            let bars = m
                                .iter()
                                .filter_map(|(k, v)| Some((k.clone(), clean(v.as_f64()?))))
                                .collect();
                            upsert(&mut keyed, name, bars);
                        }
                        _ => {}
                    }
                }
            }
            Some("hist") | Some("lhist") => {
                for (name, v) in data {
                    let Some(buckets) = v.as_array() else {
                        continue;
                    };
                    let bars = buckets
                        .iter()
                        .filter_map(|b| {
                            let count = clean(b.get("count")?.as_f64()?);
                            let edge = |k: &str| b.get(k).and_then(Value::as_i64);
                            let label = match (edge("min"), edge("max")) {
                                (Some(lo), Some(hi)) => format!("{lo}–{hi}"),
                                (Some(lo), None) => format!("≥{lo}"),
                                (None, Some(hi)) => format!("<{hi}"),
                                (None, None) => "?".to_string(),
                            };
                            Some((label, count))
                        })
                        .collect();
                    upsert(&mut hists, name, bars);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (name, mut bars) in keyed {
        bars.sort_by(|a, b| b.1.total_cmp(&a.1));
        if bars.len() > MAX_BARS {
            let rest: f64 = bars[MAX_BARS - 1..].iter().map(|b| b.1).sum();
            let n = bars.len() - (MAX_BARS - 1);
            bars.truncate(MAX_BARS - 1);
            bars.push((format!("{n} others"), rest));
        }
        let svg = bars_svg(
            &format!("{name}: top keys"),
            "last printed value per key",
            &bars,
        );
        out.push(BpftraceChart { map: name, svg });
    }
    for (name, bars) in hists {
        let svg = bars_svg(&format!("{name}: histogram"), "count per bucket", &bars);
        out.push(BpftraceChart { map: name, svg });
    }
    for (name, values) in scalars.into_iter().filter(|(_, v)| v.len() > 1) {
        let svg = series_svg(&name, &values);
        out.push(BpftraceChart { map: name, svg });
    }
    out
}

/// Vertical bars with a label under each (rotated when there are many).
fn bars_svg(title: &str, sub: &str, bars: &[(String, f64)]) -> String {
    if bars.is_empty() {
        return message_svg(title, "the map was empty");
    }
    let peak = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    let (y_top, y_step) = axis_top(peak);
    let n = bars.len() as f64;
    let bw = (RIGHT - LEFT) / n;
    let py = |v: f64| BOTTOM - clean(v / y_top).min(1.0) * (BOTTOM - TOP);
    let mut out = String::new();
    svg_open(&mut out, title);
    heading(&mut out, title, sub);
    y_grid(&mut out, y_top, y_step, RIGHT, |v, _| fmt_count(v));
    for (i, (label, v)) in bars.iter().enumerate() {
        let x = LEFT + i as f64 * bw;
        let y = py(*v);
        w!(
            out,
            r##"<rect class="bar" x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="#0072b2"><title>{}: {}</title></rect>"##,
            x + bw * 0.1,
            bw * 0.8,
            (BOTTOM - y).max(0.0),
            escape_xml(label),
            fmt_count(*v)
        );
        let lx = x + bw / 2.0;
        let text = escape_xml(&shorten(label, 18));
        if bars.len() > 8 {
            w!(
                out,
                r##"<text x="{lx:.1}" y="{:.1}" font-size="9" text-anchor="end" transform="rotate(-35 {lx:.1} {:.1})">{text}</text>"##,
                BOTTOM + 12.0,
                BOTTOM + 12.0
            );
        } else {
            w!(
                out,
                r##"<text x="{lx:.1}" y="{:.1}" text-anchor="middle">{text}</text>"##,
                BOTTOM + 16.0
            );
        }
    }
    axes(&mut out, RIGHT);
    out.push_str("</svg>");
    out
}

/// A scalar map's value at each print, as a line.
fn series_svg(name: &str, values: &[f64]) -> String {
    let title = format!("{name} at each print");
    let peak = values.iter().copied().fold(0.0, f64::max);
    let (y_top, y_step) = axis_top(peak);
    let n = values.len().max(2) as f64 - 1.0;
    let px = |i: usize| LEFT + i as f64 / n * (RIGHT - LEFT);
    let py = |v: f64| BOTTOM - clean(v / y_top).clamp(0.0, 1.0) * (BOTTOM - TOP);
    let mut out = String::new();
    svg_open(&mut out, &title);
    heading(
        &mut out,
        &title,
        &format!(
            "{} prints, last {}",
            values.len(),
            fmt_count(*values.last().unwrap_or(&0.0))
        ),
    );
    y_grid(&mut out, y_top, y_step, RIGHT, |v, _| fmt_count(v));
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", px(i), py(*v)))
        .collect();
    w!(
        out,
        r##"<polyline class="series" points="{}" fill="none" stroke="#d55e00" stroke-width="2"/>"##,
        points.join(" ")
    );
    for (i, v) in values.iter().enumerate() {
        w!(
            out,
            r##"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="#d55e00"><title>print {}: {}</title></circle>"##,
            px(i),
            py(*v),
            i + 1,
            fmt_count(*v)
        );
    }
    axes(&mut out, RIGHT);
    axis_labels(&mut out, "print number", name, RIGHT);
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::assert_xmlish;

    /// Real `bpftrace -f json` output (0.17), trimmed, with a line cut at
    /// the output bound and a stray text line.
    const BPFTRACE_OUT: &str = r#"{"type": "attached_probes", "data": {"probes": 2}}
{"type": "map", "data": {"@ticks": 10}}
{"type": "map", "data": {"@ticks": 20}}
not json at all
{"type": "map", "data": {"@by": {"swapper/0": 24, "<b>&x": 3}}}
{"type": "hist", "data": {"@h": [{"min": 4, "max": 7, "count": 1}, {"min": 8, "max": 15, "count": 0}, {"min": 256, "max": 511, "count": 6}]}}
{"type": "map", "data": {"@ticks": 24}}
{"type": "map", "data": {"@cut": {"a"#;

    #[test]
    fn bpftrace_output_becomes_one_chart_per_map() {
        let charts = bpftrace_charts(BPFTRACE_OUT.as_bytes());
        let maps: Vec<&str> = charts.iter().map(|c| c.map.as_str()).collect();
        assert_eq!(maps, ["@by", "@h", "@ticks"]);
        for c in &charts {
            assert_xmlish(&c.svg);
        }
        // keyed map: one bar per key, biggest first, keys escaped
        let by = &charts[0].svg;
        assert_eq!(by.matches(r#"class="bar""#).count(), 2);
        assert!(by.find("swapper/0: 24").unwrap() < by.find("&lt;b&gt;&amp;x: 3").unwrap());
        assert!(!by.contains("<b>"));
        // histogram: every bucket, in order
        let h = &charts[1].svg;
        assert_eq!(h.matches(r#"class="bar""#).count(), 3);
        assert!(h.find("4–7").unwrap() < h.find("256–511").unwrap());
        // scalar printed three times: a series of three points
        let t = &charts[2].svg;
        assert_eq!(t.matches("<circle").count(), 3);
        assert!(t.contains("3 prints, last 24"));
    }

    #[test]
    fn bpftrace_maps_with_many_keys_keep_the_top_and_sum_the_rest() {
        let keys: Vec<String> = (0..30).map(|i| format!("\"k{i}\": {}", i + 1)).collect();
        let line = format!(
            r#"{{"type": "map", "data": {{"@m": {{{}}}}}}}"#,
            keys.join(", ")
        );
        let charts = bpftrace_charts(line.as_bytes());
        assert_eq!(charts.len(), 1);
        let svg = &charts[0].svg;
        assert_eq!(svg.matches(r#"class="bar""#).count(), MAX_BARS);
        assert!(svg.contains("k29: 30"));
        // keys k0..k10 (values 1..=11) are folded: 66 in all
        assert!(svg.contains("11 others: 66"), "{svg}");
    }

    #[test]
    fn bpftrace_output_without_maps_has_no_charts() {
        assert!(bpftrace_charts(b"").is_empty());
        assert!(bpftrace_charts(b"{\"type\": \"printf\", \"data\": \"hi\"}\n").is_empty());
        // a scalar printed once is a number, not a chart
        assert!(bpftrace_charts(b"{\"type\": \"map\", \"data\": {\"@n\": 5}}\n").is_empty());
    }

    proptest::proptest! {
        /// Whatever a run printed (cut anywhere, any bytes), the charts
        /// are built without panicking and are well-formed.
        #[test]
        fn bpftrace_charts_survive_any_output(
            cut in 0usize..BPFTRACE_OUT.len(),
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
        ) {
            let mut bytes = BPFTRACE_OUT.as_bytes()[..cut].to_vec();
            bytes.extend_from_slice(&junk);
            for c in bpftrace_charts(&bytes) {
                assert_xmlish(&c.svg);
            }
        }

    }
}
