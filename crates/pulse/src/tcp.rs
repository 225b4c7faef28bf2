//! The relay side of the server: the TCP protocol, the registry of relays and the poller.
//!
//! As the original: `id <id>` first (`ok` + `beat N`), `ping` → `pong`, silent `add`,
//! `remove`, `got` and unknown commands, `close` ends the connection, a read deadline of
//! 2× the beat interval. Fixed: the registry is locked; a newer connection with the same id
//! replaces the older one (which is closed) and the older one's cleanup never removes the
//! newer registration; a failed write only drops that connection; `\r` is trimmed; a line
//! longer than [`MAX_LINE`] is answered `line too long` and the connection closed;
//! `flush` and `override` are answered `ok`; an empty id is refused like a missing one.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

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
}

struct Client {
    generation: u64,
    tx: mpsc::Sender<Arc<str>>,
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
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
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
            match c.tx.try_send(line.into()) {
                Ok(()) => self.counters.polls.fetch_add(1, Ordering::Relaxed),
                Err(_) => self.counters.polls_skipped.fetch_add(1, Ordering::Relaxed),
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

/// Accepts relays until the listener fails.
pub async fn serve(listener: TcpListener, ctx: Ctx) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    log::debug!("pulse: relay connection from {peer}");
                    connection(stream, ctx).await;
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                log::warn!("pulse: accepting a relay: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
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

/// One relay connection.
pub async fn connection(stream: TcpStream, ctx: Ctx) {
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
            match args {
                Some(a) if !a.is_empty() => a.to_string(),
                _ => return reply_and_close(wr, "missing id\n").await,
            }
        }
        Read::TooLong => return reply_and_close(wr, "line too long\n").await,
        Read::Closed | Read::Timeout => return,
    };
    let (tx, rx) = mpsc::channel::<Arc<str>>(OUT_QUEUE);
    let generation = ctx.registry.next.fetch_add(1, Ordering::Relaxed);
    let client = Arc::new(Client { generation, tx: tx.clone(), collectors: Mutex::default(), replaced: Notify::new() });
    if let Some(old) = lock(&ctx.registry.clients).insert(id.clone(), client.clone()) {
        log::info!("pulse: relay {id:?} connected again; closing its older connection");
        old.replaced.notify_one();
    }
    ctx.registry.counters.connections.fetch_add(1, Ordering::Relaxed);
    log::info!("pulse: relay {id:?} identified");
    let writer = tokio::spawn(write_loop(wr, rx));
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
                lock(&client.collectors).insert(name.to_string(), tags.iter().map(|t| t.to_string()).collect());
                cache.clear();
            }
            ("remove", Some(name)) => {
                lock(&client.collectors).remove(name);
                cache.clear();
            }
            ("got", Some(a)) => {
                let batch = ingest(&host, &client, &mut cache, a, ctx.mist.as_ref());
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
    drop(tx);
    drop(client);
    // The writer ends once every sender is gone (the registry's included), after writing
    // what is queued; give it a moment, then cut it off.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    log::info!("pulse: relay {id:?} disconnected");
}

async fn write_loop(mut wr: tokio::net::tcp::OwnedWriteHalf, mut rx: mpsc::Receiver<Arc<str>>) {
    while let Some(line) = rx.recv().await {
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
fn ingest(host: &str, client: &Client, cache: &mut Cache, args: &str, mist: Option<&super::live::MistTx>) -> Batch {
    let time_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let mut points = Vec::new();
    for item in parse_got(args) {
        if !cache.contains_key(item.collector) {
            cache.insert(item.collector.to_string(), HashMap::new());
        }
        let Some(names) = cache.get_mut(item.collector) else { continue };
        let key = match names.get(item.name) {
            Some(k) => k.clone(),
            None => {
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

/// Polls every `interval` (the first poll at once) until the runtime stops.
pub async fn poller(registry: Arc<Registry>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        registry.poll_all();
    }
}
