//! What the fuzz targets `pulse_relay_line` and `pulse_api_query` (fuzz/fuzz_targets/) and
//! their bounded randomised tests on stable run on arbitrary bytes. Nothing may panic, parsed
//! parts stay inside the input, and a query range the API accepts never makes the bucket
//! loop run past the bound.

use std::time::Duration;

use badger_formats::pulse::{parse_add, parse_got, split_command};

use super::http::{duration_ms, params, query_range, span_of, verb_of};
use super::store::{group, Verb};

/// The `--max-query-buckets` default the target checks against.
const MAX_BUCKETS: u64 = 10_000;
const NOW_MS: i64 = 1_796_400_000_000;

fn inside(outer: &str, inner: &str) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len())
}

/// One relay protocol line, as the server reads it (lossy UTF-8, `\r` trimmed).
pub fn relay_line(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let line = text.strip_suffix('\r').unwrap_or(&text);
    let (cmd, args) = split_command(line);
    assert!(inside(line, cmd));
    let Some(args) = args else { return };
    assert!(inside(line, args));
    let (name, tags) = parse_add(args);
    assert!(inside(args, name) && tags.iter().all(|t| inside(args, t)));
    for item in parse_got(args) {
        assert!(inside(args, item.collector) && inside(args, item.name) && inside(args, item.value));
        assert!(item.number().is_finite());
    }
    for token in ["", "tok"] {
        let (id, ok) = super::tcp::identity(args, token);
        assert!(inside(args, id));
        if token.is_empty() {
            assert!(id == args && ok, "without a relay token the whole argument is the id");
        }
    }
}

/// One API query string (`a=b&c=d`, percent-encoded) of the stat routes.
pub fn api_query(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(String, String)> = text
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let dec =
                |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (dec(k), dec(v))
        })
        .collect();
    let p = params(pairs);
    let _ = verb_of(p.verb.as_deref(), true);
    if let Some(s) = &p.start {
        let _ = duration_ms(s);
    }
    let (Ok(start), Ok(stop)) = (span_of(p.start.as_deref(), "1d", "start"), span_of(p.stop.as_deref(), "0s", "stop"))
    else {
        return;
    };
    assert!(start >= 0 && stop >= 0);
    for bucket in [Duration::from_secs(3600), Duration::from_secs(900)] {
        let Ok((from, to)) = query_range(start, stop, bucket, MAX_BUCKETS, NOW_MS) else { continue };
        let fill = p.backfill.as_deref().map(|b| b.parse::<f64>().ok().filter(|v| v.is_finite()).unwrap_or(0.0));
        if from.checked_add(1).is_some_and(|f| f < to) {
            let out = group(vec![(from + 1, 1.0)], from, to, bucket.as_millis() as i64, Verb::Mean, fill.or(Some(0.0)));
            assert!(out.len() as u64 <= MAX_BUCKETS + 2, "{} buckets for {start}..{stop}", out.len());
        }
    }
}

#[cfg(test)]
mod tests {
    /// The fuzz targets' bounded mirror on stable: seeds, then random and mutated inputs
    /// from a fixed xorshift seed.
    fn run(f: fn(&[u8]), seeds: &[&[u8]]) {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"0123456789abcdefghijklmnopqrstuvwxyz-:,. &=%+\r\nmswhd\xc2\xb5_idgotadd";
        for s in seeds {
            f(s);
        }
        for _ in 0..20_000 {
            let base = seeds[(next() % seeds.len() as u64) as usize];
            let mut v = base.to_vec();
            for _ in 0..(next() % 6) {
                let at = if v.is_empty() { 0 } else { (next() % v.len() as u64) as usize };
                let b = alphabet[(next() % alphabet.len() as u64) as usize];
                match next() % 3 {
                    0 => v.insert(at, b),
                    1 if !v.is_empty() => {
                        let i = at.min(v.len() - 1);
                        v[i] = b;
                    }
                    _ if !v.is_empty() => {
                        v.remove(at.min(v.len() - 1));
                    }
                    _ => v.push(b),
                }
            }
            f(&v);
        }
    }

    #[test]
    fn relay_lines_never_panic() {
        run(
            super::relay_line,
            &[
                b"id web1",
                b"id web1 secret",
                b"add cpu_used:host:a,service:b",
                b"got cpu-cpu_used:0.5,ram-ram_used:x,a-b-c:1:2",
                b"remove cpu",
                b"ping\r",
                b"",
                b"\xff\xfe got \xc3",
            ],
        );
    }

    #[test]
    fn api_queries_never_panic_and_stay_bounded() {
        run(
            super::api_query,
            &[
                b"start=9223372036854775807ms",
                b"start=20000w&backfill=0",
                b"start=10000h&stop=1h&verb=max&host=a&host=b",
                b"verb=none&start=1d&stop=0s",
                b"start=9223372036854775807ns&stop=9223372036854775807ms",
                b"backfill=nan&start=%31d",
                b"",
            ],
        );
    }
}
