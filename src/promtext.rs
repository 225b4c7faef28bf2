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

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::point::{Point, Value};

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

/// Parses a body that may not be UTF-8 (it is an error if it is not).
pub fn parse_bytes(body: &[u8], format: Format) -> Result<Vec<Family>, ParseError> {
    match std::str::from_utf8(body) {
        Ok(text) => parse(text, format),
        Err(e) => {
            let line = body[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            Err(ParseError { line, message: "invalid UTF-8".into() })
        }
    }
}

/// Parses a whole exposition into its families, in the order they first appear.
pub fn parse(text: &str, format: Format) -> Result<Vec<Family>, ParseError> {
    let mut p = Parser { format, families: Vec::new(), by_name: HashMap::new(), state: Vec::new() };
    let mut eof = false;
    let mut lines = text.split('\n').enumerate().peekable();
    while let Some((i, raw)) = lines.next() {
        let line_no = i + 1;
        let err = |message: String| ParseError { line: line_no, message };
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if eof {
            // Only the final newline may follow "# EOF".
            if line.is_empty() && lines.peek().is_none() {
                break;
            }
            return Err(err("unexpected data after # EOF".into()));
        }
        let body = match format {
            Format::Text => line.trim_start_matches([' ', '\t']),
            Format::OpenMetrics => line,
        };
        if body.is_empty() {
            if format == Format::OpenMetrics && lines.peek().is_some() {
                return Err(err("empty line".into()));
            }
            continue;
        }
        if let Some(comment) = body.strip_prefix('#') {
            if p.comment(comment).map_err(err)? {
                eof = true;
            }
            continue;
        }
        p.sample(body).map_err(err)?;
    }
    if format == Format::OpenMetrics && !eof {
        let lines = text.split('\n').count();
        return Err(ParseError { line: lines, message: "data does not end with # EOF".into() });
    }
    Ok(p.families)
}

#[derive(Default, Clone, Copy)]
struct FamilyState {
    has_help: bool,
    has_type: bool,
    has_unit: bool,
    has_samples: bool,
}

struct Parser {
    format: Format,
    families: Vec<Family>,
    by_name: HashMap<String, usize>,
    state: Vec<FamilyState>,
}

impl Parser {
    fn family(&mut self, name: &str) -> usize {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        self.families.push(Family {
            name: name.to_string(),
            help: None,
            unit: None,
            kind: Kind::Untyped,
            samples: Vec::new(),
        });
        self.state.push(FamilyState::default());
        self.by_name.insert(name.to_string(), self.families.len() - 1);
        self.families.len() - 1
    }

    /// A `#` line; true for `# EOF`.
    fn comment(&mut self, rest: &str) -> Result<bool, String> {
        let mut c = Cursor::new(rest);
        if self.format == Format::OpenMetrics {
            if rest == " EOF" {
                return Ok(true);
            }
            if !c.eat(' ') {
                return Err("a comment line must be \"# HELP\", \"# TYPE\", \"# UNIT\" or \"# EOF\"".into());
            }
        } else {
            c.skip_blanks();
        }
        let keyword = c.word();
        let om = self.format == Format::OpenMetrics;
        let known = matches!(keyword, "HELP" | "TYPE") || (om && keyword == "UNIT");
        if !known {
            if om {
                return Err(format!("unknown comment \"# {keyword}\""));
            }
            return Ok(false);
        }
        if !c.blank() {
            return Err(format!("no metric name after {keyword}"));
        }
        c.skip_blanks();
        let name = c.metric_name().ok_or_else(|| format!("invalid metric name in {keyword} line"))?.to_string();
        let i = self.family(&name);
        let st = self.state[i];
        match keyword {
            "HELP" => {
                if st.has_help {
                    return Err(format!("second HELP line for metric name \"{name}\""));
                }
                let text = if c.at_end() {
                    String::new()
                } else {
                    if !c.blank() {
                        return Err(format!("invalid metric name in HELP line: {name}{}", c.rest()));
                    }
                    if om {
                        c.eat(' ');
                    } else {
                        c.skip_blanks();
                    }
                    unescape(c.rest(), om).ok_or_else(|| format!("invalid escape sequence in HELP of \"{name}\""))?
                };
                self.families[i].help = Some(text);
                self.state[i].has_help = true;
            }
            "UNIT" => {
                if st.has_unit {
                    return Err(format!("second UNIT line for metric name \"{name}\""));
                }
                c.skip_blanks();
                self.families[i].unit = Some(c.rest().to_string());
                self.state[i].has_unit = true;
            }
            _ => {
                if st.has_type || st.has_samples {
                    return Err(format!("second TYPE line for metric name \"{name}\", or TYPE reported after samples"));
                }
                if !c.blank() {
                    return Err(format!("invalid metric name in TYPE line: {name}{}", c.rest()));
                }
                c.skip_blanks();
                let word = c.word();
                let kind = Kind::parse(word, self.format).ok_or_else(|| format!("unknown metric type \"{word}\""))?;
                c.skip_blanks();
                if !c.at_end() {
                    return Err(format!("spurious string after the type of \"{name}\""));
                }
                self.families[i].kind = kind;
                self.state[i].has_type = true;
            }
        }
        Ok(false)
    }

    /// Finds the family a sample name belongs to: a declared family whose type allows the
    /// sample's suffix, else the family of the full name.
    fn family_of(&mut self, name: &str) -> usize {
        for (i, _) in name.match_indices('_') {
            let base = &name[..i];
            let suffix = &name[i..];
            if let Some(&f) = self.by_name.get(base) {
                if self.state[f].has_type && self.families[f].kind.suffixes(self.format).contains(&suffix) {
                    return f;
                }
            }
        }
        self.family(name)
    }

    fn sample(&mut self, line: &str) -> Result<(), String> {
        let om = self.format == Format::OpenMetrics;
        let mut c = Cursor::new(line);
        let name = c.metric_name().ok_or_else(|| format!("invalid metric name in \"{}\"", clip(line)))?;
        let f = self.family_of(name);
        let kind = self.families[f].kind;
        let mut blank = c.blank();
        if !om {
            c.skip_blanks();
        }
        let mut labels: Vec<(String, String)> = Vec::new();
        if c.eat('{') {
            labels = parse_labels(&mut c, om)?;
            blank = c.blank();
            if !om {
                c.skip_blanks();
            }
        }
        if !blank {
            return Err(format!("expected a blank and a value after the metric \"{name}\""));
        }
        if om {
            c.eat(' ');
        }
        let value_tok = c.token();
        let value =
            parse_float(value_tok).ok_or_else(|| format!("expected float as value, got \"{}\"", clip(value_tok)))?;
        let mut timestamp_ms = None;
        if c.blank() {
            c.skip_blanks();
            if !c.at_end() && !c.peek_is('#') {
                let tok = c.token();
                timestamp_ms = Some(if om {
                    let secs = parse_float(tok)
                        .filter(|s| s.is_finite())
                        .ok_or_else(|| format!("expected a number as timestamp, got \"{}\"", clip(tok)))?;
                    let ms = (secs * 1000.0).round();
                    if ms.abs() >= 9.2e18 {
                        return Err(format!("timestamp out of range: \"{}\"", clip(tok)));
                    }
                    ms as i64
                } else {
                    tok.parse::<i64>().map_err(|_| format!("expected integer as timestamp, got \"{}\"", clip(tok)))?
                });
                c.skip_blanks();
            }
        }
        if om && c.peek_is('#') {
            // An exemplar: `# {labels} value [timestamp]`, checked and left out.
            c.eat('#');
            if !c.eat(' ') || !c.eat('{') {
                return Err("invalid exemplar".into());
            }
            parse_labels(&mut c, om)?;
            if !c.eat(' ') {
                return Err("invalid exemplar: no value".into());
            }
            if parse_float(c.token()).is_none() {
                return Err("invalid exemplar value".into());
            }
            if c.eat(' ') && parse_float(c.token()).is_none() {
                return Err("invalid exemplar timestamp".into());
            }
        }
        c.skip_blanks();
        if !c.at_end() {
            return Err(format!("spurious string after timestamp: \"{}\"", clip(c.rest())));
        }
        let is = |suffix: &str| name.len() > self.families[f].name.len() && name.ends_with(suffix);
        let needs = match kind {
            Kind::Summary if name == self.families[f].name => Some("quantile"),
            Kind::Histogram | Kind::GaugeHistogram if is("_bucket") => Some("le"),
            _ => None,
        };
        if let Some(label) = needs {
            match labels.iter().find(|(k, _)| k == label) {
                Some((_, v)) if parse_float(v).is_some() => {}
                Some((_, v)) => {
                    return Err(format!("expected float as value for '{label}' label, got \"{}\"", clip(v)))
                }
                None => return Err(format!("a sample of \"{}\" lacks the '{label}' label", self.families[f].name)),
            }
        }
        self.state[f].has_samples = true;
        self.state[f].has_type = true;
        self.families[f].samples.push(Sample { name: name.to_string(), labels, value, timestamp_ms });
        Ok(())
    }
}

/// Labels after `{` up to and including `}`.
fn parse_labels(c: &mut Cursor<'_>, om: bool) -> Result<Vec<(String, String)>, String> {
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    loop {
        if !om {
            c.skip_blanks();
        }
        if c.eat('}') {
            break;
        }
        let key = c.label_name().ok_or_else(|| format!("invalid label name at \"{}\"", clip(c.rest())))?;
        if !om {
            c.skip_blanks();
        }
        if !c.eat('=') {
            return Err(format!("expected '=' after label name \"{key}\""));
        }
        if !om {
            c.skip_blanks();
        }
        let value = c.quoted().ok_or_else(|| format!("invalid label value for \"{key}\""))?;
        if key == "__name__" {
            return Err("label name \"__name__\" is reserved".into());
        }
        if !seen.insert(key.to_string()) {
            return Err(format!("duplicate label name \"{key}\""));
        }
        labels.push((key.to_string(), value));
        if !om {
            c.skip_blanks();
        }
        if c.eat(',') {
            continue;
        }
        if c.eat('}') {
            break;
        }
        return Err(format!("expected ',' or '}}' after the label \"{key}\""));
    }
    Ok(labels)
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A float as Go's `strconv.ParseFloat` reads one (also `NaN`, `+Inf`, `-Inf`, `Inf`).
pub fn parse_float(s: &str) -> Option<f64> {
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    match lower.trim_start_matches(['+', '-']) {
        "nan" => return (lower.len() == 3).then_some(f64::NAN),
        "inf" | "infinity" => return Some(if s.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY }),
        _ => {}
    }
    // Rust's parser also takes "inf"/"nan" spellings handled above and nothing else exotic;
    // Go's hexadecimal floats are rare in expositions and not accepted.
    if !s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Reverses the escapes of a HELP text (`\\`, `\n`; OpenMetrics also `\"`).
fn unescape(s: &str, om: bool) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if om => out.push('"'),
            _ => return None,
        }
    }
    Some(out)
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Cursor<'a> {
        Cursor { s, pos: 0 }
    }
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }
    fn peek_is(&self, ch: char) -> bool {
        self.rest().starts_with(ch)
    }
    fn eat(&mut self, ch: char) -> bool {
        if self.peek_is(ch) {
            self.pos += ch.len_utf8();
            true
        } else {
            false
        }
    }
    fn blank(&self) -> bool {
        self.peek_is(' ') || self.peek_is('\t')
    }
    fn skip_blanks(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start_matches([' ', '\t']).len();
    }
    /// Up to the next blank.
    fn token(&mut self) -> &'a str {
        let rest = self.rest();
        let end = rest.find([' ', '\t']).unwrap_or(rest.len());
        self.pos += end;
        &rest[..end]
    }
    fn word(&mut self) -> &'a str {
        self.token()
    }
    fn take_while(&mut self, first: impl Fn(u8) -> bool, next: impl Fn(u8) -> bool) -> Option<&'a str> {
        let rest = self.rest().as_bytes();
        if !rest.first().is_some_and(|&b| first(b)) {
            return None;
        }
        let n = 1 + rest[1..].iter().take_while(|&&b| next(b)).count();
        let s = &self.s[self.pos..self.pos + n];
        self.pos += n;
        Some(s)
    }
    fn metric_name(&mut self) -> Option<&'a str> {
        self.take_while(
            |b| b.is_ascii_alphabetic() || b == b'_' || b == b':',
            |b| b.is_ascii_alphanumeric() || b == b'_' || b == b':',
        )
    }
    fn label_name(&mut self) -> Option<&'a str> {
        self.take_while(|b| b.is_ascii_alphabetic() || b == b'_', |b| b.is_ascii_alphanumeric() || b == b'_')
    }
    /// A `"`-quoted label value with `\\`, `\"` and `\n` escapes.
    fn quoted(&mut self) -> Option<String> {
        if !self.eat('"') {
            return None;
        }
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, ch)) = chars.next() {
            match ch {
                '"' => {
                    self.pos += i + 1;
                    return Some(out);
                }
                '\\' => match chars.next() {
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, '"')) => out.push('"'),
                    Some((_, 'n')) => out.push('\n'),
                    _ => return None,
                },
                c => out.push(c),
            }
        }
        None
    }
}

// ---- writing the 0.0.4 format ---------------------------------------------------------------

/// A float as Prometheus' Go client writes it (`strconv.FormatFloat(v, 'g', -1, 64)`):
/// `1`, `0.25`, `1e+06`, `1.5e-07`, `NaN`, `+Inf`, `-Inf`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        format!("{v}")
    } else {
        format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

/// Appends `"` + the value with `\\`, `\"` and `\n` escaped + `"`.
pub fn write_label_value(out: &mut String, v: &str) {
    out.push('"');
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a HELP text with `\\` and `\n` escaped.
pub fn write_help_text(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends one sample line: `name{k="v",…} value[ timestamp]\n`.
pub fn write_sample<'a>(
    out: &mut String,
    name: &str,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    value: f64,
    timestamp_ms: Option<i64>,
) {
    out.push_str(name);
    let mut first = true;
    for (k, v) in labels {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(k);
        out.push('=');
        write_label_value(out, v);
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_value(value));
    if let Some(ts) = timestamp_ms {
        out.push(' ');
        out.push_str(&ts.to_string());
    }
    out.push('\n');
}

/// Appends a family in the 0.0.4 format: HELP (when it has one), TYPE, samples.
pub fn write_family(out: &mut String, f: &Family) {
    if let Some(help) = &f.help {
        out.push_str("# HELP ");
        out.push_str(&f.name);
        out.push(' ');
        write_help_text(out, help);
        out.push('\n');
    }
    out.push_str("# TYPE ");
    out.push_str(&f.name);
    out.push(' ');
    out.push_str(f.kind.as_str());
    out.push('\n');
    for s in &f.samples {
        write_sample(out, &s.name, s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())), s.value, s.timestamp_ms);
    }
}

/// Turns OpenMetrics families into families the 0.0.4 format can say: a counter is named
/// by its `_total` samples, `_created` samples are left out, info and stateset become
/// gauges, a gauge histogram becomes untyped families of its own sample names. 0.0.4
/// families pass unchanged.
pub fn to_text(families: Vec<Family>) -> Vec<Family> {
    let mut out = Vec::with_capacity(families.len());
    for mut f in families {
        match f.kind {
            Kind::Counter | Kind::Histogram | Kind::Summary => {
                f.samples.retain(|s| !(s.name.len() > f.name.len() && s.name.ends_with("_created")));
                if f.kind == Kind::Counter {
                    if let Some(s) = f.samples.first() {
                        if s.name != f.name && f.samples.iter().all(|x| x.name == s.name) {
                            f.name = s.name.clone();
                        }
                    }
                }
                out.push(f);
            }
            Kind::Info => {
                f.kind = Kind::Gauge;
                if let Some(s) = f.samples.first() {
                    f.name = s.name.clone();
                }
                out.push(f);
            }
            Kind::StateSet => {
                f.kind = Kind::Gauge;
                out.push(f);
            }
            Kind::GaugeHistogram => {
                let mut parts: Vec<Family> = Vec::new();
                for s in f.samples {
                    match parts.iter_mut().find(|p| p.name == s.name) {
                        Some(p) => p.samples.push(s),
                        None => parts.push(Family {
                            name: s.name.clone(),
                            help: f.help.clone(),
                            unit: None,
                            kind: Kind::Untyped,
                            samples: vec![s],
                        }),
                    }
                }
                out.extend(parts);
            }
            Kind::Gauge | Kind::Untyped => out.push(f),
        }
    }
    out
}

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
