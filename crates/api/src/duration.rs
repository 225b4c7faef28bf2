//! Durations as config files write them: a number of seconds (`5`, `1.5`) or a humantime
//! string (`"500ms"`, `"5s"`, `"1m"`). One parser for the core and every plugin.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// Parses a duration from text: a number of seconds (`"1.5"`) or a humantime string.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        // Saturating: a number of seconds past what a Duration holds is "forever".
        if secs.is_finite() && secs >= u64::MAX as f64 {
            return Ok(Duration::MAX);
        }
        return Duration::try_from_secs_f64(secs).map_err(|_| format!("\"{text}\" is not a valid number of seconds"));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("\"{text}\" is not a duration ({e}): use seconds or a string like \"500ms\" or \"1m\""))
}

/// A duration key: `#[serde(deserialize_with = "de_duration")]`.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    Seconds::deserialize(d).map(|s| s.0)
}

/// A duration as a type, for `Option<Seconds>` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration: a number of seconds or a string like \"500ms\" or \"1m\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                u64::try_from(v)
                    .map(|v| Seconds(Duration::from_secs(v)))
                    .map_err(|_| E::custom(format!("{v} seconds is negative")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                Duration::try_from_secs_f64(v)
                    .map(Seconds)
                    .map_err(|_| E::custom(format!("{v} is not a valid number of seconds")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                parse_duration(v).map(Seconds).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_strings() {
        let p = |s: &str| serde_json::from_str::<Seconds>(s).map(|d| d.0).map_err(|e| e.to_string());
        assert_eq!(p("5"), Ok(Duration::from_secs(5)));
        assert_eq!(p("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(p("\"500ms\""), Ok(Duration::from_millis(500)));
        assert_eq!(p("\"2.5\""), Ok(Duration::from_millis(2500)));
        assert!(p("-1").unwrap_err().contains("negative"));
        assert!(p("\"soon\"").unwrap_err().contains("is not a duration"));
    }
}
