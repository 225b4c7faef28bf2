//! `graphite`: every point to Graphite's carbon, as plaintext lines over one persistent TCP
//! connection (the default), as plaintext in UDP datagrams, or in carbon's pickle protocol.
//! `graphite_emitter` (Stat Badger's name) takes the original's conf.d file unchanged
//! (`host`, `port`, `interval`, `blacklist`) and speaks pickle, as the original always did.
//!
//! **Paths.** A point's path is `[prefix.]datacenter.region.zone.cluster.hostname.<stat>`,
//! e.g. `dc1.c1.h1.load.one`. Metadata parts that are empty are left out (so are ipv4 and
//! ipv6). In each metadata part, in the stat name and in the prefix, every character
//! outside `[A-Za-z0-9_.-]` (space, `/`, `:`, `;`, `=`, `,`, non-ASCII …) becomes `_`: the
//! mount point in `fs.used./var/lib` gives `fs.used._var_lib`. Dots are kept, so a host
//! name `web1.example.com` spans three levels, as in the original. The prefix also loses
//! dots at either end.
//!
//! **Tags** (`tags: true`, carbon ≥ 1.1): the path is `[prefix.]<measurement>.<field>`
//! followed by `;key=value` for each of the point's tags (`device`, `interface`, `mount`…)
//! and then `datacenter`, `region`, `zone`, `cluster` and `hostname`, e.g.
//! `disk.reads;device=sda;datacenter=dc1;cluster=c1;hostname=h1`. Keys and values are
//! sanitised as above; tags with an empty value are left out; a point tag named `name`
//! (Graphite's own tag for the metric name) is written as `_name`.
//!
//! **Values.** An integer stat is written as an integer, a float in its shortest form
//! (Python's `repr`: `2.09`, `2.0`, `1.5e-07`); a float that is not finite is left out
//! (counted, and logged at most once a minute). The timestamp is the payload's, in whole
//! seconds: `dc1.c1.h1.load.one 2.09 1795263131`.
//!
//! **Wire.** One payload is one outbox record: its lines, or its pickle frames. *tcp*: one
//! connection, opened at the first send and reopened after any error; every connect and
//! write is bounded by `timeout`; before each send the connection is checked for a close
//! from carbon (so records are not written into a dead socket). *udp*: datagrams of whole
//! lines of at most `udp_max_bytes` each; a line longer than that is left out. *pickle*:
//! frames of a 4-byte big-endian length and a pickle (protocol 2) of a list of
//! `(path, (timestamp, value))` tuples, at most 500 points a frame (carbon's own batch
//! size, well under its 1 MiB frame limit), over one connection as for tcp. The pickle is
//! written by the `serde-pickle` crate (its `Value` encoder gives the original's opcodes:
//! PROTO 2, EMPTY_LIST, MARK, BINUNICODE, BININT, BINFLOAT/BININT, TUPLE2, TUPLE2, APPENDS,
//! STOP; only the original's memo opcodes are missing, which no unpickler needs).
//!
//! **Delivery.** Records wait in the outbox (see [`badger_outbox`]) while carbon is away and
//! are sent in order when it is back; what is unsent at shutdown goes to the spool when
//! `spool_dir` is set. Graphite keeps one value per path and timestamp, so the duplicates a
//! retry can cause (a batch that failed half-way is sent again whole) change nothing.
//! Plaintext and pickle have no acknowledgement: records written just before carbon dies
//! can be lost.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `host` | `"127.0.0.1"` | carbon's host name or address |
//! | `port` | `2003`; `2004` for pickle | carbon's port for the protocol (line receiver, UDP receiver or pickle receiver) |
//! | `protocol` | `"tcp"`; `"pickle"` as `graphite_emitter` | `"tcp"` (plaintext over TCP), `"udp"` (plaintext datagrams) or `"pickle"` (pickle over TCP) |
//! | `prefix` | none | first part of every path, e.g. `"servers"`; sanitised like the other parts |
//! | `tags` | `false` | write tagged series (`name;tag=value;…`, carbon ≥ 1.1) with the metadata as tags instead of path parts |
//! | `timeout` | `"5s"` | longest connect or write (a number of seconds or a string like `"500ms"`; at most `"60s"`); looking up `host` is left to the system resolver and its own timeouts |
//! | `udp_max_bytes` | `1400` | udp: bytes per datagram at most (64 to 65507) |
//! | `interval` | `0` | seconds between writes; every payload since the last write is sent |
//! | `blacklist` | `[]` | stats left out of this emitter's output (names or globs) |
//! | *buffering* | | the outbox keys every network emitter shares (`buffer_bytes`, `when_full`, `retry_initial`, `retry_max`, `max_batch_bytes`, `send_budget`, `spool_dir`, `spool_max_bytes`): see the buffering table below |

use badger_formats::graphite as encode;
pub mod transport;

use std::time::{Duration, Instant};

use serde::Deserialize;

pub use encode::{clean_prefix, sanitize, Encoded, Encoder, Protocol};
use transport::{Target, TcpLink, UdpLink};

use badger_api::plugin::{Batch, BuildError, ConfigError, EmitError, Emitter, EmitterContext, EmitterSpec, PluginConf};
use badger_outbox::{Outbox, OutboxConfig, SendError, Transport, OUTBOX_KEYS};

pub static SPEC: EmitterSpec = EmitterSpec {
    name: "graphite",
    aliases: &[ALIAS],
    summary: "Graphite carbon: plaintext over TCP or UDP, or pickle",
    build,
    counters: false,
};

/// Stat Badger's name for this emitter; it speaks pickle by default.
pub const ALIAS: &str = "graphite_emitter";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_UDP_MAX_BYTES: usize = 1400;
const MAX_UDP_BYTES: usize = 65_507;
const MIN_UDP_BYTES: usize = 64;
const LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_host")]
    host: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    protocol: Option<Protocol>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    tags: bool,
    #[serde(default = "default_udp_max_bytes")]
    udp_max_bytes: usize,
}

fn default_host() -> String {
    "127.0.0.1".into()
}

fn default_udp_max_bytes() -> usize {
    DEFAULT_UDP_MAX_BYTES
}

/// `timeout` is one of the keys every plugin takes, so the plugin's own struct never sees
/// it; it is read here apart.
#[derive(Deserialize, Default)]
struct TimeoutConf {
    #[serde(default)]
    timeout: Option<badger_api::duration::Seconds>,
}

/// The emitter's settings, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub protocol: Protocol,
    pub prefix: String,
    pub tags: bool,
    pub timeout: Duration,
    pub udp_max_bytes: usize,
    pub outbox: OutboxConfig,
}

impl Settings {
    /// Reads and checks the config; `conf.name` decides the default protocol.
    pub fn from_conf(conf: &PluginConf) -> Result<Settings, ConfigError> {
        let c: Config = conf.parse_except(OUTBOX_KEYS)?;
        let TimeoutConf { timeout } = conf.parse_shared()?;
        let outbox = OutboxConfig::from_conf(conf)?;
        let protocol = c.protocol.unwrap_or(if conf.name == ALIAS { Protocol::Pickle } else { Protocol::Tcp });
        if c.host.trim().is_empty() {
            return Err(conf.error("host", "must not be empty"));
        }
        if c.port == Some(0) {
            return Err(conf.error("port", "must be 1 to 65535"));
        }
        let timeout = timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            return Err(conf.error("timeout", format!("{timeout:?}: must be more than 0 and at most 60s")));
        }
        if !(MIN_UDP_BYTES..=MAX_UDP_BYTES).contains(&c.udp_max_bytes) {
            return Err(
                conf.error("udp_max_bytes", format!("{}: must be {MIN_UDP_BYTES} to {MAX_UDP_BYTES}", c.udp_max_bytes))
            );
        }
        Ok(Settings {
            host: c.host.trim().to_string(),
            port: c.port.unwrap_or(protocol.default_port()),
            protocol,
            prefix: clean_prefix(c.prefix.as_deref().unwrap_or("")),
            tags: c.tags,
            timeout,
            udp_max_bytes: c.udp_max_bytes,
            outbox,
        })
    }
}

fn build(ctx: &EmitterContext, conf: &PluginConf) -> Result<Box<dyn Emitter>, BuildError> {
    let settings = Settings::from_conf(conf)?;
    let g = Graphite::new(&conf.name, &settings)?;
    let stats: std::sync::Arc<dyn badger_api::telemetry::Source> = g.outbox().stats();
    ctx.telemetry.publish(badger_api::telemetry::Group::Outbox, &conf.name, &stats);
    Ok(Box::new(g))
}

/// The TCP or UDP way to carbon.
enum Link {
    Tcp(TcpLink),
    Udp(UdpLink),
}

impl Link {
    fn set_deadline(&mut self, deadline: Instant) {
        match self {
            Link::Tcp(l) => l.target.deadline = Some(deadline),
            Link::Udp(l) => l.target.deadline = Some(deadline),
        }
    }
}

impl Transport for Link {
    fn send(&mut self, records: &[&[u8]]) -> Result<(), SendError> {
        match self {
            Link::Tcp(l) => l.send(records),
            Link::Udp(l) => l.send(records),
        }
    }
}

/// The emitter: encodes each payload into one record, queues it in the outbox and sends.
pub struct Graphite {
    name: String,
    encoder: Encoder,
    outbox: Outbox,
    link: Link,
    /// Points left out since the last log line about them.
    skipped: u64,
    skip_logged: Option<Instant>,
}

impl Graphite {
    /// An emitter named `name` (its outbox and spool are named after it). Opens no
    /// connection: the first send does.
    pub fn new(name: &str, s: &Settings) -> Result<Graphite, BuildError> {
        let target = Target { host: s.host.clone(), port: s.port, timeout: s.timeout, deadline: None };
        let link = match s.protocol {
            Protocol::Tcp | Protocol::Pickle => Link::Tcp(TcpLink::new(target)),
            Protocol::Udp => Link::Udp(UdpLink::new(target, s.udp_max_bytes)),
        };
        Ok(Graphite {
            name: name.to_string(),
            encoder: Encoder::new(s.protocol, &s.prefix, s.tags, s.udp_max_bytes),
            outbox: Outbox::new(name, &s.outbox)?,
            link,
            skipped: 0,
            skip_logged: None,
        })
    }

    /// The outbox's counters.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    fn log_skipped(&mut self) {
        if self.skipped == 0 {
            return;
        }
        let now = Instant::now();
        if self.skip_logged.is_some_and(|t| now.saturating_duration_since(t) < LOG_EVERY) {
            return;
        }
        self.skip_logged = Some(now);
        let why = match self.encoder.protocol() {
            Protocol::Udp => "values that are not finite numbers, or lines longer than udp_max_bytes",
            _ => "values that are not finite numbers",
        };
        log::warn!("emitter \"{}\": {} points left out since the last line: {why}", self.name, self.skipped);
        self.skipped = 0;
    }
}

impl Emitter for Graphite {
    fn emit(&mut self, batch: &Batch<'_>) -> Result<(), EmitError> {
        for payload in batch.payloads() {
            let mut record = Vec::new();
            let done = self.encoder.encode(&payload, &mut record);
            self.skipped += done.skipped;
            if done.points > 0 {
                self.outbox.push(record, done.points);
            }
        }
        self.log_skipped();
        self.outbox.pump(&mut self.link);
        Ok(())
    }

    fn idle(&mut self) {
        if !self.outbox.is_empty() {
            self.outbox.pump(&mut self.link);
        }
    }

    fn flush(&mut self, deadline: Instant) -> Result<(), EmitError> {
        self.link.set_deadline(deadline);
        self.outbox.close(&mut self.link, deadline);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn settings(name: &str, text: &str) -> Result<Settings, ConfigError> {
        Settings::from_conf(&PluginConf::from_text(name, Path::new("conf.d/x.conf"), text))
    }

    #[test]
    fn graphite_defaults() {
        let s = settings("graphite", "{}").unwrap();
        assert_eq!(
            s,
            Settings {
                host: "127.0.0.1".into(),
                port: 2003,
                protocol: Protocol::Tcp,
                prefix: String::new(),
                tags: false,
                timeout: Duration::from_secs(5),
                udp_max_bytes: 1400,
                outbox: OutboxConfig::default(),
            }
        );
        assert_eq!(settings("graphite", r#"{"protocol": "pickle"}"#).unwrap().port, 2004);
        assert_eq!(settings("graphite", r#"{"protocol": "udp"}"#).unwrap().port, 2003);
    }

    #[test]
    fn graphite_emitter_alias_takes_the_original_file_and_speaks_pickle() {
        let original = "{\n    \"interval\": 0,\n    \"blacklist\": [],\n    \"host\": \"127.0.0.1\",\n    // use the pickle/bulk port\n    \"port\": 2004\n}\n";
        let s = settings(ALIAS, original).unwrap();
        assert_eq!((s.protocol, s.port, s.host.as_str()), (Protocol::Pickle, 2004, "127.0.0.1"));
        assert_eq!(settings(ALIAS, "{}").unwrap().port, 2004);
        assert_eq!(settings(ALIAS, r#"{"protocol": "tcp"}"#).unwrap().port, 2003);
    }

    #[test]
    fn graphite_keys_are_read() {
        let s = settings(
            "graphite",
            r#"{"host": "carbon", "port": 2103, "protocol": "udp", "prefix": "a b.", "tags": true,
                "timeout": "250ms", "udp_max_bytes": 512, "retry_max": "5s", "interval": 5}"#,
        )
        .unwrap();
        assert_eq!((s.host.as_str(), s.port, s.protocol), ("carbon", 2103, Protocol::Udp));
        assert_eq!((s.prefix.as_str(), s.tags, s.timeout), ("a_b", true, Duration::from_millis(250)));
        assert_eq!((s.udp_max_bytes, s.outbox.retry_max), (512, Duration::from_secs(5)));
        assert_eq!(settings("graphite", r#"{"timeout": 2}"#).unwrap().timeout, Duration::from_secs(2));
    }

    #[test]
    fn graphite_config_errors_name_line_and_key() {
        let e = settings("graphite", "{\n\"protocol\": \"http\"}").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("protocol")));
        assert!(e.message.contains("unknown variant `http`, expected one of `tcp`, `udp`, `pickle`"), "{e}");
        let e = settings("graphite", "{\"host\": \"h\",\n\"hots\": 1}").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("hots")));
        let e = settings("graphite", "{\n\"port\": 70000}").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("port"));
        for (text, key) in [
            (r#"{"port": 0}"#, "port"),
            (r#"{"host": " "}"#, "host"),
            (r#"{"timeout": "2m"}"#, "timeout"),
            (r#"{"timeout": 0}"#, "timeout"),
            (r#"{"udp_max_bytes": 70000}"#, "udp_max_bytes"),
            (r#"{"udp_max_bytes": 10}"#, "udp_max_bytes"),
            (r#"{"buffer_bytes": 10}"#, "buffer_bytes"),
        ] {
            let e = settings("graphite", text).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
        }
    }

    #[test]
    fn graphite_stock_conf_file_loads_with_the_defaults() {
        let path = badger_test_support::fixture::workspace_root().join("conf.d/graphite.conf");
        let text = std::fs::read_to_string(&path).unwrap();
        let s = Settings::from_conf(&PluginConf::from_text("graphite", &path, &text)).unwrap();
        assert_eq!(s, settings("graphite", "{}").unwrap());
    }
}
