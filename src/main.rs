//! The `badger` binary: wires the built-in registries into the core.

use std::process::exit;

use clap::Parser;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use badger::config::Registries;
use badger::scheduler::{self, Control, Probe, EXIT_CONFIG};
use badger_cli::Cli;

fn main() {
    // What the dynamic linker and the runtime touched to get here is done with: the first
    // release of the start-up pages (badger_api::memory::ExecutablePages says why), before
    // the command line's parser comes in. Every command does it (a fraction of a
    // millisecond); only the agent goes on releasing at its later steps.
    badger_api::memory::release_start_up_pages();
    // Every file badger (agent or server) creates is its user's only: 0600 files, 0700
    // directories (the spool, the l2met offsets, log files, the Pulse store, alerts.json),
    // whatever the umask it was started with. An exec plugin inherits it (documented).
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse_from(badger_cli::rewrite_server_flag(std::env::args_os().collect()));
    if let Some(badger_cli::Command::Server(args)) = &cli.command {
        exit(badger_pulse::main(args));
    }
    // Two malloc arenas and a fixed mmap threshold (badger_api::memory says why).
    badger_api::memory::tune_for_agent();
    let reg = Registries { modules: badger_modules::REGISTRY, emitters: badger_emitters::REGISTRY };
    let log_level = cli.log_level.map(log::LevelFilter::from);
    let Some(path) = cli.config else {
        eprintln!("badger: no config file given: use -f <config.json> (or --config); see --help");
        exit(EXIT_CONFIG);
    };
    let code = if cli.check {
        scheduler::check(&path, &reg)
    } else if cli.test {
        match reg.emitter("stdout_pretty") {
            Some(spec) => scheduler::probe(&path, &reg, log_level, Probe::Test(spec)),
            None => 1,
        }
    } else if cli.once {
        scheduler::probe(&path, &reg, log_level, Probe::Once)
    } else {
        // The command line is parsed: the next step of the agent's start-up.
        badger_api::memory::release_start_up_pages();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut signals = match Signals::new([SIGTERM, SIGINT, SIGHUP]) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("badger: cannot install signal handlers: {e}");
                exit(1);
            }
        };
        let spawned = std::thread::Builder::new().name("signals".into()).stack_size(64 * 1024).spawn(move || {
            for sig in signals.forever() {
                let c = if sig == SIGHUP { Control::Reload } else { Control::Stop };
                if tx.send(c).is_err() {
                    break;
                }
            }
        });
        if let Err(e) = spawned {
            eprintln!("badger: cannot start the signal thread: {e}");
            exit(1);
        }
        scheduler::run(&path, &reg, log_level, &rx)
    };
    exit(code);
}
