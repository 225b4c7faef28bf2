//! The parser of the text exposition format 0.0.4 and the OpenMetrics 1.0 text format (see
//! the parent module for the rules it follows).

use std::collections::{HashMap, HashSet};

use super::{Family, Format, Kind, ParseError, Sample};

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

    /// Finds the family a sample name belongs to: the family of the full name if there is
    /// one (declared by a TYPE or HELP line, or made by an earlier sample), else a declared
    /// family whose type allows the sample's suffix, else a new family of the full name.
    /// Prometheus's own text parser (expfmt) looks in the same order, so `# TYPE x_bucket
    /// untyped` after a histogram `x` keeps its samples.
    fn family_of(&mut self, name: &str) -> usize {
        if let Some(&f) = self.by_name.get(name) {
            return f;
        }
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
