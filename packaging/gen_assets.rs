//! Writes the man page and shell completions generated from the CLI definition into
//! `target/assets/` for the .deb and .rpm: `cargo run --example gen_assets`.

use std::fs;
use std::io::Write;
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/assets");
    fs::create_dir_all(&out)?;
    let mut cmd = badger::cli::Cli::command();

    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    let mut gz = flate2::write::GzEncoder::new(fs::File::create(out.join("badger.1.gz"))?, flate2::Compression::best());
    gz.write_all(&page)?;
    gz.finish()?;

    for (shell, file) in [(Shell::Bash, "badger.bash"), (Shell::Zsh, "_badger"), (Shell::Fish, "badger.fish")] {
        let mut f = fs::File::create(out.join(file))?;
        clap_complete::generate(shell, &mut cmd, "badger", &mut f);
    }
    println!("wrote {}", out.display());
    Ok(())
}
