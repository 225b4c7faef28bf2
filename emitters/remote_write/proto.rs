//! The protobuf messages of Prometheus remote write 1.0 (`prompb.WriteRequest`), encoded by
//! hand: badger only ever writes four small messages, so a protobuf library (prost, its
//! derive macros and their build time) would buy nothing. The field numbers are those of
//! `prompb/remote.proto` and `prompb/types.proto`:
//!
//! ```text
//! message WriteRequest { repeated TimeSeries timeseries = 1; }
//! message TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
//! message Label        { string name = 1; string value = 2; }
//! message Sample       { double value = 1; int64 timestamp = 2; }  // milliseconds
//! ```
//!
//! A `WriteRequest` is its `timeseries` fields one after the other, so the encodings of
//! several time series, concatenated, are a valid `WriteRequest`: that is what an outbox
//! record holds, and a request body is records put end to end.

/// Appends a base-128 varint.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Wire type 2 (length-delimited) key of a field.
fn key_len_delimited(field: u8) -> u8 {
    (field << 3) | 2
}

fn label_len(name: &str, value: &str) -> usize {
    1 + varint_len(name.len() as u64) + name.len() + 1 + varint_len(value.len() as u64) + value.len()
}

/// Appends one `timeseries` field of a `WriteRequest`: the labels (which must be sorted by
/// name, `__name__` among them) and one sample.
pub fn write_series(out: &mut Vec<u8>, labels: &[(&str, &str)], value: f64, timestamp_ms: i64) {
    let sample_len = 1 + 8 + 1 + varint_len(timestamp_ms as u64);
    let mut series_len = 0usize;
    for (n, v) in labels {
        let l = label_len(n, v);
        series_len += 1 + varint_len(l as u64) + l;
    }
    series_len += 1 + varint_len(sample_len as u64) + sample_len;
    out.push(key_len_delimited(1));
    varint(out, series_len as u64);
    for (n, v) in labels {
        out.push(key_len_delimited(1));
        varint(out, label_len(n, v) as u64);
        out.push(key_len_delimited(1));
        varint(out, n.len() as u64);
        out.extend_from_slice(n.as_bytes());
        out.push(key_len_delimited(2));
        varint(out, v.len() as u64);
        out.extend_from_slice(v.as_bytes());
    }
    out.push(key_len_delimited(2));
    varint(out, sample_len as u64);
    // value: field 1, wire type 1 (64-bit), little-endian.
    out.push((1 << 3) | 1);
    out.extend_from_slice(&value.to_le_bytes());
    // timestamp: field 2, wire type 0 (varint); a negative int64 is its two's complement.
    out.push(2 << 3);
    varint(out, timestamp_ms as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_series_by_the_wire_format() {
        let mut out = Vec::new();
        write_series(&mut out, &[("__name__", "up"), ("job", "a")], 1.0, 1_700_000_000_000);
        // timeseries { labels { name: "__name__" value: "up" } labels { name: "job" value: "a" }
        //              samples { value: 1 timestamp: 1700000000000 } }: field keys 0x0a (1,
        // bytes), 0x12 (2, bytes), 0x09 (1, fixed64), 0x10 (2, varint); lengths 44, 14, 8, 16.
        let want: Vec<u8> = [
            &[0x0a, 0x2c][..],
            &[0x0a, 0x0e, 0x0a, 0x08],
            b"__name__",
            &[0x12, 0x02],
            b"up",
            &[0x0a, 0x08, 0x0a, 0x03],
            b"job",
            &[0x12, 0x01],
            b"a",
            &[0x12, 0x10, 0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31],
        ]
        .concat();
        assert_eq!(out, want);
    }

    #[test]
    fn varints() {
        for (v, bytes) in [(0u64, vec![0u8]), (127, vec![0x7f]), (128, vec![0x80, 0x01]), (300, vec![0xac, 0x02])] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(out, bytes, "{v}");
            assert_eq!(varint_len(v), bytes.len());
        }
        let mut out = Vec::new();
        varint(&mut out, -1i64 as u64);
        assert_eq!(out.len(), 10);
    }
}
