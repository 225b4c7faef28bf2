//! `stdout`: each payload as one compact JSON object per line (NDJSON) on stdout, same
//! shape and key order as `stdout_pretty`. (The original printed a Python `repr`, which no
//! tool can parse; NDJSON is what `jq` and log shippers read.)
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `interval` | `0` | seconds between writes; every payload since the last write is written |
//! | `blacklist` | `[]` | stats left out of this emitter's output (names or globs) |

use serde::Deserialize;

use super::stdout_pretty::StdoutJson;
use crate::plugin::{BuildError, Emitter, EmitterContext, EmitterSpec, PluginConf};

pub static SPEC: EmitterSpec = EmitterSpec {
    name: "stdout",
    aliases: &[],
    summary: "one compact JSON object per payload per line on stdout (NDJSON)",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(_ctx: &EmitterContext, conf: &PluginConf) -> Result<Box<dyn Emitter>, BuildError> {
    let Config {} = conf.parse()?;
    Ok(Box::new(StdoutJson { pretty: false, buf: String::new() }))
}
