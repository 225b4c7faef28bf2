//! The JSON shape of the points that plugins outside the binary send (exec commands and
//! shared libraries).
//!
//! A point, as an exec module prints it (one object per line) or a shared-library module
//! returns it (a JSON array of such objects), is the shape of a payload's point objects plus
//! optional structured parts:
//!
//! ```json
//! {"app.queue.mail": {"value": 3, "units": "", "measurement": "app", "field": "queue", "tags": {"queue": "mail"}}}
//! ```
//!
//! `value` is required (a JSON integer makes an int stat, a number with a `.` or an exponent a
//! float stat; `{"name": 3}` is short for `{"name": {"value": 3}}`); `units` defaults to `""`.
//! Without `measurement` and `field` the name is split at its first dot (`app.requests` is
//! measurement `app`, field `requests`; a name without a dot is the measurement, field
//! `value`). An object may hold several points. Names are non-empty and have no whitespace.

use std::borrow::Cow;

use badger_api::point::{Point, Value};

/// Appends the points of one JSON object in the plugin shape (see the module docs). On an
/// error nothing is appended.
pub fn points_from_json(value: &serde_json::Value, out: &mut Vec<Point>) -> Result<(), String> {
    let serde_json::Value::Object(map) = value else {
        return Err(format!("expected an object {{\"<name>\": {{\"value\": …}}}}, found {}", kind_of(value)));
    };
    if map.is_empty() {
        return Err("an empty object".into());
    }
    let start = out.len();
    for (name, v) in map {
        match point(name, v) {
            Ok(p) => out.push(p),
            Err(e) => {
                out.truncate(start);
                return Err(format!("\"{name}\": {e}"));
            }
        }
    }
    Ok(())
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn number(v: &serde_json::Value) -> Result<Value, String> {
    match v {
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(Value::Int(i))
            } else {
                n.as_f64().map(Value::Float).ok_or_else(|| "value is not a number".to_string())
            }
        }
        other => Err(format!("value must be a number, found {}", kind_of(other))),
    }
}

fn point(name: &str, v: &serde_json::Value) -> Result<Point, String> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a stat name is non-empty and has no whitespace".into());
    }
    let (default_measurement, default_field) = name.split_once('.').unwrap_or((name, "value"));
    let mut p = Point {
        name: name.to_string(),
        value: Value::Int(0),
        units: Cow::Borrowed(""),
        measurement: Cow::Owned(default_measurement.to_string()),
        field: Cow::Owned(default_field.to_string()),
        tags: Vec::new(),
        kind: Default::default(),
    };
    let inner = match v {
        serde_json::Value::Number(_) => {
            p.value = number(v)?;
            return Ok(p);
        }
        serde_json::Value::Object(inner) => inner,
        other => return Err(format!("expected {{\"value\": …}} or a number, found {}", kind_of(other))),
    };
    let string = |key: &str, v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        other => Err(format!("{key} must be a string, found {}", kind_of(other))),
    };
    let mut has_value = false;
    for (key, v) in inner {
        match key.as_str() {
            "value" => {
                p.value = number(v)?;
                has_value = true;
            }
            "units" => p.units = Cow::Owned(string("units", v)?),
            "measurement" => p.measurement = Cow::Owned(string("measurement", v)?),
            "field" => p.field = Cow::Owned(string("field", v)?),
            "tags" => {
                let serde_json::Value::Object(tags) = v else {
                    return Err(format!("tags must be an object of strings, found {}", kind_of(v)));
                };
                for (k, tv) in tags {
                    p.tags.push((Cow::Owned(k.clone()), string(&format!("tag {k}"), tv)?));
                }
            }
            other => {
                return Err(format!("unknown key \"{other}\" (a point has value, units, measurement, field, tags)"))
            }
        }
    }
    if !has_value {
        return Err("no \"value\"".into());
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Point>, String> {
        let mut out = Vec::new();
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        points_from_json(&v, &mut out).map(|_| out)
    }

    #[test]
    fn the_payload_shape_with_structured_parts() {
        let p = parse(r#"{"app.queue.mail": {"value": 3, "units": "msgs", "measurement": "app", "field": "queue", "tags": {"queue": "mail"}}}"#).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].name, "app.queue.mail");
        assert_eq!(p[0].value, Value::Int(3));
        assert_eq!((p[0].units.as_ref(), p[0].measurement.as_ref(), p[0].field.as_ref()), ("msgs", "app", "queue"));
        assert_eq!(p[0].tags, vec![(Cow::Borrowed("queue"), "mail".to_string())]);
    }

    #[test]
    fn defaults_and_shorthand() {
        let p = parse(r#"{"app.requests.total": {"value": 1.0}, "bare": 7}"#).unwrap();
        assert_eq!(p[0].name, "app.requests.total");
        assert_eq!(p[0].value, Value::Float(1.0));
        assert_eq!(
            (p[0].units.as_ref(), p[0].measurement.as_ref(), p[0].field.as_ref()),
            ("", "app", "requests.total")
        );
        assert_eq!((p[1].name.as_str(), p[1].value), ("bare", Value::Int(7)));
        assert_eq!((p[1].measurement.as_ref(), p[1].field.as_ref()), ("bare", "value"));
        assert_eq!(parse(r#"{"big": 18446744073709551615}"#).unwrap()[0].value, Value::Float(18446744073709551615.0));
    }

    #[test]
    fn bad_points_say_why() {
        assert_eq!(parse("[1]").unwrap_err(), "expected an object {\"<name>\": {\"value\": …}}, found an array");
        assert_eq!(parse(r#"{"a": {"value": "1"}}"#).unwrap_err(), "\"a\": value must be a number, found a string");
        assert_eq!(parse(r#"{"a": {"units": ""}}"#).unwrap_err(), "\"a\": no \"value\"");
        assert_eq!(
            parse(r#"{"a": {"value": 1, "unit": ""}}"#).unwrap_err(),
            "\"a\": unknown key \"unit\" (a point has value, units, measurement, field, tags)"
        );
        assert_eq!(parse(r#"{"a b": 1}"#).unwrap_err(), "\"a b\": a stat name is non-empty and has no whitespace");
        assert_eq!(
            parse(r#"{"a": {"value": 1, "tags": {"k": 1}}}"#).unwrap_err(),
            "\"a\": tag k must be a string, found a number"
        );
        assert_eq!(parse("{}").unwrap_err(), "an empty object");
        // Nothing of a bad object is kept.
        let mut out = Vec::new();
        let v: serde_json::Value = serde_json::from_str(r#"{"a": 1, "b": null}"#).unwrap();
        assert!(points_from_json(&v, &mut out).is_err());
        assert!(out.is_empty());
    }
}
