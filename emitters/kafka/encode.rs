//! The three message formats of the `kafka` emitter, and the record that carries a message
//! through the outbox (and its spool).
//!
//! * `json`: the payload as one compact JSON object, the original's shape ([`json`]).
//! * `influx`: InfluxDB line protocol, one line per run of points that share a measurement
//!   and tags (`load,host=h1 one=0.5,total_entities=100i 1700000000`), timestamps in seconds.
//! * `graphite`: Graphite plaintext, one `path value timestamp` line per point.
//!
//! Every line of `influx` and `graphite` ends with `\n`; a `json` message has no newline.

use std::fmt::Write;

use crate::emitters::json;
use crate::plugin::PayloadView;
use crate::point::{HostMeta, Value};

/// How a payload is written into a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Influx,
    Graphite,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Influx => "influx",
            Format::Graphite => "graphite",
        }
    }
}

/// Appends the message of one payload to `out`. A point whose value is not finite (never
/// produced by a built-in module) has no form in line protocol or Graphite and is left out
/// of those formats.
pub fn write_message(out: &mut String, format: Format, prefix: &str, p: &PayloadView<'_>) {
    match format {
        Format::Json => json::write_payload(out, p, false),
        Format::Influx => write_influx(out, p),
        Format::Graphite => write_graphite(out, prefix, p),
    }
}

// ---- influx ---------------------------------------------------------------------------------

/// Line protocol: `measurement[,tag=value…] field=value[,field=value…] timestamp`.
///
/// Tags: the host metadata that is not empty (`datacenter`, `region`, `zone`, `cluster`,
/// `host` = hostname), then the point's own tags. Consecutive points with the same
/// measurement and tags share a line. Ints get the `i` suffix; floats print like Python's
/// `repr` (`0.5`, `2.0`, `1e-05`), which InfluxDB reads as floats.
pub fn write_influx(out: &mut String, p: &PayloadView<'_>) {
    let meta = p.meta();
    let mut host_tags = String::new();
    for (k, v) in host_tag_pairs(meta) {
        write_tag(&mut host_tags, k, v);
    }
    let ts = p.timestamp();
    // The measurement+tags part of the line being written, to append fields to it.
    let mut series = String::new();
    let mut fields: Vec<&str> = Vec::new();
    let mut open = false;
    for point in p.points() {
        let measurement = point.measurement.as_ref();
        let field = point.field.as_ref();
        if measurement.is_empty() || is_unusable_key(field) || !finite(point.value) {
            continue;
        }
        let mut this = String::with_capacity(series.len());
        escape_into(&mut this, measurement, Escape::Measurement);
        this.push_str(&host_tags);
        for (k, v) in &point.tags {
            write_tag(&mut this, k, v);
        }
        let same = open && this == series && !fields.contains(&field);
        if same {
            out.push(',');
        } else {
            if open {
                let _ = writeln!(out, " {ts}");
            }
            out.push_str(&this);
            out.push(' ');
            series = this;
            fields.clear();
            open = true;
        }
        fields.push(field);
        escape_into(out, field, Escape::Key);
        out.push('=');
        match point.value {
            Value::Int(i) => {
                let _ = write!(out, "{i}i");
            }
            Value::Float(f) => json::write_float(out, f),
        }
    }
    if open {
        let _ = writeln!(out, " {ts}");
    }
}

fn host_tag_pairs(meta: &HostMeta) -> impl Iterator<Item = (&'static str, &str)> {
    [
        ("datacenter", meta.datacenter.as_str()),
        ("region", meta.region.as_str()),
        ("zone", meta.zone.as_str()),
        ("cluster", meta.cluster.as_str()),
        ("host", meta.hostname.as_str()),
    ]
    .into_iter()
}

/// `,key=value`; left out when the key or the value cannot be written (see [`is_unusable_key`]).
fn write_tag(out: &mut String, key: &str, value: &str) {
    if is_unusable_key(key) || is_unusable_key(value) {
        return;
    }
    out.push(',');
    escape_into(out, key, Escape::Key);
    out.push('=');
    escape_into(out, value, Escape::Key);
}

/// Empty, or nothing left once trailing backslashes (which would escape the separator after
/// them) are removed.
fn is_unusable_key(s: &str) -> bool {
    s.trim_end_matches('\\').is_empty()
}

fn finite(v: Value) -> bool {
    match v {
        Value::Int(_) => true,
        Value::Float(f) => f.is_finite(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Escape {
    /// Measurement: `,` and space.
    Measurement,
    /// Tag key, tag value, field key: `,`, `=` and space.
    Key,
}

/// Escapes line-protocol specials with a backslash; tab, newline, carriage return and form
/// feed become `\t`, `\n`, `\r`, `\f` (they cannot appear raw); trailing backslashes are
/// dropped.
fn escape_into(out: &mut String, s: &str, how: Escape) {
    for c in s.trim_end_matches('\\').chars() {
        match c {
            ',' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '=' if how == Escape::Key => out.push_str("\\="),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{c}' => out.push_str("\\f"),
            c => out.push(c),
        }
    }
}

// ---- graphite -------------------------------------------------------------------------------

/// Graphite plaintext: `[prefix.]datacenter.region.zone.cluster.hostname.<stat> value ts`,
/// empty parts left out, every character outside `[A-Za-z0-9_.-]` replaced by `_`.
pub fn write_graphite(out: &mut String, prefix: &str, p: &PayloadView<'_>) {
    let meta = p.meta();
    let mut base = String::new();
    for part in [prefix, &meta.datacenter, &meta.region, &meta.zone, &meta.cluster, &meta.hostname] {
        if !part.is_empty() {
            sanitize_into(&mut base, part);
            base.push('.');
        }
    }
    let ts = p.timestamp();
    for point in p.points() {
        if !finite(point.value) || point.name.is_empty() {
            continue;
        }
        out.push_str(&base);
        sanitize_into(out, &point.name);
        out.push(' ');
        json::write_value(out, point.value);
        let _ = writeln!(out, " {ts}");
    }
}

/// Appends `s` with every character outside `[A-Za-z0-9_.-]` replaced by `_`.
pub fn sanitize_into(out: &mut String, s: &str) {
    out.extend(s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '_' }));
}

// ---- the outbox record ----------------------------------------------------------------------

/// The version byte that opens every record.
const RECORD_V1: u8 = 1;
const HEADER: usize = 1 + 8 + 2;

/// One message as the outbox (and its spool) holds it: version `1`, the message timestamp in
/// milliseconds (`i64` big-endian), the key's length (`u16` big-endian), the key, the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub timestamp_ms: i64,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl<'a> Record<'a> {
    /// The record's bytes. A key longer than 65535 bytes is cut (host names are at most 255).
    pub fn encode(&self) -> Vec<u8> {
        let key = &self.key[..self.key.len().min(u16::MAX as usize)];
        let mut v = Vec::with_capacity(HEADER + key.len() + self.value.len());
        v.push(RECORD_V1);
        v.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        v.extend_from_slice(&(key.len() as u16).to_be_bytes());
        v.extend_from_slice(key);
        v.extend_from_slice(self.value);
        v
    }

    /// Reads a record; `None` when it is not one this version wrote.
    pub fn decode(data: &'a [u8]) -> Option<Record<'a>> {
        let (&version, rest) = data.split_first()?;
        if version != RECORD_V1 || rest.len() < HEADER - 1 {
            return None;
        }
        let (ts, rest) = rest.split_at(8);
        let (len, rest) = rest.split_at(2);
        let timestamp_ms = i64::from_be_bytes(ts.try_into().ok()?);
        let len = u16::from_be_bytes(len.try_into().ok()?) as usize;
        if rest.len() < len {
            return None;
        }
        let (key, value) = rest.split_at(len);
        Some(Record { timestamp_ms, key, value })
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use super::*;
    use crate::matcher::Matcher;
    use crate::plugin::Batch;
    use crate::point::{Payload, Point};

    fn meta(dc: &str, cluster: &str, host: &str) -> Arc<HostMeta> {
        Arc::new(HostMeta {
            datacenter: dc.into(),
            cluster: cluster.into(),
            hostname: host.into(),
            ipv4: "10.0.0.1".into(),
            ..HostMeta::default()
        })
    }

    fn render(format: Format, prefix: &str, payload: Payload) -> String {
        let payloads = [Arc::new(payload)];
        let none = Matcher::from_static(&[]);
        let batch = Batch::new(&payloads, &none);
        let mut out = String::new();
        for p in batch.payloads() {
            write_message(&mut out, format, prefix, &p);
        }
        out
    }

    fn load_points() -> Vec<Point> {
        vec![
            Point::simple("load", "one", "", Value::Float(0.5)),
            Point::simple("load", "five", "", Value::Float(2.0)),
            Point::simple("load", "total_entities", "", Value::Int(100)),
        ]
    }

    #[test]
    fn influx_groups_a_series_and_tags_host_metadata() {
        let mut points = load_points();
        points.push(Point::device("disk", "reads", "", "device", "sda", Value::Int(7)));
        points.push(Point::device("disk", "reads", "", "device", "sdb", Value::Int(8)));
        points.push(Point::simple("x", "tiny", "", Value::Float(0.00001)));
        let out = render(Format::Influx, "", Payload { meta: meta("dc1", "", "h1"), timestamp: 1_700_000_000, points });
        assert_eq!(
            out,
            "load,datacenter=dc1,host=h1 one=0.5,five=2.0,total_entities=100i 1700000000\n\
             disk,datacenter=dc1,host=h1,device=sda reads=7i 1700000000\n\
             disk,datacenter=dc1,host=h1,device=sdb reads=8i 1700000000\n\
             x,datacenter=dc1,host=h1 tiny=1e-05 1700000000\n"
        );
    }

    #[test]
    fn influx_escapes_specials_and_skips_what_it_cannot_write() {
        let points = vec![
            Point {
                name: "m x.f".into(),
                value: Value::Int(-3),
                units: Cow::Borrowed(""),
                measurement: Cow::Borrowed("m x,y=z"),
                field: Cow::Borrowed("f=1 a,b"),
                tags: vec![
                    (Cow::Borrowed("t k"), "v=1,2 3\n".into()),
                    (Cow::Borrowed("empty"), String::new()),
                    (Cow::Borrowed("slash"), "a\\".into()),
                    (Cow::Borrowed("only"), "\\\\".into()),
                ],
            },
            Point::simple("m", "nan", "", Value::Float(f64::NAN)),
            Point::simple("m", "inf", "", Value::Float(f64::INFINITY)),
            Point::simple("", "no_measurement", "", Value::Int(1)),
        ];
        let out = render(Format::Influx, "", Payload { meta: meta("", "c 1", "h=1"), timestamp: 5, points });
        assert_eq!(out, "m\\ x\\,y=z,cluster=c\\ 1,host=h\\=1,t\\ k=v\\=1\\,2\\ 3\\n,slash=a f\\=1\\ a\\,b=-3i 5\n");
    }

    #[test]
    fn influx_starts_a_new_line_for_a_repeated_field() {
        let points = vec![Point::simple("m", "f", "", Value::Int(1)), Point::simple("m", "f", "", Value::Int(2))];
        let out = render(Format::Influx, "", Payload { meta: meta("", "", "h"), timestamp: 1, points });
        assert_eq!(out, "m,host=h f=1i 1\nm,host=h f=2i 1\n");
    }

    #[test]
    fn graphite_paths_leave_out_empty_parts_and_sanitize() {
        let mut points = load_points();
        points.push(Point::device("disk", "reads", "", "device", "dm 0/x", Value::Int(9)));
        points.push(Point::simple("m", "nan", "", Value::Float(f64::NAN)));
        let out = render(
            Format::Graphite,
            "pre fix",
            Payload { meta: meta("dc1", "c:1", "web1.example.com"), timestamp: 1_700_000_000, points },
        );
        assert_eq!(
            out,
            "pre_fix.dc1.c_1.web1.example.com.load.one 0.5 1700000000\n\
             pre_fix.dc1.c_1.web1.example.com.load.five 2.0 1700000000\n\
             pre_fix.dc1.c_1.web1.example.com.load.total_entities 100 1700000000\n\
             pre_fix.dc1.c_1.web1.example.com.disk.reads.dm_0_x 9 1700000000\n"
        );
        let out =
            render(Format::Graphite, "", Payload { meta: meta("", "", "h1"), timestamp: 7, points: load_points() });
        assert!(out.starts_with("h1.load.one 0.5 7\n"), "{out}");
    }

    #[test]
    fn json_is_the_compact_original_shape() {
        let out = render(
            Format::Json,
            "",
            Payload { meta: meta("dc1", "c1", "h1"), timestamp: 1_700_000_000, points: load_points()[..2].to_vec() },
        );
        assert_eq!(
            out,
            r#"{"cluster":"c1","datacenter":"dc1","hostname":"h1","ipv4":"10.0.0.1","ipv6":"","points":[{"load.one":{"units":"","value":0.5}},{"load.five":{"units":"","value":2.0}}],"region":"","timestamp":1700000000,"zone":""}"#
        );
    }

    #[test]
    fn blacklisted_points_are_not_written() {
        let payloads = [Arc::new(Payload { meta: meta("", "", "h"), timestamp: 1, points: load_points() })];
        let bl = Matcher::from_static(&["load.one", "load.total*"]);
        let batch = Batch::new(&payloads, &bl);
        let mut out = String::new();
        for p in batch.payloads() {
            write_message(&mut out, Format::Graphite, "", &p);
        }
        assert_eq!(out, "h.load.five 2.0 1\n");
    }

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let r = Record { timestamp_ms: -5, key: b"host", value: b"{}" };
        let bytes = r.encode();
        assert_eq!(bytes.len(), 11 + 4 + 2);
        assert_eq!(Record::decode(&bytes), Some(r));
        let empty = Record { timestamp_ms: 1, key: b"", value: b"" };
        assert_eq!(Record::decode(&empty.encode()), Some(empty));
        assert_eq!(Record::decode(b""), None);
        assert_eq!(Record::decode(&[2; 20]), None);
        assert_eq!(Record::decode(&bytes[..12]), None);
        let mut bad_len = bytes.clone();
        bad_len[10] = 200;
        assert_eq!(Record::decode(&bad_len), None);
    }
}
