//! `pulse`: makes the agent a Pulse relay: it connects to a Pulse server (`badger server`
//! or the original Go Pulse), says `id <hostname>`, registers every stat it collects with
//! `add <stat>:<tags>` (the host metadata as `key:value` tags: `datacenter:dc1`,
//! `cluster:web`, … empty ones left out) and answers each `get` with the latest value of
//! the stats asked for, four decimals, as `got <stat>-<stat>:<value>,…`.
//!
//! **Names.** Pulse splits on `-`, `:` and `,`, so in stat names these (and white space)
//! become `_`: `disk.reads.dm-0` is registered as `disk.reads.dm_0`. In tags `,` and white
//! space become `_`.
//!
//! **Coming and going.** A stat seen for the first time is added at once; a stat not seen
//! for `stale_after` (or three times its own period, if longer: a module that runs once a
//! minute keeps its stats) is removed with `remove`. The relay pings every beat interval
//! the server gives and, when the connection is lost, reconnects every 5 s and adds its
//! stats again. Values are not buffered: the server asks for the latest when it polls.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `address` | `"127.0.0.1:3000"` | the Pulse server's relay port, `host:port` |
//! | `id` | the host name | how the relay identifies itself (the server's `host` tag) |
//! | `token` | `""` | the server's relay token (`badger server --relay-token`), sent as `id <id> <token>`; `""`: none |
//! | `stale_after` | `"2m"` | a stat not collected for this long (or three of its periods, if longer) is removed from the server |
//! | `interval` | `0` | seconds between updates of the values the relay answers with |
//! | `blacklist` | `[]` | stats this relay does not register (names or globs) |

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use badger_api::duration::Seconds;
use badger_api::plugin::{Batch, BuildError, ConfigError, EmitError, Emitter, EmitterContext, EmitterSpec, PluginConf};
use badger_api::point::HostMeta;
use badger_formats::pulse::{clean_name, clean_tag, Collector, Relay, RelayOptions};

pub static SPEC: EmitterSpec = EmitterSpec {
    name: "pulse",
    aliases: &[],
    summary: "a Pulse relay: the server polls the latest values",
    build,
    counters: false,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_address")]
    address: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    stale_after: Option<Seconds>,
    #[serde(default)]
    token: String,
}

fn default_address() -> String {
    "127.0.0.1:3000".into()
}

/// The emitter's settings, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub address: String,
    pub id: String,
    pub stale_after: Duration,
    pub tags: Vec<String>,
    /// The relay token, `""` for none.
    pub token: String,
}

impl Settings {
    pub fn from_conf(conf: &PluginConf, meta: &HostMeta) -> Result<Settings, ConfigError> {
        let c: Config = conf.parse()?;
        let address = c.address.trim().to_string();
        if address.is_empty() || !address.contains(':') {
            return Err(conf.error("address", format!("{:?}: must be host:port", c.address)));
        }
        let id = c.id.unwrap_or_else(|| meta.hostname.clone());
        let id = if id.trim().is_empty() { "badger".to_string() } else { clean_tag(id.trim()) };
        let stale_after = match c.stale_after {
            None => Duration::from_secs(120),
            Some(Seconds(d)) => d,
        };
        if stale_after < Duration::from_secs(1) {
            return Err(conf.error("stale_after", "must be at least 1s"));
        }
        let token = c.token.trim().to_string();
        if token.chars().any(char::is_whitespace) {
            return Err(conf.error("token", "must not contain white space"));
        }
        Ok(Settings { address, id, stale_after, tags: meta_tags(meta), token })
    }
}

/// What follows `id `: the id, and the relay token after a space when there is one.
fn identity(s: &Settings) -> String {
    if s.token.is_empty() {
        s.id.clone()
    } else {
        format!("{} {}", s.id, s.token)
    }
}

/// The host metadata as `key:value` tags, empty values left out.
pub fn meta_tags(meta: &HostMeta) -> Vec<String> {
    [
        ("datacenter", &meta.datacenter),
        ("region", &meta.region),
        ("zone", &meta.zone),
        ("cluster", &meta.cluster),
        ("hostname", &meta.hostname),
        ("ipv4", &meta.ipv4),
        ("ipv6", &meta.ipv6),
    ]
    .iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| clean_tag(&format!("{k}:{v}")))
    .collect()
}

fn build(ctx: &EmitterContext, conf: &PluginConf) -> Result<Box<dyn Emitter>, BuildError> {
    let s = Settings::from_conf(conf, &ctx.meta)?;
    Ok(Box::new(Pulse::new(&s, RelayOptions::default())))
}

struct Seen {
    last: i64,
    period: i64,
}

/// The emitter: a relay whose collectors read the latest values.
pub struct Pulse {
    relay: Option<Relay>,
    latest: Arc<Mutex<HashMap<String, f64>>>,
    seen: HashMap<String, Seen>,
    tags: Vec<String>,
    stale_after: i64,
}

impl Pulse {
    pub fn new(s: &Settings, options: RelayOptions) -> Pulse {
        Pulse {
            relay: Some(Relay::spawn_with(&s.address, &identity(s), options)),
            latest: Arc::default(),
            seen: HashMap::new(),
            tags: s.tags.clone(),
            stale_after: s.stale_after.as_secs() as i64,
        }
    }

    /// The relay (its connection state and registered stats).
    pub fn relay(&self) -> Option<&Relay> {
        self.relay.as_ref()
    }
}

impl Emitter for Pulse {
    fn emit(&mut self, batch: &Batch<'_>) -> Result<(), EmitError> {
        let Some(relay) = &self.relay else { return Ok(()) };
        let tags: Vec<&str> = self.tags.iter().map(String::as_str).collect();
        let mut now = i64::MIN;
        for payload in batch.payloads() {
            let ts = payload.timestamp();
            now = now.max(ts);
            let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
            let mut added = Vec::new();
            for p in payload.points() {
                let name = clean_name(&p.name);
                latest.insert(name.clone(), p.value.as_f64());
                match self.seen.get_mut(&name) {
                    Some(s) => {
                        if ts > s.last {
                            s.period = ts - s.last;
                            s.last = ts;
                        }
                    }
                    None => {
                        self.seen.insert(name.clone(), Seen { last: ts, period: 1 });
                        added.push(name);
                    }
                }
            }
            drop(latest);
            for name in added {
                let values = self.latest.clone();
                let key = name.clone();
                let collector = Collector::point(move || {
                    values.lock().unwrap_or_else(|e| e.into_inner()).get(&key).copied().unwrap_or(-1.0)
                });
                if let Err(e) = relay.add_collector(&name, &tags, collector) {
                    log::debug!("pulse: cannot add {name}: {e}");
                }
            }
        }
        if now > i64::MIN {
            let stale_after = self.stale_after;
            let gone: Vec<String> = self
                .seen
                .iter()
                .filter(|(_, s)| now - s.last > stale_after.max(3 * s.period))
                .map(|(k, _)| k.clone())
                .collect();
            let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
            for name in gone {
                self.seen.remove(&name);
                latest.remove(&name);
                relay.remove_collector(&name);
            }
        }
        Ok(())
    }

    fn flush(&mut self, _deadline: std::time::Instant) -> Result<(), EmitError> {
        if let Some(r) = self.relay.take() {
            r.close();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::path::Path;

    use super::*;
    use badger_api::matcher::Matcher;
    use badger_api::point::{Payload, Point, Value};

    fn meta() -> HostMeta {
        HostMeta {
            datacenter: "dc1".into(),
            cluster: "web, a".into(),
            hostname: "h1".into(),
            ipv6: "fe80::1".into(),
            ..HostMeta::default()
        }
    }

    fn settings(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_conf(&PluginConf::from_text("pulse", Path::new("conf.d/pulse.conf"), text), &meta())
    }

    #[test]
    fn pulse_settings() {
        let s = settings("{}").unwrap();
        assert_eq!(s.address, "127.0.0.1:3000");
        assert_eq!(s.id, "h1");
        assert_eq!(s.stale_after, Duration::from_secs(120));
        assert_eq!(s.tags, ["datacenter:dc1", "cluster:web__a", "hostname:h1", "ipv6:fe80::1"]);
        let s = settings(r#"{"address": "pulse:3001", "id": "relay 1", "stale_after": "10s", "interval": 5}"#).unwrap();
        assert_eq!(
            (s.address.as_str(), s.id.as_str(), s.stale_after),
            ("pulse:3001", "relay_1", Duration::from_secs(10))
        );
        for (text, key) in [(r#"{"address": "x"}"#, "address"), (r#"{"stale_after": "soon"}"#, "stale_after")] {
            assert_eq!(settings(text).unwrap_err().key.as_deref(), Some(key), "{text}");
        }
        assert_eq!(settings(r#"{"adress": "x:1"}"#).unwrap_err().key.as_deref(), Some("adress"));
    }

    #[test]
    fn pulse_stock_conf_file_loads_with_the_defaults() {
        let path = badger_test_support::fixture::workspace_root().join("conf.d/pulse.conf");
        let text = std::fs::read_to_string(&path).unwrap();
        let s = Settings::from_conf(&PluginConf::from_text("pulse", &path, &text), &meta()).unwrap();
        assert_eq!(s, settings("{}").unwrap());
    }

    fn payload(ts: i64, points: &[(&str, Value)]) -> Arc<Payload> {
        Arc::new(Payload {
            meta: Arc::new(meta()),
            timestamp: ts,
            points: points
                .iter()
                .map(|(n, v)| Point { name: n.to_string(), ..Point::simple("x", "y", "", *v) })
                .collect(),
        })
    }

    #[test]
    fn pulse_emitter_adds_answers_and_removes() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = Settings {
            address: l.local_addr().unwrap().to_string(),
            id: "h1".into(),
            stale_after: Duration::from_secs(2),
            tags: vec!["cluster:c1".into()],
            token: String::new(),
        };
        assert_eq!(identity(&Settings { token: "t0k".into(), ..s.clone() }), "h1 t0k");
        let mut e = Pulse::new(&s, RelayOptions { reconnect_every: Duration::from_millis(100), ..Default::default() });
        let (conn, _) = l.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut w = conn.try_clone().unwrap();
        let mut r = BufReader::new(conn);
        let mut line = || {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            l.trim_end().to_string()
        };
        assert_eq!(line(), "id h1");
        w.write_all(b"ok\nbeat 30\n").unwrap();
        let bl = Matcher::default();
        let batch = vec![payload(100, &[("load.one", Value::Float(0.25)), ("disk.reads.dm-0", Value::Int(3))])];
        e.emit(&Batch::new(&batch, &bl)).unwrap();
        let mut adds = vec![line(), line()];
        adds.sort();
        assert_eq!(adds, ["add disk.reads.dm_0:cluster:c1", "add load.one:cluster:c1"]);
        w.write_all(b"get load.one,disk.reads.dm_0\n").unwrap();
        assert_eq!(line(), "got load.one-load.one:0.2500,disk.reads.dm_0-disk.reads.dm_0:3.0000");
        // The next tick has a new value and no disk stat; three ticks later the disk stat is gone.
        let batch = vec![payload(101, &[("load.one", Value::Float(0.5))])];
        e.emit(&Batch::new(&batch, &bl)).unwrap();
        w.write_all(b"get load.one\n").unwrap();
        assert_eq!(line(), "got load.one-load.one:0.5000");
        let batch = vec![payload(104, &[("load.one", Value::Float(0.5)), ("mem.used", Value::Int(7))])];
        e.emit(&Batch::new(&batch, &bl)).unwrap();
        assert_eq!(line(), "add mem.used:cluster:c1");
        assert_eq!(line(), "remove disk.reads.dm_0");
        e.flush(std::time::Instant::now()).unwrap();
        let mut rest = vec![line(), line()];
        rest.sort();
        assert_eq!(rest, ["remove load.one", "remove mem.used"]);
        assert_eq!(line(), "close");
        drop(TcpStream::connect(l.local_addr().unwrap()));
    }
}
