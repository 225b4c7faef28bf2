//! InfluxDB line protocol for one payload, precision seconds.
//!
//! `<measurement>[,<tag>=<value>…] <field>=<value>[,…] <timestamp>\n`. One line per
//! measurement and tag set: the points of a payload that share both are merged into one line
//! with several fields, in the order the points came. Tags: the host metadata that is not
//! empty (`cluster`, `datacenter`, `host` = hostname, `region`, `zone`) and the point's own
//! (`device`, `interface`, …; a point's tag wins over metadata of the same key), sorted by
//! key as InfluxDB prefers; a tag with an empty value is left out (line protocol has no empty
//! tag values). Integers carry the `i` suffix, floats never do (`1` is a float in line
//! protocol), so a field never changes type. A float that is not finite cannot be written
//! and is left out.
//!
//! Escaping (backslash before the character): measurement: comma and space; tag keys, tag
//! values and field keys: comma, equals sign and space; string field values (badger has none
//! yet, see [`write_string_field`]): double quote and backslash. Newline, carriage return and
//! tab become `\n`, `\r`, `\t`, as Telegraf writes them, and a trailing backslash (which
//! would escape the separator after it) is dropped.

use std::fmt::Write;

pub mod telegraf;

use badger_api::plugin::PayloadView;
use badger_api::point::{Point, Value};
use telegraf::TagMap;

/// Which names the stats go out under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Naming {
    /// badger's own: measurement `disk`, field `reads`, tag `device`.
    #[default]
    Badger,
    /// Telegraf's: measurement `diskio`, field `reads`, tag `name` (see [`telegraf`]).
    Telegraf,
}

/// One line being built: its key (measurement + tags) and its fields.
struct Line<'a> {
    measurement: &'a str,
    point_tags: &'a [(badger_api::point::Text, String)],
    tag_map: TagMap,
    fields: Vec<(&'a str, Value)>,
}

/// Appends the payload as line protocol to `out`; returns how many fields (points) it wrote.
pub fn encode_payload(out: &mut String, p: &PayloadView<'_>, naming: Naming) -> u64 {
    let mut lines: Vec<Line<'_>> = Vec::with_capacity(16);
    for point in p.points() {
        let (measurement, field, tag_map) = target(point, naming);
        // A line takes a field once: a repeated field starts a new line of the same series.
        let same = |l: &Line<'_>| {
            l.measurement == measurement
                && l.tag_map == tag_map
                && tags_eq(l.point_tags, &point.tags)
                && !l.fields.iter().any(|(f, _)| *f == field)
        };
        // Points of one line usually come one after the other: rposition looks at the last first.
        match lines.iter().rposition(same) {
            Some(i) => lines[i].fields.push((field, point.value)),
            None => {
                lines.push(Line { measurement, point_tags: &point.tags, tag_map, fields: vec![(field, point.value)] })
            }
        }
    }
    let meta = p.meta();
    // Sorted by key.
    let meta_tags: [(&str, &str); 5] = [
        ("cluster", &meta.cluster),
        ("datacenter", &meta.datacenter),
        ("host", &meta.hostname),
        ("region", &meta.region),
        ("zone", &meta.zone),
    ];
    let mut written = 0;
    let mut tags: Vec<(&str, &str)> = Vec::with_capacity(8);
    for line in &lines {
        tags.clear();
        tags.extend(meta_tags.iter().copied().filter(|(_, v)| !v.is_empty()));
        tags.extend(line.point_tags.iter().map(|(k, v)| (line.tag_map.key(k), line.tag_map.value(k, v))));
        tags.extend(line.tag_map.add);
        written += write_line(out, line.measurement, &mut tags, &line.fields, p.timestamp());
    }
    written
}

fn target(point: &Point, naming: Naming) -> (&str, &str, TagMap) {
    match naming {
        Naming::Badger => (&point.measurement, &point.field, TagMap::NONE),
        Naming::Telegraf => {
            let t = telegraf::map(point);
            (t.measurement, t.field, t.tags)
        }
    }
}

fn tags_eq(a: &[(badger_api::point::Text, String)], b: &[(badger_api::point::Text, String)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((ka, va), (kb, vb))| ka == kb && va == vb)
}

/// Writes one line; `tags` is sorted here (a later tag wins over an earlier one of the same
/// key). Returns the number of fields written; writes nothing when no field can be written.
pub fn write_line(
    out: &mut String,
    measurement: &str,
    tags: &mut [(&str, &str)],
    fields: &[(&str, Value)],
    timestamp: i64,
) -> u64 {
    if !fields.iter().any(|(k, v)| writable(k, *v)) || escaped_is_empty(measurement) {
        return 0;
    }
    let start = out.len();
    escape(out, measurement, Kind::Measurement);
    tags.sort_by(|a, b| a.0.cmp(b.0));
    for (i, (k, v)) in tags.iter().enumerate() {
        if tags.get(i + 1).is_some_and(|next| next.0 == *k) || escaped_is_empty(k) || escaped_is_empty(v) {
            continue;
        }
        out.push(',');
        escape(out, k, Kind::Key);
        out.push('=');
        escape(out, v, Kind::Key);
    }
    let mut sep = ' ';
    let mut n = 0;
    for (k, v) in fields {
        if !writable(k, *v) {
            continue;
        }
        out.push(sep);
        sep = ',';
        escape(out, k, Kind::Key);
        out.push('=');
        match v {
            Value::Int(i) => {
                let _ = write!(out, "{i}i");
            }
            Value::Float(f) => {
                let _ = write!(out, "{f}");
            }
        }
        n += 1;
    }
    if n == 0 {
        out.truncate(start);
        return 0;
    }
    let _ = writeln!(out, " {timestamp}");
    n
}

fn writable(key: &str, v: Value) -> bool {
    !escaped_is_empty(key)
        && match v {
            Value::Int(_) => true,
            Value::Float(f) => f.is_finite(),
        }
}

/// True when nothing would be left of `s` (empty, or only backslashes).
fn escaped_is_empty(s: &str) -> bool {
    s.trim_end_matches('\\').is_empty()
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Measurement: comma and space.
    Measurement,
    /// Tag key, tag value, field key: comma, equals sign and space.
    Key,
}

fn escape(out: &mut String, s: &str, kind: Kind) {
    let s = s.trim_end_matches('\\');
    for c in s.chars() {
        match c {
            ',' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '=' if kind == Kind::Key => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
}

/// Appends a string field value: double-quoted, with `"` and `\` escaped.
pub fn write_string_field(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use super::*;
    use badger_api::point::HostMeta;
    use badger_test_support::payload;

    fn meta(dc: &str, cluster: &str, host: &str) -> Arc<HostMeta> {
        payload::meta(dc, "", "", cluster, host)
    }

    fn encode(meta: Arc<HostMeta>, points: Vec<Point>, naming: Naming) -> (String, u64) {
        let mut out = String::new();
        let mut n = 0;
        payload::each_view(&[payload::payload(meta, 1_700_000_000, points)], |p| {
            n += encode_payload(&mut out, p, naming)
        });
        (out, n)
    }

    fn load() -> Vec<Point> {
        vec![
            Point::simple("load", "one", "", Value::Float(0.5)),
            Point::simple("load", "five", "", Value::Float(1.0)),
            Point::simple("load", "fifteen", "", Value::Float(2.25)),
            Point::simple("load", "runnable_entities", "", Value::Int(2)),
            Point::simple("load", "total_entities", "", Value::Int(321)),
        ]
    }

    #[test]
    fn merged_fields_ints_and_floats() {
        let (out, n) = encode(meta("dc1", "c1", "h1"), load(), Naming::Badger);
        assert_eq!(
            out,
            "load,cluster=c1,datacenter=dc1,host=h1 one=0.5,five=1,fifteen=2.25,runnable_entities=2i,total_entities=321i 1700000000\n"
        );
        assert_eq!(n, 5);
    }

    #[test]
    fn empty_metadata_is_left_out() {
        let (out, _) = encode(meta("", "", "h1"), load()[..1].to_vec(), Naming::Badger);
        assert_eq!(out, "load,host=h1 one=0.5 1700000000\n");
        let (out, _) = encode(meta("", "", ""), load()[..1].to_vec(), Naming::Badger);
        assert_eq!(out, "load one=0.5 1700000000\n");
    }

    #[test]
    fn lines_per_measurement_and_tag_set() {
        let points = vec![
            Point::device("disk", "reads", "", "device", "sda", Value::Float(1.5)),
            Point::device("disk", "reads", "", "device", "sdb", Value::Float(2.0)),
            Point::device("disk", "writes", "", "device", "sda", Value::Float(3.0)),
            Point::simple("cpu", "user", "percent", Value::Float(7.25)),
            Point::device("disk", "io", "", "device", "sdb", Value::Int(0)),
            Point::device("cpu", "user", "percent", "cpu", "cpu0", Value::Float(9.0)),
            Point::simple("cpu", "procs_running", "", Value::Int(3)),
        ];
        let (out, n) = encode(meta("", "", "h"), points, Naming::Badger);
        assert_eq!(
            out,
            "disk,device=sda,host=h reads=1.5,writes=3 1700000000\n\
             disk,device=sdb,host=h reads=2,io=0i 1700000000\n\
             cpu,host=h user=7.25,procs_running=3i 1700000000\n\
             cpu,cpu=cpu0,host=h user=9 1700000000\n"
        );
        assert_eq!(n, 7);
    }

    #[test]
    fn escaping() {
        let mut p = Point::device("my meas,x=1", "f o,o=", "", "ta g,=", "v a,l=ue\\", Value::Int(-4));
        p.tags.push((Cow::Borrowed("empty"), String::new()));
        p.tags.push((Cow::Borrowed("nl"), "a\nb\tc".into()));
        let (out, n) = encode(meta("d c", "", "h=1,2"), vec![p], Naming::Badger);
        assert_eq!(
            out,
            "my\\ meas\\,x=1,datacenter=d\\ c,host=h\\=1\\,2,nl=a\\nb\\tc,ta\\ g\\,\\==v\\ a\\,l\\=ue f\\ o\\,o\\==-4i 1700000000\n"
        );
        assert_eq!(n, 1);
        let mut s = String::new();
        write_string_field(&mut s, r#"say "hi" \o/"#);
        assert_eq!(s, r#""say \"hi\" \\o/""#);
    }

    #[test]
    fn non_finite_floats_are_left_out_and_empty_lines_skipped() {
        let points = vec![
            Point::simple("a", "x", "", Value::Float(f64::NAN)),
            Point::simple("b", "x", "", Value::Float(f64::INFINITY)),
            Point::simple("b", "y", "", Value::Float(-0.001)),
            Point::simple("c", "big", "", Value::Int(i64::MIN)),
        ];
        let (out, n) = encode(meta("", "", ""), points, Naming::Badger);
        assert_eq!(out, "b y=-0.001 1700000000\nc big=-9223372036854775808i 1700000000\n");
        assert_eq!(n, 2);
    }

    #[test]
    fn point_tag_wins_over_metadata() {
        let p = Point::device("x", "v", "", "host", "other", Value::Int(1));
        let (out, _) = encode(meta("", "", "h"), vec![p], Naming::Badger);
        assert_eq!(out, "x,host=other v=1i 1700000000\n");
    }

    #[test]
    fn telegraf_naming() {
        let points = vec![
            Point::simple("cpu", "user", "percent", Value::Float(10.5)),
            Point::simple("cpu", "idle", "percent", Value::Float(80.0)),
            Point::device("cpu", "user", "percent", "cpu", "cpu1", Value::Float(11.0)),
            Point::simple("cpu", "procs_running", "", Value::Int(2)),
            Point::simple("cpu", "procs_blocked", "", Value::Int(0)),
            Point::simple("cpu", "ctxt_per_sec", "", Value::Float(474.0)),
            Point::simple("cpu", "ctxt_per_sec_per_core", "", Value::Int(237)),
            Point::simple("cpu", "cores", "", Value::Int(2)),
            Point::simple("load", "one", "", Value::Float(0.5)),
            Point::simple("load", "total_entities", "", Value::Int(321)),
            Point::device("disk", "reads", "", "device", "sda", Value::Float(1.0)),
            Point::device("disk", "read_thruput", "B", "device", "sda", Value::Float(512.0)),
            Point::device("disk", "io", "", "device", "sda", Value::Int(1)),
            Point::device("disk", "read_sectors", "", "device", "sda", Value::Float(1.0)),
            Point::device("fs", "used_percent", "percent", "path", "/", Value::Float(42.5))
                .with_tag("device", "/dev/vda1")
                .with_tag("fstype", "ext4"),
            Point::device("filesystem", "readonly", "", "mountpoint", "/", Value::Int(0))
                .with_tag("device", "/dev/vda1")
                .with_tag("fstype", "ext4"),
            Point::device("net", "rx_bytes", "B", "interface", "eth0", Value::Float(100.0)),
            Point::device("net", "tx_errs", "", "interface", "eth0", Value::Float(0.0)),
            Point::device("net", "rx_bits", "b", "interface", "eth0", Value::Float(800.0)),
            Point::simple("mem", "memtotal", "B", Value::Int(1024)),
            Point::simple("mem", "buffers", "B", Value::Int(8)),
            Point::simple("mem", "used_percent", "percent", Value::Float(12.5)),
            Point::simple("mem", "directmap4k", "B", Value::Int(4096)),
            Point::simple("mem", "swap_used", "B", Value::Int(0)),
            Point::simple("system", "uptime", "s", Value::Int(99)),
            Point::simple("system", "boot_time", "s", Value::Int(1_699_999_901)),
            Point::device("proc", "mem_resident", "B", "process", "sshd", Value::Int(4096)),
            Point::device("proc", "count", "", "process", "sshd", Value::Int(3)),
            Point::device("proc", "cpu", "percent", "process", "sshd", Value::Float(0.25)),
        ];
        let (out, n) = encode(meta("", "", "h"), points, Naming::Telegraf);
        let want = [
            "cpu,cpu=cpu-total,host=h usage_user=10.5,usage_idle=80,ctxt_per_sec_per_core=237i 1700000000",
            "cpu,cpu=cpu1,host=h usage_user=11 1700000000",
            "processes,host=h running=2i,blocked=0i 1700000000",
            "kernel,host=h context_switches=474,boot_time=1699999901i 1700000000",
            "system,host=h n_cpus=2i,load1=0.5,total_entities=321i,uptime=99i 1700000000",
            "diskio,host=h,name=sda reads=1,read_bytes=512,iops_in_progress=1i,read_sectors=1 1700000000",
            "disk,device=vda1,fstype=ext4,host=h,path=/ used_percent=42.5 1700000000",
            "disk,device=vda1,fstype=ext4,host=h,path=/ readonly=0i 1700000000",
            "net,host=h,interface=eth0 bytes_recv=100,err_out=0,rx_bits=800 1700000000",
            "mem,host=h total=1024i,buffered=8i,used_percent=12.5,directmap4k=4096i 1700000000",
            "swap,host=h used=0i 1700000000",
            "procstat,host=h,process_name=sshd memory_rss=4096i,cpu=0.25 1700000000",
            "procstat_lookup,host=h,process_name=sshd pid_count=3i 1700000000",
        ];
        assert_eq!(out, want.join("\n") + "\n");
        assert_eq!(n, 29);
    }
}
