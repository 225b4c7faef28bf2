//! The relay side of the server: the TCP protocol, the registry of relays and the poller.
//!
//! As the original: `id <id>` first (`ok` + `beat N`), `ping` → `pong`, silent `add`,
//! `remove`, `got` and unknown commands, `close` ends the connection, a read deadline of
//! 2× the beat interval. Fixed: the registry is locked; a newer connection with the same id
//! replaces the older one (which is closed) and the older one's cleanup never removes the
//! newer registration; a failed write only drops that connection; `\r` is trimmed; a line
//! longer than [`MAX_LINE`] is answered `line too long` and the connection closed;
//! `flush` and `override` are answered `ok`; an empty id is refused like a missing one.
//!
//! Bounds (each counted in [`Counters`], summed into the `pulse_limited` self-metric, and
//! logged at most once a minute): at most [`Limits::max_relays`] connections at once
//! (a semaphore; the rest wait in the kernel's backlog, and an accept error backs off from
//! 10 ms to 1 s); at most [`Limits::max_relay_stats`] collector names (`add`) and as many
//! series names (`got`) per relay, and [`Limits::max_stats`] of both over all relays (past
//! them a name is ignored); `get` lines queued for one relay up to
//! [`Limits::queue_bytes`] (a poll past it is skipped).
//!
//! Identity: with a relay token (`--relay-token`), `id <id> <token>` is required and
//! anything else is answered `unauthorized` and closed. A second connection with the id of
//! a live one replaces it only when it is authenticated (a relay token is set) or comes
//! from the same peer address; otherwise it is answered `id in use` and closed, and the
//! live one stays. Both cases are logged.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify, Semaphore};

use badger_api::throttle::LogThrottle;

use super::store::{Batch, SeriesKey};
use badger_formats::pulse::{parse_add, parse_got, split_command, MAX_LINE};

/// Lines queued for one relay before polls to it are skipped.
const OUT_QUEUE: usize = 64;
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters of the relay side.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub polls: AtomicU64,
    pub polls_skipped: AtomicU64,
    pub gots: AtomicU64,
    pub points: AtomicU64,
    pub bad_lines: AtomicU64,
    /// Polls skipped because the relay's queue held [`Limits::queue_bytes`] already.
    pub polls_over_queue: AtomicU64,
    /// Names (`add` or `got`) ignored at a per-relay or total bound.
    pub refused_stats: AtomicU64,
    /// Connections refused: bad relay token, or an id in use.
    pub refused_ids: AtomicU64,
    /// Accept errors (each backs off).
    pub accept_errors: AtomicU64,
    /// Times every connection slot was taken when a connection came (it waited).
    pub relays_full: AtomicU64,
}

impl Counters {
    /// Bound hits of the relay side (the `pulse_limited` self-metric).
    pub fn limited(&self) -> u64 {
        [&self.polls_over_queue, &self.refused_stats, &self.refused_ids, &self.accept_errors, &self.relays_full]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// The relay side's bounds (flags of `badger server`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// `--relay-token`: "" accepts any relay.
    pub relay_token: String,
    /// `--max-relay-stats`.
    pub max_relay_stats: usize,
    /// `--max-stats`.
    pub max_stats: usize,
    /// `--max-relays`.
    pub max_relays: usize,
    /// `--relay-queue-bytes`.
    pub queue_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            relay_token: String::new(),
            max_relay_stats: 10_000,
            max_stats: 200_000,
            max_relays: 512,
            queue_bytes: 1 << 20,
        }
    }
}

struct Client {
    generation: u64,
    peer: Option<IpAddr>,
    tx: mpsc::Sender<Arc<str>>,
    /// Bytes queued in `tx` (written lines are taken off by the writer).
    queued: Arc<AtomicUsize>,
    /// Names this relay holds (collectors and cached series names), charged to the total.
    names: AtomicUsize,
    /// collector name → its tags as given in `add`.
    collectors: Mutex<BTreeMap<String, Vec<String>>>,
    replaced: Notify,
}

/// Every identified relay, by id.
#[derive(Default)]
pub struct Registry {
    clients: Mutex<HashMap<String, Arc<Client>>>,
    next: AtomicU64,
    pub counters: Counters,
    pub limits: Limits,
    /// Names held by every relay together.
    names: AtomicUsize,
    throttle: Mutex<LogThrottle>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    pub fn new(limits: Limits) -> Registry {
        Registry { limits, ..Registry::default() }
    }

    fn complain(&self, what: std::fmt::Arguments) {
        if let Some(left) = lock(&self.throttle).allow() {
            log::warn!("pulse: {what} ({left} more bound hits since the last line)");
        }
    }

    /// Charges one name to `client` and the total; `false` (counted, logged) past a bound.
    fn charge(&self, client: &Client, id: &str) -> bool {
        if client.names.load(Ordering::Relaxed) >= self.limits.max_relay_stats {
            self.counters.refused_stats.fetch_add(1, Ordering::Relaxed);
            self.complain(format_args!(
                "relay {id:?} holds {} stat names (--max-relay-stats); ignoring new ones",
                self.limits.max_relay_stats
            ));
            return false;
        }
        if self.names.fetch_add(1, Ordering::Relaxed) >= self.limits.max_stats {
            self.names.fetch_sub(1, Ordering::Relaxed);
            self.counters.refused_stats.fetch_add(1, Ordering::Relaxed);
            self.complain(format_args!(
                "relays hold {} stat names together (--max-stats); ignoring new ones from {id:?}",
                self.limits.max_stats
            ));
            return false;
        }
        client.names.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn refund(&self, client: &Client, n: usize) {
        let n = n.min(client.names.load(Ordering::Relaxed));
        client.names.fetch_sub(n, Ordering::Relaxed);
        self.names.fetch_sub(n, Ordering::Relaxed);
    }

    /// Names held by every relay together.
    pub fn names(&self) -> usize {
        self.names.load(Ordering::Relaxed)
    }

    /// Ids of the connected relays.
    pub fn ids(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.clients).keys().cloned().collect();
        v.sort();
        v
    }

    pub fn len(&self) -> usize {
        lock(&self.clients).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends `get <collectors>` to every relay that has collectors; a relay whose queue is
    /// full (it is not reading) is skipped this time.
    pub fn poll_all(&self) {
        let clients: Vec<Arc<Client>> = lock(&self.clients).values().cloned().collect();
        for c in clients {
            if c.queued.load(Ordering::Relaxed) >= self.limits.queue_bytes {
                // Skipped before the line is even built.
                self.counters.polls_over_queue.fetch_add(1, Ordering::Relaxed);
                self.counters.polls_skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let line = {
                let cols = lock(&c.collectors);
                if cols.is_empty() {
                    continue;
                }
                let mut l = String::from("get ");
                for (i, name) in cols.keys().enumerate() {
                    if i > 0 {
                        l.push(',');
                    }
                    l.push_str(name);
                }
                l.push('\n');
                l
            };
            let len = line.len();
            if c.queued.load(Ordering::Relaxed).saturating_add(len) > self.limits.queue_bytes.max(len) {
                // The relay is not reading: what is queued is bound in bytes, not only lines.
                self.counters.polls_over_queue.fetch_add(1, Ordering::Relaxed);
                self.counters.polls_skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            c.queued.fetch_add(len, Ordering::Relaxed);
            match c.tx.try_send(line.into()) {
                Ok(()) => self.counters.polls.fetch_add(1, Ordering::Relaxed),
                Err(_) => {
                    c.queued.fetch_sub(len, Ordering::Relaxed);
                    self.counters.polls_skipped.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    }
}

/// Where ingested batches go.
pub type Sink = mpsc::Sender<Arc<Batch>>;

/// What a connection needs.
#[derive(Clone)]
pub struct Ctx {
    pub registry: Arc<Registry>,
    pub sink: Sink,
    pub beat: Duration,
    /// `/live` subscribers.
    pub live: Option<tokio::sync::broadcast::Sender<Arc<Batch>>>,
    /// The Mist publisher.
    pub mist: Option<super::live::MistTx>,
}

/// Accepts relays until the listener fails: at most `max_relays` at once (the others wait
/// in the backlog), backing off on accept errors.
pub async fn serve(listener: TcpListener, ctx: Ctx) {
    let slots = Arc::new(Semaphore::new(ctx.registry.limits.max_relays.max(1)));
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                ctx.registry.counters.relays_full.fetch_add(1, Ordering::Relaxed);
                ctx.registry.complain(format_args!(
                    "{} relay connections open (--max-relays); new ones wait",
                    ctx.registry.limits.max_relays
                ));
                match slots.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => return,
                }
            }
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    log::debug!("pulse: relay connection from {peer}");
                    connection(stream, Some(peer.ip()), ctx).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off rather than spin.
                ctx.registry.counters.accept_errors.fetch_add(1, Ordering::Relaxed);
                ctx.registry.complain(format_args!("accepting a relay: {e}; retrying in {backoff:?}"));
                drop(permit);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

enum Read {
    Line(String),
    TooLong,
    Closed,
    Timeout,
}

/// Reads one line, at most [`MAX_LINE`] bytes, within `deadline`.
async fn read_line(r: &mut BufReader<OwnedReadHalf>, buf: &mut Vec<u8>, deadline: Duration) -> Read {
    buf.clear();
    let work = async {
        loop {
            let chunk = match r.fill_buf().await {
                Ok([]) => return Read::Closed,
                Ok(c) => c,
                Err(_) => return Read::Closed,
            };
            if let Some(pos) = chunk.iter().position(|&b| b == b'\n') {
                buf.extend_from_slice(&chunk[..pos]);
                r.consume(pos + 1);
                if buf.len() > MAX_LINE {
                    return Read::TooLong;
                }
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
                return Read::Line(String::from_utf8_lossy(buf).into_owned());
            }
            let n = chunk.len();
            buf.extend_from_slice(chunk);
            r.consume(n);
            if buf.len() > MAX_LINE {
                return Read::TooLong;
            }
        }
    };
    match tokio::time::timeout(deadline, work).await {
        Ok(r) => r,
        Err(_) => Read::Timeout,
    }
}

async fn reply_and_close(mut stream: tokio::net::tcp::OwnedWriteHalf, msg: &str) {
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        let _ = stream.write_all(msg.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Splits `id` arguments into the id and whether the relay token matched (always `true`
/// without a relay token, when the whole argument is the id).
pub fn identity<'a>(args: &'a str, token: &str) -> (&'a str, bool) {
    if token.is_empty() {
        return (args, true);
    }
    match args.rsplit_once(' ') {
        Some((id, given)) => {
            (id.trim_end(), bool::from(subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.as_bytes())))
        }
        None => (args, false),
    }
}

/// One relay connection (`peer`: its address, to tell a reconnect from a takeover).
pub async fn connection(stream: TcpStream, peer: Option<IpAddr>, ctx: Ctx) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let mut reader = BufReader::with_capacity(4 * 1024, rd);
    let mut buf = Vec::new();
    let deadline = ctx.beat * 2;
    let id = match read_line(&mut reader, &mut buf, deadline).await {
        Read::Line(line) => {
            let (cmd, args) = split_command(&line);
            if cmd != "id" {
                return reply_and_close(wr, "identify first with the 'id' command\n").await;
            }
            match args.map(|a| identity(a, &ctx.registry.limits.relay_token)) {
                Some((id, true)) if !id.is_empty() => id.to_string(),
                Some((id, false)) if !id.is_empty() => {
                    ctx.registry.counters.refused_ids.fetch_add(1, Ordering::Relaxed);
                    ctx.registry.complain(format_args!("relay {id:?} from {peer:?}: bad or missing relay token"));
                    return reply_and_close(wr, "unauthorized\n").await;
                }
                _ => return reply_and_close(wr, "missing id\n").await,
            }
        }
        Read::TooLong => return reply_and_close(wr, "line too long\n").await,
        Read::Closed | Read::Timeout => return,
    };
    let (tx, rx) = mpsc::channel::<Arc<str>>(OUT_QUEUE);
    let generation = ctx.registry.next.fetch_add(1, Ordering::Relaxed);
    let queued = Arc::new(AtomicUsize::new(0));
    let client = Arc::new(Client {
        generation,
        peer,
        tx: tx.clone(),
        queued: queued.clone(),
        names: AtomicUsize::new(0),
        collectors: Mutex::default(),
        replaced: Notify::new(),
    });
    let authenticated = !ctx.registry.limits.relay_token.is_empty();
    let taken_by = {
        let mut clients = lock(&ctx.registry.clients);
        match clients.get(&id) {
            Some(old) if !authenticated && old.peer != peer => Some(old.peer),
            old => {
                if let Some(old) = old {
                    log::info!(
                        "pulse: relay {id:?} connected again from {peer:?} ({}); closing its older connection",
                        if authenticated { "authenticated" } else { "same address" }
                    );
                    old.replaced.notify_one();
                }
                clients.insert(id.clone(), client.clone());
                None
            }
        }
    };
    if let Some(live_peer) = taken_by {
        ctx.registry.counters.refused_ids.fetch_add(1, Ordering::Relaxed);
        ctx.registry.complain(format_args!(
            "relay {id:?} is connected from {live_peer:?}; refusing the same id from {peer:?} \
             (set --relay-token to let an authenticated relay take over)"
        ));
        return reply_and_close(wr, "id in use\n").await;
    }
    ctx.registry.counters.connections.fetch_add(1, Ordering::Relaxed);
    log::info!("pulse: relay {id:?} identified");
    let writer = tokio::spawn(write_loop(wr, rx, queued));
    let _ = tx.send(Arc::from("ok\n")).await;
    let _ = tx.send(Arc::from(format!("beat {}\n", ctx.beat.as_secs()))).await;
    let host = id.clone();
    let mut cache: Cache = HashMap::new();
    loop {
        let read = tokio::select! {
            r = read_line(&mut reader, &mut buf, deadline) => r,
            _ = client.replaced.notified() => break,
        };
        let line = match read {
            Read::Line(l) => l,
            Read::TooLong => {
                let _ = tx.try_send(Arc::from("line too long\n"));
                break;
            }
            Read::Closed => break,
            Read::Timeout => {
                log::info!("pulse: relay {id:?} sent nothing for {deadline:?}; closing");
                break;
            }
        };
        let (cmd, args) = split_command(&line);
        match (cmd, args) {
            ("ping", _) => {
                let _ = tx.send(Arc::from("pong\n")).await;
            }
            ("close", _) => break,
            ("flush", _) | ("override", _) => {
                let _ = tx.send(Arc::from("ok\n")).await;
            }
            ("add", Some(a)) => {
                let (name, tags) = parse_add(a);
                let known = lock(&client.collectors).contains_key(name);
                if known || ctx.registry.charge(&client, &id) {
                    lock(&client.collectors).insert(name.to_string(), tags.iter().map(|t| t.to_string()).collect());
                }
                ctx.registry.refund(&client, cached(&cache));
                cache.clear();
            }
            ("remove", Some(name)) => {
                if lock(&client.collectors).remove(name).is_some() {
                    ctx.registry.refund(&client, 1);
                }
                ctx.registry.refund(&client, cached(&cache));
                cache.clear();
            }
            ("got", Some(a)) => {
                let batch = ingest(&ctx.registry, &host, &client, &mut cache, a, ctx.mist.as_ref());
                ctx.registry.counters.gots.fetch_add(1, Ordering::Relaxed);
                ctx.registry.counters.points.fetch_add(batch.points.len() as u64, Ordering::Relaxed);
                if batch.points.is_empty() {
                    continue;
                }
                let batch = Arc::new(batch);
                if let Some(live) = &ctx.live {
                    if live.receiver_count() > 0 {
                        let _ = live.send(batch.clone());
                    }
                }
                if ctx.sink.send(batch).await.is_err() {
                    break;
                }
            }
            _ => {
                ctx.registry.counters.bad_lines.fetch_add(1, Ordering::Relaxed);
                log::trace!("pulse: relay {id:?}: ignoring {line:?}");
            }
        }
    }
    {
        let mut clients = lock(&ctx.registry.clients);
        if clients.get(&id).is_some_and(|c| c.generation == generation) {
            clients.remove(&id);
        }
    }
    // Everything this connection held goes back to the total.
    ctx.registry.refund(&client, usize::MAX);
    drop(tx);
    drop(client);
    // The writer ends once every sender is gone (the registry's included), after writing
    // what is queued; give it a moment, then cut it off.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    log::info!("pulse: relay {id:?} disconnected");
}

async fn write_loop(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<Arc<str>>,
    queued: Arc<AtomicUsize>,
) {
    while let Some(line) = rx.recv().await {
        // Only `get` lines are charged (by the poller); the rest are a few bytes.
        if line.starts_with("get ") {
            queued.fetch_sub(line.len().min(queued.load(Ordering::Relaxed)), Ordering::Relaxed);
        }
        match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(line.as_bytes())).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    let _ = wr.shutdown().await;
}

/// Turns a `got` payload into a batch: measurement = the item's name, tags = the
/// collector's `key:value` tags (others dropped) and `host` = the relay's id (which a
/// collector tag cannot override).
fn ingest(
    registry: &Registry,
    host: &str,
    client: &Client,
    cache: &mut Cache,
    args: &str,
    mist: Option<&super::live::MistTx>,
) -> Batch {
    let time_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let mut points = Vec::new();
    for item in parse_got(args) {
        if !cache.contains_key(item.collector) {
            if !registry.charge(client, host) {
                continue;
            }
            cache.insert(item.collector.to_string(), HashMap::new());
        }
        let Some(names) = cache.get_mut(item.collector) else { continue };
        let key = match names.get(item.name) {
            Some(k) => k.clone(),
            None => {
                if !registry.charge(client, host) {
                    continue;
                }
                let mut tags: Vec<(String, String)> = lock(&client.collectors)
                    .get(item.collector)
                    .map(|ts| {
                        ts.iter()
                            .filter_map(|t| t.split_once(':'))
                            .filter(|(k, _)| *k != "host" && !k.is_empty())
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                // Later duplicates win, as in the original's tag map.
                tags.reverse();
                tags.push(("host".to_string(), host.to_string()));
                let k = Arc::new(SeriesKey::new(item.name, tags));
                names.insert(item.name.to_string(), k.clone());
                k
            }
        };
        points.push((key, item.number()));
        if let Some(m) = mist {
            let tags = lock(&client.collectors).get(item.collector).cloned().unwrap_or_default();
            let _ = m.try_send(super::live::mist_message(&tags, host, item.name, item.value));
        }
    }
    Batch { time_ms, points }
}

/// Series keys of a connection: collector → name → key.
type Cache = HashMap<String, HashMap<String, Arc<SeriesKey>>>;

/// Names a cache holds (charged to the relay: a collector and each of its names).
fn cached(cache: &Cache) -> usize {
    cache.values().map(|m| m.len() + 1).sum()
}

/// Polls every `interval` (the first poll at once) until the runtime stops.
pub async fn poller(registry: Arc<Registry>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        registry.poll_all();
    }
}
