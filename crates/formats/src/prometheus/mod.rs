//! The Prometheus text formats: a parser for the text exposition format 0.0.4 and the
//! OpenMetrics 1.0 text format, a writer of the 0.0.4 format, and the mapping between
//! Prometheus samples and badger [`Point`]s that the `prometheus` module, the
//! `pushgateway_receiver` module and the `prometheus` and `pushgateway` emitters share.
//!
//! The parser follows the rules of Prometheus' own parsers (`expfmt.TextParser` for 0.0.4,
//! the OpenMetrics parser for OpenMetrics): names and label names by their grammar, label
//! values and HELP with their escapes, `quantile` and `le` labels that must be numbers,
//! one HELP and one TYPE per family before its samples, no duplicate label names, integer
//! millisecond timestamps (0.0.4) or float second timestamps (OpenMetrics), `# EOF` at the
//! end of OpenMetrics. It never panics on any input (`fuzz/` runs it under libFuzzer, and a
//! randomised test below runs in every `cargo test`), and its work is linear in the input.
//!
//! **Points.** A sample becomes a point whose *measurement* is the sample's name
//! (`http_requests_total`, `rpc_seconds_bucket`), whose *field* is the family's type
//! (`counter`, `gauge`, `histogram`, `summary`, or `value` for anything else, the
//! convention of Telegraf's Prometheus input and of InfluxDB's telemetry encoder), whose
//! tags are the labels in order, and whose value is a float. Its Stat Badger name is the
//! sample name followed by the label values, dot-separated (`m.v.127.0.0.1:9100`).

mod expose;
pub mod node;
mod parse;
mod write;

pub use expose::*;
pub use parse::*;
pub use write::*;

use std::borrow::Cow;

use std::fmt;

use badger_api::point::{Point, Value};

/// Which text format a body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The text exposition format 0.0.4 (`text/plain; version=0.0.4`).
    Text,
    /// OpenMetrics 1.0 text (`application/openmetrics-text`).
    OpenMetrics,
}

impl Format {
    /// The format of a response by its `Content-Type` (0.0.4 unless it says OpenMetrics).
    pub fn from_content_type(ct: &str) -> Format {
        if ct.trim_start().to_ascii_lowercase().starts_with("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// The `Content-Type` of the 0.0.4 format as Prometheus' client libraries write it.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    /// `untyped` (0.0.4), `unknown` (OpenMetrics), or no TYPE line.
    Untyped,
    /// OpenMetrics only.
    GaugeHistogram,
    /// OpenMetrics only.
    Info,
    /// OpenMetrics only.
    StateSet,
}

impl Kind {
    fn parse(word: &str, format: Format) -> Option<Kind> {
        Some(match (word, format) {
            ("counter", _) => Kind::Counter,
            ("gauge", _) => Kind::Gauge,
            ("histogram", _) => Kind::Histogram,
            ("summary", _) => Kind::Summary,
            ("untyped", Format::Text) | ("unknown", Format::OpenMetrics) => Kind::Untyped,
            ("gaugehistogram", Format::OpenMetrics) => Kind::GaugeHistogram,
            ("info", Format::OpenMetrics) => Kind::Info,
            ("stateset", Format::OpenMetrics) => Kind::StateSet,
            _ => return None,
        })
    }

    /// The word of a TYPE line in the 0.0.4 format (OpenMetrics-only types are written by
    /// [`to_text`] as gauges or untyped).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge | Kind::Info | Kind::StateSet => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
            Kind::Untyped | Kind::GaugeHistogram => "untyped",
        }
    }

    /// The point field that carries a sample of this type.
    pub fn field(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge | Kind::Info | Kind::StateSet => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
            Kind::Untyped | Kind::GaugeHistogram => "value",
        }
    }

    /// The type a point field stands for, when the point carries a Prometheus sample.
    pub fn from_field(field: &str) -> Option<Kind> {
        Some(match field {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "histogram" => Kind::Histogram,
            "summary" => Kind::Summary,
            "value" => Kind::Untyped,
            _ => return None,
        })
    }

    /// The suffixes a sample of a family of this type may add to the family's name.
    fn suffixes(self, format: Format) -> &'static [&'static str] {
        match (self, format) {
            (Kind::Histogram, Format::Text) => &["_bucket", "_sum", "_count"],
            (Kind::Summary, Format::Text) => &["_sum", "_count"],
            (Kind::Counter, Format::OpenMetrics) => &["_total", "_created"],
            (Kind::Histogram, Format::OpenMetrics) => &["_bucket", "_sum", "_count", "_created"],
            (Kind::Summary, Format::OpenMetrics) => &["_sum", "_count", "_created"],
            (Kind::GaugeHistogram, _) => &["_bucket", "_gsum", "_gcount"],
            (Kind::Info, _) => &["_info"],
            _ => &[],
        }
    }
}

/// One metric family: its samples and their HELP, TYPE and (OpenMetrics) UNIT.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: Option<String>,
    pub unit: Option<String>,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

/// One sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's own name (`x_bucket` in the family `x`).
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Milliseconds since the epoch, when the sample carries a timestamp.
    pub timestamp_ms: Option<i64>,
}

/// Why a body could not be parsed: the 1-based line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "text format parsing error in line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

// ---- samples as points ----------------------------------------------------------------------

/// A sample of a family of type `kind` as a point (see the module doc).
pub fn sample_point(kind: Kind, name: &str, labels: Vec<(String, String)>, value: f64) -> Point {
    let mut stat = String::with_capacity(name.len() + 16 * labels.len());
    stat.push_str(name);
    for (_, v) in &labels {
        stat.push('.');
        stat.push_str(v);
    }
    Point {
        name: stat,
        value: Value::Float(value),
        units: Cow::Borrowed(""),
        measurement: Cow::Owned(name.to_string()),
        field: Cow::Borrowed(kind.field()),
        tags: labels.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect(),
        kind: Default::default(),
    }
}

/// Puts `set` (label, value) pairs on a sample's labels the way promfetcher did: labels of
/// the sample with one of those names are removed, the sample's other labels keep their
/// order, and `set` follows in its own order.
pub fn set_labels(labels: &mut Vec<(String, String)>, set: &[(String, String)]) {
    labels.retain(|(k, _)| !set.iter().any(|(s, _)| s == k));
    labels.extend(set.iter().cloned());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Vec<Family> {
        parse(s, Format::Text).unwrap_or_else(|e| panic!("{e}\n{s}"))
    }

    #[test]
    fn parses_the_0_0_4_format() {
        let f = text(
            "# HELP http_requests_total The total number of HTTP requests.\n\
             # TYPE http_requests_total counter\n\
             http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
             http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\
             \n\
             # Escaping in label values:\n\
             msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n\
             metric_without_timestamp_and_labels 12.47\n\
             something_weird{problem=\"division by zero\"} +Inf -3982045\n\
             # TYPE rpc_duration_seconds summary\n\
             rpc_duration_seconds{quantile=\"0.01\"} 3102\n\
             rpc_duration_seconds_sum 1.7560473e+07\n\
             rpc_duration_seconds_count 2693\n\
             # TYPE h histogram\n\
             h_bucket{le=\"0.05\"} 24054\n\
             h_bucket{le=\"+Inf\",} 144320\n\
             h_sum 53423\n\
             h_count 144320\n",
        );
        let names: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "http_requests_total",
                "msdos_file_access_time_seconds",
                "metric_without_timestamp_and_labels",
                "something_weird",
                "rpc_duration_seconds",
                "h"
            ]
        );
        assert_eq!(f[0].kind, Kind::Counter);
        assert_eq!(f[0].help.as_deref(), Some("The total number of HTTP requests."));
        assert_eq!(
            f[0].samples[1],
            Sample {
                name: "http_requests_total".into(),
                labels: vec![("method".into(), "post".into()), ("code".into(), "400".into())],
                value: 3.0,
                timestamp_ms: Some(1395066363000),
            }
        );
        assert_eq!(f[1].samples[0].labels[0].1, "C:\\DIR\\FILE.TXT");
        assert_eq!(f[1].samples[0].labels[1].1, "Cannot find file:\n\"FILE.TXT\"");
        assert_eq!(f[3].samples[0].value, f64::INFINITY);
        assert_eq!(f[3].samples[0].timestamp_ms, Some(-3982045));
        assert_eq!((f[4].kind, f[4].samples.len()), (Kind::Summary, 3));
        assert_eq!((f[5].kind, f[5].samples.len()), (Kind::Histogram, 4));
    }

    #[test]
    fn a_sample_goes_to_the_family_of_its_full_name_before_a_histograms() {
        // expfmt's order: `h_bucket` declared as its own family keeps its samples, so the
        // text written back parses to the same samples (found by the promtext fuzzer).
        let body = "# TYPE h histogram\n\
                    h_bucket{le=\"+Inf\"} 1\n\
                    # TYPE h_bucket untyped\n\
                    h_bucket 2\n\
                    h_sum 3\n";
        let f = text(body);
        let shape: Vec<(&str, Kind, Vec<&str>)> =
            f.iter().map(|f| (f.name.as_str(), f.kind, f.samples.iter().map(|s| s.name.as_str()).collect())).collect();
        assert_eq!(
            shape,
            [("h", Kind::Histogram, vec!["h_bucket", "h_sum"]), ("h_bucket", Kind::Untyped, vec!["h_bucket"])]
        );
        let mut again = String::new();
        for family in &f {
            write_family(&mut again, family);
        }
        assert!(same(&f, &text(&again)), "{again}");
    }

    #[test]
    fn rejects_what_prometheus_rejects() {
        for (body, want) in [
            ("mf1{ 1\n", "invalid label name"),
            ("m{a=\"1\",a=\"2\"} 1\n", "duplicate label name"),
            ("m x\n", "expected float as value"),
            ("m 1 1.5\n", "expected integer as timestamp"),
            ("m 1 2 3\n", "spurious string"),
            ("# TYPE m gauge\n# TYPE m gauge\n", "second TYPE"),
            ("m 1\n# TYPE m gauge\n", "second TYPE"),
            ("# HELP m a\n# HELP m b\n", "second HELP"),
            ("# TYPE m nonsense\n", "unknown metric type"),
            ("# TYPE s summary\ns{quantile=\"x\"} 1\n", "'quantile'"),
            ("# TYPE h histogram\nh_bucket 1\n", "'le'"),
            ("m{a=\"\\x\"} 1\n", "invalid label value"),
            ("0m 1\n", "invalid metric name"),
            ("m{__name__=\"x\"} 1\n", "reserved"),
        ] {
            let e = parse(body, Format::Text).expect_err(body);
            assert!(e.message.contains(want), "{body:?}: {e}");
            assert_eq!(e.line, body.lines().count(), "{body:?}: {e}");
        }
        assert!(parse_bytes(b"m 1\n\xff 2\n", Format::Text).unwrap_err().to_string().contains("line 2: invalid UTF-8"));
    }

    #[test]
    fn parses_openmetrics() {
        let body = "# TYPE acme_http_router_request_seconds summary\n\
                    # UNIT acme_http_router_request_seconds seconds\n\
                    # HELP acme_http_router_request_seconds Latency though all of ACME's HTTP request router.\n\
                    acme_http_router_request_seconds_sum{path=\"/api/v1\",method=\"GET\"} 9036.32\n\
                    acme_http_router_request_seconds_count{path=\"/api/v1\",method=\"GET\"} 807283.0\n\
                    acme_http_router_request_seconds_created{path=\"/api/v1\",method=\"GET\"} 1605281325.0\n\
                    # TYPE foo counter\n\
                    foo_total 17.0 1520879607.789 # {trace_id=\"KOO5S4vxi0o\"} 0.67\n\
                    foo_created 1520430000.123\n\
                    # TYPE b info\n\
                    b_info{version=\"1.2\"} 1\n\
                    # EOF\n";
        let f = parse(body, Format::OpenMetrics).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].unit.as_deref(), Some("seconds"));
        assert_eq!(f[1].samples[0].timestamp_ms, Some(1520879607789));
        let t = to_text(f);
        let mut out = String::new();
        for f in &t {
            write_family(&mut out, f);
        }
        assert_eq!(
            out,
            "# HELP acme_http_router_request_seconds Latency though all of ACME's HTTP request router.\n\
             # TYPE acme_http_router_request_seconds summary\n\
             acme_http_router_request_seconds_sum{path=\"/api/v1\",method=\"GET\"} 9036.32\n\
             acme_http_router_request_seconds_count{path=\"/api/v1\",method=\"GET\"} 807283\n\
             # TYPE foo_total counter\n\
             foo_total 17 1520879607789\n\
             # TYPE b_info gauge\n\
             b_info{version=\"1.2\"} 1\n"
        );
        assert!(parse("m 1\n", Format::OpenMetrics).unwrap_err().message.contains("# EOF"));
        assert!(parse("m 1\n# EOF\nm 2\n", Format::OpenMetrics).unwrap_err().message.contains("after # EOF"));
        assert!(Format::from_content_type("application/openmetrics-text; version=1.0.0") == Format::OpenMetrics);
    }

    #[test]
    fn values_are_written_as_go_writes_them() {
        for (v, s) in [
            (1.0, "1"),
            (0.25, "0.25"),
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (-2.5, "-2.5"),
            (1e21, "1e+21"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(format_value(v), s, "{v}");
        }
    }

    #[test]
    fn labels_set_by_badger_replace_the_targets() {
        let mut l = vec![("instance".to_string(), "evil".to_string()), ("z".to_string(), "1".to_string())];
        set_labels(&mut l, &[("app_name".into(), "app".into()), ("instance".into(), "127.0.0.1:1".into())]);
        assert_eq!(
            l,
            [("z".into(), "1".into()), ("app_name".into(), "app".into()), ("instance".into(), "127.0.0.1:1".into())]
        );
        let p = sample_point(Kind::Counter, "m_total", l, 2.0);
        assert_eq!(p.name, "m_total.1.app.127.0.0.1:1");
        assert_eq!((p.measurement.as_ref(), p.field.as_ref()), ("m_total", "counter"));
        assert_eq!(Kind::from_field(&p.field), Some(Kind::Counter));
    }

    /// xorshift64*, enough to drive the randomised tests without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    fn random_families(r: &mut Rng) -> Vec<Family> {
        let mut families = Vec::new();
        for i in 0..1 + r.below(4) {
            let kind = [Kind::Counter, Kind::Gauge, Kind::Untyped, Kind::Summary, Kind::Histogram][r.below(5)];
            let name = format!("{}_{i}", r.pick(&["a", "b:c", "_x", "http_requests", "Z9"]));
            let mut samples = Vec::new();
            for _ in 0..r.below(4) {
                let mut labels: Vec<(String, String)> = Vec::new();
                for j in 0..r.below(3) {
                    let v = r.pick(&["", "v", "a\"b", "back\\slash", "new\nline", "ünï", "} 1 2", "#"]);
                    labels.push((format!("{}{j}", r.pick(&["k", "_l", "le_"])), v.to_string()));
                }
                let sample_name = match kind {
                    Kind::Summary => {
                        labels.push(("quantile".into(), r.pick(&["0.5", "0.99"]).into()));
                        name.clone()
                    }
                    Kind::Histogram => {
                        labels.push(("le".into(), r.pick(&["0.1", "+Inf"]).into()));
                        format!("{name}_bucket")
                    }
                    _ => name.clone(),
                };
                let value =
                    [0.0, -1.5, 1e-300, 1.7976931348623157e308, f64::NAN, f64::INFINITY, 12345678.9][r.below(7)];
                let timestamp_ms = [None, Some(0), Some(-5), Some(1_700_000_000_123)][r.below(4)];
                samples.push(Sample { name: sample_name, labels, value, timestamp_ms });
            }
            let help = [None, Some("help \\ with\nnewline".to_string()), Some(String::new())][r.below(3)].clone();
            families.push(Family { name, help, unit: None, kind, samples });
        }
        families
    }

    type Comparable = Vec<(String, Vec<(String, Vec<(String, String)>, u64, Option<i64>)>)>;

    fn same(a: &[Family], b: &[Family]) -> bool {
        let bits = |f: &[Family]| -> Comparable {
            f.iter()
                .map(|f| {
                    let s = f
                        .samples
                        .iter()
                        .map(|s| {
                            let v = if s.value.is_nan() { u64::MAX } else { s.value.to_bits() };
                            (s.name.clone(), s.labels.clone(), v, s.timestamp_ms)
                        })
                        .collect();
                    (format!("{} {:?} {:?}", f.name, f.kind, f.help), s)
                })
                .collect()
        };
        bits(a) == bits(b)
    }

    /// Randomised round trips (write, parse, compare) and random corruptions of valid
    /// bodies (the parser must answer, never panic). Bounded: a few thousand cases.
    #[test]
    fn randomised_round_trips_and_corruptions() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..3000 {
            let families = random_families(&mut r);
            let mut body = String::new();
            for f in &families {
                write_family(&mut body, f);
            }
            let back = parse(&body, Format::Text).unwrap_or_else(|e| panic!("case {case}: {e}\n{body}"));
            // Families with no samples come back only when they had a HELP or TYPE line.
            assert!(same(&families, &back), "case {case}:\n{body}\n{families:?}\n{back:?}");
            let mut bytes = body.into_bytes();
            for _ in 0..1 + r.below(4) {
                if bytes.is_empty() {
                    break;
                }
                let at = r.below(bytes.len());
                match r.below(3) {
                    0 => {
                        const SET: &[u8] = b"{}\"\\=, #\n\t0aZ_:+-.e\xff";
                        bytes[at] = SET[r.below(SET.len())];
                    }
                    1 => {
                        bytes.remove(at);
                    }
                    _ => {
                        const SET: &[u8] = b"{}\"\\=,# \n";
                        bytes.insert(at, SET[r.below(SET.len())]);
                    }
                }
            }
            let _ = parse_bytes(&bytes, Format::Text);
            let _ = parse_bytes(&bytes, Format::OpenMetrics);
        }
    }
}
