//! The payload as JSON, in the original's shape and formatting: what `stdout`,
//! `stdout_pretty` and Kafka's `json` format print, and what exec and shared-library emitters
//! receive.
//!
//! Shape: `{"cluster", "datacenter", "hostname", "ipv4", "ipv6", "points": [{"<stat>":
//! {"units", "value"}}…], "region", "timestamp", "zone"}`, keys sorted at every level as
//! Python's `json.dumps(sort_keys=True)` printed them. Numbers follow Python's `repr`: a float
//! always has a `.` or an exponent (`0.0`, `7.462686567164178`, `1e-05`, `1e+16`), an int never
//! does. Strings are escaped with `ensure_ascii` (non-ASCII as `\uXXXX`).

use std::fmt::Write;

use badger_api::plugin::PayloadView;
use badger_api::point::Value;

/// Appends one payload; `pretty` = 4-space indent with `": "`, otherwise compact (no spaces).
pub fn write_payload(out: &mut String, p: &PayloadView<'_>, pretty: bool) {
    let meta = p.meta();
    // The layout is fixed, so the separators are constants: (opening of a top-level key,
    // of a point, of a point's inner keys, and the closings).
    let (top, colon, point_open, point_key, inner, inner_close, point_close, list_close, end) = if pretty {
        (
            "\n    ",
            ": ",
            "\n        {\n            ",
            "",
            "\n                ",
            "\n            }",
            "\n        }",
            "\n    ]",
            "\n}",
        )
    } else {
        ("", ":", "{", "", "", "}", "}", "]", "}")
    };
    out.push('{');
    for (k, v) in [
        ("cluster", &meta.cluster),
        ("datacenter", &meta.datacenter),
        ("hostname", &meta.hostname),
        ("ipv4", &meta.ipv4),
        ("ipv6", &meta.ipv6),
    ] {
        out.push_str(top);
        write_str(out, k);
        out.push_str(colon);
        write_str(out, v);
        out.push(',');
    }
    out.push_str(top);
    out.push_str("\"points\"");
    out.push_str(colon);
    out.push('[');
    let mut first = true;
    for point in p.points() {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(point_open);
        out.push_str(point_key);
        write_str(out, &point.name);
        out.push_str(colon);
        out.push('{');
        out.push_str(inner);
        out.push_str("\"units\"");
        out.push_str(colon);
        write_str(out, &point.units);
        out.push(',');
        out.push_str(inner);
        out.push_str("\"value\"");
        out.push_str(colon);
        write_value(out, point.value);
        out.push_str(inner_close);
        out.push_str(point_close);
    }
    if first {
        out.push(']');
    } else {
        out.push_str(list_close);
    }
    out.push(',');
    out.push_str(top);
    out.push_str("\"region\"");
    out.push_str(colon);
    write_str(out, &meta.region);
    out.push(',');
    out.push_str(top);
    out.push_str("\"timestamp\"");
    out.push_str(colon);
    let _ = write!(out, "{}", p.timestamp());
    out.push(',');
    out.push_str(top);
    out.push_str("\"zone\"");
    out.push_str(colon);
    write_str(out, &meta.zone);
    out.push_str(end);
}

pub fn write_value(out: &mut String, v: Value) {
    match v {
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => write_float(out, f),
    }
}

/// A float as Python's `repr` prints it (shortest round-trip digits).
pub fn write_float(out: &mut String, f: f64) {
    if (1e-4..1e16).contains(&f.abs()) {
        // Python prints these positionally, with the shortest round-trip digits that Rust's
        // `Display` prints too; only an integral value needs its ".0". Most stats take this
        // path, a third of the cost of the other.
        let start = out.len();
        let _ = write!(out, "{f}");
        if !out[start..].contains('.') {
            out.push_str(".0");
        }
        return;
    }
    write_float_repr(out, f);
}

/// [`write_float`] for any value: the digits of `{:e}`, placed as `repr` places them.
fn write_float_repr(out: &mut String, f: f64) {
    if !f.is_finite() {
        // Not valid JSON; modules never emit these, but never print garbage either.
        out.push_str("null");
        return;
    }
    // Shortest round-trip digits from `{:e}`, formatted on the stack (no allocation).
    let mut sci = StackBuf::default();
    let _ = write!(sci, "{:e}", f.abs());
    let sci = sci.as_str();
    let (mant, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits_buf = StackBuf::default();
    for c in mant.chars().filter(char::is_ascii_digit) {
        let _ = digits_buf.write_char(c);
    }
    let digits = digits_buf.as_str().trim_end_matches('0');
    if f.is_sign_negative() {
        out.push('-');
    }
    if digits.is_empty() {
        out.push_str("0.0");
        return;
    }
    // value = 0.DIGITS × 10^decpt
    let decpt = exp + 1;
    if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            out.push_str("0.");
            for _ in 0..-decpt {
                out.push('0');
            }
            out.push_str(digits);
        } else if decpt as usize >= digits.len() {
            out.push_str(digits);
            for _ in 0..decpt as usize - digits.len() {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        let _ = write!(out, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    }
}

/// A small text buffer on the stack (a float's digits never exceed 32 bytes).
#[derive(Default)]
struct StackBuf {
    buf: [u8; 32],
    len: usize,
}

impl StackBuf {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A JSON string with Python's `ensure_ascii` escaping.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    // Fast path: printable ASCII without quotes or backslashes is copied as it is.
    if s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f64) -> String {
        let mut s = String::new();
        write_float(&mut s, v);
        s
    }

    #[test]
    fn floats_like_python_repr() {
        assert_eq!(f(0.0), "0.0");
        assert_eq!(f(-0.0), "-0.0");
        assert_eq!(f(1.0), "1.0");
        assert_eq!(f(7.462686567164178), "7.462686567164178");
        assert_eq!(f(0.1), "0.1");
        assert_eq!(f(2.09), "2.09");
        assert_eq!(f(1795263107.132006), "1795263107.132006");
        assert_eq!(f(0.0001), "0.0001");
        assert_eq!(f(0.00001), "1e-05");
        assert_eq!(f(1.5e-7), "1.5e-07");
        assert_eq!(f(1e15), "1000000000000000.0");
        assert_eq!(f(1e16), "1e+16");
        assert_eq!(f(1.2345e22), "1.2345e+22");
        assert_eq!(f(-474.5), "-474.5");
        assert_eq!(f(123456789.0), "123456789.0");
        assert_eq!(f(f64::NAN), "null");
    }

    #[test]
    fn the_positional_fast_path_prints_what_repr_prints() {
        // A fixed-seed walk over magnitudes and mantissas, integral values and the edges.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut values = vec![1e-4, f64::from_bits(1e16_f64.to_bits() - 1), 1.0, 100.0, 0.5, 123456789.0, 9.99e15];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mantissa = (x >> 11) as f64 / (1u64 << 53) as f64 + 1.0;
            let exp = (x % 24) as i32 - 5;
            let v = mantissa * 10f64.powi(exp);
            values.extend([v, -v, v.round(), (v * 1000.0).round() / 1000.0]);
        }
        for v in values {
            let (mut fast, mut slow) = (String::new(), String::new());
            write_float(&mut fast, v);
            write_float_repr(&mut slow, v);
            assert_eq!(fast, slow, "{v:e}");
        }
    }

    #[test]
    fn strings_like_ensure_ascii() {
        let mut s = String::new();
        write_str(&mut s, "a\"b\\c\n\u{1}é\u{7f}😀");
        assert_eq!(s, r#""a\"b\\c\n\u0001\u00e9\u007f\ud83d\ude00""#);
    }
}
