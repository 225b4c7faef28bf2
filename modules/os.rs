//! `os`: the operating system's name and version, from `/etc/os-release` (or `/usr/lib/os-release`).
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `os.info.<labels>` | | int | gauge | always 1; `<labels>` is the tags `build_id`, `id`, `id_like`, `image_id`, `image_version`, `name`, `pretty_name`, `variant`, `variant_id`, `version`, `version_codename`, `version_id` (the file's `BUILD_ID`, `ID`, …; empty when absent) joined by dots |
//! | `os.version.<labels>` | | float | gauge | the leading `major.minor` number of `VERSION_ID` (`12`, `22.04`; 0 when it does not start with a digit); `<labels>` is the tags `id`, `id_like`, `name` joined by dots |
//!
//! As node_exporter 1.5's `os` collector (`node_os_info`, `node_os_version`). Both files are
//! looked for under `host_root` (`/host/etc/os-release` in a container), `/etc` first; the file
//! is read whole (at most 64 KiB) on every collection. Values follow the os-release(5) shell
//! quoting: `"…"` with `\"`, `\\`, `` \` `` and `\$` escapes, or `'…'`; `#` lines are comments. A
//! host with neither file makes the module unavailable.
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};

pub static SPEC: ModuleSpec =
    ModuleSpec { name: "os", aliases: &[], summary: "operating system name and version (/etc/os-release)", build };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    let m = Os { files: [ctx.roots.host.join("etc/os-release"), ctx.roots.host.join("usr/lib/os-release")] };
    m.read().map_err(|e| BuildError::Unavailable(e.0))?;
    Ok(Box::new(m))
}

struct Os {
    files: [PathBuf; 2],
}

const MAX_FILE: u64 = 64 * 1024;

/// The labels of `os.info`, with the os-release key each comes from.
const INFO: &[(&str, &str)] = &[
    ("build_id", "BUILD_ID"),
    ("id", "ID"),
    ("id_like", "ID_LIKE"),
    ("image_id", "IMAGE_ID"),
    ("image_version", "IMAGE_VERSION"),
    ("name", "NAME"),
    ("pretty_name", "PRETTY_NAME"),
    ("variant", "VARIANT"),
    ("variant_id", "VARIANT_ID"),
    ("version", "VERSION"),
    ("version_codename", "VERSION_CODENAME"),
    ("version_id", "VERSION_ID"),
];

/// One os-release value without its quotes.
fn unquote(v: &str) -> String {
    let v = v.trim();
    if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return inner.to_string();
    }
    let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else { return v.to_string() };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('"' | '\\' | '`' | '$')) => out.push(e),
                Some(e) => {
                    out.push('\\');
                    out.push(e);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `KEY=value` pairs of an os-release file.
pub fn parse(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), unquote(v)))
        .collect()
}

/// node_exporter's version number: the leading `digits[.digits]` of `VERSION_ID`, else 0.
pub fn version_number(version_id: &str) -> f64 {
    let int_end = version_id.find(|c: char| !c.is_ascii_digit()).unwrap_or(version_id.len());
    if int_end == 0 {
        return 0.0;
    }
    let mut end = int_end;
    if version_id[end..].starts_with('.') {
        end += 1;
        end += version_id[end..].find(|c: char| !c.is_ascii_digit()).unwrap_or(version_id.len() - end);
    }
    version_id[..end].trim_end_matches('.').parse().unwrap_or(0.0)
}

impl Os {
    fn read(&self) -> Result<HashMap<String, String>, CollectError> {
        let mut last = None;
        for path in &self.files {
            let mut text = String::new();
            match fs::File::open(path).and_then(|f| f.take(MAX_FILE).read_to_string(&mut text)) {
                Ok(_) => return Ok(parse(&text)),
                Err(e) => last = Some(CollectError::io(path, e)),
            }
        }
        Err(last.unwrap_or_else(|| CollectError("no os-release file".into())))
    }
}

impl Module for Os {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let env = self.read()?;
        let get = |k: &str| env.get(k).map_or("", String::as_str);
        let tags: Vec<(&'static str, &str)> = INFO.iter().map(|(label, key)| (*label, get(key))).collect();
        out.push(crate::named_point("os", "info", "", Value::Int(1), &tags));
        let tags = [("id", get("ID")), ("id_like", get("ID_LIKE")), ("name", get("NAME"))];
        out.push(crate::named_point("os", "version", "", Value::Float(version_number(get("VERSION_ID"))), &tags));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_test_support::fixture::{self, FixtureRoot};

    const DEBIAN: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
        VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n\
        HOME_URL=\"https://www.debian.org/\"\n";

    #[test]
    fn versions_and_quoting() {
        assert_eq!(version_number("12"), 12.0);
        assert_eq!(version_number("22.04"), 22.04);
        assert_eq!(version_number("9.3.2"), 9.3);
        assert_eq!(version_number("rolling"), 0.0);
        assert_eq!(version_number(""), 0.0);
        assert_eq!(version_number("7."), 7.0);
        let env = parse("# comment\nA=\"x \\\"y\\\" \\$z\"\nB='a b'\nC=plain\n\nbroken line\n");
        assert_eq!(env["A"], "x \"y\" $z");
        assert_eq!(env["B"], "a b");
        assert_eq!(env["C"], "plain");
        assert_eq!(env.len(), 3);
    }

    #[test]
    fn from_etc_then_usr_lib() {
        let root = FixtureRoot::new("vm-6.18");
        match fixture::build_error(&SPEC, &root.ctx(), "{}") {
            BuildError::Unavailable(m) => assert!(m.contains("os-release"), "{m}"),
            BuildError::Config(e) => panic!("{e}"),
        }
        root.write("host/usr/lib/os-release", "ID=arch\nNAME=\"Arch Linux\"\nBUILD_ID=rolling\n");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        let p = fixture::collect(m.as_mut(), 0.0);
        crate::assert_node_documented("os", include_str!("os.rs"), &p);
        assert_eq!(p[0].name, "os.info.rolling.arch....Arch Linux......");
        assert_eq!(p[1].name, "os.version.arch..Arch Linux");
        assert_eq!(p[1].value, Value::Float(0.0));
        root.write("host/etc/os-release", DEBIAN);
        let p = fixture::collect(m.as_mut(), 1.0);
        crate::assert_node_documented("os", include_str!("os.rs"), &p);
        // As node_exporter 1.5 shows this machine's file.
        let tags: Vec<(&str, &str)> = p[0].tags.iter().map(|(k, v)| (k.as_ref(), v.as_str())).collect();
        assert_eq!(
            tags,
            [
                ("build_id", ""),
                ("id", "debian"),
                ("id_like", ""),
                ("image_id", ""),
                ("image_version", ""),
                ("name", "Debian GNU/Linux"),
                ("pretty_name", "Debian GNU/Linux 12 (bookworm)"),
                ("variant", ""),
                ("variant_id", ""),
                ("version", "12 (bookworm)"),
                ("version_codename", "bookworm"),
                ("version_id", "12"),
            ]
        );
        assert_eq!((&*p[1].measurement, &*p[1].field, p[1].value), ("os", "version", Value::Float(12.0)));
        assert_eq!(p[1].name, "os.version.debian..Debian GNU/Linux");
    }
}
