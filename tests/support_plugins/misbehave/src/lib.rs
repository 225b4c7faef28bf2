//! A module plugin for the tests: `{"mode": "ok" | "panic" | "panic_in_new" | "hang"}`.
//! `ok` reports `misbehave.calls` (1, 2, …); `panic` panics in every collection;
//! `panic_in_new` panics while being built; `hang` never returns from its first collection.

use badger_plugin_sdk::{badger_module, Error, Module, Point};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    mode: String,
}

pub struct Misbehave {
    mode: String,
    calls: i64,
}

impl Module for Misbehave {
    type Config = Config;

    fn new(config: Config) -> Result<Self, Error> {
        match config.mode.as_str() {
            "panic_in_new" => panic!("misbehave: panic while being built"),
            "ok" | "panic" | "hang" => Ok(Misbehave { mode: config.mode, calls: 0 }),
            other => Err(format!("unknown mode {other:?}").into()),
        }
    }

    fn collect(&mut self, out: &mut Vec<Point>) -> Result<(), Error> {
        self.calls += 1;
        match self.mode.as_str() {
            "panic" => panic!("misbehave: panic in collection {}", self.calls),
            "hang" => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            _ => {
                out.push(Point::new("misbehave.calls", self.calls));
                Ok(())
            }
        }
    }
}

badger_module!(Misbehave);
