//! Writes the man page and the shell completions, generated from the command line's clap
//! definitions (the `badger-cli` crate), into `target/<profile>/assets/`, where the .deb
//! and .rpm metadata in Cargo.toml take them: `cargo build --release` and then `cargo deb`
//! or `cargo generate-rpm` need no other step.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=build.rs");
    // OUT_DIR is target/<profile>/build/badger-<hash>/out.
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let Some(profile_dir) = out_dir.ancestors().nth(3) else {
        return Ok(());
    };
    let assets = profile_dir.join("assets");
    fs::create_dir_all(&assets)?;
    let mut cmd = badger_cli::Cli::command();

    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    let mut gz =
        flate2::write::GzEncoder::new(fs::File::create(assets.join("badger.1.gz"))?, flate2::Compression::best());
    gz.write_all(&page)?;
    gz.finish()?;

    for (shell, file) in [(Shell::Bash, "badger.bash"), (Shell::Zsh, "_badger"), (Shell::Fish, "badger.fish")] {
        let mut f = fs::File::create(assets.join(file))?;
        clap_complete::generate(shell, &mut cmd, "badger", &mut f);
    }
    Ok(())
}
