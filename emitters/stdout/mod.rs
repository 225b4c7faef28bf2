//! `stdout`: each payload as one compact JSON object per line (NDJSON) on stdout, same
//! shape and key order as `stdout_pretty`. (The original printed a Python `repr`, which no
//! tool can parse; NDJSON is what `jq` and log shippers read.)
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `interval` | `0` | seconds between writes; every payload since the last write is written |
//! | `blacklist` | `[]` | stats left out of this emitter's output (names or globs) |

use serde::Deserialize;

pub mod pretty;

use badger_api::plugin::{Batch, BuildError, EmitError, Emitter, EmitterContext, EmitterSpec, PluginConf};
use badger_formats::json;

pub static SPEC: EmitterSpec = EmitterSpec {
    name: "stdout",
    aliases: &[],
    summary: "one compact JSON object per payload per line on stdout (NDJSON)",
    build,
    counters: false,
};

/// Both stdout emitters take only the common keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(_ctx: &EmitterContext, conf: &PluginConf) -> Result<Box<dyn Emitter>, BuildError> {
    build_json(conf, false)
}

/// A [`StdoutJson`] emitter after checking that `conf` holds no key of its own.
fn build_json(conf: &PluginConf, pretty: bool) -> Result<Box<dyn Emitter>, BuildError> {
    let Config {} = conf.parse()?;
    Ok(Box::new(StdoutJson { pretty, buf: String::new() }))
}

/// Writes payloads as JSON to stdout (`stdout`, and `stdout_pretty` with `pretty`).
pub struct StdoutJson {
    pub pretty: bool,
    pub buf: String,
}

impl Emitter for StdoutJson {
    fn emit(&mut self, batch: &Batch<'_>) -> Result<(), EmitError> {
        use std::io::Write;
        self.buf.clear();
        for p in batch.payloads() {
            json::write_payload(&mut self.buf, &p, self.pretty);
            self.buf.push('\n');
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        out.write_all(self.buf.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|e| EmitError(format!("writing to stdout: {e}")))
    }
}
