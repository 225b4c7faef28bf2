//! The Pulse wire protocol and the relay library (part of the plugin API: the `pulse`
//! emitter and the `badger server` both use it, and other Rust programs can embed the relay).
//!
//! Pulse is a line protocol over TCP. A *relay* connects to the server, says `id <host>`,
//! gets `ok` and `beat <seconds>`, then registers its stats with `add <name>:<tag>,<tag>`.
//! The server polls with `get <name>,<name>`; the relay answers
//! `got <name>-<name>:<value>,…` with every value to four decimals. The relay pings every
//! beat interval (`ping` → `pong`) and reconnects every 5 s when the connection is lost,
//! adding its stats again.
//!
//! Names may not contain `-`, `:` or `,` (the server splits on them), nor white space;
//! [`clean_name`] rewrites such characters to `_`.
//!
//! # Embedding the relay
//!
//! ```no_run
//! use badger_formats::pulse::{Collector, Relay};
//!
//! // Connect and identify (like the original's `NewRelay`); fails if the server is away.
//! let relay = Relay::connect("127.0.0.1:3000", "web1.example.com")?;
//! // A point collector: one value, reported as `cpu_used-cpu_used:<value>`.
//! relay.add_collector("cpu_used", &["service:web1"], Collector::point(|| 0.25))?;
//! // A set collector: many named values, reported as `mem-used:<v>,mem-free:<v>`.
//! relay.add_collector("mem", &[], Collector::set(|| [("used".to_string(), 1.5), ("free".to_string(), 2.0)].into()))?;
//! relay.remove_collector("cpu_used");
//! relay.close();
//! # Ok::<(), badger_formats::pulse::RelayError>(())
//! ```
//!
//! [`Relay::spawn`] does the same without waiting for the server: it connects in the
//! background and keeps trying every 5 s (what the `pulse` emitter uses).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The longest line either side accepts (bytes, newline excluded). A server that sends a
/// longer one is dropped; the `badger server` answers a longer one with an error.
pub const MAX_LINE: usize = 256 * 1024;

/// The beat interval until the server says otherwise (`beat N`).
pub const DEFAULT_BEAT: Duration = Duration::from_secs(30);

/// The name the original reserved for its connection flag in [`Relay::info`].
pub const RESERVED: &str = "_connected";

/// Rewrites a stat or collector name so the protocol stays unambiguous: `-`, `:`, `,`,
/// white space and control characters become `_`; an empty name becomes `_`.
pub fn clean_name(name: &str) -> String {
    if name.is_empty() {
        return "_".into();
    }
    name.chars()
        .map(|c| if c == '-' || c == ':' || c == ',' || c.is_whitespace() || c.is_control() { '_' } else { c })
        .collect()
}

/// Rewrites a tag (`key:value`) so it survives `add`: `,`, white space and control
/// characters become `_` (a `:` inside the value is fine: the server splits at the first).
pub fn clean_tag(tag: &str) -> String {
    tag.chars().map(|c| if c == ',' || c.is_whitespace() || c.is_control() { '_' } else { c }).collect()
}

/// A value as the relay sends it: fixed four decimals (`25` → `25.0000`).
pub fn format_value(v: f64) -> String {
    format!("{v:.4}")
}

/// Splits a line into its command and its arguments (at the first space).
pub fn split_command(line: &str) -> (&str, Option<&str>) {
    match line.split_once(' ') {
        Some((c, a)) => (c, Some(a)),
        None => (line, None),
    }
}

/// Parses `add` arguments: `name` or `name:tag,tag` (an empty tag list for `name:`).
pub fn parse_add(args: &str) -> (&str, Vec<&str>) {
    match args.split_once(':') {
        Some((name, "")) => (name, Vec::new()),
        Some((name, tags)) => (name, tags.split(',').collect()),
        None => (args, Vec::new()),
    }
}

/// One valid item of a `got` payload: `<collector>-<name>:<value>`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GotItem<'a> {
    pub collector: &'a str,
    pub name: &'a str,
    pub value: &'a str,
}

impl GotItem<'_> {
    /// The value as a number: what does not parse (or is not finite) is `-1`, as the
    /// original stored it.
    pub fn number(&self) -> f64 {
        match self.value.parse::<f64>() {
            Ok(v) if v.is_finite() => v,
            _ => -1.0,
        }
    }
}

/// Parses a `got` payload. Items that do not split into exactly `a-b:c` are skipped, as
/// the original did.
pub fn parse_got(args: &str) -> impl Iterator<Item = GotItem<'_>> {
    args.split(',').filter_map(|item| {
        let mut kv = item.split(':');
        let (key, value) = (kv.next()?, kv.next()?);
        if kv.next().is_some() {
            return None;
        }
        let mut cn = key.split('-');
        let (collector, name) = (cn.next()?, cn.next()?);
        if cn.next().is_some() {
            return None;
        }
        Some(GotItem { collector, name, value })
    })
}

/// Something that gives values when the server asks: one value (a *point* collector,
/// reported under its own name) or a set of named values.
pub enum Collector {
    Point(Box<dyn Fn() -> f64 + Send + Sync>),
    Set(Box<dyn Fn() -> HashMap<String, f64> + Send + Sync>),
}

impl Collector {
    /// One value, reported as `<name>-<name>:<value>` (the original's `NewPointCollector`).
    pub fn point(f: impl Fn() -> f64 + Send + Sync + 'static) -> Collector {
        Collector::Point(Box::new(f))
    }

    /// Named values, reported as `<name>-<key>:<value>` each (`NewSetCollector`).
    pub fn set(f: impl Fn() -> HashMap<String, f64> + Send + Sync + 'static) -> Collector {
        Collector::Set(Box::new(f))
    }

    /// Appends this collector's `got` items (comma-separated) to `out`.
    fn write_items(&self, name: &str, out: &mut String) {
        let mut item = |key: &str, v: f64| {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(name);
            out.push('-');
            out.push_str(key);
            out.push(':');
            out.push_str(&format_value(v));
        };
        match self {
            Collector::Point(f) => item(name, f()),
            Collector::Set(f) => {
                let mut values: Vec<(String, f64)> = f().into_iter().collect();
                values.sort_by(|a, b| a.0.cmp(&b.0));
                for (k, v) in values {
                    item(&clean_name(&k), v);
                }
            }
        }
    }
}

/// Why a relay call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayError {
    /// The server did not answer `id` with `ok` ("unable to identify with pulse").
    UnableToIdentify(String),
    /// Connecting failed.
    Connect(String),
    /// A name with `-`, `:`, `,`, white space, or `_connected`.
    ReservedName,
    /// A collector with this name exists already.
    DuplicateCollector,
    /// The relay was closed.
    Closed,
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayError::UnableToIdentify(why) => write!(f, "unable to identify with pulse: {why}"),
            RelayError::Connect(why) => write!(f, "connecting to pulse: {why}"),
            RelayError::ReservedName => f.write_str("cannot use - or : or , or _connected in your name"),
            RelayError::DuplicateCollector => f.write_str("cannot add a duplicate collector to the set"),
            RelayError::Closed => f.write_str("the relay is closed"),
        }
    }
}

impl std::error::Error for RelayError {}

/// Timing of a relay; the defaults are the original's.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Wait between reconnection attempts (5 s).
    pub reconnect_every: Duration,
    /// Longest connect, and longest wait for `ok` after `id` (10 s).
    pub connect_timeout: Duration,
    /// Longest write (10 s).
    pub write_timeout: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            reconnect_every: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
        }
    }
}

struct Entry {
    tags: Vec<String>,
    collector: Arc<Collector>,
}

struct Inner {
    address: String,
    id: String,
    options: RelayOptions,
    /// Lock order: `collectors` before `conn`.
    collectors: Mutex<BTreeMap<String, Entry>>,
    /// The writing side of the live connection.
    conn: Mutex<Option<TcpStream>>,
    connected: AtomicBool,
    beat_secs: AtomicU64,
    closed: Mutex<bool>,
    wake: Condvar,
    connects: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connection to a Pulse server that reports the values of its collectors.
pub struct Relay {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Connects, identifies as `id` and waits for `ok` (the original's `NewRelay`); then
    /// keeps the connection up in the background.
    pub fn connect(address: &str, id: &str) -> Result<Relay, RelayError> {
        Relay::connect_with(address, id, RelayOptions::default())
    }

    /// [`Relay::connect`] with other timings.
    pub fn connect_with(address: &str, id: &str, options: RelayOptions) -> Result<Relay, RelayError> {
        let inner = Relay::inner(address, id, options);
        let session = establish(&inner)?;
        Ok(Relay::start(inner, Some(session)))
    }

    /// A relay that connects in the background (and keeps retrying every 5 s); it never
    /// fails, and collectors can be added at once.
    pub fn spawn(address: &str, id: &str) -> Relay {
        Relay::spawn_with(address, id, RelayOptions::default())
    }

    /// [`Relay::spawn`] with other timings.
    pub fn spawn_with(address: &str, id: &str, options: RelayOptions) -> Relay {
        Relay::start(Relay::inner(address, id, options), None)
    }

    fn inner(address: &str, id: &str, options: RelayOptions) -> Arc<Inner> {
        Arc::new(Inner {
            address: address.to_string(),
            id: clean_tag(id),
            options,
            collectors: Mutex::new(BTreeMap::new()),
            conn: Mutex::new(None),
            connected: AtomicBool::new(false),
            beat_secs: AtomicU64::new(DEFAULT_BEAT.as_secs()),
            closed: Mutex::new(false),
            wake: Condvar::new(),
            connects: AtomicU64::new(0),
        })
    }

    fn start(inner: Arc<Inner>, first: Option<Session>) -> Relay {
        if let Some(s) = &first {
            inner.attach(s);
        }
        let i = inner.clone();
        let thread = thread::Builder::new()
            .name("pulse-relay".into())
            .stack_size(256 * 1024)
            .spawn(move || run(&i, first))
            .map_err(|e| log::error!("pulse relay: cannot start its thread: {e}"))
            .ok();
        Relay { inner, thread }
    }

    /// Registers a collector and tells the server (`add <name>:<tags>`). Names with `-`,
    /// `:`, `,` or white space, and `_connected`, are refused (see [`clean_name`]).
    pub fn add_collector(&self, name: &str, tags: &[&str], collector: Collector) -> Result<(), RelayError> {
        if name.is_empty() || name == RESERVED || clean_name(name) != name {
            return Err(RelayError::ReservedName);
        }
        if *lock(&self.inner.closed) {
            return Err(RelayError::Closed);
        }
        let mut collectors = lock(&self.inner.collectors);
        if collectors.contains_key(name) {
            return Err(RelayError::DuplicateCollector);
        }
        let tags: Vec<String> = tags.iter().map(|t| clean_tag(t)).collect();
        let line = add_line(name, &tags);
        collectors.insert(name.to_string(), Entry { tags, collector: Arc::new(collector) });
        self.inner.send(&line);
        Ok(())
    }

    /// Forgets a collector and tells the server (`remove <name>`); unknown names are ignored.
    pub fn remove_collector(&self, name: &str) {
        let mut collectors = lock(&self.inner.collectors);
        if collectors.remove(name).is_some() {
            self.inner.send(&format!("remove {name}\n"));
        }
    }

    /// Names of the registered collectors.
    pub fn collector_names(&self) -> Vec<String> {
        lock(&self.inner.collectors).keys().cloned().collect()
    }

    /// `_connected` (1 while connected, else 0) and every current value, keyed
    /// `<collector>` (point) or `<collector>-<name>` (set).
    pub fn info(&self) -> HashMap<String, f64> {
        let mut out = HashMap::new();
        out.insert(RESERVED.to_string(), if self.connected() { 1.0 } else { 0.0 });
        let entries: Vec<(String, Arc<Collector>)> =
            lock(&self.inner.collectors).iter().map(|(k, e)| (k.clone(), e.collector.clone())).collect();
        for (name, c) in entries {
            match &*c {
                Collector::Point(f) => {
                    out.insert(name, f());
                }
                Collector::Set(f) => {
                    for (k, v) in f() {
                        out.insert(format!("{name}-{}", clean_name(&k)), v);
                    }
                }
            }
        }
        out
    }

    /// True while identified with the server.
    pub fn connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    /// How many times the relay has identified with a server.
    pub fn connections(&self) -> u64 {
        self.inner.connects.load(Ordering::Relaxed)
    }

    /// The beat interval the server asked for.
    pub fn beat(&self) -> Duration {
        Duration::from_secs(self.inner.beat_secs.load(Ordering::Relaxed))
    }

    /// Removes every collector (`remove` each), says `close`, and stops.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        {
            let mut closed = lock(&self.inner.closed);
            if *closed {
                return;
            }
            *closed = true;
        }
        {
            let mut collectors = lock(&self.inner.collectors);
            let names: Vec<String> = collectors.keys().cloned().collect();
            for n in names {
                collectors.remove(&n);
                self.inner.send(&format!("remove {n}\n"));
            }
            self.inner.send("close\n");
            if let Some(s) = lock(&self.inner.conn).take() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        self.inner.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn add_line(name: &str, tags: &[String]) -> String {
    format!("add {name}:{}\n", tags.join(","))
}

impl Inner {
    fn is_closed(&self) -> bool {
        *lock(&self.closed)
    }

    /// Writes a line on the live connection, if any; a failed write drops the connection
    /// (the reading side notices and reconnects).
    fn send(&self, line: &str) {
        let mut conn = lock(&self.conn);
        if let Some(s) = conn.as_mut() {
            if let Err(e) = s.write_all(line.as_bytes()) {
                log::debug!("pulse relay: writing to {}: {e}", self.address);
                let _ = s.shutdown(Shutdown::Both);
                *conn = None;
            }
        }
    }

    /// Makes a fresh session the live connection and adds every collector again.
    fn attach(&self, s: &Session) {
        let collectors = lock(&self.collectors);
        let Ok(writer) = s.stream.try_clone() else { return };
        let mut lines = String::new();
        for (name, e) in collectors.iter() {
            lines.push_str(&add_line(name, &e.tags));
        }
        *lock(&self.conn) = Some(writer);
        self.connected.store(true, Ordering::Release);
        self.connects.fetch_add(1, Ordering::Relaxed);
        if !lines.is_empty() {
            self.send(&lines);
        }
    }

    fn detach(&self) {
        self.connected.store(false, Ordering::Release);
        if let Some(s) = lock(&self.conn).take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Answers `get a,b` with `got …` (nothing when no value).
    fn answer_get(&self, names: &str) {
        let wanted: Vec<(String, Arc<Collector>)> = {
            let collectors = lock(&self.collectors);
            names.split(',').filter_map(|n| collectors.get(n).map(|e| (n.to_string(), e.collector.clone()))).collect()
        };
        let mut items = String::new();
        for (name, c) in &wanted {
            c.write_items(name, &mut items);
        }
        if !items.is_empty() {
            self.send(&format!("got {items}\n"));
        }
    }
}

/// A connection that has identified.
struct Session {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    buf: Vec<u8>,
}

fn establish(inner: &Inner) -> Result<Session, RelayError> {
    let timeout = inner.options.connect_timeout;
    let addrs: Vec<_> = inner
        .address
        .to_socket_addrs()
        .map_err(|e| RelayError::Connect(format!("resolving {}: {e}", inner.address)))?
        .collect();
    let mut last = format!("{}: no address", inner.address);
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    let Some(mut stream) = stream else { return Err(RelayError::Connect(last)) };
    let io = |e: io::Error| RelayError::Connect(e.to_string());
    let _ = stream.set_nodelay(true);
    stream.set_write_timeout(Some(inner.options.write_timeout)).map_err(io)?;
    stream.write_all(format!("id {}\n", inner.id).as_bytes()).map_err(io)?;
    let mut session = Session { reader: BufReader::new(stream.try_clone().map_err(io)?), stream, buf: Vec::new() };
    let deadline = Instant::now() + timeout;
    match session.read_line(deadline) {
        Ok(Some(line)) if line == "ok" => Ok(session),
        Ok(Some(line)) => Err(RelayError::UnableToIdentify(format!("the server said {line:?}"))),
        Ok(None) => Err(RelayError::UnableToIdentify("no answer".into())),
        Err(e) => Err(RelayError::UnableToIdentify(e.to_string())),
    }
}

impl Session {
    /// Reads one line until `deadline`: `Ok(None)` on timeout (a partial line is kept).
    fn read_line(&mut self, deadline: Instant) -> io::Result<Option<String>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            if self.buf.len() > MAX_LINE {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            let chunk = match self.reader.fill_buf() {
                Ok([]) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection")),
                Ok(c) => c,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let n = chunk.len();
            self.buf.extend_from_slice(chunk);
            self.reader.consume(n);
        }
    }
}

/// The relay's thread: serve the session, reconnect every `reconnect_every` when it ends.
fn run(inner: &Inner, mut first: Option<Session>) {
    loop {
        if inner.is_closed() {
            return;
        }
        let session = match first.take() {
            Some(s) => Ok(s),
            None => establish(inner).inspect(|s| inner.attach(s)),
        };
        match session {
            Ok(s) => {
                log::info!("pulse relay: identified as {:?} with {}", inner.id, inner.address);
                let why = serve(inner, s);
                inner.detach();
                if inner.is_closed() {
                    return;
                }
                log::warn!("pulse relay: lost {}: {why}; reconnecting", inner.address);
            }
            Err(e) => log::debug!("pulse relay: {e}"),
        }
        let closed = lock(&inner.closed);
        let (closed, _) = inner
            .wake
            .wait_timeout_while(closed, inner.options.reconnect_every, |c| !*c)
            .unwrap_or_else(|e| e.into_inner());
        if *closed {
            return;
        }
    }
}

/// Reads the server's lines and pings every beat; returns why the session ended.
fn serve(inner: &Inner, mut s: Session) -> String {
    let beat = || Duration::from_secs(inner.beat_secs.load(Ordering::Relaxed).max(1));
    let mut next_ping = Instant::now() + beat();
    let mut reply_by: Option<Instant> = None;
    loop {
        if inner.is_closed() || !inner.connected.load(Ordering::Acquire) || lock(&inner.conn).is_none() {
            return "closed".into();
        }
        let until = reply_by.map_or(next_ping, |r| r.min(next_ping));
        match s.read_line(until) {
            Ok(Some(line)) => {
                reply_by = None;
                let (cmd, args) = split_command(&line);
                match (cmd, args) {
                    ("beat", Some(n)) => {
                        if let Ok(n) = n.trim().parse::<u64>() {
                            if n > 0 {
                                inner.beat_secs.store(n, Ordering::Relaxed);
                                next_ping = next_ping.min(Instant::now() + beat());
                            }
                        }
                    }
                    ("get", Some(names)) => inner.answer_get(names),
                    ("flush", _) | ("override", _) => inner.send("ok\n"),
                    _ => {}
                }
            }
            Ok(None) => {
                let now = Instant::now();
                if reply_by.is_some_and(|r| now >= r) {
                    return "no answer to ping".into();
                }
                if now >= next_ping {
                    inner.send("ping\n");
                    reply_by = Some(now + beat() / 2);
                    next_ping = now + beat();
                }
            }
            Err(e) => return e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("disk.reads.dm-0"), "disk.reads.dm_0");
        assert_eq!(clean_name("a:b,c d\n"), "a_b_c_d_");
        assert_eq!(clean_name(""), "_");
        assert_eq!(clean_tag("ipv6:fe80::1"), "ipv6:fe80::1");
        assert_eq!(clean_tag("cluster:a,b c"), "cluster:a_b_c");
    }

    #[test]
    fn got_is_parsed_like_the_original() {
        let items: Vec<_> = parse_got("a:1,b-c-d:2,e-f:1:2,ram_used-ram_used:3.0000,x-y:abc").collect();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0], GotItem { collector: "ram_used", name: "ram_used", value: "3.0000" });
        assert_eq!(items[0].number(), 3.0);
        assert_eq!(items[1].number(), -1.0);
        assert_eq!(parse_add("cpu_used:service:web1"), ("cpu_used", vec!["service:web1"]));
        assert_eq!(parse_add("ram:"), ("ram", vec![]));
        assert_eq!(parse_add("disk"), ("disk", vec![]));
        assert_eq!(parse_add("cpu:hi,how,are:you"), ("cpu", vec!["hi", "how", "are:you"]));
        assert_eq!(format_value(25.0), "25.0000");
        assert_eq!(format_value(-1.0), "-1.0000");
    }

    struct Fake {
        reader: BufReader<TcpStream>,
        writer: TcpStream,
    }

    impl Fake {
        fn accept(l: &TcpListener) -> Fake {
            let (s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            Fake { reader: BufReader::new(s.try_clone().unwrap()), writer: s }
        }
        fn line(&mut self) -> String {
            let mut l = String::new();
            self.reader.read_line(&mut l).unwrap();
            l.trim_end_matches('\n').to_string()
        }
        fn line_not_ping(&mut self) -> String {
            loop {
                let l = self.line();
                if l != "ping" {
                    return l;
                }
                self.say("pong");
            }
        }
        fn say(&mut self, l: &str) {
            self.writer.write_all(format!("{l}\n").as_bytes()).unwrap();
        }
    }

    fn fast() -> RelayOptions {
        RelayOptions { reconnect_every: Duration::from_millis(100), ..RelayOptions::default() }
    }

    #[test]
    fn relay_speaks_the_protocol() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = thread::spawn(move || {
            let mut f = Fake::accept(&l);
            assert_eq!(f.line(), "id test_client");
            f.say("ok");
            f.say("beat 1");
            let mut adds = vec![f.line(), f.line()];
            adds.sort();
            assert_eq!(adds, ["add disk:guy", "add ram:"]);
            f.say("get ram,disk,nope");
            assert_eq!(f.line(), "got ram-ram:25.0000,disk-disk:50.0000");
            f.say("get nope");
            // beat 1: a ping within about a second, answered with pong.
            assert_eq!(f.line(), "ping");
            f.say("pong");
            f.say("flush");
            assert_eq!(f.line_not_ping(), "ok");
            assert_eq!(f.line_not_ping(), "remove ram");
            // close: remove every collector, then close.
            assert_eq!(f.line_not_ping(), "remove disk");
            assert_eq!(f.line_not_ping(), "close");
        });
        let relay = Relay::connect_with(&addr, "test_client", fast()).unwrap();
        relay.add_collector("ram", &[], Collector::point(|| 25.0)).unwrap();
        relay
            .add_collector("disk", &["guy"], Collector::set(|| [("disk".to_string(), 50.0)].into_iter().collect()))
            .unwrap();
        assert_eq!(relay.add_collector("disk", &[], Collector::point(|| 1.0)), Err(RelayError::DuplicateCollector));
        assert_eq!(relay.add_collector("_connected", &[], Collector::point(|| 1.0)), Err(RelayError::ReservedName));
        assert_eq!(relay.add_collector("a-b", &[], Collector::point(|| 1.0)), Err(RelayError::ReservedName));
        thread::sleep(Duration::from_millis(1500));
        assert_eq!(relay.beat(), Duration::from_secs(1));
        relay.remove_collector("ram-used");
        relay.remove_collector("ram");
        let info = relay.info();
        assert_eq!(info.get("_connected"), Some(&1.0));
        assert_eq!(info.get("disk-disk"), Some(&50.0));
        relay.close();
        server.join().unwrap();
    }

    #[test]
    fn relay_refused_without_ok() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = thread::spawn(move || {
            let mut f = Fake::accept(&l);
            f.line();
            f.say("missing id");
        });
        assert!(matches!(Relay::connect_with(&addr, "x", fast()), Err(RelayError::UnableToIdentify(_))));
        server.join().unwrap();
    }

    #[test]
    fn relay_reconnects_and_adds_again() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let relay = Relay::spawn_with(&addr, "h1", fast());
        relay.add_collector("cpu", &["service:web1"], Collector::point(|| 0.5)).unwrap();
        let mut f = Fake::accept(&l);
        assert_eq!(f.line(), "id h1");
        f.say("ok");
        assert_eq!(f.line(), "add cpu:service:web1");
        drop(f);
        // The server went away: the relay comes back and adds its stats again.
        let mut f = Fake::accept(&l);
        assert_eq!(f.line(), "id h1");
        f.say("ok");
        assert_eq!(f.line(), "add cpu:service:web1");
        f.say("get cpu");
        assert_eq!(f.line(), "got cpu-cpu:0.5000");
        assert!(relay.connections() >= 2);
        relay.close();
    }

    #[test]
    fn relay_reconnects_when_ping_is_not_answered() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let relay = Relay::spawn_with(&addr, "h1", fast());
        let mut f = Fake::accept(&l);
        assert_eq!(f.line(), "id h1");
        f.say("ok");
        f.say("beat 1");
        assert_eq!(f.line(), "ping");
        // No pong: within half a beat the relay gives up and comes back.
        let started = Instant::now();
        let mut g = Fake::accept(&l);
        assert_eq!(g.line(), "id h1");
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(f);
        relay.close();
    }
}
