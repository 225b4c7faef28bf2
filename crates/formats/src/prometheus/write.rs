//! The writer of the text exposition format 0.0.4.

use super::{Family, Kind};

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
