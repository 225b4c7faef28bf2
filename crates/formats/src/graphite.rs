//! Turning payloads into Graphite bytes: metric paths, plaintext lines, pickle frames.
//!
//! Pure functions on a [`PayloadView`]; the emitter hands the result to its outbox as one
//! record per payload. See the module doc of [`super`] for the path rules.

use std::fmt::Write as _;

use serde::Deserialize;
use serde_pickle::{SerOptions, Value as Pickle};

use crate::json::write_float;
use badger_api::plugin::PayloadView;
use badger_api::point::{HostMeta, Point, Value};

/// Points in one pickle frame at most: carbon's own relay sends 500
/// (`MAX_DATAPOINTS_PER_MESSAGE`).
pub const PICKLE_FRAME_POINTS: usize = 500;
/// Body bytes of one pickle frame at most (estimated before encoding). carbon's pickle
/// receiver drops the connection on a frame over `PICKLE_RECEIVER_MAX_LENGTH` (1 MiB).
pub const PICKLE_FRAME_BYTES: usize = 512 * 1024;

/// How metrics travel to carbon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Plaintext lines over one persistent TCP connection.
    Tcp,
    /// Plaintext lines in UDP datagrams.
    Udp,
    /// Carbon's pickle protocol over TCP (Stat Badger's format).
    Pickle,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Pickle => "pickle",
        }
    }

    /// The port carbon listens on for this protocol by default.
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Pickle => 2004,
            Protocol::Tcp | Protocol::Udp => 2003,
        }
    }
}

/// True for the characters kept in a path part: `[A-Za-z0-9_.-]`.
fn is_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Appends `s` with every character outside `[A-Za-z0-9_.-]` replaced by `_`.
pub fn push_sanitized(out: &mut String, s: &str) {
    if s.chars().all(is_safe) {
        out.push_str(s);
    } else {
        out.extend(s.chars().map(|c| if is_safe(c) { c } else { '_' }));
    }
}

/// `s` with every character outside `[A-Za-z0-9_.-]` replaced by `_`.
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_sanitized(&mut out, s);
    out
}

/// A configured prefix as it goes into paths: sanitised, without dots at either end.
pub fn clean_prefix(prefix: &str) -> String {
    sanitize(prefix).trim_matches('.').to_string()
}

/// What [`Encoder::encode`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Points written.
    pub points: u64,
    /// Points left out: a value that is not a finite number, or (UDP) a line longer than a
    /// datagram may be.
    pub skipped: u64,
}

/// Encodes payloads in one protocol with one set of path rules; keeps its scratch buffers.
pub struct Encoder {
    protocol: Protocol,
    prefix: String,
    tags: bool,
    /// UDP: the longest line that fits a datagram.
    max_line: Option<usize>,
    /// The path's start for the current payload: `prefix.dc.region.zone.cluster.host.`
    /// (tags mode: `prefix.`).
    base: String,
    /// Tags mode: the metadata tags of the current payload, `;datacenter=dc1;…`.
    meta_tags: String,
    path: String,
    line: String,
    items: Vec<Pickle>,
}

impl Encoder {
    /// `prefix` is used as [`clean_prefix`] makes it; `udp_max_bytes` only matters for UDP.
    pub fn new(protocol: Protocol, prefix: &str, tags: bool, udp_max_bytes: usize) -> Encoder {
        Encoder {
            protocol,
            prefix: clean_prefix(prefix),
            tags,
            max_line: (protocol == Protocol::Udp).then_some(udp_max_bytes),
            base: String::new(),
            meta_tags: String::new(),
            path: String::new(),
            line: String::new(),
            items: Vec::new(),
        }
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Appends one payload's points to `out`: plaintext lines, or pickle frames (each a
    /// 4-byte big-endian length and a pickle of at most [`PICKLE_FRAME_POINTS`] points).
    pub fn encode(&mut self, payload: &PayloadView<'_>, out: &mut Vec<u8>) -> Encoded {
        self.start_payload(payload.meta());
        let ts = payload.timestamp();
        match self.protocol {
            Protocol::Tcp | Protocol::Udp => self.encode_lines(payload, ts, out),
            Protocol::Pickle => self.encode_pickle(payload, ts, out),
        }
    }

    /// The Graphite path of one point of a payload with this metadata.
    pub fn path(&mut self, meta: &HostMeta, point: &Point) -> String {
        self.start_payload(meta);
        self.make_path(point);
        self.path.clone()
    }

    fn start_payload(&mut self, meta: &HostMeta) {
        self.base.clear();
        self.meta_tags.clear();
        if !self.prefix.is_empty() {
            self.base.push_str(&self.prefix);
            self.base.push('.');
        }
        let parts = [
            ("datacenter", &meta.datacenter),
            ("region", &meta.region),
            ("zone", &meta.zone),
            ("cluster", &meta.cluster),
            ("hostname", &meta.hostname),
        ];
        for (key, value) in parts {
            if value.is_empty() {
                continue;
            }
            if self.tags {
                self.meta_tags.push(';');
                self.meta_tags.push_str(key);
                self.meta_tags.push('=');
                push_sanitized(&mut self.meta_tags, value);
            } else {
                push_sanitized(&mut self.base, value);
                self.base.push('.');
            }
        }
    }

    /// Fills `self.path` for one point.
    fn make_path(&mut self, p: &Point) {
        self.path.clear();
        self.path.push_str(&self.base);
        if !self.tags {
            push_sanitized(&mut self.path, &p.name);
            return;
        }
        if p.measurement.is_empty() || p.field.is_empty() {
            push_sanitized(&mut self.path, &p.name);
        } else {
            push_sanitized(&mut self.path, &p.measurement);
            self.path.push('.');
            push_sanitized(&mut self.path, &p.field);
        }
        for (key, value) in &p.tags {
            if key.is_empty() || value.is_empty() {
                continue;
            }
            self.path.push(';');
            // Graphite keeps the metric name under the tag `name`.
            if key == "name" {
                self.path.push('_');
            }
            push_sanitized(&mut self.path, key);
            self.path.push('=');
            push_sanitized(&mut self.path, value);
        }
        self.path.push_str(&self.meta_tags);
    }

    fn encode_lines(&mut self, payload: &PayloadView<'_>, ts: i64, out: &mut Vec<u8>) -> Encoded {
        let mut done = Encoded::default();
        for p in payload.points() {
            if !finite(p.value) {
                done.skipped += 1;
                continue;
            }
            self.make_path(p);
            self.line.clear();
            self.line.push_str(&self.path);
            self.line.push(' ');
            match p.value {
                Value::Int(i) => {
                    let _ = write!(self.line, "{i}");
                }
                Value::Float(f) => write_float(&mut self.line, f),
            }
            let _ = writeln!(self.line, " {ts}");
            if self.max_line.is_some_and(|max| self.line.len() > max) {
                done.skipped += 1;
                continue;
            }
            out.extend_from_slice(self.line.as_bytes());
            done.points += 1;
        }
        done
    }

    fn encode_pickle(&mut self, payload: &PayloadView<'_>, ts: i64, out: &mut Vec<u8>) -> Encoded {
        let mut done = Encoded::default();
        let mut pending = 0u64;
        let mut bytes = 0usize;
        self.items.clear();
        for p in payload.points() {
            let value = match p.value {
                Value::Int(i) => Pickle::I64(i),
                Value::Float(f) if f.is_finite() => Pickle::F64(f),
                Value::Float(_) => {
                    done.skipped += 1;
                    continue;
                }
            };
            self.make_path(p);
            // BINUNICODE (5 + path), BININT (5), BINFLOAT (9), two TUPLE2.
            let cost = self.path.len() + 21;
            if !self.items.is_empty() && (self.items.len() >= PICKLE_FRAME_POINTS || bytes + cost > PICKLE_FRAME_BYTES)
            {
                done.points += write_frame(&mut self.items, pending, out);
                pending = 0;
                bytes = 0;
            }
            let path = Pickle::String(self.path.clone());
            self.items.push(Pickle::Tuple(vec![path, Pickle::Tuple(vec![Pickle::I64(ts), value])]));
            pending += 1;
            bytes += cost;
        }
        if !self.items.is_empty() {
            done.points += write_frame(&mut self.items, pending, out);
        }
        done
    }
}

fn finite(v: Value) -> bool {
    match v {
        Value::Int(_) => true,
        Value::Float(f) => f.is_finite(),
    }
}

/// Writes one pickle frame of `items` (emptied, its allocation kept); returns how many
/// points it holds (0 if it could not be encoded, which writing to memory never does).
fn write_frame(items: &mut Vec<Pickle>, points: u64, out: &mut Vec<u8>) -> u64 {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let list = Pickle::List(std::mem::take(items));
    let result = serde_pickle::value_to_writer(out, &list, SerOptions::new().proto_v2());
    if let Pickle::List(mut v) = list {
        v.clear();
        *items = v;
    }
    let body = out.len() - start - 4;
    let len = result.map_err(|e| e.to_string()).and_then(|()| u32::try_from(body).map_err(|e| e.to_string()));
    match len {
        Ok(len) => {
            out[start..start + 4].copy_from_slice(&len.to_be_bytes());
            points
        }
        Err(e) => {
            out.truncate(start);
            log::error!("graphite: cannot pickle {points} points: {e}");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use badger_api::matcher::Matcher;
    use badger_api::plugin::Batch;
    use badger_api::point::Payload;

    fn meta(dc: &str, region: &str, zone: &str, cluster: &str, host: &str) -> Arc<HostMeta> {
        Arc::new(HostMeta {
            datacenter: dc.into(),
            region: region.into(),
            zone: zone.into(),
            cluster: cluster.into(),
            hostname: host.into(),
            ipv4: "10.0.0.1".into(),
            ipv6: "fe80::1".into(),
        })
    }

    fn load_payload(meta: Arc<HostMeta>) -> Arc<Payload> {
        Arc::new(Payload {
            meta,
            timestamp: 1795263131,
            points: vec![
                Point::simple("load", "one", "", Value::Float(2.09)),
                Point::simple("load", "five", "", Value::Float(2.0)),
                Point::simple("load", "runnable_entities", "", Value::Int(3)),
            ],
        })
    }

    fn encode(enc: &mut Encoder, payload: Arc<Payload>) -> (Vec<u8>, Encoded) {
        let payloads = [payload];
        let matcher = Matcher::default();
        let batch = Batch::new(&payloads, &matcher);
        let mut out = Vec::new();
        let mut total = Encoded::default();
        for p in batch.payloads() {
            let e = enc.encode(&p, &mut out);
            total.points += e.points;
            total.skipped += e.skipped;
        }
        (out, total)
    }

    fn text(enc: &mut Encoder, payload: Arc<Payload>) -> String {
        String::from_utf8(encode(enc, payload).0).unwrap()
    }

    #[test]
    fn graphite_plaintext_lines_leave_out_empty_parts() {
        let mut enc = Encoder::new(Protocol::Tcp, "", false, 1400);
        assert_eq!(
            text(&mut enc, load_payload(meta("dc1", "", "", "c1", "h1"))),
            "dc1.c1.h1.load.one 2.09 1795263131\n\
             dc1.c1.h1.load.five 2.0 1795263131\n\
             dc1.c1.h1.load.runnable_entities 3 1795263131\n"
        );
        assert_eq!(
            text(&mut enc, load_payload(meta("dc1", "us-east", "a", "c1", "h1"))).lines().next().unwrap(),
            "dc1.us-east.a.c1.h1.load.one 2.09 1795263131"
        );
        assert_eq!(
            text(&mut enc, load_payload(meta("", "", "", "", ""))).lines().next().unwrap(),
            "load.one 2.09 1795263131"
        );
    }

    #[test]
    fn graphite_prefix_is_sanitised_and_trimmed() {
        let mut enc = Encoder::new(Protocol::Tcp, ".servers.prod env.", false, 1400);
        assert_eq!(
            text(&mut enc, load_payload(meta("dc1", "", "", "c1", "h1"))).lines().next().unwrap(),
            "servers.prod_env.dc1.c1.h1.load.one 2.09 1795263131"
        );
        assert_eq!(clean_prefix(""), "");
        assert_eq!(clean_prefix("..."), "");
        assert_eq!(clean_prefix("a/b"), "a_b");
    }

    #[test]
    fn graphite_sanitising_of_names_and_metadata() {
        let mut enc = Encoder::new(Protocol::Tcp, "", false, 1400);
        let m = meta("dc 1", "eu/west", "", "c:1;x=y,z", "web1.example.com");
        let fs = Point::device("fs", "used", "B", "mount", "/var/lib", Value::Int(42));
        assert_eq!(enc.path(&m, &fs), "dc_1.eu_west.c_1_x_y_z.web1.example.com.fs.used._var_lib");
        let odd = Point::device("net", "rx_bytes", "B", "interface", "wlp0s20f3 é", Value::Int(1));
        assert_eq!(enc.path(&m, &odd), "dc_1.eu_west.c_1_x_y_z.web1.example.com.net.rx_bytes.wlp0s20f3__");
        assert_eq!(sanitize("A-z_0.9"), "A-z_0.9");
        assert_eq!(sanitize("a b\tc\nd"), "a_b_c_d");
    }

    #[test]
    fn graphite_tags_mode() {
        let mut enc = Encoder::new(Protocol::Tcp, "badger", true, 1400);
        let m = meta("dc1", "", "", "c1", "h1");
        let fs = Point::device("fs", "used", "B", "mount", "/var/lib", Value::Int(42)).with_tag("fstype", "ext4");
        assert_eq!(
            enc.path(&m, &fs),
            "badger.fs.used;mount=_var_lib;fstype=ext4;datacenter=dc1;cluster=c1;hostname=h1"
        );
        let named = Point::device("proc", "count", "", "name", "my app", Value::Int(1));
        assert_eq!(enc.path(&m, &named), "badger.proc.count;_name=my_app;datacenter=dc1;cluster=c1;hostname=h1");
        let mut enc = Encoder::new(Protocol::Tcp, "", true, 1400);
        assert_eq!(
            text(&mut enc, load_payload(meta("dc1", "", "", "c=1", "h;1"))).lines().next().unwrap(),
            "load.one;datacenter=dc1;cluster=c_1;hostname=h_1 2.09 1795263131"
        );
        let bare = meta("", "", "", "", "");
        assert_eq!(enc.path(&bare, &Point::simple("load", "one", "", Value::Int(0))), "load.one");
    }

    #[test]
    fn graphite_values_ints_floats_and_non_finite() {
        let mut enc = Encoder::new(Protocol::Tcp, "", false, 1400);
        let payload = Arc::new(Payload {
            meta: meta("", "", "", "", "h"),
            timestamp: 7,
            points: vec![
                Point::simple("a", "int", "", Value::Int(-12)),
                Point::simple("a", "big", "", Value::Int(i64::MAX)),
                Point::simple("a", "f", "", Value::Float(7.462686567164178)),
                Point::simple("a", "tiny", "", Value::Float(1.5e-7)),
                Point::simple("a", "nan", "", Value::Float(f64::NAN)),
                Point::simple("a", "inf", "", Value::Float(f64::INFINITY)),
            ],
        });
        let (out, done) = encode(&mut enc, payload);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "h.a.int -12 7\nh.a.big 9223372036854775807 7\nh.a.f 7.462686567164178 7\nh.a.tiny 1.5e-07 7\n"
        );
        assert_eq!(done, Encoded { points: 4, skipped: 2 });
    }

    #[test]
    fn graphite_udp_leaves_out_lines_longer_than_a_datagram() {
        let mut enc = Encoder::new(Protocol::Udp, "", false, 20);
        let (out, done) = encode(&mut enc, load_payload(meta("", "", "", "", "h")));
        assert!(out.is_empty());
        assert_eq!(done, Encoded { points: 0, skipped: 3 });
        let mut enc = Encoder::new(Protocol::Udp, "", false, 28);
        let (out, done) = encode(&mut enc, load_payload(meta("", "", "", "", "h")));
        assert_eq!(String::from_utf8(out).unwrap(), "h.load.one 2.09 1795263131\nh.load.five 2.0 1795263131\n");
        assert_eq!(done, Encoded { points: 2, skipped: 1 });
    }

    /// The expected pickle, written out opcode by opcode.
    fn pickle_of(items: &[(&str, i32, Value)]) -> Vec<u8> {
        let mut b = vec![0x80, 2, b']', b'('];
        for (path, ts, v) in items {
            b.push(b'X');
            b.extend_from_slice(&(path.len() as u32).to_le_bytes());
            b.extend_from_slice(path.as_bytes());
            b.push(b'J');
            b.extend_from_slice(&ts.to_le_bytes());
            match v {
                Value::Float(f) => {
                    b.push(b'G');
                    b.extend_from_slice(&f.to_be_bytes());
                }
                Value::Int(i) => {
                    b.push(b'J');
                    b.extend_from_slice(&(*i as i32).to_le_bytes());
                }
            }
            b.extend_from_slice(&[0x86, 0x86]);
        }
        b.extend_from_slice(b"e.");
        let mut frame = (b.len() as u32).to_be_bytes().to_vec();
        frame.extend(b);
        frame
    }

    #[test]
    fn graphite_pickle_frame_bytes() {
        let mut enc = Encoder::new(Protocol::Pickle, "", false, 1400);
        let (out, done) = encode(&mut enc, load_payload(meta("dc1", "", "", "c1", "h1")));
        let expected = pickle_of(&[
            ("dc1.c1.h1.load.one", 1795263131, Value::Float(2.09)),
            ("dc1.c1.h1.load.five", 1795263131, Value::Float(2.0)),
            ("dc1.c1.h1.load.runnable_entities", 1795263131, Value::Int(3)),
        ]);
        assert_eq!(out, expected);
        assert_eq!(done, Encoded { points: 3, skipped: 0 });
    }

    #[test]
    fn graphite_pickle_splits_long_payloads_into_frames() {
        let mut enc = Encoder::new(Protocol::Pickle, "", false, 1400);
        let points = (0..1203).map(|i| Point::device("x", "y", "", "n", &i.to_string(), Value::Int(i))).collect();
        let payload = Arc::new(Payload { meta: meta("", "", "", "", "h"), timestamp: 5, points });
        let (out, done) = encode(&mut enc, payload);
        assert_eq!(done.points, 1203);
        let mut frames = Vec::new();
        let mut rest = &out[..];
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            frames.push(&rest[4..4 + len]);
            rest = &rest[4 + len..];
        }
        assert_eq!(frames.len(), 3);
        let first: Vec<(String, i32, Value)> = (0..500).map(|i| (format!("h.x.y.{i}"), 5, Value::Int(i))).collect();
        let first: Vec<(&str, i32, Value)> = first.iter().map(|(p, t, v)| (p.as_str(), *t, *v)).collect();
        assert_eq!(frames[0], &pickle_of(&first)[4..]);
        assert!(frames[2].starts_with(&[0x80, 2, b']', b'(', b'X']));
        assert!(frames[2].ends_with(b"e."));
    }
}
