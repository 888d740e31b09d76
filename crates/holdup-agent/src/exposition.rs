//! What `/metrics` serves, as families of series, and its three
//! expositions: the Prometheus text format (0.0.4), OpenMetrics 1.0, and
//! the Prometheus protobuf format ([`crate::proto`], with native
//! histograms), chosen from the scraper's `Accept` header.

use crate::metrics::Hist;
use std::borrow::Cow;
use std::fmt::Write;

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only rises; samples are named `<name>_total`.
    Counter,
    /// Any value.
    Gauge,
    /// A latency histogram.
    Histogram,
}

/// One series' value.
#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    /// A counter's or gauge's value.
    Number(f64),
    /// A histogram's running totals.
    Histogram(&'a Hist),
}

/// One series: its labels and value.
#[derive(Clone, Debug)]
pub struct Series<'a> {
    /// Label names and values, in the order written.
    pub labels: Vec<(&'static str, &'a str)>,
    /// The value.
    pub value: Value<'a>,
}

/// A metric family.
#[derive(Clone, Debug)]
pub struct Family<'a> {
    /// The family's name (a counter's without `_total`).
    pub name: &'static str,
    /// The help line.
    pub help: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its series.
    pub series: Vec<Series<'a>>,
}

impl<'a> Family<'a> {
    /// An empty family.
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Family<'a> {
        Family {
            name,
            help,
            kind,
            series: Vec::new(),
        }
    }

    /// Adds a series.
    pub fn push(&mut self, labels: &[(&'static str, &'a str)], value: Value<'a>) {
        self.series.push(Series {
            labels: labels.to_vec(),
            value,
        });
    }

    /// The name its samples have (the Prometheus text format and the
    /// protobuf format name a counter family so too).
    pub fn sample_name(&self) -> Cow<'static, str> {
        match self.kind {
            Kind::Counter => Cow::Owned(format!("{}_total", self.name)),
            _ => Cow::Borrowed(self.name),
        }
    }
}

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (the default).
    Text,
    /// OpenMetrics 1.0.
    OpenMetrics,
    /// Length-delimited `io.prometheus.client.MetricFamily` messages, with native histograms.
    Protobuf,
}

impl Format {
    /// The format an `Accept` header asks for: the supported media range
    /// with the highest `q` (the first listed on a tie); the text format
    /// when none is supported or the header is absent.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let mut best: Option<(f64, Format)> = None;
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0;
            let (mut proto, mut encoding) = (None, None);
            for p in parts {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.parse().unwrap_or(0.0),
                    "proto" => proto = Some(v.to_string()),
                    "encoding" => encoding = Some(v.to_string()),
                    _ => {}
                }
            }
            let format = match media.as_str() {
                "application/vnd.google.protobuf"
                    if proto.as_deref() == Some("io.prometheus.client.MetricFamily")
                        && encoding.as_deref() == Some("delimited") =>
                {
                    Format::Protobuf
                }
                "application/openmetrics-text" => Format::OpenMetrics,
                "text/plain" | "text/*" | "*/*" => Format::Text,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, format));
            }
        }
        best.map_or(Format::Text, |(_, f)| f)
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Protobuf => {
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
            }
        }
    }
}

/// The families in `format`.
pub fn render(families: &[Family], format: Format) -> Vec<u8> {
    match format {
        Format::Protobuf => crate::proto::encode(families),
        Format::Text => text(families, false).into_bytes(),
        Format::OpenMetrics => text(families, true).into_bytes(),
    }
}

/// The text formats; `om` picks OpenMetrics.
fn text(families: &[Family], om: bool) -> String {
    let mut s = String::new();
    for f in families {
        // OpenMetrics names a counter family without its `_total`; the
        // Prometheus text format names it as its samples.
        let family_name = if om {
            Cow::Borrowed(f.name)
        } else {
            f.sample_name()
        };
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(s, "# HELP {family_name} {}", f.help);
        let _ = writeln!(s, "# TYPE {family_name} {kind}");
        if om {
            for unit in ["seconds", "bytes"] {
                if f.name.ends_with(&format!("_{unit}")) {
                    let _ = writeln!(s, "# UNIT {family_name} {unit}");
                }
            }
        }
        let name = f.sample_name();
        for series in &f.series {
            match series.value {
                Value::Number(v) => sample(&mut s, &name, &series.labels, v),
                Value::Histogram(h) => histogram(&mut s, f.name, &series.labels, h),
            }
        }
    }
    if om {
        s.push_str("# EOF\n");
    }
    s
}

fn sample(s: &mut String, name: &str, labels: &[(&str, &str)], v: f64) {
    s.push_str(name);
    if !labels.is_empty() {
        s.push('{');
        for (i, (k, val)) in labels.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "{k}=\"{}\"", escape(val));
        }
        s.push('}');
    }
    let _ = writeln!(s, " {v}");
}

/// A classic histogram: cumulative `_bucket{le}`, `+Inf`, `_sum`, `_count`.
fn histogram(s: &mut String, name: &str, labels: &[(&str, &str)], h: &Hist) {
    let bucket = format!("{name}_bucket");
    for (le, cum) in h.classic_buckets() {
        let le = format!("{le}");
        let mut l = labels.to_vec();
        l.push(("le", &le));
        sample(s, &bucket, &l, cum as f64);
    }
    let mut l = labels.to_vec();
    l.push(("le", "+Inf"));
    sample(s, &bucket, &l, h.count() as f64);
    sample(s, &format!("{name}_sum"), labels, h.sum_seconds());
    sample(s, &format!("{name}_count"), labels, h.count() as f64);
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdup_model::Histogram;

    /// What Prometheus 2.42 sends with `--enable-feature=native-histograms`, and without.
    const PROMETHEUS_NATIVE: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    const PROMETHEUS_PLAIN: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    #[test]
    fn negotiation_follows_the_q_values() {
        assert_eq!(Format::negotiate(Some(PROMETHEUS_NATIVE)), Format::Protobuf);
        assert_eq!(
            Format::negotiate(Some(PROMETHEUS_PLAIN)),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some("text/plain;q=0.9, application/openmetrics-text;q=0.5")),
            Format::Text
        );
        // Protobuf of another message, or without the delimited encoding, is not ours.
        assert_eq!(
            Format::negotiate(Some(
                "application/vnd.google.protobuf;proto=x.Y;encoding=delimited"
            )),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some(
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text"
            )),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0, text/plain;q=0.1")),
            Format::Text,
            "q=0 is refused"
        );
        assert_eq!(Format::negotiate(Some("image/png")), Format::Text);
    }

    #[test]
    fn histograms_are_cumulative_and_end_in_inf() {
        let mut h = Hist::default();
        h.add(&Histogram::from_buckets(&[1, 0, 2]), 5_000);
        let mut f = Family::new("x_seconds", Kind::Histogram, "X.");
        f.push(&[("service", "s\"q")], Value::Histogram(&h));
        let s = text(&[f], false);
        assert!(
            s.contains("x_seconds_bucket{service=\"s\\\"q\",le=\"0.000002\"} 1\n"),
            "{s}"
        );
        assert!(s.contains("le=\"0.000008\"} 3\n"), "{s}");
        assert!(s.contains("le=\"+Inf\"} 3\n"), "{s}");
        assert!(
            s.contains("x_seconds_sum{service=\"s\\\"q\"} 0.000005\n"),
            "{s}"
        );
    }

    #[test]
    fn openmetrics_ends_with_eof_and_names_families_without_total() {
        let mut f = Family::new("a_seconds", Kind::Counter, "A.");
        f.push(&[("mode", "user")], Value::Number(0.0));
        let fams = [f];
        let om = text(&fams, true);
        assert!(om.ends_with("# EOF\n"));
        assert!(om.contains("# TYPE a_seconds counter\n# UNIT a_seconds seconds\n"));
        assert!(om.contains("a_seconds_total{mode=\"user\"} 0\n"));
        let plain = text(&fams, false);
        assert!(plain.contains("# TYPE a_seconds_total counter\n"));
        assert!(!plain.contains("# EOF") && !plain.contains("# UNIT"));
    }
}
