//! `influxdb`: InfluxDB line protocol over HTTP(S), to InfluxDB 1.x or 2.x.
//!
//! Every payload is sent, buffered, retried and optionally spooled to disk by the
//! [outbox](badger_outbox).
//!
//! Version 1 writes `POST <url>/write?db=<database>[&rp=<retention_policy>]&precision=s`
//! with the user and password as HTTP basic auth; version 2 writes
//! `POST <url>/api/v2/write?org=<org>&bucket=<bucket>&precision=s` with
//! `Authorization: Token <token>` (InfluxDB 2.x, and 1.8+ through its 2.x API). Credentials
//! never go into a URL and never appear in a log line or an error. Bodies are gzipped
//! (`Content-Encoding: gzip`) unless `gzip` is false. With version 1 the database is created
//! (`CREATE DATABASE "<database>"`, quoted) before the first write and again whenever a write
//! answers 404 "database not found", unless `create_database` is false.
//!
//! One payload is one record of the outbox: its lines, one per measurement and tag set
//! (see [`line`]). Tags: `cluster`, `datacenter`, `host` (the hostname), `region`, `zone`
//! when not empty, plus the point's own (`device`, `interface`, `cpu`, `path`, …); fields:
//! the point's field (`reads`); integers as integers (`i`), floats as floats; timestamp:
//! the payload's, in seconds.
//!
//! What an answer means: 2xx sent; 400, 422 (bad points) and 413 (too large) are rejected
//! for good: dropped, counted and logged with the server's error text; 401/403 (wrong
//! credentials) keep the data and retry, with a log line that names the user (never the
//! password); 404 "database not found" creates the database and writes again; 5xx, other
//! statuses, timeouts and refused connections keep the data and retry with backoff.
//!
//! `influxdb08_emitter`, the original's emitter for InfluxDB 0.8, is an alias: its conf file
//! (`host`, `port`, `database`, `user`, `pass`, `interval`, `blacklist`) loads unchanged. The
//! 0.8 JSON API no longer exists in any InfluxDB, so a warning says so once and the data goes
//! as line protocol to the 1.x API of the same server.
//!
//! TLS (`https://` URLs): rustls with the *ring* provider; certificates are verified
//! against the host's trust store (`/etc/ssl/certs`, through rustls-platform-verifier), so
//! an internal CA installed with `update-ca-certificates` just works.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `interval` | `0` | seconds between writes; every payload since the last write is sent |
//! | `blacklist` | `[]` | stats left out of this emitter's output (names or globs) |
//! | `timeout` | `"5s"` | how long one HTTP request may take, connecting, sending and receiving included |
//! | `version` | `1` | `1`: InfluxDB 1.x API (`/write`); `2`: InfluxDB 2.x API (`/api/v2/write`) |
//! | `url` | `"http://127.0.0.1:8086"` | the server: `http://` or `https://`, host, port, optionally a path prefix; no credentials and no query string |
//! | `host`, `port` | `"127.0.0.1"`, `8086` | the original's keys: given instead of `url`, the URL is `http://<host>:<port>` |
//! | `database` | `"badger"` | version 1: the database written to |
//! | `retention_policy` | `""` | version 1: the retention policy (`rp`); empty means the database's default |
//! | `user` (or `username`) | none | version 1: user name, sent by HTTP basic auth |
//! | `pass` (or `password`) | none | version 1: the user's password (never logged) |
//! | `token` | none | version 2: API token, sent as `Authorization: Token …` (never logged) |
//! | `org` | none | version 2: organization (required) |
//! | `bucket` | the `database` value | version 2: bucket |
//! | `gzip` | `true` | gzip request bodies |
//! | `create_database` | `true` | version 1: create the database before the first write and when a write says it is missing (version 2: ignored; create the bucket in InfluxDB) |
//! | `naming` | `"badger"` | `"badger"`: badger's measurement, field and tag names; `"telegraf"`: those of Telegraf's inputs (table below) |
//! | *buffering* | | the outbox keys every network emitter shares (`buffer_bytes`, `when_full`, `retry_initial`, `retry_max`, `max_batch_bytes`, `send_budget`, `spool_dir`, `spool_max_bytes`): see the buffering table below |
//!
//! # `naming: "telegraf"`
//!
//! The same stats under the names of Telegraf's `cpu`, `mem`, `swap`, `system`, `kernel`,
//! `processes`, `diskio`, `disk`, `net` and `procstat` inputs, with Telegraf's tag names, so
//! dashboards built on Telegraf find their series. Every line also has `host` (and the
//! other metadata tags that are set).
//!
//! | badger stat | Telegraf measurement.field (tags) | same quantity? |
//! |---|---|---|
//! | `cpu.user`, `nice`, `system`, `idle`, `iowait`, `irq`, `softirq`, `steal`, `guest`, `guest_nice` | `cpu.usage_user` … `cpu.usage_guest_nice` (`cpu=cpu-total`) | yes: percent, float |
//! | `cpu.<state>.cpuN` | `cpu.usage_<state>` (`cpu=cpuN`) | yes |
//! | `cpu.procs_running`, `cpu.procs_blocked` | `processes.running`, `processes.blocked` | nearly: badger's are the kernel's runnable and blocked task counts (`/proc/stat`), Telegraf counts processes by state |
//! | `cpu.procs_forked_per_sec` | `kernel.processes_forked` | **rate** (forks/s); Telegraf's is a counter since boot |
//! | `cpu.ctxt_per_sec` | `kernel.context_switches` | **rate**; Telegraf's is a counter since boot |
//! | `cpu.cores` | `system.n_cpus` | yes |
//! | `load.one`, `load.five`, `load.fifteen` | `system.load1`, `system.load5`, `system.load15` | yes |
//! | `system.uptime` | `system.uptime` | yes (seconds; a float, where Telegraf's is an integer) |
//! | `system.boot_time` | `kernel.boot_time` | yes (epoch seconds) |
//! | `mem.memtotal`, `memfree`, `memavailable`, `buffers`, `cached`, `swapcached`, `swaptotal`, `swapfree`, `active`, `inactive`, `active_anon`, `inactive_anon`, `active_file`, `inactive_file`, `unevictable`, `dirty`, `writeback`, `writebacktmp`, `mapped`, `shmem`, `slab`, `sreclaimable`, `sunreclaim`, `pagetables`, `commitlimit`, `committed_as`, `vmalloctotal`, `vmallocused`, `vmallocchunk`, `hugepages_total`, `hugepages_free`, `hugepagesize`, `hightotal`, `highfree`, `lowtotal`, `lowfree` | `mem.total`, `free`, `available`, `buffered`, `cached`, `swap_cached`, `swap_total`, `swap_free`, `active`, `inactive`, `active_anon`, `inactive_anon`, `active_file`, `inactive_file`, `unevictable`, `dirty`, `write_back`, `write_back_tmp`, `mapped`, `shared`, `slab`, `sreclaimable`, `sunreclaim`, `page_tables`, `commit_limit`, `committed_as`, `vmalloc_total`, `vmalloc_used`, `vmalloc_chunk`, `huge_pages_total`, `huge_pages_free`, `huge_page_size`, `high_total`, `high_free`, `low_total`, `low_free` | yes (bytes; huge page counts are counts) |
//! | `mem.used`, `mem.used_percent` | `mem.used`, `mem.used_percent` | as badger's memory module computes them |
//! | `mem.swap_used`, `mem.swap_used_percent` | `swap.used`, `swap.used_percent` | yes |
//! | `disk.reads`, `writes`, `reads_merged`, `writes_merged`, `read_time`, `write_time`, `io_time`, `io_weighted_time` `.<d>` | `diskio.reads`, `writes`, `merged_reads`, `merged_writes`, `read_time`, `write_time`, `io_time`, `weighted_io_time` (`name=<d>`) | **rates** (per second; the times in ms per second); Telegraf's are counters since boot |
//! | `disk.read_thruput`, `disk.write_thruput` `.<d>` | `diskio.read_bytes`, `diskio.write_bytes` (`name=<d>`) | **rates** (bytes/s); Telegraf's are counters |
//! | `disk.io.<d>` | `diskio.iops_in_progress` (`name=<d>`) | yes (in flight now) |
//! | `fs.total`, `used`, `free`, `used_percent`, `inodes_total`, `inodes_used`, `inodes_free`, `inodes_used_percent` `.<mount>` | `disk.` the same fields (`path`, `device` without `/dev/`, `fstype`) | yes |
//! | `net.rx_bytes`, `tx_bytes`, `rx_packets`, `tx_packets`, `rx_errs`, `tx_errs`, `rx_drop`, `tx_drop` `.<i>` | `net.bytes_recv`, `bytes_sent`, `packets_recv`, `packets_sent`, `err_in`, `err_out`, `drop_in`, `drop_out` (`interface=<i>`) | **rates**; Telegraf's are counters |
//! | `proc.mem_resident.<n>`, `proc.thread_count.<n>` | `procstat.memory_rss`, `procstat.num_threads` (`process_name=<n>`) | yes |
//! | `proc.voluntary_ctxt_per_sec.<n>`, `proc.nonvoluntary_ctxt_per_sec.<n>` | `procstat.voluntary_context_switches`, `procstat.involuntary_context_switches` (`process_name=<n>`) | **rates**; Telegraf's are counters |
//! | `proc.count.<n>` | `procstat_lookup.pid_count` (`process_name=<n>`) | yes |
//!
//! **No Telegraf twin**: these keep their badger field name and go to the Telegraf
//! measurement of their group, beside their relatives (no Telegraf name is ever used for a
//! different quantity, and nothing is dropped): `cpu.ctxt_per_sec_per_core`, `cpu.speed`,
//! `cpu.cache_size` → `cpu` (`cpu=cpu-total`); `load.runnable_entities`,
//! `load.total_entities` → `system`; `disk.read_sectors`, `disk.write_sectors` → `diskio`
//! (`name`), `disk.count` → `diskio` (no `name`), `disk.info` → `diskio.info` (`name`, and its
//! `major`, `minor`, `path`, `wwn`, `model`, `serial`, `revision` tags);
//! `filesystem.readonly`, `filesystem.device_error` → `disk` (`path`, `device` without
//! `/dev/`, `fstype`); `net.rx_fifo`, `rx_frame`,
//! `rx_compressed`, `rx_multicast`, `tx_fifo`, `tx_colls`, `tx_carrier`, `tx_compressed`,
//! `rx_bits`, `tx_bits` → `net`; the other meminfo keys (`mlocked`, `anonpages`,
//! `kernelstack`, `hugepages_rsvd`, `directmap4k`, …) → `mem`; `proc.cpu` → `procstat.cpu`
//! (percent of the whole machine, 100 = every core busy, where Telegraf's `cpu_usage` is
//! percent of one core, so it is not renamed). Stats of other measurements pass unchanged.
//!
//! **Rates, not counters.** badger sends per-second rates where Telegraf sends counters
//! since boot (the rows marked **rate**). A Telegraf dashboard graphs those with
//! `non_negative_derivative(mean("reads"), 1s)`; on badger's data the same panel needs
//! `mean("reads")`. Gauges (cpu, memory, load, filesystems, in-flight I/O) need no change.
//! The rates are floats where Telegraf's counters are integers, and InfluxDB fixes a field's
//! type per shard: write badger's telegraf-named data to its own database (or retention
//! policy), not into one Telegraf writes the same measurements to, or those points are
//! rejected (HTTP 400 "field type conflict").

pub mod http;
use badger_formats::influx as line;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use self::http::{Api, HttpTransport, Target};
pub use self::line::Naming;
use badger_api::plugin::{Batch, BuildError, ConfigError, EmitError, Emitter, EmitterContext, EmitterSpec, PluginConf};
use badger_outbox::{Outbox, OutboxConfig, OutboxStats, OUTBOX_KEYS};

pub static SPEC: EmitterSpec = EmitterSpec {
    name: "influxdb",
    aliases: &["influxdb08_emitter"],
    summary: "InfluxDB 1.x/2.x line protocol over HTTP(S), buffered, retried, optional disk spool",
    build,
    counters: false,
};

/// The original's name for this emitter.
const ALIAS_08: &str = "influxdb08_emitter";
const DEFAULT_URL: &str = "http://127.0.0.1:8086";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    version: Option<u8>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default, deserialize_with = "de_port")]
    port: Option<u16>,
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    retention_policy: Option<String>,
    #[serde(default, alias = "username")]
    user: Option<String>,
    #[serde(default, alias = "password")]
    pass: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    bucket: Option<String>,
    #[serde(default)]
    gzip: Option<bool>,
    #[serde(default)]
    create_database: Option<bool>,
    #[serde(default)]
    naming: Naming,
}

/// What the config of an `influxdb` emitter says, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub target: Target,
    pub naming: Naming,
    pub outbox: OutboxConfig,
}

impl Settings {
    pub fn from_conf(conf: &PluginConf) -> Result<Settings, ConfigError> {
        let c: Config = conf.parse_except(OUTBOX_KEYS)?;
        let outbox = OutboxConfig::from_conf(conf)?;
        let timeout = conf.timeout_or(DEFAULT_TIMEOUT)?;
        let base_url = base_url(&c, conf)?;
        let non_empty = |key: &str, v: &Option<String>| match v {
            Some(s) if s.is_empty() => Err(conf.error(key, "must not be empty (leave the key out for the default)")),
            _ => Ok(()),
        };
        non_empty("database", &c.database)?;
        non_empty("bucket", &c.bucket)?;
        let database = c.database.clone().unwrap_or_else(|| "badger".into());
        let api = match c.version.unwrap_or(1) {
            1 => {
                for key in ["token", "org", "bucket"] {
                    let set = match key {
                        "token" => c.token.is_some(),
                        "org" => c.org.is_some(),
                        _ => c.bucket.is_some(),
                    };
                    if set {
                        return Err(conf.error(key, "is a version 2 setting; version 1 uses database, user and pass"));
                    }
                }
                if c.pass.is_some() && c.user.is_none() {
                    return Err(conf.error("pass", "a password needs a user"));
                }
                Api::V1 {
                    database,
                    retention_policy: c.retention_policy.unwrap_or_default(),
                    user: c.user.filter(|u| !u.is_empty()),
                    password: c.pass,
                    create_database: c.create_database.unwrap_or(true),
                }
            }
            2 => {
                if c.user.is_some() || c.pass.is_some() {
                    let key = if c.user.is_some() { "user" } else { "pass" };
                    return Err(conf.error(key, "version 2 authenticates with token, not user and pass"));
                }
                if c.retention_policy.as_deref().is_some_and(|r| !r.is_empty()) {
                    return Err(conf.error("retention_policy", "is a version 1 setting; version 2 writes to a bucket"));
                }
                let org = match c.org {
                    Some(o) if !o.is_empty() => o,
                    _ => {
                        return Err(ConfigError::new(
                            &conf.file,
                            conf.line_of("version"),
                            Some("org".into()),
                            "version 2 needs an org",
                        ))
                    }
                };
                Api::V2 { org, bucket: c.bucket.unwrap_or(database), token: c.token.filter(|t| !t.is_empty()) }
            }
            v => return Err(conf.error("version", format!("{v} is not a version: use 1 or 2"))),
        };
        Ok(Settings {
            target: Target { base_url, api, gzip: c.gzip.unwrap_or(true), timeout },
            naming: c.naming,
            outbox,
        })
    }
}

/// The server's base URL from `url`, or from the original's `host` and `port`.
fn base_url(c: &Config, conf: &PluginConf) -> Result<String, ConfigError> {
    if let Some(url) = &c.url {
        if c.host.is_some() || c.port.is_some() {
            let key = if c.host.is_some() { "host" } else { "port" };
            return Err(conf.error(key, "give either url, or host and port, not both"));
        }
        let url = url.trim();
        let lower = url.to_ascii_lowercase();
        let scheme = if lower.starts_with("http://") {
            7
        } else if lower.starts_with("https://") {
            8
        } else {
            return Err(conf.error("url", format!("\"{url}\" is not an http:// or https:// URL")));
        };
        let rest = url.get(scheme..).unwrap_or_default();
        let authority = rest.split('/').next().unwrap_or("");
        if authority.contains('@') {
            return Err(
                conf.error("url", "must not hold credentials (they would show in logs): use user and pass, or token")
            );
        }
        if authority.is_empty() {
            return Err(conf.error("url", format!("\"{url}\" has no host")));
        }
        if rest.contains(['?', '#']) {
            return Err(conf.error("url", "must not have a query string: the emitter adds its own"));
        }
        return Ok(url.trim_end_matches('/').to_string());
    }
    if c.host.is_none() && c.port.is_none() {
        return Ok(DEFAULT_URL.to_string());
    }
    let host = c.host.as_deref().unwrap_or("127.0.0.1").trim();
    if host.is_empty() || host.contains(['/', '@', '?', '#', ' ']) {
        return Err(conf.error("host", format!("\"{host}\" is not a host name or address (use url for a full URL)")));
    }
    let port = c.port.unwrap_or(8086);
    if host.contains(':') && !host.starts_with('[') {
        Ok(format!("http://[{host}]:{port}"))
    } else {
        Ok(format!("http://{host}:{port}"))
    }
}

fn build(ctx: &EmitterContext, conf: &PluginConf) -> Result<Box<dyn Emitter>, BuildError> {
    let e = InfluxDb::from_conf(conf)?;
    // Its buffer's counters, for the `internal` module and the agent's own metrics.
    let stats: Arc<dyn badger_api::telemetry::Source> = e.stats();
    ctx.telemetry.publish(badger_api::telemetry::Group::Outbox, &conf.name, &stats);
    Ok(Box::new(e))
}

static WARNED_08: AtomicBool = AtomicBool::new(false);

/// The `influxdb` emitter.
pub struct InfluxDb {
    outbox: Outbox,
    transport: HttpTransport,
    naming: Naming,
    /// Where a payload is encoded before it is copied into the outbox.
    scratch: String,
    /// Listed as `influxdb08_emitter`.
    alias_08: bool,
    /// Whether [`InfluxDb::on_start`] ran.
    started: bool,
}

impl InfluxDb {
    /// Builds the emitter from its conf file (no request is made here: the database is
    /// created before the first write).
    pub fn from_conf(conf: &PluginConf) -> Result<InfluxDb, BuildError> {
        let s = Settings::from_conf(conf)?;
        let transport = HttpTransport::new(&conf.name, &s.target);
        let outbox = Outbox::new(&conf.name, &s.outbox)?;
        Ok(InfluxDb {
            outbox,
            transport,
            naming: s.naming,
            scratch: String::new(),
            alias_08: conf.name == ALIAS_08,
            started: false,
        })
    }

    /// Lines about the start, logged from the emitter's thread when it first runs: `build`
    /// runs before badger has set up logging.
    fn on_start(&mut self) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        if self.alias_08 && !WARNED_08.swap(true, Ordering::Relaxed) {
            log::warn!(
                "emitter \"{ALIAS_08}\": InfluxDB 0.8's JSON API is gone; writing line protocol to the InfluxDB 1.x API instead ({})",
                self.transport.write_url()
            );
        }
        log::debug!(
            "emitter \"{}\": writing to {} ({:?} names)",
            self.outbox.name(),
            self.transport.write_url(),
            self.naming
        );
    }

    /// The outbox's counters (sent, dropped, rejected, queued …).
    pub fn stats(&self) -> Arc<OutboxStats> {
        self.outbox.stats()
    }

    /// Records waiting to be sent.
    pub fn queued(&self) -> u64 {
        self.outbox.len()
    }
}

impl Emitter for InfluxDb {
    fn emit(&mut self, batch: &Batch<'_>) -> Result<(), EmitError> {
        self.on_start();
        for p in batch.payloads() {
            self.scratch.clear();
            let points = line::encode_payload(&mut self.scratch, &p, self.naming);
            if points > 0 {
                // An exact-size copy: the outbox counts a record's length against
                // buffer_bytes, so it must not carry spare capacity.
                self.outbox.push(self.scratch.as_bytes().to_vec(), points);
            }
        }
        // Failures are the outbox's to log (rate-limited) and retry.
        self.outbox.pump(&mut self.transport);
        Ok(())
    }

    fn idle(&mut self) {
        self.on_start();
        self.outbox.pump(&mut self.transport);
    }

    fn flush(&mut self, deadline: Instant) -> Result<(), EmitError> {
        self.on_start();
        self.transport.set_deadline(Some(deadline));
        self.outbox.close(&mut self.transport, deadline);
        self.transport.set_deadline(None);
        Ok(())
    }
}

fn de_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    struct PortVisitor;
    impl Visitor<'_> for PortVisitor {
        type Value = Option<u16>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a port number (1-65535), as a number or a string")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            match u16::try_from(v) {
                Ok(p) if p > 0 => Ok(Some(p)),
                _ => Err(E::custom(format!("{v} is not a port number (1-65535)"))),
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Err(E::custom(format!("{v} is not a port number (1-65535)")))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match v.trim().parse::<u64>() {
                Ok(n) => self.visit_u64(n),
                Err(_) => Err(E::custom(format!("\"{v}\" is not a port number (1-65535)"))),
            }
        }
    }
    d.deserialize_any(PortVisitor)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn publishes_its_buffer_counters() {
        let ctx = EmitterContext::default();
        let conf = PluginConf::from_text("influxdb", Path::new("conf.d/influxdb.conf"), "{}");
        let _e = build(&ctx, &conf).expect("builds");
        let read = ctx.telemetry.read();
        assert!(
            read.iter().any(|r| r.name == "influxdb" && r.field == "queued_records"),
            "the outbox's counters are published: {read:?}"
        );
    }

    fn settings(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_conf(&PluginConf::from_text("influxdb", Path::new("conf.d/influxdb.conf"), text))
    }

    fn err(text: &str) -> ConfigError {
        match settings(text) {
            Ok(s) => panic!("expected an error, got {s:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn defaults() {
        let s = settings("{}").unwrap();
        assert_eq!(s.target.base_url, "http://127.0.0.1:8086");
        assert!(s.target.gzip);
        assert_eq!(s.target.timeout, Duration::from_secs(5));
        assert_eq!(s.naming, Naming::Badger);
        assert_eq!(s.outbox, OutboxConfig::default());
        let Api::V1 { database, retention_policy, user, password, create_database } = &s.target.api else {
            panic!("v1")
        };
        assert_eq!((database.as_str(), retention_policy.as_str()), ("badger", ""));
        assert_eq!((user, password, *create_database), (&None, &None, true));
    }

    #[test]
    fn the_shipped_conf_is_the_defaults() {
        let file = badger_test_support::fixture::workspace_root().join("conf.d/influxdb.conf");
        let text = std::fs::read_to_string(&file).unwrap();
        let shipped = Settings::from_conf(&PluginConf::from_text("influxdb", &file, &text)).unwrap();
        let defaults = settings("{}").unwrap();
        assert_eq!(format!("{shipped:?}"), format!("{defaults:?}"));
        // Every key of the doc table is in the file.
        for key in ["interval", "blacklist", "timeout", "version", "url", "\"host\"", "\"port\"", "database"]
            .into_iter()
            .chain(["retention_policy", "user", "pass", "token", "org", "bucket", "gzip", "create_database", "naming"])
            .chain(OUTBOX_KEYS.iter().copied())
        {
            assert!(text.contains(key), "conf.d/influxdb.conf lacks {key}");
        }
    }

    #[test]
    fn the_originals_conf_loads() {
        let s = settings(
            r#"{"interval": 0, "blacklist": [], "host": "10.1.2.3", "port": "8086", "database": "system_stats",
                "user": "test", "pass": "test"}"#,
        )
        .unwrap();
        assert_eq!(s.target.base_url, "http://10.1.2.3:8086");
        let Api::V1 { database, user, .. } = &s.target.api else { panic!("v1") };
        assert_eq!((database.as_str(), user.as_deref()), ("system_stats", Some("test")));
        assert_eq!(settings(r#"{"host": "::1", "port": 9}"#).unwrap().target.base_url, "http://[::1]:9");
    }

    #[test]
    fn every_key() {
        let s = settings(
            r#"{"url": "https://influx.example:8443/prefix/", "database": "db", "retention_policy": "rp",
                "username": "u", "password": "p", "gzip": false, "create_database": false, "naming": "telegraf",
                "timeout": "2s", "buffer_bytes": "1MiB", "retry_max": "2s"}"#,
        )
        .unwrap();
        assert_eq!(s.target.base_url, "https://influx.example:8443/prefix");
        assert!(!s.target.gzip);
        assert_eq!(s.target.timeout, Duration::from_secs(2));
        assert_eq!(s.naming, Naming::Telegraf);
        assert_eq!(s.outbox.buffer_bytes, 1 << 20);
        // The shipped file with only the version changed still loads (create_database is ignored).
        let s =
            settings(r#"{"version": 2, "org": "o", "token": "t", "timeout": 1.5, "create_database": true}"#).unwrap();
        let Api::V2 { org, bucket, token } = &s.target.api else { panic!("v2") };
        assert_eq!((org.as_str(), bucket.as_str(), token.as_deref()), ("o", "badger", Some("t")));
        assert_eq!(s.target.timeout, Duration::from_millis(1500));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (r#"{"url": "http://u:secret@h:8086"}"#, "url", "credentials"),
            (r#"{"url": "h:8086"}"#, "url", "not an http"),
            (r#"{"url": "http://h?db=x"}"#, "url", "query string"),
            (r#"{"url": "http://h", "host": "h"}"#, "host", "either url"),
            (r#"{"port": 70000}"#, "port", "not a port"),
            (r#"{"version": 3}"#, "version", "use 1 or 2"),
            (r#"{"version": 2}"#, "org", "needs an org"),
            (r#"{"version": 2, "org": "o", "user": "u"}"#, "user", "token"),
            (r#"{"token": "t"}"#, "token", "version 2 setting"),
            (r#"{"pass": "p"}"#, "pass", "needs a user"),
            (r#"{"database": ""}"#, "database", "must not be empty"),
            (r#"{"naming": "prometheus"}"#, "naming", "unknown variant"),
            (r#"{"timeout": 0}"#, "timeout", "more than 0"),
            (r#"{"gzp": true}"#, "gzp", "unknown field"),
            (r#"{"buffer_bytes": 10}"#, "buffer_bytes", "too small"),
        ];
        for (text, key, msg) in cases {
            let e = err(text);
            assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
            assert!(e.message.contains(msg), "{text}: {e}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }
}
