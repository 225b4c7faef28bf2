//! The three message formats of the `kafka` emitter, and the record that carries a message
//! through the outbox (and its spool).
//!
//! * `json`: the payload as one compact JSON object, the original's shape ([`json`]).
//! * `influx`: InfluxDB line protocol as the `influxdb` emitter writes it (badger naming):
//!   one line per series, tags sorted (`load,host=h1 one=0.5,total_entities=100i 1700000000`),
//!   timestamps in seconds.
//! * `graphite`: Graphite plaintext, one `path value timestamp` line per point.
//!
//! Every line of `influx` and `graphite` ends with `\n`; a `json` message has no newline.

use badger_api::plugin::PayloadView;
use badger_formats::{graphite, influx, json};

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

/// Appends the message of one payload to `out`, with the same encoders as the `influxdb`
/// (badger naming) and `graphite` (plaintext) emitters, so a format means the same bytes
/// whichever emitter sends it. A point whose value is not finite (never produced by a
/// built-in module) has no form in line protocol or Graphite and is left out of those.
pub fn write_message(out: &mut String, format: Format, prefix: &str, p: &PayloadView<'_>) {
    match format {
        Format::Json => json::write_payload(out, p, false),
        Format::Influx => {
            influx::encode_payload(out, p, influx::Naming::Badger);
        }
        Format::Graphite => {
            let mut bytes = Vec::new();
            graphite::Encoder::new(graphite::Protocol::Tcp, prefix, false, 0).encode(p, &mut bytes);
            // Sanitised paths, numbers and timestamps: always ASCII.
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
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
    use badger_api::matcher::Matcher;
    use badger_api::plugin::Batch;
    use badger_api::point::{HostMeta, Payload, Point, Value};

    fn meta(dc: &str, cluster: &str, host: &str) -> Arc<HostMeta> {
        badger_test_support::payload::meta(dc, "", "", cluster, host)
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
            "load,datacenter=dc1,host=h1 one=0.5,five=2,total_entities=100i 1700000000\n\
             disk,datacenter=dc1,device=sda,host=h1 reads=7i 1700000000\n\
             disk,datacenter=dc1,device=sdb,host=h1 reads=8i 1700000000\n\
             x,datacenter=dc1,host=h1 tiny=0.00001 1700000000\n"
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
                kind: Default::default(),
            },
            Point::simple("m", "nan", "", Value::Float(f64::NAN)),
            Point::simple("m", "inf", "", Value::Float(f64::INFINITY)),
            Point::simple("", "no_measurement", "", Value::Int(1)),
        ];
        let out = render(Format::Influx, "", Payload { meta: meta("", "c 1", "h=1"), timestamp: 5, points });
        assert_eq!(out, "m\\ x\\,y=z,cluster=c\\ 1,host=h\\=1,slash=a,t\\ k=v\\=1\\,2\\ 3\\n f\\=1\\ a\\,b=-3i 5\n");
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
