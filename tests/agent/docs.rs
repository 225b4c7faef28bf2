//! The docs are kept true by these tests:
//! - `docs/reference/{modules,emitters}/<name>.md` are generated from the `//!` doc comment of
//!   each registered plugin's file (its stat and key tables) and its `conf.d/<name>.conf`;
//!   regenerate with `BADGER_BLESS=1 cargo test -p badger --test docs`;
//! - every key of a plugin's `conf.d/<name>.conf` sample is in its key table with the same
//!   default, and the sample builds through the plugin's typed config (unknown keys are refused
//!   there);
//! - the README is the front door: at most 250 lines, the two set-up commands, links that exist.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use badger_api::config::strip_comments;
use badger_api::http::HttpRoutes;
use badger_api::plugin::{BuildError, EmitterContext, ModuleContext, PluginConf, COMMON_KEYS};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A registered plugin and the file that defines its `SPEC`.
struct PluginDoc {
    kind: &'static str,
    name: &'static str,
    file: PathBuf,
    text: String,
}

/// Every `.rs` file below `dir` (not the example plugin crates, which have their own docs).
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            if !p.join("Cargo.toml").exists() {
                out.extend(sources(&p));
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The registered plugins in registry order, each with the file whose `SPEC` names it.
fn plugins() -> Vec<PluginDoc> {
    let mut out = Vec::new();
    let names: [(&str, &str, Vec<&'static str>); 2] = [
        ("module", "modules", badger_modules::REGISTRY.iter().map(|s| s.name).collect()),
        ("emitter", "emitters", badger_emitters::REGISTRY.iter().map(|s| s.name).collect()),
    ];
    for (kind, dir, names) in names {
        let files: Vec<(PathBuf, String)> =
            sources(&root().join(dir)).into_iter().map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap())).collect();
        for name in names {
            let needle = if name == badger_api::plugin::EXEC_KIND {
                "name: EXEC_KIND".to_string()
            } else {
                format!("name: \"{name}\"")
            };
            let defines = |t: &str| {
                t.match_indices("pub static SPEC")
                    .any(|(i, _)| t[i..].chars().take(160).collect::<String>().contains(&needle))
            };
            let (file, text) = files
                .iter()
                .find(|(_, t)| defines(t))
                .unwrap_or_else(|| panic!("no file in {dir}/ defines the SPEC of {kind} {name}"));
            out.push(PluginDoc { kind, name, file: file.clone(), text: text.clone() });
        }
    }
    out
}

/// The `//!` header of a file, markers removed.
fn doc_of(text: &str) -> Vec<&str> {
    text.lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.strip_prefix("//! ").unwrap_or(l.trim_start_matches("//!")))
        .collect()
}

/// The rows of the `| key | default | meaning |` table of a doc: key → default.
fn key_table(doc: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut in_table = false;
    for line in doc {
        if line.starts_with("| key | default |") {
            in_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
        }
        if !in_table || line.starts_with("|---") {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if let (Some(key), Some(default)) = (cells.get(1), cells.get(2)) {
            if let Some(k) = key.strip_prefix('`').and_then(|k| k.strip_suffix('`')) {
                out.insert(k.to_string(), default.to_string());
            }
        }
    }
    out
}

/// The outbox's key table (the buffering keys every network emitter shares).
fn outbox_doc() -> String {
    std::fs::read_to_string(root().join("crates/outbox/src/lib.rs")).unwrap()
}

fn uses_outbox(p: &PluginDoc) -> bool {
    p.text.contains("OUTBOX_KEYS")
}

fn page(p: &PluginDoc) -> String {
    let doc = doc_of(&p.text);
    let rel = p.file.strip_prefix(root()).unwrap().display().to_string();
    let mut s =
        format!("<!-- generated from {rel} and conf.d/{}.conf by tests/agent/docs.rs: do not edit -->\n\n", p.name);
    s.push_str(&format!("# {} `{}`\n\n", p.kind, p.name));
    for line in &doc {
        s.push_str(line);
        s.push('\n');
    }
    if uses_outbox(p) {
        s.push_str("\n## Buffering (the outbox)\n\n");
        let outbox = outbox_doc();
        let mut in_table = false;
        for line in doc_of(&outbox) {
            in_table |= line.starts_with("| key | default |");
            if in_table && !line.starts_with('|') {
                break;
            }
            if in_table {
                s.push_str(line);
                s.push('\n');
            }
        }
    }
    let conf = root().join("conf.d").join(format!("{}.conf", p.name));
    let sample = std::fs::read_to_string(&conf).unwrap_or_else(|_| panic!("missing {}", conf.display()));
    s.push_str(&format!("\n## Default `conf.d/{}.conf`\n\n```jsonc\n{}\n```\n", p.name, sample.trim_end()));
    s
}

fn reference_dir() -> PathBuf {
    root().join("docs/reference")
}

fn index(plugins: &[PluginDoc]) -> String {
    let mut s = String::from(
        "<!-- generated by tests/agent/docs.rs: do not edit -->\n\n# Reference\n\nOne page per built-in module and emitter, generated from the doc comment of its source file (every stat with its units, type and kind; every config key with its default) and its default config file.\n",
    );
    for (kind, head) in [("module", "Modules"), ("emitter", "Emitters")] {
        s.push_str(&format!("\n## {head}\n\n"));
        for p in plugins.iter().filter(|p| p.kind == kind) {
            let summary = doc_of(&p.text).first().copied().unwrap_or_default();
            let summary = summary.split_once(": ").map(|(_, s)| s).unwrap_or(summary);
            s.push_str(&format!("- [`{}`]({kind}s/{}.md): {summary}\n", p.name, p.name));
        }
    }
    s
}

#[test]
fn reference_pages_match_the_plugin_files() {
    let plugins = plugins();
    let mut want: BTreeMap<PathBuf, String> = BTreeMap::new();
    want.insert(reference_dir().join("README.md"), index(&plugins));
    for p in &plugins {
        want.insert(reference_dir().join(format!("{}s", p.kind)).join(format!("{}.md", p.name)), page(p));
    }
    let bless = std::env::var_os("BADGER_BLESS").is_some();
    let mut stale = Vec::new();
    for (path, text) in &want {
        if std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
            if bless {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
            } else {
                stale.push(path.strip_prefix(root()).unwrap().display().to_string());
            }
        }
    }
    for dir in ["modules", "emitters"] {
        for e in std::fs::read_dir(reference_dir().join(dir)).into_iter().flatten().flatten() {
            if !want.contains_key(&e.path()) {
                if bless {
                    std::fs::remove_file(e.path()).unwrap();
                } else {
                    stale.push(format!("{} (no such plugin)", e.path().display()));
                }
            }
        }
    }
    assert!(stale.is_empty(), "out of date: {stale:?}: run BADGER_BLESS=1 cargo test -p badger --test docs");
}

/// A plugin's conf.d sample: the keys it shows and their values.
fn sample_keys(name: &str) -> (PluginConf, serde_json::Map<String, serde_json::Value>) {
    let file = root().join("conf.d").join(format!("{name}.conf"));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|_| panic!("missing {}", file.display()));
    let value: serde_json::Value =
        serde_json::from_str(&strip_comments(&text)).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let serde_json::Value::Object(map) = value else { panic!("{}: not an object", file.display()) };
    (PluginConf::from_text(name, &file, &text), map)
}

/// The JSON literal of a table's default cell, when it is exactly one backticked literal.
fn literal(default: &str) -> Option<serde_json::Value> {
    let inner = default.strip_prefix('`')?.strip_suffix('`')?;
    if inner.contains('`') {
        return None;
    }
    serde_json::from_str(inner).ok()
}

#[test]
fn conf_d_samples_agree_with_the_key_tables_and_the_config_structs() {
    let outbox = key_table(&doc_of(&outbox_doc()));
    let mut problems = Vec::new();
    for p in plugins() {
        let mut table = key_table(&doc_of(&p.text));
        if uses_outbox(&p) {
            table.extend(outbox.clone());
        }
        let (conf, sample) = sample_keys(p.name);
        for (key, value) in &sample {
            match table.get(key) {
                None if COMMON_KEYS.contains(&key.as_str()) => {}
                None => problems.push(format!("{} {}: conf.d key `{key}` is not in its key table", p.kind, p.name)),
                Some(default) => {
                    if let Some(want) = literal(default) {
                        if &want != value {
                            problems.push(format!(
                                "{} {}: `{key}` is {value} in conf.d but {default} in the key table",
                                p.kind, p.name
                            ));
                        }
                    }
                }
            }
        }
        // The sample goes through the plugin's own typed config: an unknown key or a wrong
        // type is a config error (a plugin that cannot run here is fine).
        let err = if p.kind == "module" {
            let spec = badger_modules::REGISTRY.iter().find(|s| s.name == p.name).unwrap();
            let ctx = ModuleContext {
                http: HttpRoutes::new(Some("127.0.0.1:0".parse().unwrap()), Path::new("config.json")),
                ..ModuleContext::default()
            };
            (spec.build)(&ctx, &conf).err()
        } else {
            let spec = badger_emitters::REGISTRY.iter().find(|s| s.name == p.name).unwrap();
            let ctx = EmitterContext {
                http: HttpRoutes::new(Some("127.0.0.1:0".parse().unwrap()), Path::new("config.json")),
                ..EmitterContext::default()
            };
            (spec.build)(&ctx, &conf).err()
        };
        if let Some(BuildError::Config(e)) = err {
            // Samples of plugins that need a command or targets leave them to the user.
            if !e.message.contains("missing field") && !e.message.contains("is required") {
                problems.push(format!("{} {}: the sample does not build: {e}", p.kind, p.name));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn readme_is_the_front_door_with_the_two_setup_commands() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.lines().count() <= 250, "README.md has {} lines (at most 250)", readme.lines().count());
    let setup = readme.split("## Set up").nth(1).expect("a Set up section").split("\n## ").next().unwrap();
    let commands: Vec<&str> = setup.lines().filter(|l| l.starts_with("$ ")).collect();
    assert_eq!(commands, ["$ cargo run --release -- -f config.json", "$ ./scripts/test.sh"]);
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(ci.lines().any(|l| l.trim() == "exec ./scripts/test.sh"), "{ci}");
    for p in plugins() {
        let link = format!("docs/reference/{}s/{}.md", p.kind, p.name);
        assert!(readme.contains(&link), "README.md does not link {link}");
    }
}

/// Every relative link of README.md and docs/*.md points at a file that exists.
#[test]
fn relative_links_resolve() {
    let mut files = vec![root().join("README.md")];
    files.extend(std::fs::read_dir(root().join("docs")).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_file()));
    let mut broken = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = rest[..end].split('#').next().unwrap_or("");
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                continue;
            }
            if !f.parent().unwrap().join(target).exists() {
                broken.push(format!("{}: {target}", f.strip_prefix(root()).unwrap().display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:?}");
}

/// The plugin guide covers both kinds of plugin and documents each example plugin with the
/// tables of its crate's docs.
#[test]
fn plugin_guide_documents_both_kinds_and_the_example_plugins() {
    let guide = std::fs::read_to_string(root().join("docs/plugins.md")).unwrap();
    for heading in [
        "### Exec module: a command that prints points",
        "### Exec emitter: a command that reads payloads",
        "### Shared-library module or emitter (Rust, with the SDK)",
        "#### module `dir_files` (`modules/dir_files/`)",
        "#### emitter `jsonl_file` (`emitters/jsonl_file/`)",
    ] {
        assert!(guide.contains(heading), "the guide lacks {heading:?}");
    }
    for krate in ["modules/dir_files", "emitters/jsonl_file"] {
        let text = std::fs::read_to_string(root().join(krate).join("src/lib.rs")).unwrap();
        for line in text.lines().filter_map(|l| l.strip_prefix("//! ")).filter(|l| l.starts_with('|')) {
            assert!(guide.contains(line), "the guide lacks this line of {krate}'s docs:\n{line}");
        }
    }
}

/// The crate graph is the architecture: prints it, and checks that it runs one way
/// (docs/ARCHITECTURE.md): the API depends on no badger crate, plugins only on the API, the
/// formats and the outbox, the Pulse server never on the agent or the plugins.
#[test]
fn crate_graph_runs_one_way() {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pkg in meta["packages"].as_array().unwrap() {
        let name = pkg["name"].as_str().unwrap().to_string();
        if !name.starts_with("badger") {
            continue;
        }
        let deps = pkg["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().unwrap().to_string())
            .filter(|d| d.starts_with("badger"))
            .collect();
        graph.insert(name, deps);
    }
    for (krate, deps) in &graph {
        println!("{krate} -> {}", if deps.is_empty() { "(none)".to_string() } else { deps.join(", ") });
    }
    let allowed: &[(&str, &[&str])] = &[
        ("badger-api", &[]),
        ("badger-cli", &[]),
        ("badger-plugin-sdk", &[]),
        ("badger-formats", &["badger-api"]),
        ("badger-outbox", &["badger-api"]),
        ("badger-modules", &["badger-api", "badger-formats"]),
        ("badger-emitters", &["badger-api", "badger-formats", "badger-outbox"]),
        ("badger-pulse", &["badger-api", "badger-cli", "badger-formats"]),
        ("badger-test-support", &["badger-api"]),
    ];
    for (krate, ok) in allowed {
        let deps = graph.get(*krate).unwrap_or_else(|| panic!("{krate} is not in the workspace"));
        for d in deps {
            assert!(ok.contains(&d.as_str()), "{krate} depends on {d}: the crate graph must run one way");
        }
    }
}
