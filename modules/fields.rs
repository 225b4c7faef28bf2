//! The `fields` key of the modules that read a file of named counters (`vmstat`, `netstat`):
//! a regular expression of the names to emit, as node_exporter's `--collector.<name>.fields`.

use std::collections::HashMap;

use badger_api::plugin::{BuildError, PluginConf};
use regex_lite::Regex;

/// The `fields` expression with its answer for each name seen: the kernel prints the same
/// few hundred names every time, so the expression runs on the first collection only.
pub(crate) struct FieldFilter {
    re: Regex,
    seen: HashMap<String, bool>,
}

impl FieldFilter {
    /// Names remembered at most (more than any kernel prints).
    const MAX_SEEN: usize = 4096;

    /// The `fields` key's expression, or `default` when the key is absent.
    pub(crate) fn new(conf: &PluginConf, fields: Option<&str>, default: &str) -> Result<FieldFilter, BuildError> {
        let re = Regex::new(fields.unwrap_or(default))
            .map_err(|e| BuildError::Config(conf.error("fields", format!("not a regular expression: {e}"))))?;
        Ok(FieldFilter { re, seen: HashMap::new() })
    }

    /// Whether `field` is emitted.
    pub(crate) fn wants(&mut self, field: &str) -> bool {
        if let Some(&yes) = self.seen.get(field) {
            return yes;
        }
        let yes = self.re.is_match(field);
        if self.seen.len() < Self::MAX_SEEN {
            self.seen.insert(field.to_string(), yes);
        }
        yes
    }
}
