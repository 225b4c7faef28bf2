//! `stdout_pretty`: each payload as indented JSON on stdout, byte for byte the original's
//! format (keys sorted at every level, 4-space indent, `": "`, no trailing spaces, one
//! document per payload, no blank line between documents). See [`super::json`].
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `interval` | `0` | seconds between writes; every payload since the last write is written |
//! | `blacklist` | `[]` | stats left out of this emitter's output (names or globs) |

use serde::Deserialize;

use super::json;
use crate::plugin::{Batch, BuildError, EmitError, Emitter, EmitterContext, EmitterSpec, PluginConf};

pub static SPEC: EmitterSpec = EmitterSpec {
    name: "stdout_pretty",
    aliases: &[],
    summary: "indented JSON documents on stdout (the original's format)",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(_ctx: &EmitterContext, conf: &PluginConf) -> Result<Box<dyn Emitter>, BuildError> {
    let Config {} = conf.parse()?;
    Ok(Box::new(StdoutJson { pretty: true, buf: String::new() }))
}

/// Writes payloads as JSON to stdout (shared with `stdout`).
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
