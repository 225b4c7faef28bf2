//! Name matching for blacklists and device lists.
//!
//! The rule, everywhere a list of names is configured: an item without `*`, `?` or `[` must
//! equal the whole name; an item with one of them is a glob over the whole name (`*` matches
//! any run of characters, dots included, so `net.*.lo` matches `net.rx_bytes.lo`, and
//! `mem.directmap*` matches `mem.directmap4k`). Lists are a JSON array of strings or one
//! comma-separated string (the original's form); items are trimmed and empty items ignored.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

/// A list of names as written in a config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameList(pub Vec<String>);

impl NameList {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for NameList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NameList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of strings or a comma-separated string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<NameList, E> {
                Ok(NameList(s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<NameList, E> {
                Ok(NameList::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NameList, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    let item = item.trim();
                    if !item.is_empty() {
                        out.push(item.to_string());
                    }
                }
                Ok(NameList(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Exact names and globs, compiled.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    exact: HashSet<String>,
    globs: Vec<glob::Pattern>,
}

impl Matcher {
    /// Compiles a list; the error names the item that is not a valid glob.
    pub fn new(list: &NameList) -> Result<Matcher, String> {
        let mut m = Matcher::default();
        for item in &list.0 {
            if item.contains(['*', '?', '[']) {
                let p = glob::Pattern::new(item).map_err(|e| format!("bad pattern \"{item}\": {}", e.msg))?;
                m.globs.push(p);
            } else {
                m.exact.insert(item.clone());
            }
        }
        Ok(m)
    }

    /// A matcher from literal patterns (built-in defaults; they are known to be valid).
    pub fn from_static(items: &[&str]) -> Matcher {
        let list = NameList(items.iter().map(|s| s.to_string()).collect());
        Matcher::new(&list).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.globs.is_empty()
    }

    pub fn matches(&self, name: &str) -> bool {
        if self.is_empty() {
            return false;
        }
        self.exact.contains(name) || self.globs.iter().any(|g| g.matches(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(json: &str) -> NameList {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn comma_string_is_trimmed() {
        assert_eq!(list(r#""lo, eth0 ,,""#).0, vec!["lo", "eth0"]);
        assert!(list(r#""""#).is_empty());
        assert_eq!(list(r#"[" sda", "nvme*"]"#).0, vec!["sda", "nvme*"]);
    }

    #[test]
    fn exact_and_glob() {
        let m = Matcher::new(&list(r#"["cpu.guest_nice", "net.*.lo", "mem.directmap*"]"#)).unwrap();
        assert!(m.matches("cpu.guest_nice"));
        assert!(!m.matches("cpu.guest"));
        assert!(m.matches("net.rx_bytes.lo"));
        assert!(!m.matches("net.rx_bytes.lo0"));
        assert!(m.matches("mem.directmap4k"));
        assert!(!m.matches("mem.memtotal"));
    }

    #[test]
    fn bad_glob_is_an_error() {
        assert!(Matcher::new(&list(r#"["disk.[a"]"#)).unwrap_err().contains("disk.[a"));
    }
}
