//! Parsing, as l2met does it: logplex frames, syslog lines, logfmt pairs and the metric
//! conventions (`measure#`, `measure.`, `count#`, `sample#`, Heroku router lines).
//!
//! Everything here works on bytes and borrows from its input; a [`Parser`] keeps the buffers
//! of one input thread, so the steady state allocates nothing.

/// One log line as the metrics parser sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// The RFC 3339 TIMESTAMP field, as written; `None` when the line has none (the receive
    /// time is used then).
    pub time: Option<&'a [u8]>,
    /// PROCID (logplex: the dyno or `router`, `logplex`; RFC 3164: the `[pid]` of the tag).
    pub procid: &'a [u8],
    /// MSG: everything after the header.
    pub msg: &'a [u8],
}

/// The octet-counted RFC 5424 frames of a logplex (or log-shuttle) body:
/// `<LEN> <PRI>VER TIMESTAMP HOSTNAME APP-NAME PROCID MSGID MSG`, where LEN counts every byte
/// after `<LEN> `.
///
/// As l2met's reader (`lpx`): LEN is a base-10 integer (an optional sign allowed), the six
/// header fields each end at the next single space, and MSG is what is left of the LEN bytes.
/// Reading stops at the first frame it cannot read (LEN not a number, the input ending inside
/// the header or the message); bytes after the last complete frame are ignored. A frame whose
/// header is longer than LEN has an empty message, and reading goes on right after its header
/// (lpx handed out the previous frame's message again there).
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    data: &'a [u8],
    pos: usize,
    stopped: bool,
}

impl<'a> Frames<'a> {
    pub fn new(data: &'a [u8]) -> Frames<'a> {
        Frames { data, pos: 0, stopped: false }
    }

    /// Bytes of the input read as complete frames so far.
    pub fn consumed(&self) -> usize {
        self.pos
    }

    /// True once a frame could not be read (the rest of the input is ignored).
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The next field: the bytes up to the next space, which is consumed too.
    fn field(&self, at: &mut usize) -> Option<&'a [u8]> {
        let rest = self.data.get(*at..)?;
        let i = memchr(b' ', rest)?;
        *at += i + 1;
        Some(&rest[..i])
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = LogLine<'a>;

    fn next(&mut self) -> Option<LogLine<'a>> {
        if self.stopped {
            return None;
        }
        let mut at = self.pos;
        let frame = (|| {
            let mut n = parse_go_int(self.field(&mut at)?)?;
            let mut header = [&[][..]; 6];
            for h in &mut header {
                let f = self.field(&mut at)?;
                n = n.saturating_sub(f.len() as i64 + 1);
                *h = f;
            }
            let msg = if n > 0 {
                let n = usize::try_from(n).ok()?;
                let end = at.checked_add(n)?;
                let msg = self.data.get(at..end)?;
                at = end;
                msg
            } else {
                &[][..]
            };
            Some(LogLine { time: Some(header[1]), procid: header[4], msg })
        })();
        match frame {
            Some(line) => {
                self.pos = at;
                Some(line)
            }
            None => {
                self.stopped = true;
                None
            }
        }
    }
}

/// Go's `strconv.ParseInt(s, 10, 64)`: an optional sign, then one or more ASCII digits.
fn parse_go_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?;
        v = if neg { v.checked_sub(i64::from(d - b'0'))? } else { v.checked_add(i64::from(d - b'0'))? };
    }
    Some(v)
}

/// The position of the first `b` in `s`.
#[inline]
fn memchr(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

/// Parses one syslog message as received on the UDP or TCP listener, or one line of a tailed
/// file. Never fails: what is not a recognised header is message.
///
/// * `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`: RFC 5424; structured data
///   (`-` or `[…]` elements) is skipped, `-` as TIMESTAMP means none.
/// * `[<PRI>]Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG`: RFC 3164 (also without PRI, as syslog
///   daemons write files). It has no year or zone, so the receive time is used. rsyslog's
///   RFC 3339 timestamp in that place is used.
/// * anything else: the whole line (after a `<PRI>`) is MSG, with the receive time.
pub fn syslog_line(line: &[u8]) -> LogLine<'_> {
    let line = trim_end(line);
    let mut rest = line;
    if rest.first() == Some(&b'<') {
        if let Some(close) = rest.iter().take(5).position(|&c| c == b'>') {
            if close > 1 && rest[1..close].iter().all(u8::is_ascii_digit) {
                rest = &rest[close + 1..];
            }
        }
    }
    if let Some(r) = rest.strip_prefix(b"1 ") {
        if let Some(l) = rfc5424(r) {
            return l;
        }
    }
    rfc3164(rest).unwrap_or(LogLine { time: None, procid: b"", msg: rest })
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [head @ .., b'\n' | b'\r' | b'\0'] = s {
        s = head;
    }
    s
}

/// After `<PRI>1 `.
fn rfc5424(s: &[u8]) -> Option<LogLine<'_>> {
    let mut parts = [&[][..]; 5];
    let mut rest = s;
    for p in &mut parts {
        let i = memchr(b' ', rest)?;
        *p = &rest[..i];
        rest = &rest[i + 1..];
    }
    let [time, _host, _app, procid, _msgid] = parts;
    let msg = skip_structured_data(rest);
    let msg = msg.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(msg);
    Some(LogLine { time: if time == b"-" { None } else { Some(time) }, procid, msg })
}

/// STRUCTURED-DATA is `-` or one or more `[id k="v" …]` elements (values may hold `\]`
/// and `\"`); returns what follows it, without the separating space.
fn skip_structured_data(s: &[u8]) -> &[u8] {
    if s == b"-" {
        return &[];
    }
    if let Some(r) = s.strip_prefix(b"- ") {
        return r;
    }
    let mut i = 0;
    while s.get(i) == Some(&b'[') {
        let mut quoted = false;
        i += 1;
        loop {
            match s.get(i) {
                None => return &[],
                Some(b'\\') if quoted => i += 2,
                Some(b'"') => {
                    quoted = !quoted;
                    i += 1;
                }
                Some(b']') if !quoted => {
                    i += 1;
                    break;
                }
                Some(_) => i += 1,
            }
        }
    }
    let rest = s.get(i..).unwrap_or_default();
    rest.strip_prefix(b" ").unwrap_or(rest)
}

const MONTHS: [&[u8; 3]; 12] =
    [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];

/// `Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG`, or rsyslog's `RFC3339 HOSTNAME TAG[PID]: MSG`.
fn rfc3164(s: &[u8]) -> Option<LogLine<'_>> {
    let (time, rest) = if s.len() >= 16 && MONTHS.iter().any(|m| &s[..3] == *m) && s[15] == b' ' {
        let t = &s[3..15];
        let ok = t[0] == b' '
            && (t[1] == b' ' || t[1].is_ascii_digit())
            && t[2].is_ascii_digit()
            && t[3] == b' '
            && t[6] == b':'
            && t[9] == b':';
        if !ok {
            return None;
        }
        (None, &s[16..])
    } else {
        let i = memchr(b' ', s)?;
        parse_rfc3339(&s[..i])?;
        (Some(&s[..i]), &s[i + 1..])
    };
    let i = memchr(b' ', rest)?;
    let rest = &rest[i + 1..];
    // TAG: letters up to '[', ':' or ' '.
    let end = rest.iter().position(|&c| c == b'[' || c == b':' || c == b' ').unwrap_or(rest.len());
    let mut procid: &[u8] = b"";
    let mut after = &rest[end..];
    if after.first() == Some(&b'[') {
        if let Some(close) = memchr(b']', after) {
            procid = &after[1..close];
            after = &after[close + 1..];
        }
    }
    let after = after.strip_prefix(b":").unwrap_or(after);
    let msg = after.strip_prefix(b" ").unwrap_or(after);
    Some(LogLine { time, procid, msg })
}

/// Seconds since the epoch of an RFC 3339 time as Go's `time.Parse(time.RFC3339, …)` reads
/// it: `2006-01-02T15:04:05Z` or with `±hh:mm`, an optional fraction (`.` or `,` and
/// digits, dropped: the result is floored to the second). `None` when it is not one.
pub fn parse_rfc3339(s: &[u8]) -> Option<i64> {
    fn num(s: &[u8], from: usize, len: usize) -> Option<i64> {
        let d = s.get(from..from + len)?;
        let mut v = 0i64;
        for &c in d {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    }
    if s.len() < 20 || s[4] != b'-' || s[7] != b'-' || s[10] != b'T' || s[13] != b':' || s[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(s, 0, 4)?, num(s, 5, 2)?, num(s, 8, 2)?);
    let (hour, min, sec) = (num(s, 11, 2)?, num(s, 14, 2)?, num(s, 17, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) || hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    let mut i = 19;
    if matches!(s[i], b'.' | b',') {
        i += 1;
        let start = i;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match s.get(i..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (num(&[*h1, *h2], 0, 2)?, num(&[*m1, *m2], 0, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let o = h * 3600 + m * 60;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec - offset)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// What a metric pair is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `measure#` / `measure.` / router: every value is kept for the statistics.
    Measure,
    /// `count#`: the sum.
    Counter,
    /// `sample#`: the last value.
    Sample,
}

impl Kind {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A value that l2met accepts, and its units: an empty value is `1`; otherwise the leading
/// digits with at most one `.` (at least one digit), and the units are the value with every
/// leading and trailing digit and `.` removed (`4ms` → 4 `ms`, `1.5.3ms` → 1.5 `ms`,
/// `4ms5` → 4 `ms`). `None` (the pair is ignored) when no digit leads: `-3`, `abc`, `ms4`.
pub fn parse_value(v: &[u8]) -> Option<(f64, &[u8])> {
    if v.is_empty() {
        return Some((1.0, v));
    }
    let mut dot = false;
    let mut end = 0;
    for &c in v {
        if c == b'.' && !dot {
            dot = true;
        } else if !c.is_ascii_digit() {
            break;
        }
        end += 1;
    }
    if end == 0 {
        return None;
    }
    let value = parse_decimal(&v[..end])?;
    let is_num = |c: &u8| *c == b'.' || c.is_ascii_digit();
    let start = v.iter().position(|c| !is_num(c)).unwrap_or(v.len());
    let stop = v.iter().rposition(|c| !is_num(c)).map_or(start, |i| i + 1);
    Some((value, &v[start..stop.max(start)]))
}

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// `digits[.digits]`, either part possibly empty but not both; correctly rounded. `None` for
/// `.` alone and for values too large for a float (Go's ParseFloat fails with a range error).
fn parse_decimal(s: &[u8]) -> Option<f64> {
    // Fast path: a mantissa below 2^53 divided by an exact power of ten rounds correctly.
    let mut mantissa: u64 = 0;
    let mut frac_digits = 0usize;
    let mut digits = 0usize;
    let mut after_dot = false;
    for &c in s {
        if c == b'.' {
            after_dot = true;
            continue;
        }
        digits += 1;
        mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
        if after_dot {
            frac_digits += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    if digits <= 15 && frac_digits < POW10.len() {
        return Some(mantissa as f64 / POW10[frac_digits]);
    }
    let text = std::str::from_utf8(s).ok()?;
    let v: f64 = text.parse().ok()?;
    v.is_finite().then_some(v)
}

/// One logfmt pair, as offsets into the message (or into the unquoting buffer).
#[derive(Debug, Clone, Copy)]
struct Pair {
    key: (u32, u32),
    val: Val,
}

#[derive(Debug, Clone, Copy)]
enum Val {
    /// A bare key (`key`, `key=` followed by a space or the end).
    None,
    Msg(u32, u32),
    /// A quoted value with escapes, unquoted into the scratch buffer.
    Scratch(u32, u32),
}

/// A metric found on a line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric<'a> {
    pub kind: Kind,
    /// `router.` for Heroku router keys, else empty.
    pub name_prefix: &'static str,
    /// The key without its `measure#`, `measure.`, `count#` or `sample#`.
    pub name: &'a [u8],
    pub value: f64,
    pub units: &'a [u8],
}

/// A metric as offsets: its name in the message, its units in the message or the scratch.
#[derive(Debug, Clone, Copy)]
struct RawMetric {
    kind: Kind,
    name_prefix: &'static str,
    name: (u32, u32),
    value: f64,
    units: Val,
}

/// What one message holds.
#[derive(Debug)]
pub enum Parsed<'a> {
    Metrics(Metrics<'a>),
    /// A logplex L10 line: logplex dropped this many messages.
    L10(u64),
    /// logfmt that does not scan (an unterminated or badly escaped quoted value): l2met
    /// ignores the whole line.
    Bad,
}

/// The metrics of one message (possibly none) and its source.
#[derive(Debug)]
pub struct Metrics<'a> {
    msg: &'a [u8],
    scratch: &'a [u8],
    list: &'a [RawMetric],
    source: Val,
}

impl<'a> Metrics<'a> {
    fn get(&self, v: Val) -> &'a [u8] {
        match v {
            Val::None => &[],
            Val::Msg(a, b) => &self.msg[a as usize..b as usize],
            Val::Scratch(a, b) => &self.scratch[a as usize..b as usize],
        }
    }

    /// The value of the first `source` key of the line; empty when there is none.
    pub fn source(&self) -> &'a [u8] {
        self.get(self.source)
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The metrics in line order.
    pub fn iter(&self) -> impl Iterator<Item = Metric<'a>> + '_ {
        self.list.iter().map(|m| Metric {
            kind: m.kind,
            name_prefix: m.name_prefix,
            name: &self.msg[m.name.0 as usize..m.name.1 as usize],
            value: m.value,
            units: self.get(m.units),
        })
    }
}

/// The buffers of one input: reused for every line.
#[derive(Debug, Default)]
pub struct Parser {
    pairs: Vec<Pair>,
    scratch: Vec<u8>,
    metrics: Vec<RawMetric>,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// The metrics of one message (`procid` decides router lines and L10 lines). Every pair is
    /// checked against every convention: `measure#NAME` and `measure.NAME` (measurements),
    /// `count#NAME` (counters), `sample#NAME` (samples), and under PROCID `router` the keys
    /// `connect`, `service` and `bytes` (measurements `router.connect`, …). Other keys are
    /// ignored, and so are pairs whose value is not a number (see [`parse_value`]) and, unlike
    /// l2met, metrics with an empty name (`measure#=1`).
    pub fn message<'p>(&'p mut self, procid: &[u8], msg: &'p [u8]) -> Parsed<'p> {
        if procid == b"logplex" {
            if let Some(n) = l10(msg) {
                return Parsed::L10(n);
            }
        }
        if msg.len() >= u32::MAX as usize || !self.logfmt(msg) {
            return Parsed::Bad;
        }
        let router = procid == b"router";
        self.metrics.clear();
        let mut source: Option<Val> = None;
        for p in &self.pairs {
            let key = &msg[p.key.0 as usize..p.key.1 as usize];
            if source.is_none() && key == b"source" {
                source = Some(p.val);
            }
            let (kind, name_prefix, skip) = if router && matches!(key, b"connect" | b"service" | b"bytes") {
                (Kind::Measure, "router.", 0)
            } else if key.starts_with(b"measure#") || key.starts_with(b"measure.") {
                (Kind::Measure, "", 8)
            } else if key.starts_with(b"count#") {
                (Kind::Counter, "", 6)
            } else if key.starts_with(b"sample#") {
                (Kind::Sample, "", 7)
            } else {
                continue;
            };
            let name = (p.key.0 + skip, p.key.1);
            if name.0 >= name.1 {
                continue;
            }
            let (val, base) = match p.val {
                Val::None => (&[][..], 0),
                Val::Msg(a, b) => (&msg[a as usize..b as usize], a),
                Val::Scratch(a, b) => (&self.scratch[a as usize..b as usize], a),
            };
            let Some((value, units)) = parse_value(val) else { continue };
            // The units are a sub-slice of the value: keep them as offsets into its buffer.
            let u0 = base + (units.as_ptr() as usize - val.as_ptr() as usize) as u32;
            let u1 = u0 + units.len() as u32;
            let units = match p.val {
                Val::Scratch(..) => Val::Scratch(u0, u1),
                _ if units.is_empty() => Val::None,
                _ => Val::Msg(u0, u1),
            };
            self.metrics.push(RawMetric { kind, name_prefix, name, value, units });
        }
        Parsed::Metrics(Metrics {
            msg,
            scratch: &self.scratch,
            list: &self.metrics,
            source: source.unwrap_or(Val::None),
        })
    }

    /// Scans `msg` as logfmt into `self.pairs`, the way kr/logfmt does; false on a scan error.
    fn logfmt(&mut self, data: &[u8]) -> bool {
        self.pairs.clear();
        self.scratch.clear();
        let n = data.len();
        let is_key = |c: u8| c > b' ' && c != b'"' && c != b'=';
        let mut i = 0;
        loop {
            // garbage
            while i < n && !is_key(data[i]) {
                i += 1;
            }
            if i >= n {
                return true;
            }
            let m = i;
            i += 1;
            // key
            while i < n && is_key(data[i]) {
                i += 1;
            }
            let key = (m as u32, i as u32);
            if i >= n {
                self.pairs.push(Pair { key, val: Val::None });
                return true;
            }
            if data[i] != b'=' {
                self.pairs.push(Pair { key, val: Val::None });
                i += 1;
                continue;
            }
            i += 1;
            // equal
            if i >= n {
                self.pairs.push(Pair { key, val: Val::None });
                return true;
            }
            let c = data[i];
            if is_key(c) {
                let m = i;
                i += 1;
                while i < n && is_key(data[i]) {
                    i += 1;
                }
                self.pairs.push(Pair { key, val: Val::Msg(m as u32, i as u32) });
                if i >= n {
                    return true;
                }
                i += 1;
            } else if c == b'"' {
                let m = i;
                i += 1;
                let mut esc = false;
                loop {
                    if i >= n {
                        return false;
                    }
                    match data[i] {
                        b'\\' => {
                            i += 2;
                            esc = true;
                        }
                        b'"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                if esc {
                    let start = self.scratch.len();
                    if !unquote(&data[m..i], &mut self.scratch) {
                        return false;
                    }
                    self.pairs.push(Pair { key, val: Val::Scratch(start as u32, self.scratch.len() as u32) });
                } else {
                    self.pairs.push(Pair { key, val: Val::Msg(m as u32 + 1, i as u32 - 1) });
                }
            } else {
                self.pairs.push(Pair { key, val: Val::None });
                i += 1;
            }
        }
    }
}

/// `: <N> messages` in a logplex L10 message.
fn l10(msg: &[u8]) -> Option<u64> {
    let mut from = 0;
    while let Some(i) = find(&msg[from..], b": ") {
        let start = from + i + 2;
        let digits = msg[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits > 0 && msg[start + digits..].starts_with(b" messages") {
            return std::str::from_utf8(&msg[start..start + digits]).ok()?.parse().ok();
        }
        from = start;
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Go's `encoding/json` unquoting of a quoted logfmt value (with its quotes): `\"`, `\\`,
/// `\/`, `\'`, `\b`, `\f`, `\n`, `\r`, `\t`, `\uXXXX` (with surrogate pairs); a control
/// character or another escape fails. Invalid UTF-8 becomes U+FFFD.
fn unquote(q: &[u8], out: &mut Vec<u8>) -> bool {
    let Some(inner) = q.strip_prefix(b"\"").and_then(|s| s.strip_suffix(b"\"")) else { return false };
    let mut i = 0;
    let mut buf = [0u8; 4];
    while i < inner.len() {
        let c = inner[i];
        match c {
            b'\\' => {
                let Some(&e) = inner.get(i + 1) else { return false };
                i += 2;
                let ch = match e {
                    b'"' | b'\\' | b'/' | b'\'' => e,
                    b'b' => 8,
                    b'f' => 12,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'u' => {
                        let Some(mut r) = hex4(inner.get(i..i + 4)) else { return false };
                        i += 4;
                        if (0xD800..0xDC00).contains(&r) {
                            // A high surrogate: a low one must follow, or it is U+FFFD.
                            match (inner.get(i..i + 2), hex4(inner.get(i + 2..i + 6))) {
                                (Some(b"\\u"), Some(lo)) if (0xDC00..0xE000).contains(&lo) => {
                                    r = 0x10000 + ((r - 0xD800) << 10) + (lo - 0xDC00);
                                    i += 6;
                                }
                                _ => r = 0xFFFD,
                            }
                        } else if (0xDC00..0xE000).contains(&r) {
                            r = 0xFFFD;
                        }
                        let ch = char::from_u32(r).unwrap_or('\u{FFFD}');
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        continue;
                    }
                    _ => return false,
                };
                out.push(ch);
            }
            b'"' => return false,
            c if c < b' ' => return false,
            c if c < 0x80 => {
                out.push(c);
                i += 1;
            }
            _ => {
                // One UTF-8 sequence, or U+FFFD for an invalid byte.
                let len = match c {
                    0xC2..=0xDF => 2,
                    0xE0..=0xEF => 3,
                    0xF0..=0xF4 => 4,
                    _ => 0,
                };
                match inner.get(i..i + len).filter(|s| len > 0 && std::str::from_utf8(s).is_ok()) {
                    Some(s) => {
                        out.extend_from_slice(s);
                        i += len;
                    }
                    None => {
                        out.extend_from_slice("\u{FFFD}".as_bytes());
                        i += 1;
                    }
                }
            }
        }
    }
    true
}

fn hex4(s: Option<&[u8]>) -> Option<u32> {
    let s = s?;
    let mut v = 0u32;
    for &c in s {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A logplex frame, byte for byte: `<LEN> <PRI>1 TIMESTAMP HOST APP PROCID MSGID MSG`.
    pub fn frame(pri: u8, ts: &str, host: &str, app: &str, procid: &str, msg: &str) -> String {
        let body = format!("<{pri}>1 {ts} {host} {app} {procid} - {msg}");
        format!("{} {body}", body.len())
    }

    fn metrics(procid: &str, msg: &str) -> (Vec<(Kind, String, f64, String)>, String) {
        let mut p = Parser::new();
        match p.message(procid.as_bytes(), msg.as_bytes()) {
            Parsed::Metrics(m) => (
                m.iter()
                    .map(|m| {
                        let name = format!("{}{}", m.name_prefix, String::from_utf8_lossy(m.name));
                        (m.kind, name, m.value, String::from_utf8_lossy(m.units).into_owned())
                    })
                    .collect(),
                String::from_utf8_lossy(m.source()).into_owned(),
            ),
            other => panic!("{other:?}"),
        }
    }

    fn m(kind: Kind, name: &str, v: f64, units: &str) -> (Kind, String, f64, String) {
        (kind, name.to_string(), v, units.to_string())
    }

    #[test]
    fn frames_of_the_reference_are_built_byte_exactly() {
        let ts = "2013-07-22T00:06:26+00:00";
        assert_eq!(
            frame(190, ts, "host", "app", "web.1", "measure#db.latency=4ms measure#db.latency=10ms count#db.vaccum=1 sample#db.size=100GB source=db1"),
            "146 <190>1 2013-07-22T00:06:26+00:00 host app web.1 - measure#db.latency=4ms measure#db.latency=10ms count#db.vaccum=1 sample#db.size=100GB source=db1"
        );
        assert_eq!(
            frame(190, ts, "host", "app", "web.1", "measure.a measure#b=0.5s count#c=-3 measure#d=abc sample#e=1.5.3ms"),
            "116 <190>1 2013-07-22T00:06:26+00:00 host app web.1 - measure.a measure#b=0.5s count#c=-3 measure#d=abc sample#e=1.5.3ms"
        );
        assert_eq!(
            frame(190, ts, "host", "app", "router", "at=info host=l2met.net connect=1ms service=4ms bytes=10"),
            "106 <190>1 2013-07-22T00:06:26+00:00 host app router - at=info host=l2met.net connect=1ms service=4ms bytes=10"
        );
        assert_eq!(
            frame(174, "2013-04-17T19:04:46+00:00", "d.1234-drain-identifier-567", "heroku", "logplex", "- Error L10 (output buffer overflow): 500 messages dropped since 2013-04-17T19:04:46+00:00."),
            "169 <174>1 2013-04-17T19:04:46+00:00 d.1234-drain-identifier-567 heroku logplex - - Error L10 (output buffer overflow): 500 messages dropped since 2013-04-17T19:04:46+00:00."
        );
    }

    #[test]
    fn frames_are_read_as_lpx_reads_them() {
        // lpx's own test: LEN counts the trailing newline, which is part of the message.
        let data = "66 <174>1 2012-07-22T00:06:26-00:00 somehost Go console 2 Hi from Go\n67 <174>1 2013-07-22T00:06:26-00:00 somehost Go console 10 Hi from Py\n";
        let lines: Vec<LogLine> = Frames::new(data.as_bytes()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].time, Some(&b"2012-07-22T00:06:26-00:00"[..]));
        assert_eq!(lines[0].procid, b"console");
        assert_eq!(lines[0].msg, b"Hi from Go\n");
        assert_eq!(lines[1].msg, b"Hi from Py\n");
        // Two frames back to back, then garbage: the garbage is ignored.
        let a = frame(190, "2013-07-22T00:06:26+00:00", "h", "app", "web.1", "measure#a=1");
        let b = frame(190, "2013-07-22T00:06:27+00:00", "h", "app", "web.2", "count#b=2");
        let body = format!("{a}{b}xyz 1 2");
        let mut f = Frames::new(body.as_bytes());
        assert_eq!(f.next().map(|l| l.msg), Some(&b"measure#a=1"[..]));
        assert_eq!(f.next().map(|l| (l.procid, l.msg)), Some((&b"web.2"[..], &b"count#b=2"[..])));
        assert_eq!(f.next(), None);
        assert!(f.stopped());
        assert_eq!(f.consumed(), a.len() + b.len());
    }

    #[test]
    fn frame_reading_stops_at_the_first_bad_frame() {
        let good = frame(190, "2013-07-22T00:06:26+00:00", "h", "app", "web.1", "measure#a=1");
        for bad in ["x", "12", "abc <190>1 a b c d e f", "\n146 <190>1", "99 <190>1 t h a p - short"] {
            let body = format!("{good}{bad}{good}");
            assert_eq!(Frames::new(body.as_bytes()).count(), 1, "{bad:?}");
        }
        // A LEN shorter than the header: an empty message, and reading goes on after it.
        let body = format!("3 <190>1 t h a p m {good}");
        let lines: Vec<LogLine> = Frames::new(body.as_bytes()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].msg, b"");
        assert_eq!(lines[1].msg, b"measure#a=1");
        // A signed LEN is read as Go's ParseInt reads it.
        assert_eq!(Frames::new(b"+17 <1>1 t h a p m hi").next().map(|l| l.msg), Some(&b"hi"[..]));
        assert_eq!(Frames::new(b"-5 <1>1 t h a p m ").next().map(|l| l.msg), Some(&b""[..]));
        assert_eq!(Frames::new(b"99999999999999999999 <1>1 t h a p m ").next(), None);
    }

    #[test]
    fn rfc3339_as_go_parses_it() {
        assert_eq!(parse_rfc3339(b"2013-07-22T00:06:26+00:00"), Some(1374451586));
        assert_eq!(parse_rfc3339(b"2013-07-22T00:06:26Z"), Some(1374451586));
        assert_eq!(parse_rfc3339(b"2013-07-22T02:06:26.999+02:00"), Some(1374451586));
        assert_eq!(parse_rfc3339(b"2013-07-21T23:06:26,5-01:00"), Some(1374451586));
        assert_eq!(parse_rfc3339(b"2012-07-22T00:06:26-00:00"), Some(1342915586));
        assert_eq!(parse_rfc3339(b"2024-02-29T00:00:00Z"), Some(1709164800));
        for bad in [
            "2013-07-22 00:06:26Z",
            "2013-07-22T00:06:26",
            "2013-02-29T00:00:00Z",
            "2013-07-22T24:00:00Z",
            "2013-07-22T00:06:26.Z",
            "2013-07-22T00:06:26+0000",
            "2013-07-22t00:06:26z",
            "-",
            "",
        ] {
            assert_eq!(parse_rfc3339(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn values_and_units() {
        let v = |s: &str| parse_value(s.as_bytes()).map(|(v, u)| (v, String::from_utf8_lossy(u).into_owned()));
        assert_eq!(v(""), Some((1.0, "".into())));
        assert_eq!(v("4ms"), Some((4.0, "ms".into())));
        assert_eq!(v("100GB"), Some((100.0, "GB".into())));
        assert_eq!(v("10"), Some((10.0, "".into())));
        assert_eq!(v("0.5s"), Some((0.5, "s".into())));
        assert_eq!(v("4ms5"), Some((4.0, "ms".into())));
        assert_eq!(v("1.5.3ms"), Some((1.5, "ms".into())));
        assert_eq!(v(".5"), Some((0.5, "".into())));
        assert_eq!(v("5."), Some((5.0, "".into())));
        assert_eq!(v("0.001"), Some((0.001, "".into())));
        assert_eq!(v("12345678912"), Some((12345678912.0, "".into())));
        assert_eq!(v("99.99999"), Some((99.99999, "".into())));
        assert_eq!(v("0.1234567890123456789"), Some(("0.1234567890123456789".parse().unwrap(), "".into())));
        for bad in ["-3", "abc", "ms4", ".", "..5", &"9".repeat(400)] {
            assert_eq!(v(bad), None, "{bad}");
        }
    }

    #[test]
    fn conventions_and_several_metrics_per_line() {
        let (got, source) = metrics(
            "web.1",
            "measure#db.latency=4ms measure#db.latency=10ms count#db.vaccum=1 sample#db.size=100GB source=db1",
        );
        assert_eq!(
            got,
            [
                m(Kind::Measure, "db.latency", 4.0, "ms"),
                m(Kind::Measure, "db.latency", 10.0, "ms"),
                m(Kind::Counter, "db.vaccum", 1.0, ""),
                m(Kind::Sample, "db.size", 100.0, "GB"),
            ]
        );
        assert_eq!(source, "db1");
        // The older prefix, a bare key, and what is ignored.
        let (got, source) = metrics("web.1", "measure.a measure#b=0.5s count#c=-3 measure#d=abc sample#e=1.5.3ms");
        assert_eq!(
            got,
            [m(Kind::Measure, "a", 1.0, ""), m(Kind::Measure, "b", 0.5, "s"), m(Kind::Sample, "e", 1.5, "ms")]
        );
        assert_eq!(source, "");
        // parser_test: names of a plain line.
        let (got, _) = metrics("name", "measure#hello=1 measure#world=1ms");
        assert_eq!(got, [m(Kind::Measure, "hello", 1.0, ""), m(Kind::Measure, "world", 1.0, "ms")]);
        // Bare, empty and quoted values.
        let (got, _) = metrics("x", r#"measure#a measure#b= count#c="" sample#d="7 kB" measure#=3 other=1 source"#);
        assert_eq!(
            got,
            [
                m(Kind::Measure, "a", 1.0, ""),
                m(Kind::Measure, "b", 1.0, ""),
                m(Kind::Counter, "c", 1.0, ""),
                m(Kind::Sample, "d", 7.0, " kB"),
            ]
        );
        // The first source wins, even a bare one.
        assert_eq!(metrics("x", "source=a source=b count#x").1, "a");
        assert_eq!(metrics("x", "source source=b count#x").1, "");
        assert_eq!(metrics("x", r#"source="a b\"c" count#x"#).1, "a b\"c");
    }

    #[test]
    fn heroku_router_lines() {
        let line = "at=info host=l2met.net connect=1ms service=4ms bytes=10";
        let (got, _) = metrics("router", line);
        assert_eq!(
            got,
            [
                m(Kind::Measure, "router.connect", 1.0, "ms"),
                m(Kind::Measure, "router.service", 4.0, "ms"),
                m(Kind::Measure, "router.bytes", 10.0, ""),
            ]
        );
        assert!(metrics("web.1", line).0.is_empty());
        assert!(metrics("routers", line).0.is_empty());
    }

    #[test]
    fn l10_lines() {
        let msg = "- Error L10 (output buffer overflow): 500 messages dropped since 2013-04-17T19:04:46+00:00.";
        let mut p = Parser::new();
        assert!(matches!(p.message(b"logplex", msg.as_bytes()), Parsed::L10(500)));
        // Not L10 under another PROCID, and a logplex line without the pattern is parsed.
        assert!(metrics("web.1", msg).0.is_empty());
        assert_eq!(metrics("logplex", "count#x=2").0, [m(Kind::Counter, "x", 2.0, "")]);
    }

    #[test]
    fn logfmt_scanning_as_kr_logfmt() {
        // `a="unterminated` and bad escapes make the whole line unreadable, as in l2met.
        let mut p = Parser::new();
        assert!(matches!(p.message(b"x", br#"count#a=1 msg="oops"#), Parsed::Bad));
        assert!(matches!(p.message(b"x", br#"count#a=1 msg="bad \q escape""#), Parsed::Bad));
        assert!(matches!(p.message(b"x", b"count#a=1 msg=\"tab\tinside\""), Parsed::Metrics(_)));
        // With an escape, the value is unquoted as JSON, which refuses control characters.
        assert!(matches!(p.message(b"x", b"count#a=1 msg=\"tab\tin\\\\side\""), Parsed::Bad));
        assert!(matches!(p.message(b"x", b"count#a=1 msg=\"in\\\\side\""), Parsed::Metrics(_)));
        // Separators: `=` and `"` end a key or a value; bytes at or below space are garbage.
        let (got, _) = metrics("x", "count#a=1=count#b=2 \"count#c=3\tcount#d==4");
        assert_eq!(
            got,
            [
                m(Kind::Counter, "a", 1.0, ""),
                m(Kind::Counter, "b", 2.0, ""),
                m(Kind::Counter, "c", 3.0, ""),
                m(Kind::Counter, "d", 1.0, "")
            ]
        );
        // A key at the very end, with and without `=`.
        assert_eq!(metrics("x", "count#a=").0, [m(Kind::Counter, "a", 1.0, "")]);
        assert_eq!(metrics("x", "count#a").0, [m(Kind::Counter, "a", 1.0, "")]);
        // JSON escapes in quoted values.
        assert_eq!(metrics("x", r#"source="\u00e9\ud83d\ude00\/" count#x"#).1, "é😀/");
        assert_eq!(metrics("x", r#"source="\ud83d!" count#x"#).1, "\u{FFFD}!");
    }

    #[test]
    fn syslog_lines() {
        let l = syslog_line(b"<34>1 2013-07-22T00:06:26+00:00 host app router ID47 - connect=1ms\n");
        assert_eq!(
            (l.time, l.procid, l.msg),
            (Some(&b"2013-07-22T00:06:26+00:00"[..]), &b"router"[..], &b"connect=1ms"[..])
        );
        let l = syslog_line(br#"<165>1 2003-10-11T22:14:15.003Z host evntslog 8710 ID47 [exampleSDID@32473 iut="3" x="a\]b"][more k="v"] count#x=2"#);
        assert_eq!((l.procid, l.msg), (&b"8710"[..], &b"count#x=2"[..]));
        let l = syslog_line(b"<13>1 - host app - - - \xEF\xBB\xBFcount#x");
        assert_eq!((l.time, l.msg), (None, &b"count#x"[..]));
        let l = syslog_line(b"<13>Oct 11 22:14:15 mymachine app[router]: connect=3ms");
        assert_eq!((l.time, l.procid, l.msg), (None, &b"router"[..], &b"connect=3ms"[..]));
        let l = syslog_line(b"Oct  1 02:04:05 host web: count#x=1");
        assert_eq!((l.time, l.procid, l.msg), (None, &b""[..], &b"count#x=1"[..]));
        let l = syslog_line(b"2013-07-22T00:06:26+00:00 host web[12]: count#x=1");
        assert_eq!((l.time, l.procid, l.msg), (Some(&b"2013-07-22T00:06:26+00:00"[..]), &b"12"[..], &b"count#x=1"[..]));
        let l = syslog_line(b"just count#x=1 here\r\n");
        assert_eq!((l.time, l.procid, l.msg), (None, &b""[..], &b"just count#x=1 here"[..]));
        let l = syslog_line(b"<13>count#x=1");
        assert_eq!(l.msg, b"count#x=1");
    }
}
