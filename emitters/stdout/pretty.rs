//! `stdout_pretty`: each payload as indented JSON on stdout, byte for byte the original's
//! format (keys sorted at every level, 4-space indent, `": "`, no trailing spaces, one
//! document per payload, no blank line between documents). See [`badger_formats::json`].
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `interval` | `0` | seconds between writes; every payload since the last write is written |
//! | `blacklist` | `[]` | stats left out of this emitter's output (names or globs) |

use badger_api::plugin::{BuildError, Emitter, EmitterContext, EmitterSpec, PluginConf};

pub static SPEC: EmitterSpec = EmitterSpec {
    name: "stdout_pretty",
    aliases: &[],
    summary: "indented JSON documents on stdout (the original's format)",
    build,
    counters: false,
};

fn build(_ctx: &EmitterContext, conf: &PluginConf) -> Result<Box<dyn Emitter>, BuildError> {
    super::build_json(conf, true)
}
