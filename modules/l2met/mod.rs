//! `l2met`: log lines become metrics as l2met makes them, from an HTTP log drain, syslog and files.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `l2met.<name>.count` | | int | gauge | a measurement (`measure#<name>=…`, `measure.<name>=…`, router `connect`/`service`/`bytes`): how many values its bucket got |
//! | `l2met.<name>.sum` | `<u>` | float | gauge | the sum of the values |
//! | `l2met.<name>.min` | `<u>` | float | gauge | the smallest value |
//! | `l2met.<name>.max` | `<u>` | float | gauge | the largest value |
//! | `l2met.<name>.mean` | `<u>` | float | gauge | sum ÷ count |
//! | `l2met.<name>.median` | `<u>` | float | gauge | the value at index ⌊n/2⌋ of the values sorted ascending (the upper median) |
//! | `l2met.<name>.perc95` | `<u>` | float | gauge | the value at index ⌊n·0.95⌋ |
//! | `l2met.<name>.perc99` | `<u>` | float | gauge | the value at index ⌊n·0.99⌋ |
//! | `l2met.<name>` | `<u>` | float | gauge | a counter (`count#<name>=…`): the sum of its values; a sample (`sample#<name>=…`): the last value received |
//! | `l2met_receiver.buckets` | | int | gauge | buckets open now (waiting for their window to close) |
//! | `l2met_receiver.lines_per_sec` | | float | rate | log lines read from every input |
//! | `l2met_receiver.values_per_sec` | | float | rate | values added to buckets |
//! | `l2met_receiver.dropped_per_sec` | | float | rate | values dropped because their bucket was more than `deadline` windows old when they came (l2met's `receiver.drop`) or when it was to be sent, or more than an hour ahead |
//! | `l2met_receiver.overflow_per_sec` | | float | rate | values dropped because `max_buckets` buckets were open |
//! | `l2met_receiver.l10_per_sec` | | float | rate | messages logplex said it dropped (`Error L10` lines; l2met's `logplex.l10`) |
//! | `l2met_receiver.bad_lines_per_sec` | | float | rate | lines ignored because their logfmt does not scan (an unterminated quote) |
//! | `l2met_receiver.requests_per_sec` | | float | rate | drain requests accepted (200) |
//! | `l2met_receiver.rejected_per_sec` | | float | rate | drain requests refused (400, 401, 413) |
//!
//! `<name>` is the metric's name from the line (with `prefix.` in front when a prefix is
//! set; router lines give `router.connect`, `router.service`, `router.bytes`), `<u>` the units
//! written after its number (`measure#db.latency=4ms` → `ms`). When the line has a `source=`,
//! every stat of its metrics ends in `.<source>` and carries the tag `source`: e.g.
//! `l2met.db.latency.perc95.db1`. Points have measurement `l2met` and the field `<name>.count`,
//! `<name>.sum`, … or `<name>`.
//!
//! **Parsing**, exactly as l2met 2 (ryandotsmith/l2met): the message is split into logfmt
//! pairs (kr/logfmt: a key is a run of bytes above space other than `"` and `=`; `k=v`,
//! bare `k`, `k="quoted \" value"`); a line whose logfmt does not scan is ignored whole.
//! Every pair is checked against `measure#NAME`, `measure.NAME` (measurements), `count#NAME`
//! (counters), `sample#NAME` (samples) and, when PROCID is `router`, the keys `connect`,
//! `service` and `bytes`; several metrics per line are all taken. A value is read from its
//! start: digits with at most one `.` (`.5` is 0.5, `1.5.3ms` is 1.5); a bare key counts 1;
//! a value with no leading digit (`-3`, `abc`, `ms4`) is ignored, so there are no negative
//! numbers. The units are the value without its leading and trailing digits and dots
//! (`100GB` → `GB`; `10` has none). The first `source=` of the line applies to all of its
//! metrics. Other keys are ignored, and so are metrics without a name (`measure#=1`, which
//! l2met kept). A logplex `Error L10 … : N messages dropped` line (PROCID `logplex`) gives no
//! metric but counts N.
//!
//! **Buckets**: values are merged by (window, resolution, kind, name, units, source), so the
//! same name with other units or another source is another series. The window is the line's
//! RFC 3339 timestamp (the receive time when it has none or it does not parse) rounded down
//! to a multiple of the resolution. A value whose window is more than `deadline` windows old
//! (l2met's rule: (round(now) − window) ÷ resolution, rounded to the nearest window) is
//! dropped and counted. A bucket's points go out with the first collection at least
//! `flush_delay` after its window closed, so the payload's timestamp is the end of the
//! window plus that delay (l2met gave the start of the window as `measure_time`). A closed
//! bucket that is still unsent more than `deadline` windows (plus `flush_delay` and a second)
//! after it closed, after a stall or with a module `interval` longer than that, is dropped and
//! counted instead: its points would carry a time far from their window's. Buckets of
//! one series that close between two collections (a resolution below the module's interval,
//! or late values that reopened a window already sent) are merged into one set of points.
//! A measurement keeps at most `max_values` values for its percentiles (a uniform sample
//! beyond that; count, sum, min, max and mean stay exact).
//!
//! **Inputs** run on their own threads, started when the module is built and stopped when it
//! is dropped; the collection only takes ready buckets out of memory and never waits for
//! I/O. A reload that changes this module's settings builds the new instance while the old
//! one runs: the new one takes over the old one's buckets and counters, its sockets (the old
//! one stops accepting at once and finishes the requests it has) and its place in every
//! file, so nothing is lost or read twice.
//!
//! * `listen`: the HTTP drain. `POST /logs` with a logplex / log-shuttle body (octet-counted
//!   RFC 5424 frames), HTTP Basic auth: the credentials (`user:password`, or `token:` as a
//!   drain URL `https://TOKEN@host/logs` sends them; a trailing `:` is dropped; standard or
//!   URL-safe base64) must equal one of `tokens`, compared in constant time. Answers: 200 and
//!   an empty body (the body is parsed before the answer); 400 `Invalid Request` for another
//!   method or a wrong token; 400 `Fail: Parse auth.` for an `Authorization` that is not
//!   Basic base64; 401 `Fail: Missing auth.` without `Authorization` (l2met crashed there);
//!   413 for a body over 8 MiB; 404 for another path. Query options: `resolution` (seconds, 1
//!   to 86400; anything else means the configured one), `prefix`, `source-prefix`.
//! * `syslog_udp`, `syslog_tcp`: syslog messages, RFC 5424 (its timestamp is used) or RFC 3164
//!   (the receive time is used); one message per datagram (or per line of it), and on TCP
//!   octet-counted (RFC 6587) or newline-separated frames, up to 64 KiB each.
//! * `files`: every file that matches the globs, read line by line as it grows (RFC 5424 and
//!   RFC 3164 lines are parsed as on the syslog listener, other lines are one message with the
//!   receive time). It follows rotation (a new file at the path: the old one is read to its
//!   end first) and truncation (read again from the start); with `state_dir` it remembers its
//!   offset in each file across restarts.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `listen` | none | address of the HTTP drain, e.g. `"127.0.0.1:8080"`; none: no drain |
//! | `tokens` | `[]` | accepted drain credentials (array or comma-separated string); required with `listen` |
//! | `syslog_udp` | none | address of the syslog UDP listener, e.g. `"127.0.0.1:5514"` |
//! | `syslog_tcp` | none | address of the syslog TCP listener |
//! | `files` | `[]` | globs of log files to tail |
//! | `state_dir` | none | directory for the tail offsets (relative to the conf file's directory); none: not remembered |
//! | `from_beginning` | `false` | read files found at start from their beginning (without a remembered offset); otherwise from their end. Files that appear later are read from the beginning |
//! | `resolution` | `60` | seconds per bucket (1 to 86400); the drain's `resolution` option overrides it |
//! | `prefix` | none | names become `PREFIX.NAME`; the drain's `prefix` option overrides it |
//! | `source_prefix` | none | sources become `S.SOURCE` (or `S`); the drain's `source-prefix` option overrides it |
//! | `deadline` | `2` | whole windows a value may be late (l2met's `-recv-deadline`) |
//! | `flush_delay` | `"1s"` | how long after a window closes its bucket waits for late values (seconds or `"500ms"`, at most `"60s"`) |
//! | `max_buckets` | `10000` | open buckets at most; values that would open more are dropped and counted |
//! | `max_values` | `10000` | values a measurement keeps for its percentiles (at least 1) |
//! | `max_resolution` | `3600` | the largest `resolution` (seconds) accepted: a drain request asking for more is answered 400 (counted as rejected); `resolution` must not exceed it |
//! | `max_source_buckets` | `1000` | open buckets of one source at most (so one source cannot take every bucket); values past it are dropped and counted as overflow |
//! | `max_kept_values` | `1000000` | values kept for percentiles over every open bucket (8 bytes each, 8 MB); past it samples stop growing (count, sum, min, max stay exact) |
//! | `max_connections` | `256` | connections at once on the drain (more wait in the backlog) and on the syslog TCP listener (more are closed at once) |
//! | `idle_timeout` | `"10s"` | the drain: time to send a request's headers (an idle keep-alive connection is closed after it); syslog TCP: a connection that sends nothing for this long is closed |
//! | `request_timeout` | `"30s"` | the drain: time to read a request's body and answer it (408 past it) |

#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod net;
pub mod parse;
pub mod store;
pub mod tail;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use badger_api::duration::Seconds;
use serde::Deserialize;

use badger_api::matcher::NameList;
use badger_api::plugin::{BuildError, CollectError, ConfigError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};
use badger_api::rate::Rate;

pub use store::{Limits, Options, Series, Stats, Store};

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "l2met",
    aliases: &[],
    summary: "log lines as metrics (l2met): HTTP log drain, syslog listener, tailed files",
    build,
};

/// Epoch milliseconds now; tests inject their own.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    })
}

fn default_resolution() -> u32 {
    60
}
fn default_deadline() -> u32 {
    2
}
fn default_flush_delay() -> Seconds {
    Seconds(Duration::from_secs(1))
}
fn default_max() -> usize {
    10_000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    tokens: NameList,
    #[serde(default)]
    syslog_udp: Option<String>,
    #[serde(default)]
    syslog_tcp: Option<String>,
    #[serde(default)]
    files: NameList,
    #[serde(default)]
    state_dir: Option<PathBuf>,
    #[serde(default)]
    from_beginning: bool,
    #[serde(default = "default_resolution")]
    resolution: u32,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    source_prefix: Option<String>,
    #[serde(default = "default_deadline")]
    deadline: u32,
    #[serde(default = "default_flush_delay")]
    flush_delay: Seconds,
    #[serde(default = "default_max")]
    max_buckets: usize,
    #[serde(default = "default_max")]
    max_values: usize,
    #[serde(default)]
    max_resolution: Option<u32>,
    #[serde(default)]
    max_source_buckets: Option<usize>,
    #[serde(default)]
    max_kept_values: Option<usize>,
    #[serde(default)]
    max_connections: Option<usize>,
    #[serde(default)]
    idle_timeout: Option<Seconds>,
    #[serde(default)]
    request_timeout: Option<Seconds>,
}

/// What every input thread shares: the buckets, the clock, the default options and the
/// drain's tokens.
pub struct Shared {
    pub store: Arc<Store>,
    pub clock: Clock,
    pub defaults: Options,
    pub tokens: Vec<Vec<u8>>,
}

impl Shared {
    pub fn now_ms(&self) -> i64 {
        (self.clock)()
    }
}

/// The settings of one l2met instance, after validation.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The module's name in the config (its running instance hands over to a rebuilt one).
    pub name: String,
    pub listen: Option<SocketAddr>,
    pub tokens: Vec<String>,
    pub syslog_udp: Option<SocketAddr>,
    pub syslog_tcp: Option<SocketAddr>,
    pub files: Vec<String>,
    pub state_file: Option<PathBuf>,
    pub from_beginning: bool,
    pub defaults: Options,
    pub limits: Limits,
    pub flush_delay: Duration,
    /// Bounds of the drain and the syslog TCP listener (`header_timeout` is `idle_timeout`).
    pub net_limits: badger_api::listener::ListenerLimits,
    /// Where the listeners' counters are published (`l2met_drain`, `l2met_syslog`).
    pub telemetry: Option<badger_api::telemetry::Telemetry>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            name: "l2met".into(),
            listen: None,
            tokens: Vec::new(),
            syslog_udp: None,
            syslog_tcp: None,
            files: Vec::new(),
            state_file: None,
            from_beginning: false,
            defaults: Options::default(),
            limits: Limits::default(),
            flush_delay: Duration::from_secs(1),
            net_limits: badger_api::listener::ListenerLimits::default(),
            telemetry: None,
        }
    }
}

fn address(conf: &PluginConf, key: &str, v: &Option<String>) -> Result<Option<SocketAddr>, BuildError> {
    let Some(s) = v else { return Ok(None) };
    let addr = s.to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or_else(|| {
        BuildError::Config(conf.error(key, format!("\"{s}\" is not an address like \"127.0.0.1:8080\"")))
    })?;
    Ok(Some(addr))
}

fn settings(conf: &PluginConf) -> Result<Settings, BuildError> {
    let c: Config = conf.parse()?;
    let err = |key: &str, m: &str| BuildError::Config(conf.error(key, m));
    if !(1..=86_400).contains(&c.resolution) {
        return Err(err("resolution", "must be a whole number of seconds from 1 to 86400"));
    }
    if c.flush_delay.0 > Duration::from_secs(60) {
        return Err(err("flush_delay", "must be at most 60s"));
    }
    if c.max_buckets == 0 {
        return Err(err("max_buckets", "must be at least 1"));
    }
    if c.max_values == 0 {
        return Err(err("max_values", "must be at least 1"));
    }
    let listen = address(conf, "listen", &c.listen)?;
    if listen.is_some() && c.tokens.is_empty() {
        let line = conf.line_of("tokens").or_else(|| conf.line_of("listen"));
        let message = "the drain (listen) needs at least one token";
        return Err(BuildError::Config(ConfigError::new(&conf.file, line, Some("tokens".into()), message)));
    }
    for f in &c.files.0 {
        glob::Pattern::new(f).map_err(|e| err("files", &format!("bad glob \"{f}\": {e}")))?;
    }
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let d = badger_api::listener::ListenerLimits::default();
    let net_limits = badger_api::listener::ListenerLimits {
        max_connections: c.max_connections.unwrap_or(d.max_connections),
        header_timeout: c.idle_timeout.map_or(d.header_timeout, |s| s.0),
        request_timeout: c.request_timeout.map_or(d.request_timeout, |s| s.0),
        max_header_bytes: d.max_header_bytes,
    };
    let dl = Limits::default();
    let max_resolution = c.max_resolution.unwrap_or(dl.max_resolution);
    if !(1..=86_400).contains(&max_resolution) {
        return Err(err("max_resolution", "must be a whole number of seconds from 1 to 86400"));
    }
    if c.resolution > max_resolution {
        return Err(err("resolution", &format!("must be at most max_resolution ({max_resolution})")));
    }
    let max_source_buckets = c.max_source_buckets.unwrap_or(dl.max_source_buckets);
    if max_source_buckets == 0 {
        return Err(err("max_source_buckets", "must be at least 1"));
    }
    let max_kept_values = c.max_kept_values.unwrap_or(dl.max_kept_values);
    if net_limits.max_connections == 0 {
        return Err(err("max_connections", "must be at least 1"));
    }
    if net_limits.header_timeout.is_zero() {
        return Err(err("idle_timeout", "must be more than 0"));
    }
    if net_limits.request_timeout.is_zero() {
        return Err(err("request_timeout", "must be more than 0"));
    }
    Ok(Settings {
        net_limits,
        telemetry: None,
        name: conf.name.clone(),
        listen,
        tokens: c.tokens.0,
        syslog_udp: address(conf, "syslog_udp", &c.syslog_udp)?,
        syslog_tcp: address(conf, "syslog_tcp", &c.syslog_tcp)?,
        files: c.files.0.into_iter().map(|f| conf.resolve(f.as_ref()).to_string_lossy().into_owned()).collect(),
        state_file: c.state_dir.map(|d| conf.resolve(&d).join(format!("{}-offsets.json", conf.name))),
        from_beginning: c.from_beginning,
        defaults: Options {
            resolution: c.resolution,
            prefix: nonempty(c.prefix),
            source_prefix: nonempty(c.source_prefix),
        },
        limits: Limits {
            deadline: i64::from(c.deadline),
            max_buckets: c.max_buckets,
            max_values: c.max_values,
            max_source_buckets,
            max_kept_values,
            max_resolution,
        },
        flush_delay: c.flush_delay.0,
    })
}

fn build(ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let mut s = settings(conf)?;
    s.telemetry = Some(ctx.telemetry.clone());
    let store = store_for(&conf.name, s.limits);
    Ok(Box::new(L2met::start_with(s, system_clock(), store)?))
}

/// The stores of the running instances, by module name.
static STORES: std::sync::Mutex<Vec<(String, std::sync::Weak<Store>)>> = std::sync::Mutex::new(Vec::new());

/// The store of the running instance of this module (a reload rebuilds the module while the
/// old instance still runs: the new one takes over its buckets and counters), or a new one.
fn store_for(name: &str, limits: Limits) -> Arc<Store> {
    let mut stores = STORES.lock().unwrap_or_else(|e| e.into_inner());
    stores.retain(|(_, w)| w.strong_count() > 0);
    if let Some(s) = stores.iter().find(|(n, _)| n == name).and_then(|(_, w)| w.upgrade()) {
        s.set_limits(limits);
        return s;
    }
    let s = Arc::new(Store::new(limits));
    stores.push((name.to_string(), Arc::downgrade(&s)));
    s
}

/// A running l2met instance: its inputs' threads and the buckets they fill.
pub struct L2met {
    shared: Arc<Shared>,
    flush_delay_ms: i64,
    net: Option<net::Net>,
    tail: Option<tail::Tail>,
    rates: [Rate; 8],
}

impl L2met {
    /// Binds the listeners and starts the input threads, with a store of its own.
    pub fn start(s: Settings, clock: Clock) -> Result<L2met, BuildError> {
        let store = Arc::new(Store::new(s.limits));
        L2met::launch(s, clock, store, false)
    }

    /// Like [`L2met::start`], filling `store` and taking over the files of the running instance
    /// of the same name (a reload).
    pub fn start_with(s: Settings, clock: Clock, store: Arc<Store>) -> Result<L2met, BuildError> {
        L2met::launch(s, clock, store, true)
    }

    fn launch(s: Settings, clock: Clock, store: Arc<Store>, take_over: bool) -> Result<L2met, BuildError> {
        let shared = Arc::new(Shared {
            store,
            clock,
            defaults: s.defaults.clone(),
            tokens: s.tokens.iter().map(|t| t.as_bytes().to_vec()).collect(),
        });
        let net = if s.listen.is_some() || s.syslog_udp.is_some() || s.syslog_tcp.is_some() {
            Some(
                net::Net::start(
                    shared.clone(),
                    s.listen,
                    s.syslog_udp,
                    s.syslog_tcp,
                    &s.net_limits,
                    s.telemetry.as_ref(),
                )
                .map_err(BuildError::Unavailable)?,
            )
        } else {
            None
        };
        let tail = if s.files.is_empty() {
            None
        } else {
            Some(
                tail::Tail::start(
                    shared.clone(),
                    s.files.clone(),
                    s.state_file.clone(),
                    s.from_beginning,
                    take_over.then_some(s.name.as_str()),
                )
                .map_err(BuildError::Unavailable)?,
            )
        };
        Ok(L2met { shared, flush_delay_ms: s.flush_delay.as_millis() as i64, net, tail, rates: Default::default() })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The addresses the listeners are bound to (HTTP, UDP, TCP), for tests that bind port 0.
    pub fn local_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>, Option<SocketAddr>) {
        match &self.net {
            Some(n) => (n.http, n.udp, n.tcp),
            None => (None, None, None),
        }
    }

    /// The series whose window closed `flush_delay` before now, taken out of the store.
    pub fn ready_series(&self) -> Vec<Series> {
        store::summarize(self.shared.store.take_ready(self.shared.now_ms(), self.flush_delay_ms))
    }

    /// Waits until the file tailer has looked at its files once more (tests).
    pub fn sync_files(&self) {
        if let Some(t) = &self.tail {
            t.sync();
        }
    }
}

impl Drop for L2met {
    fn drop(&mut self) {
        // Stop the inputs (closing their sockets, saving the file offsets) before the store goes.
        self.net.take();
        self.tail.take();
    }
}

/// The points of one series (see the stat table).
pub fn push_points(s: &Series, out: &mut Vec<Point>) {
    let point = |suffix: &str, units: &str, value: Value| {
        let mut field = String::with_capacity(s.name.len() + suffix.len());
        field.push_str(&s.name);
        field.push_str(suffix);
        let mut name = String::with_capacity(6 + field.len() + 1 + s.source.len());
        name.push_str("l2met.");
        name.push_str(&field);
        let mut tags = Vec::new();
        if !s.source.is_empty() {
            name.push('.');
            name.push_str(&s.source);
            tags.push((Cow::Borrowed("source"), s.source.clone()));
        }
        Point {
            name,
            value,
            units: Cow::Owned(units.to_string()),
            measurement: Cow::Borrowed("l2met"),
            field: Cow::Owned(field),
            tags,
            kind: Default::default(),
        }
    };
    match s.stats {
        Stats::Measure(m) => {
            out.push(point(".count", "", Value::Int(i64::try_from(m.count).unwrap_or(i64::MAX))));
            for (suffix, v) in [
                (".sum", m.sum),
                (".min", m.min),
                (".max", m.max),
                (".mean", m.mean),
                (".median", m.median),
                (".perc95", m.perc95),
                (".perc99", m.perc99),
            ] {
                out.push(point(suffix, &s.units, Value::Float(v)));
            }
        }
        Stats::Counter(v) | Stats::Sample(v) => out.push(point("", &s.units, Value::Float(v))),
    }
}

impl Module for L2met {
    fn collect(&mut self, now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        for s in self.ready_series() {
            push_points(&s, out);
        }
        let store = &self.shared.store;
        out.push(Point::simple("l2met_receiver", "buckets", "", Value::Int(store.len() as i64)));
        let c = &store.counters;
        let counters = [
            ("lines_per_sec", &c.lines),
            ("values_per_sec", &c.values),
            ("dropped_per_sec", &c.dropped),
            ("overflow_per_sec", &c.overflow),
            ("l10_per_sec", &c.l10),
            ("bad_lines_per_sec", &c.bad_lines),
            ("requests_per_sec", &c.requests),
            ("rejected_per_sec", &c.rejected),
        ];
        for ((field, counter), rate) in counters.into_iter().zip(&mut self.rates) {
            if let Some(r) = rate.update(counter.load(Ordering::Relaxed), now) {
                out.push(Point::simple("l2met_receiver", field, "", Value::Float(r)));
            }
        }
        Ok(())
    }
}
