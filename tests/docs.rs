//! The README's stat and config reference is generated from the tables at the top of each
//! module and emitter file, and this test keeps them equal.
//! Regenerate with `BADGER_BLESS=1 cargo test --test docs`.

use std::path::Path;

const BEGIN: &str = "<!-- generated:plugins:begin (BADGER_BLESS=1 cargo test --test docs) -->";
const END: &str = "<!-- generated:plugins:end -->";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The registered plugins of a folder, in registry order: names from `pub mod x;` lines
/// of its mod.rs that have a `SPEC`.
fn plugin_files(dir: &str) -> Vec<(String, String)> {
    let modrs = std::fs::read_to_string(root().join(dir).join("mod.rs")).unwrap();
    let mut out = Vec::new();
    for line in modrs.lines() {
        let Some(name) = line.trim().strip_prefix("pub mod ").and_then(|s| s.strip_suffix(';')) else { continue };
        let file = root().join(dir).join(format!("{name}.rs"));
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(_) => std::fs::read_to_string(root().join(dir).join(name).join("mod.rs")).unwrap(),
        };
        if text.contains("pub static SPEC") {
            out.push((name.to_string(), text));
        }
    }
    out
}

/// The `//!` header: first line as the summary, and every table line.
fn section(kind: &str, name: &str, text: &str) -> String {
    let doc: Vec<&str> =
        text.lines().take_while(|l| l.starts_with("//!")).map(|l| l.trim_start_matches("//!").trim_start()).collect();
    let summary = doc.first().copied().unwrap_or_default();
    let summary = summary.split_once(": ").map(|(_, s)| s).unwrap_or(summary);
    let mut s = format!("#### {kind} `{name}`\n\n{summary}\n");
    let mut in_table = false;
    for line in &doc {
        if line.starts_with('|') {
            if !in_table {
                s.push('\n');
            }
            in_table = true;
            s.push_str(line);
            s.push('\n');
        } else {
            in_table = false;
        }
    }
    s.push('\n');
    s
}

fn generated() -> String {
    let mut s = String::from("### Modules\n\n");
    for (name, text) in plugin_files("modules") {
        s.push_str(&section("module", &name, &text));
    }
    s.push_str("### Emitters\n\n");
    for (name, text) in plugin_files("emitters") {
        s.push_str(&section("emitter", &name, &text));
    }
    s
}

#[test]
fn readme_reference_matches_the_plugin_files() {
    let path = root().join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let (head, rest) = readme.split_once(BEGIN).expect("README has the begin marker");
    let (old, tail) = rest.split_once(END).expect("README has the end marker");
    let new = generated();
    if std::env::var_os("BADGER_BLESS").is_some() {
        std::fs::write(&path, format!("{head}{BEGIN}\n{new}{END}{tail}")).unwrap();
        return;
    }
    assert_eq!(old.trim(), new.trim(), "README is out of date: run BADGER_BLESS=1 cargo test --test docs");
}

#[test]
fn readme_has_the_two_setup_commands_and_ci_runs_the_test_one() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let setup = readme.split("## Set up").nth(1).expect("a Set up section").split("\n## ").next().unwrap();
    let commands: Vec<&str> = setup.lines().filter(|l| l.starts_with("$ ")).collect();
    assert_eq!(commands, ["$ cargo run --release -- -f config.json", "$ ./scripts/test.sh"]);
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(ci.lines().any(|l| l.trim() == "exec ./scripts/test.sh"), "{ci}");
}

#[test]
fn every_module_and_emitter_has_a_default_conf_file() {
    for dir in ["modules", "emitters"] {
        for (name, _) in plugin_files(dir) {
            let conf = root().join("conf.d").join(format!("{name}.conf"));
            let text = std::fs::read_to_string(&conf).unwrap_or_else(|_| panic!("missing {}", conf.display()));
            let stripped = badger_api::config::strip_comments(&text);
            serde_json::from_str::<serde_json::Value>(&stripped).unwrap_or_else(|e| panic!("{}: {e}", conf.display()));
        }
    }
}

/// The dependency direction: plugins use only the point model and plugin API; the core
/// never names a concrete module or emitter (only the binary wires the registries in).
#[test]
fn dependency_direction() {
    // pulse_proto: the Pulse wire protocol and relay library, shared by the `pulse` emitter
    // and the server (which is core-side), so it belongs to the API layer.
    const API: &[&str] = &[
        "point",
        "plugin",
        "matcher",
        "rate",
        "procfile",
        "units",
        "json",
        "external",
        "fixture",
        "http",
        "telemetry",
        "promtext",
        "pulse_proto",
    ];
    for dir in ["modules", "emitters"] {
        for entry in walk(&root().join(dir)) {
            let text = std::fs::read_to_string(&entry).unwrap();
            for (i, line) in text.lines().enumerate() {
                for (pos, _) in line.match_indices("crate::") {
                    let rest = &line[pos + 7..];
                    let first = rest.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap_or("");
                    let ok = API.contains(&first)
                        || (first == "emitters" && dir == "emitters")
                        || (first == "modules" && dir == "modules");
                    assert!(ok, "{}:{}: a plugin uses crate::{first}", entry.display(), i + 1);
                }
            }
        }
    }
    for entry in walk(&root().join("src")) {
        let name = entry.file_name().unwrap().to_string_lossy().to_string();
        if name == "main.rs" || name == "lib.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&entry).unwrap();
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            assert!(
                !line.contains("modules::") && !line.contains("emitters::"),
                "{}:{}: the core names a concrete plugin",
                entry.display(),
                i + 1
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// The README's guide covers both kinds of plugin and documents each example plugin with the
/// tables of its crate's docs.
#[test]
fn readme_guide_documents_both_kinds_and_the_example_plugins() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let guide = readme
        .split("\n## Write your own module or emitter\n")
        .nth(1)
        .expect("a \"Write your own module or emitter\" section")
        .split("\n## ")
        .next()
        .unwrap();
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
