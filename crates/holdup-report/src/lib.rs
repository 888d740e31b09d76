//! `holdup report`: one self-contained HTML page of a recording and its
//! diagnosis that a person can attach to a ticket. The recording's facts,
//! thread states over time, run-queue and disk latency histograms (the
//! plots of `holdup-plot`), the dependency graph ([`graph`]) and the
//! diagnosis (holdup-diagnose's verdicts, evidence and text).
//!
//! Self-contained: inline CSS and SVG, no scripts, no fonts, no images or
//! links to anything outside the page, so it opens the same offline, from a
//! mail attachment or a ticket, years later. Every text from the recording
//! (thread names, command lines) is escaped.

#![warn(missing_docs)]

pub mod graph;

use holdup_diagnose::verdict::Level;
use holdup_diagnose::Diagnosis;
use holdup_format as fmt;
use holdup_plot::escape_xml as esc;
use holdup_record::{ReadStatus, Recording};
use std::fmt::Write as _;

/// The page's style: plain, printable, readable without colour.
const CSS: &str = r#"
body { font-family: sans-serif; margin: 0 auto; max-width: 1000px; padding: 16px 24px; color: #1d1d1d; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; border-bottom: 1px solid #ccc; padding-bottom: 3px; margin-top: 28px; }
table.facts td { padding: 2px 12px 2px 0; vertical-align: top; }
table.facts td:first-child { color: #555; white-space: nowrap; }
.verdict { border-left: 5px solid #999; padding: 6px 12px; margin: 10px 0; background: #fafafa; }
.verdict.significant { border-color: #b83c14; background: #fdf3ef; }
.verdict h3 { font-size: 15px; margin: 2px 0 6px; }
.verdict .score { color: #555; font-weight: normal; font-size: 13px; }
.now { font-size: 17px; padding: 10px 14px; background: #fdf3ef; border: 1px solid #e3b3a2; }
.quiet { background: #f1f6f1; border-color: #b5d0b5; }
ul { margin: 4px 0; padding-left: 20px; }
li { margin: 2px 0; }
pre { background: #f5f5f5; padding: 10px; overflow-x: auto; font-size: 12px; }
svg { max-width: 100%; height: auto; display: block; margin: 8px 0; }
.muted { color: #666; font-size: 13px; }
"#;

/// What a report is made of.
pub struct ReportInput<'a> {
    /// The recording.
    pub recording: &'a Recording,
    /// Where it was read from, for the title.
    pub source: &'a str,
    /// Its diagnosis (by `holdup_diagnose::diagnose` on the same windows).
    pub diagnosis: &'a Diagnosis,
}

/// The whole page.
pub fn render(input: &ReportInput) -> String {
    let rec = input.recording;
    let d = input.diagnosis;
    let mut o = String::new();
    let title = format!("holdup report: {}", rec.header.target);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head><body>",
        esc(&title)
    );
    let _ = write!(
        o,
        "<h1>{}</h1><p class=\"muted\">from {} · made by holdup {}</p>",
        esc(&title),
        esc(input.source),
        esc(env!("CARGO_PKG_VERSION"))
    );
    headline(&mut o, d);
    facts(&mut o, rec);
    let _ = write!(
        o,
        "<section id=\"states\"><h2>Thread states over time</h2>{}</section>",
        holdup_plot::states_svg(rec)
    );
    let _ = write!(
        o,
        "<section id=\"latency\"><h2>Latency</h2><div id=\"runq\">{}</div><div id=\"disk\">{}</div></section>",
        holdup_plot::runq_svg(rec),
        holdup_plot::disk_latency_svg(rec)
    );
    let _ = write!(
        o,
        "<section id=\"graph\"><h2>Who wakes whom, and who holds them up</h2><p class=\"muted\">Grey arrows: waker → woken role, labelled with the resource of the wait and the sleep it ended (ms per second, incident). Red dashed arrows: the culprits of the significant verdicts and the role they hold up.</p>{}</section>",
        graph::svg(d)
    );
    diagnosis(&mut o, d);
    o.push_str("</body></html>\n");
    o
}

/// The answer first: the top verdict and whom it names.
fn headline(o: &mut String, d: &Diagnosis) {
    let v = d.top();
    let quiet = if v.significant { "" } else { " quiet" };
    let names: Vec<String> = v.culprits.iter().take(4).map(|c| c.name.clone()).collect();
    let _ =
        write!(
        o,
        "<section id=\"verdict\"><p class=\"now{quiet}\"><strong>{}</strong>: {}{}</p></section>",
        esc(v.kind.title()),
        esc(&v.summary),
        if names.is_empty() {
            String::new()
        } else {
            format!(" <span class=\"culprits\">(culprits: {})</span>", esc(&names.join(", ")))
        }
    );
}

fn facts(o: &mut String, rec: &Recording) {
    let h = &rec.header;
    let s = holdup_record::summary::summarize(h, &rec.windows);
    let status = match &rec.status {
        ReadStatus::Complete => "complete".to_string(),
        other => other.describe(),
    };
    let rows: Vec<(&str, String)> = vec![
        ("target", h.target.to_string()),
        ("host", h.host.clone()),
        ("kernel", h.kernel.clone()),
        (
            "recorded by",
            format!(
                "holdup {} (format {}, schema {})",
                h.holdup_version, h.format_version, h.schema_version
            ),
        ),
        ("started", fmt::utc_ms(h.started_unix_ms as i64)),
        (
            "windows",
            format!(
                "{} of {} ms, {:.1} s in all",
                s.windows,
                h.interval_ms,
                s.span_ns as f64 / 1e9
            ),
        ),
        ("threads seen", s.thread_count.to_string()),
        ("lost data", s.loss.to_string()),
        ("file", status),
        ("command", h.argv.join(" ")),
    ];
    o.push_str("<section id=\"facts\"><h2>Recording</h2><table class=\"facts\">");
    for (k, v) in rows {
        let _ = write!(o, "<tr><td>{k}</td><td>{}</td></tr>", esc(&v));
    }
    o.push_str("</table></section>");
}

fn diagnosis(o: &mut String, d: &Diagnosis) {
    o.push_str("<section id=\"diagnosis\"><h2>Diagnosis</h2>");
    let _ = write!(
        o,
        "<p class=\"muted\">{} windows; {}</p>",
        d.windows,
        esc(&d.split.detail)
    );
    for v in &d.verdicts {
        let level = match v.confidence.level {
            Level::High => "high",
            Level::Medium => "medium",
            Level::Low => "low",
        };
        let _ = write!(
            o,
            "<div class=\"verdict{}\"><h3>{}{} <span class=\"score\">score {:.2}, confidence {level}{}</span></h3><p>{}</p>",
            if v.significant { " significant" } else { "" },
            esc(v.kind.title()),
            v.role.as_ref().map(|r| format!(" in {}", esc(r))).unwrap_or_default(),
            v.score,
            if v.significant { "" } else { ", a weak signal" },
            esc(&v.summary)
        );
        if !v.culprits.is_empty() {
            o.push_str("<p>Culprits:</p><ul class=\"culprit-list\">");
            for c in &v.culprits {
                let _ = write!(
                    o,
                    "<li><strong>{}</strong> — {}</li>",
                    esc(&c.name),
                    esc(&c.detail)
                );
            }
            o.push_str("</ul>");
        }
        if !v.evidence.is_empty() {
            o.push_str("<p>Evidence:</p><ul class=\"evidence\">");
            for e in &v.evidence {
                let _ = write!(o, "<li>{}</li>", esc(e));
            }
            o.push_str("</ul>");
        }
        let _ = write!(
            o,
            "<p class=\"muted\">{}</p></div>",
            esc(&v.confidence.text)
        );
    }
    if !d.missing.is_empty() {
        o.push_str("<p>Missing or weak data:</p><ul class=\"missing\">");
        for m in &d.missing {
            let _ = write!(o, "<li>{}</li>", esc(m));
        }
        o.push_str("</ul>");
    }
    let _ = write!(
        o,
        "<h3>As <code>holdup diagnose</code> prints it</h3><pre class=\"diagnosis-text\">{}</pre></section>",
        esc(&holdup_diagnose::text::render(d))
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdup_model::Target;
    use holdup_record::{Recorder, RecordingHeader};
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// A writer the test reads back after the recorder took it.
    #[derive(Clone, Default)]
    struct SharedBuf(Arc<Mutex<Vec<u8>>>);

    impl Write for SharedBuf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A recording with no windows, of a command whose arguments are markup.
    fn empty_recording() -> Recording {
        let header = RecordingHeader::new(
            Target::Command {
                argv: vec!["./srv".into(), "<script>alert(1)</script>".into()],
                pid: 7,
            },
            1000,
            vec!["holdup".into(), "record".into(), "<b>&".into()],
        );
        let buf = SharedBuf::default();
        let rec = Recorder::from_writer(buf.clone(), "memory", &header).unwrap();
        rec.finish().unwrap();
        let bytes = buf.0.lock().unwrap().clone();
        Recording::from_bytes(&bytes).unwrap()
    }

    #[test]
    fn an_empty_recording_gives_a_whole_page_that_says_so_with_text_escaped() {
        let rec = empty_recording();
        let d = holdup_diagnose::diagnose(&holdup_diagnose::Input {
            target: "test".into(),
            windows: &rec.windows,
            label: "empty.rec",
            baseline_windows: None,
            split: Default::default(),
        });
        let html = render(&ReportInput {
            recording: &rec,
            source: "empty.rec",
            diagnosis: &d,
        });
        assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
        for id in [
            "verdict",
            "facts",
            "states",
            "latency",
            "graph",
            "diagnosis",
        ] {
            assert!(html.contains(&format!("<section id=\"{id}\">")), "{id}");
        }
        assert!(html.contains("no complete windows in this recording"));
        assert!(html.contains("not enough data"), "the verdict says why");
        assert!(!html.contains("<script"), "recorded text is escaped");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&lt;b&gt;&amp;"));
    }
}
