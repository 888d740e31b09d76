//! The Prometheus protobuf exposition (`io.prometheus.client.MetricFamily`,
//! length-delimited), which Prometheus asks for when native histograms are
//! on. The messages are the subset of `metrics.proto` (proto2) the agent
//! writes, declared with prost's derive (no protoc, no generated code);
//! field numbers and types are those of `metrics.proto`. Repeated scalars
//! are written unpacked, as proto2 declares them.
//!
//! Histograms carry both representations: the classic cumulative buckets
//! (`le` bounds as in the text formats) and the native one, schema 0
//! (bucket `k` holds `(2^(k-1), 2^k]` seconds). holdup's kernel bucket `i`
//! holds `[2^i, 2^(i+1))` µs, and 2^i µs = 1.048576 × 2^(i−20) s: it is
//! served as native bucket `k = i − 19`, whose bounds are 4.6% below the
//! kernel's (no schema can make microsecond powers of two exact in
//! seconds); kernel bucket 0 (everything below 2 µs) is the zero bucket,
//! with the threshold 2^−19 s (1.9 µs). The count and the sum are exact.

use crate::exposition::{Family, Kind, Value};
use crate::metrics::Hist;
use prost::Message;

/// `LabelPair`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPair {
    /// Label name.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Label value.
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// `Gauge`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Gauge {
    /// The value.
    #[prost(double, optional, tag = "1")]
    pub value: Option<f64>,
}

/// `Counter` (without exemplar and created timestamp).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Counter {
    /// The value.
    #[prost(double, optional, tag = "1")]
    pub value: Option<f64>,
}

/// `Bucket`: one classic bucket.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Bucket {
    /// Observations at or below `upper_bound`.
    #[prost(uint64, optional, tag = "1")]
    pub cumulative_count: Option<u64>,
    /// Inclusive upper bound.
    #[prost(double, optional, tag = "2")]
    pub upper_bound: Option<f64>,
}

/// `BucketSpan`: a run of consecutive native buckets.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BucketSpan {
    /// Gap to the previous span's end (the first span: the starting bucket index).
    #[prost(sint32, optional, tag = "1")]
    pub offset: Option<i32>,
    /// Buckets in the span.
    #[prost(uint32, optional, tag = "2")]
    pub length: Option<u32>,
}

/// `Histogram`: classic buckets and the native (exponential) representation.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    /// Observations.
    #[prost(uint64, optional, tag = "1")]
    pub sample_count: Option<u64>,
    /// Sum of the observations.
    #[prost(double, optional, tag = "2")]
    pub sample_sum: Option<f64>,
    /// Classic buckets, by increasing bound.
    #[prost(message, repeated, tag = "3")]
    pub bucket: Vec<Bucket>,
    /// Native: bucket bounds are powers of 2^(2^-schema).
    #[prost(sint32, optional, tag = "5")]
    pub schema: Option<i32>,
    /// Native: the zero bucket holds `[-zero_threshold, zero_threshold]`.
    #[prost(double, optional, tag = "6")]
    pub zero_threshold: Option<f64>,
    /// Native: observations in the zero bucket.
    #[prost(uint64, optional, tag = "7")]
    pub zero_count: Option<u64>,
    /// Native: spans of positive buckets.
    #[prost(message, repeated, tag = "12")]
    pub positive_span: Vec<BucketSpan>,
    /// Native: each positive bucket's count minus the previous one's.
    #[prost(sint64, repeated, packed = "false", tag = "13")]
    pub positive_delta: Vec<i64>,
}

/// `Metric`: one series.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    /// Its labels.
    #[prost(message, repeated, tag = "1")]
    pub label: Vec<LabelPair>,
    /// A gauge's value.
    #[prost(message, optional, tag = "2")]
    pub gauge: Option<Gauge>,
    /// A counter's value.
    #[prost(message, optional, tag = "3")]
    pub counter: Option<Counter>,
    /// A histogram.
    #[prost(message, optional, tag = "7")]
    pub histogram: Option<Histogram>,
}

/// `MetricType` values used here.
const COUNTER: i32 = 0;
const GAUGE: i32 = 1;
const HISTOGRAM: i32 = 4;

/// `MetricFamily`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricFamily {
    /// Family name (a counter's with `_total`, as its samples are named).
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Help text.
    #[prost(string, optional, tag = "2")]
    pub help: Option<String>,
    /// `MetricType`.
    #[prost(int32, optional, tag = "3")]
    pub r#type: Option<i32>,
    /// Its series.
    #[prost(message, repeated, tag = "4")]
    pub metric: Vec<Metric>,
}

/// Native bucket index of kernel bucket 1 (`[2, 4)` µs → `(2^-19, 2^-18]` s).
const NATIVE_INDEX_OF_BUCKET_1: i32 = -18;

/// The zero bucket's threshold: kernel bucket 0 is everything below 2 µs.
pub const ZERO_THRESHOLD_S: f64 = 1.0 / (1u64 << 19) as f64;

/// The families as length-delimited `MetricFamily` messages.
pub fn encode(families: &[Family]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in families {
        let msg = family(f);
        msg.encode_length_delimited(&mut out)
            .expect("a Vec grows as needed");
    }
    out
}

fn family(f: &Family) -> MetricFamily {
    let metric = f
        .series
        .iter()
        .map(|s| {
            let label = s
                .labels
                .iter()
                .map(|(k, v)| LabelPair {
                    name: Some(k.to_string()),
                    value: Some(v.to_string()),
                })
                .collect();
            let mut m = Metric {
                label,
                ..Default::default()
            };
            match (f.kind, &s.value) {
                (Kind::Counter, Value::Number(v)) => m.counter = Some(Counter { value: Some(*v) }),
                (Kind::Gauge, Value::Number(v)) => m.gauge = Some(Gauge { value: Some(*v) }),
                (_, Value::Histogram(h)) => m.histogram = Some(histogram(h)),
                (Kind::Histogram, Value::Number(v)) => m.gauge = Some(Gauge { value: Some(*v) }),
            }
            m
        })
        .collect();
    MetricFamily {
        name: Some(f.sample_name().into_owned()),
        help: Some(f.help.to_string()),
        r#type: Some(match f.kind {
            Kind::Counter => COUNTER,
            Kind::Gauge => GAUGE,
            Kind::Histogram => HISTOGRAM,
        }),
        metric,
    }
}

/// Both representations of one histogram (see the module doc for the mapping).
pub fn histogram(h: &Hist) -> Histogram {
    let b = h.buckets();
    let bucket = h
        .classic_buckets()
        .map(|(le, cum)| Bucket {
            cumulative_count: Some(cum),
            upper_bound: Some(le),
        })
        .collect();
    // One span from the first to the last non-empty bucket above 0, empty
    // buckets inside it as zero counts (a delta each).
    let mut positive_span = Vec::new();
    let mut positive_delta = Vec::new();
    let first = (1..b.len()).find(|&i| b[i] > 0);
    let last = (1..b.len()).rev().find(|&i| b[i] > 0);
    if let (Some(first), Some(last)) = (first, last) {
        positive_span.push(BucketSpan {
            offset: Some(NATIVE_INDEX_OF_BUCKET_1 + first as i32 - 1),
            length: Some((last - first + 1) as u32),
        });
        let mut prev = 0i64;
        for &c in &b[first..=last] {
            positive_delta.push(c as i64 - prev);
            prev = c as i64;
        }
    }
    Histogram {
        sample_count: Some(h.count()),
        sample_sum: Some(h.sum_seconds()),
        bucket,
        schema: Some(0),
        zero_threshold: Some(ZERO_THRESHOLD_S),
        zero_count: Some(b[0]),
        positive_span,
        positive_delta,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdup_model::Histogram as KernelHist;

    /// Decodes the native buckets back into (upper bound in seconds, count).
    fn native_buckets(h: &Histogram) -> Vec<(f64, u64)> {
        let mut out = Vec::new();
        let mut index = 0i32;
        let mut deltas = h.positive_delta.iter();
        let mut count = 0i64;
        for (n, span) in h.positive_span.iter().enumerate() {
            index = if n == 0 {
                span.offset()
            } else {
                index + span.offset()
            };
            for _ in 0..span.length() {
                count += deltas.next().expect("a delta per bucket");
                out.push((2f64.powi(index), count as u64));
                index += 1;
            }
        }
        out
    }

    #[test]
    fn kernel_buckets_map_to_schema_0_one_to_one() {
        let mut h = Hist::default();
        // 3 below 2 µs, none in [2,4) µs, 5 in [4,8) µs, 1 in [2^20, 2^21) µs.
        let mut b = vec![0u64; 21];
        b[0] = 3;
        b[2] = 5;
        b[20] = 1;
        h.add(&KernelHist::from_buckets(&b), 1_234_567);
        let p = histogram(&h);
        assert_eq!(p.schema, Some(0));
        assert_eq!(p.zero_count, Some(3));
        assert_eq!(p.sample_count, Some(9));
        assert!((p.sample_sum.unwrap() - 0.001234567).abs() < 1e-12);
        let native = native_buckets(&p);
        assert_eq!(native.len(), 19, "one span from bucket 2 to bucket 20");
        // Kernel bucket 2 ([4, 8) µs) is native (2^-18, 2^-17] s = (3.8, 7.6] µs.
        assert_eq!(native[0], (2f64.powi(-17), 5));
        assert!(native[1..18].iter().all(|&(_, c)| c == 0));
        // Kernel bucket 20 ([1.05, 2.1) s) is native bucket 1: (1, 2] s.
        assert_eq!(native[18], (2.0, 1));
        // Classic buckets stay cumulative with exact microsecond bounds.
        assert_eq!(p.bucket[0].upper_bound, Some(0.000002));
        assert_eq!(p.bucket[0].cumulative_count, Some(3));
        assert_eq!(p.bucket[2].cumulative_count, Some(8));
        assert_eq!(p.bucket.last().unwrap().cumulative_count, Some(9));
    }

    #[test]
    fn an_empty_histogram_is_still_native() {
        let p = histogram(&Hist::default());
        // Prometheus takes a histogram as native when its zero threshold is set.
        assert_eq!(p.zero_threshold, Some(ZERO_THRESHOLD_S));
        assert!(p.positive_span.is_empty() && p.positive_delta.is_empty());
        assert_eq!(p.sample_count, Some(0));
    }

    #[test]
    fn families_are_length_delimited_and_decode() {
        let h = Hist::default();
        let fams = vec![
            Family {
                name: "a_seconds",
                help: "A.",
                kind: Kind::Counter,
                series: vec![crate::exposition::Series {
                    labels: vec![("service", "s")],
                    value: Value::Number(1.5),
                }],
            },
            Family {
                name: "b_seconds",
                help: "B.",
                kind: Kind::Histogram,
                series: vec![crate::exposition::Series {
                    labels: vec![],
                    value: Value::Histogram(&h),
                }],
            },
        ];
        let bytes = encode(&fams);
        let mut buf = &bytes[..];
        let a = MetricFamily::decode_length_delimited(&mut buf).unwrap();
        assert_eq!(
            a.name(),
            "a_seconds_total",
            "counters are named as their samples"
        );
        assert_eq!(a.r#type(), COUNTER);
        assert_eq!(a.metric[0].counter.as_ref().unwrap().value(), 1.5);
        assert_eq!(a.metric[0].label[0].name(), "service");
        let b = MetricFamily::decode_length_delimited(&mut buf).unwrap();
        assert_eq!(b.name(), "b_seconds");
        assert_eq!(b.r#type(), HISTOGRAM);
        assert!(buf.is_empty());
    }
}
