//! The payload as JSON, in the original's shape and formatting.
//!
//! Shape: `{"cluster", "datacenter", "hostname", "ipv4", "ipv6", "points": [{"<stat>":
//! {"units", "value"}}…], "region", "timestamp", "zone"}`, keys sorted at every level as
//! Python's `json.dumps(sort_keys=True)` printed them. Numbers follow Python's `repr`: a float
//! always has a `.` or an exponent (`0.0`, `7.462686567164178`, `1e-05`, `1e+16`), an int never
//! does. Strings are escaped with `ensure_ascii` (non-ASCII as `\uXXXX`).

use std::fmt::Write;

use crate::plugin::PayloadView;
use crate::point::Value;

/// Appends one payload; `pretty` = 4-space indent with `": "`, otherwise compact (no spaces).
pub fn write_payload(out: &mut String, p: &PayloadView<'_>, pretty: bool) {
    let meta = p.meta();
    let (nl, ind, colon) = if pretty { ("\n", "    ", ": ") } else { ("", "", ":") };
    let key = |out: &mut String, depth: usize, k: &str| {
        out.push_str(nl);
        for _ in 0..depth {
            out.push_str(ind);
        }
        write_str(out, k);
        out.push_str(colon);
    };
    let close = |out: &mut String, depth: usize, c: char| {
        out.push_str(nl);
        for _ in 0..depth {
            out.push_str(ind);
        }
        out.push(c);
    };
    out.push('{');
    for (k, v) in [
        ("cluster", &meta.cluster),
        ("datacenter", &meta.datacenter),
        ("hostname", &meta.hostname),
        ("ipv4", &meta.ipv4),
        ("ipv6", &meta.ipv6),
    ] {
        key(out, 1, k);
        write_str(out, v);
        out.push(',');
    }
    key(out, 1, "points");
    out.push('[');
    let mut first = true;
    for point in p.points() {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(nl);
        out.push_str(if pretty { "        {" } else { "{" });
        key(out, 3, &point.name);
        out.push('{');
        key(out, 4, "units");
        write_str(out, &point.units);
        out.push(',');
        key(out, 4, "value");
        write_value(out, point.value);
        close(out, 3, '}');
        close(out, 2, '}');
    }
    if first {
        out.push(']');
    } else {
        close(out, 1, ']');
    }
    out.push(',');
    key(out, 1, "region");
    write_str(out, &meta.region);
    out.push(',');
    key(out, 1, "timestamp");
    let _ = write!(out, "{}", p.timestamp());
    out.push(',');
    key(out, 1, "zone");
    write_str(out, &meta.zone);
    close(out, 0, '}');
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
    if !f.is_finite() {
        // Not valid JSON; modules never emit these, but never print garbage either.
        out.push_str("null");
        return;
    }
    let sci = format!("{:e}", f.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
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

/// A JSON string with Python's `ensure_ascii` escaping.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
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
    fn strings_like_ensure_ascii() {
        let mut s = String::new();
        write_str(&mut s, "a\"b\\c\n\u{1}é\u{7f}😀");
        assert_eq!(s, r#""a\"b\\c\n\u0001\u00e9\u007f\ud83d\ude00""#);
    }
}
