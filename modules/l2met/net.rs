//! The network inputs: the HTTP drain and the syslog listeners, on one thread.
//!
//! They run as tasks of a single-threaded tokio runtime on a thread of their own, and the
//! drain is an axum router: the stack badger's other HTTP parts use, so the process carries
//! one HTTP implementation. Dropping [`Net`] stops the runtime, which closes every socket and
//! connection of this instance.
//!
//! Sockets are bound when the module is built, so a port in use is reported at start. A
//! reload builds the new instance while the old one still runs; a process-wide table hands
//! the new instance the old one's socket (a duplicate of it), so a changed config never
//! fails on its own port and no connection waiting in the socket's queue is lost. The old
//! instance then stops accepting and reading at once, and lets the drain's requests in
//! progress finish (2 s at most) when it is dropped.
//!
//! Bounds (`max_connections`, `idle_timeout`, `request_timeout`): the drain is served by
//! [`badger_api::listener::serve`] (connections at once, header/idle time, request time,
//! header bytes); the syslog TCP listener closes a connection past `max_connections` at once
//! and a connection that sends nothing for `idle_timeout`, so idle senders cannot keep new
//! ones out. Counters: the `internal` module's `badger.listener.*.l2met_drain` and
//! `….l2met_syslog`; the log lines are throttled to one a minute.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine as _;
use subtle::ConstantTimeEq;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use badger_api::listener::{ListenerLimits, ListenerStats};

use super::store::{Ingest, Options};
use super::Shared;

/// Bodies bigger than this are refused (413).
pub const MAX_BODY: usize = 8 << 20;
/// Longest syslog message on TCP.
pub const MAX_FRAME: usize = 64 << 10;

/// A socket one or more instances serve.
struct Socket {
    kind: Kind,
    /// Bumped when a new instance takes the socket over: the old one stops taking
    /// connections and datagrams from it (and finishes the requests it has).
    takeover: watch::Sender<u64>,
}

enum Kind {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

type Table = Mutex<Vec<(bool, SocketAddr, Weak<Socket>)>>;

/// Sockets bound by the running instances, by (tcp?, address).
static SOCKETS: Table = Mutex::new(Vec::new());

/// The socket bound to `addr`: the one a running instance holds, or a new one.
fn socket(tcp: bool, addr: SocketAddr) -> io::Result<Arc<Socket>> {
    let mut table = SOCKETS.lock().unwrap_or_else(|e| e.into_inner());
    table.retain(|(_, _, w)| w.strong_count() > 0);
    if addr.port() != 0 {
        if let Some(s) = table.iter().find(|(t, a, _)| *t == tcp && *a == addr).and_then(|(_, _, w)| w.upgrade()) {
            s.takeover.send_modify(|g| *g += 1);
            return Ok(s);
        }
    }
    let kind = if tcp { Kind::Tcp(TcpListener::bind(addr)?) } else { Kind::Udp(UdpSocket::bind(addr)?) };
    let s = Arc::new(Socket { kind, takeover: watch::Sender::new(0) });
    table.push((tcp, addr, Arc::downgrade(&s)));
    Ok(s)
}

/// The running network inputs of one instance.
pub struct Net {
    /// The listeners' counters, published while this instance runs.
    _stats: Vec<Arc<dyn badger_api::telemetry::Source>>,
    pub http: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    /// Keeps the sockets in the table while this instance runs.
    _sockets: Vec<Arc<Socket>>,
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Net {
    pub fn start(
        shared: Arc<Shared>,
        http: Option<SocketAddr>,
        udp: Option<SocketAddr>,
        tcp: Option<SocketAddr>,
        limits: &ListenerLimits,
        telemetry: Option<&badger_api::telemetry::Telemetry>,
    ) -> Result<Net, String> {
        let drain_stats = Arc::new(ListenerStats::default());
        let syslog_stats = Arc::new(ListenerStats::default());
        let published: Vec<Arc<dyn badger_api::telemetry::Source>> = vec![drain_stats.clone(), syslog_stats.clone()];
        if let Some(t) = telemetry {
            if http.is_some() {
                t.publish(badger_api::telemetry::Group::Listener, "l2met_drain", &published[0]);
            }
            if tcp.is_some() {
                t.publish(badger_api::telemetry::Group::Listener, "l2met_syslog", &published[1]);
            }
        }
        let lim = limits.clone();
        let mut sockets = Vec::new();
        let mut bind = |tcp_kind: bool, addr: Option<SocketAddr>, what: &str| -> Result<Option<Arc<Socket>>, String> {
            let Some(addr) = addr else { return Ok(None) };
            let s = socket(tcp_kind, addr).map_err(|e| format!("{what} {addr}: {e}"))?;
            sockets.push(s.clone());
            Ok(Some(s))
        };
        let http_sock = bind(true, http, "listen")?;
        let udp_sock = bind(false, udp, "syslog_udp")?;
        let tcp_sock = bind(true, tcp, "syslog_tcp")?;
        // Each task gets its own duplicate of the socket, in non-blocking mode.
        let dup_tcp = |s: &Option<Arc<Socket>>| -> io::Result<Option<(TcpListener, watch::Receiver<u64>)>> {
            match s.as_deref() {
                Some(Socket { kind: Kind::Tcp(l), takeover }) => {
                    let l = l.try_clone()?;
                    l.set_nonblocking(true)?;
                    Ok(Some((l, takeover.subscribe())))
                }
                _ => Ok(None),
            }
        };
        let err = |e: io::Error| format!("preparing the listeners: {e}");
        let http_l = dup_tcp(&http_sock).map_err(err)?;
        let tcp_l = dup_tcp(&tcp_sock).map_err(err)?;
        let udp_s = match udp_sock.as_deref() {
            Some(Socket { kind: Kind::Udp(u), takeover }) => {
                let u = u.try_clone().map_err(err)?;
                u.set_nonblocking(true).map_err(err)?;
                Some((u, takeover.subscribe()))
            }
            _ => None,
        };
        let addr = |l: &Option<(TcpListener, _)>| l.as_ref().and_then(|(l, _)| l.local_addr().ok());
        let (http_addr, tcp_addr) = (addr(&http_l), addr(&tcp_l));
        let udp_addr = udp_s.as_ref().and_then(|(u, _)| u.local_addr().ok());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| format!("starting the network thread: {e}"))?;
        let (stop, stop_rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("l2met-net".into())
            .spawn(move || {
                let bounds = Bounds { limits: lim, drain: drain_stats, syslog: syslog_stats };
                rt.block_on(run(shared, http_l, udp_s, tcp_l, stop_rx, bounds));
                // Dropping the runtime cancels the connection tasks and closes their sockets.
                drop(rt);
            })
            .map_err(|e| format!("starting the network thread: {e}"))?;
        Ok(Net {
            _stats: published,
            http: http_addr,
            udp: udp_addr,
            tcp: tcp_addr,
            stop,
            thread: Some(thread),
            _sockets: sockets,
        })
    }
}

/// Resolves when the instance stops or another instance takes the socket over.
async fn stop_or_takeover(mut stop: watch::Receiver<bool>, mut takeover: watch::Receiver<u64>) {
    let taken_over = async move {
        if takeover.changed().await.is_err() {
            // The socket's table entry is gone: only a stop ends this.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = stop.wait_for(|s| *s) => {}
        _ = taken_over => {}
    }
}

/// Runs `fut` until the instance stops or its socket is taken over.
async fn until_stopped<F: Future<Output = ()>>(fut: F, stop: watch::Receiver<bool>, takeover: watch::Receiver<u64>) {
    tokio::select! {
        _ = fut => {}
        _ = stop_or_takeover(stop, takeover) => {}
    }
}

/// The listeners' bounds and counters.
struct Bounds {
    limits: ListenerLimits,
    drain: Arc<ListenerStats>,
    syslog: Arc<ListenerStats>,
}

/// How long a stopping instance lets the drain's requests in progress finish.
const HTTP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

async fn run(
    shared: Arc<Shared>,
    http: Option<(TcpListener, watch::Receiver<u64>)>,
    udp: Option<(UdpSocket, watch::Receiver<u64>)>,
    tcp: Option<(TcpListener, watch::Receiver<u64>)>,
    mut stop: watch::Receiver<bool>,
    bounds: Bounds,
) {
    let Bounds { limits, drain: drain_stats, syslog: syslog_stats } = bounds;
    let mut http_task = None;
    if let Some((l, takeover)) = http {
        match tokio::net::TcpListener::from_std(l) {
            Ok(l) => {
                let app = Router::new().route("/logs", axum::routing::any(logs)).with_state(shared.clone());
                // Graceful: on stop or takeover it stops accepting and lets requests finish.
                let serve = badger_api::listener::serve(
                    l,
                    app,
                    limits.clone(),
                    drain_stats,
                    "l2met drain",
                    stop_or_takeover(stop.clone(), takeover),
                );
                http_task = Some(tokio::spawn(serve));
            }
            Err(e) => log::error!("l2met: HTTP drain: {e}"),
        }
    }
    if let Some((u, takeover)) = udp {
        match tokio::net::UdpSocket::from_std(u) {
            Ok(u) => {
                tokio::spawn(until_stopped(serve_udp(shared.clone(), u), stop.clone(), takeover));
            }
            Err(e) => log::error!("l2met: syslog UDP: {e}"),
        }
    }
    if let Some((l, takeover)) = tcp {
        match tokio::net::TcpListener::from_std(l) {
            Ok(l) => {
                let serve = serve_tcp(shared.clone(), l, limits.clone(), syslog_stats);
                tokio::spawn(until_stopped(serve, stop.clone(), takeover));
            }
            Err(e) => log::error!("l2met: syslog TCP: {e}"),
        }
    }
    let _ = stop.wait_for(|s| *s).await;
    if let Some(t) = http_task {
        let _ = tokio::time::timeout(HTTP_GRACE, t).await;
    }
}

fn reply(status: StatusCode, body: &'static str) -> Response {
    (status, body).into_response()
}

/// `POST /logs`.
async fn logs(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let counters = &shared.store.counters;
    if req.method() != Method::POST {
        counters.rejected.fetch_add(1, Ordering::Relaxed);
        return reply(StatusCode::BAD_REQUEST, "Invalid Request");
    }
    if let Err(e) = check_auth(req.headers(), &shared.tokens) {
        counters.rejected.fetch_add(1, Ordering::Relaxed);
        return e.response();
    }
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        counters.rejected.fetch_add(1, Ordering::Relaxed);
        return reply(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large.");
    }
    let opts = query_options(req.uri().query().unwrap_or(""), &shared.defaults);
    let max_resolution = shared.store.limits().max_resolution;
    if opts.resolution > max_resolution {
        // A bucket is held for its whole window: a day-long one would hold its values a day.
        counters.rejected.fetch_add(1, Ordering::Relaxed);
        return reply(StatusCode::BAD_REQUEST, "resolution above max_resolution");
    }
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            counters.rejected.fetch_add(1, Ordering::Relaxed);
            return reply(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large.");
        }
    };
    let mut ingest = Ingest::new();
    ingest.logplex(&shared.store, &body, &opts, shared.now_ms());
    counters.requests.fetch_add(1, Ordering::Relaxed);
    Response::new(Body::empty())
}

/// Why a drain request's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header: 401 `Fail: Missing auth.` (l2met crashed here).
    Missing,
    /// Not `Basic` with base64: 400 `Fail: Parse auth.`
    Unparsable,
    /// Not one of the tokens: 400 `Invalid Request`.
    Wrong,
}

impl AuthError {
    fn response(self) -> Response {
        match self {
            AuthError::Missing => {
                let mut r = reply(StatusCode::UNAUTHORIZED, "Fail: Missing auth.");
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"l2met\""));
                r
            }
            AuthError::Unparsable => reply(StatusCode::BAD_REQUEST, "Fail: Parse auth."),
            AuthError::Wrong => reply(StatusCode::BAD_REQUEST, "Invalid Request"),
        }
    }
}

/// HTTP Basic credentials checked against the tokens (see the module docs).
pub fn check_auth(headers: &HeaderMap, tokens: &[Vec<u8>]) -> Result<(), AuthError> {
    let h = headers.get(header::AUTHORIZATION).ok_or(AuthError::Missing)?;
    let creds = basic_credentials(h.as_bytes()).ok_or(AuthError::Unparsable)?;
    let creds = creds.strip_suffix(b":").unwrap_or(&creds);
    // Every token is compared (in constant time each), so the time taken does not tell
    // which one came close.
    let mut ok = subtle::Choice::from(0u8);
    for t in tokens {
        ok |= t.as_slice().ct_eq(creds);
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(AuthError::Wrong)
    }
}

/// The decoded credentials of `Basic <base64>` (standard or URL-safe alphabet, padded or not).
pub fn basic_credentials(h: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(h).ok()?.trim();
    let (scheme, b64) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let b64 = b64.trim();
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD].iter().find_map(|e| e.decode(b64).ok())
}

/// The drain URL's options: `resolution`, `prefix`, `source-prefix` (first value of each;
/// empty ones and a resolution outside 1 to 86400 seconds mean the configured default).
pub fn query_options(query: &str, defaults: &Options) -> Options {
    let mut opts = defaults.clone();
    let mut seen = [false; 3];
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k), percent_decode(v));
        let slot = match k.as_str() {
            "resolution" => 0,
            "prefix" => 1,
            "source-prefix" => 2,
            _ => continue,
        };
        if std::mem::replace(&mut seen[slot], true) || v.is_empty() {
            continue;
        }
        match slot {
            0 => {
                if let Some(r) = v.parse::<u32>().ok().filter(|r| (1..=86_400).contains(r)) {
                    opts.resolution = r;
                }
            }
            1 => opts.prefix = Some(v),
            _ => opts.source_prefix = Some(v),
        }
    }
    opts
}

/// `%XX` and `+` (a space) decoded; invalid escapes are kept as written.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
}

async fn serve_udp(shared: Arc<Shared>, sock: tokio::net::UdpSocket) {
    let mut buf = vec![0u8; 65_536];
    let mut ingest = Ingest::new();
    loop {
        let n = match sock.recv_from(&mut buf).await {
            Ok((n, _)) => n,
            Err(e) => {
                log::debug!("l2met: syslog UDP: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let now = shared.now_ms();
        for line in buf[..n].split(|&c| c == b'\n') {
            if !line.is_empty() {
                ingest.syslog(&shared.store, line, &shared.defaults, now);
            }
        }
        ingest.flush(&shared.store);
    }
}

async fn serve_tcp(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    limits: ListenerLimits,
    stats: Arc<ListenerStats>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut backoff = std::time::Duration::from_millis(10);
    let max = limits.max_connections;
    loop {
        let (conn, peer) = match listener.accept().await {
            Ok(c) => {
                backoff = std::time::Duration::from_millis(10);
                c
            }
            Err(e) => {
                stats.hit(&stats.accept_errors, "l2met syslog TCP", format_args!("accepting: {e}"));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
                continue;
            }
        };
        if open.fetch_add(1, Ordering::Relaxed) >= max {
            open.fetch_sub(1, Ordering::Relaxed);
            stats.hit(
                &stats.full,
                "l2met syslog TCP",
                format_args!("{max} connections open (max_connections); closing the one from {peer}"),
            );
            continue;
        }
        stats.connections.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let (shared, open, stats) = (shared.clone(), open.clone(), stats.clone());
        let idle = limits.header_timeout;
        tokio::spawn(async move {
            if serve_tcp_conn(&shared, conn, idle).await {
                stats.hit(
                    &stats.header_timeouts,
                    "l2met syslog TCP",
                    format_args!("{peer} sent nothing for {idle:?} (idle_timeout); closed"),
                );
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Reads one connection's frames: octet-counted (`LEN SP MSG`, RFC 6587) when a frame
/// starts with a digit, else up to the next newline. A connection silent for `idle` is
/// closed (returns true then).
async fn serve_tcp_conn(shared: &Shared, mut conn: tokio::net::TcpStream, idle: std::time::Duration) -> bool {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut ingest = Ingest::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut timed_out = false;
    loop {
        let n = match tokio::time::timeout(idle, conn.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) => {
                timed_out = true;
                break;
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        let now = shared.now_ms();
        let mut frames = TcpFrames { buf: &buf, pos: 0 };
        let mut bad = false;
        loop {
            match frames.next_frame() {
                Frame::Message(m) => ingest.syslog(&shared.store, m, &shared.defaults, now),
                Frame::Incomplete => break,
                Frame::Bad => {
                    bad = true;
                    break;
                }
            }
        }
        let used = frames.pos;
        ingest.flush(&shared.store);
        if bad {
            log::debug!("l2met: syslog TCP: a frame is too long or its length is not a number; closing");
            return false;
        }
        buf.drain(..used);
    }
    // What is left at the end of the stream is the last message, if newline-framed.
    if !buf.is_empty() && !buf[0].is_ascii_digit() {
        ingest.syslog(&shared.store, &buf, &shared.defaults, shared.now_ms());
        ingest.flush(&shared.store);
    }
    timed_out
}

/// One frame of a TCP syslog stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Message(&'a [u8]),
    /// More bytes are needed.
    Incomplete,
    /// Not a frame this listener reads (a length over [`MAX_FRAME`], or no newline in as
    /// many bytes): the connection is closed.
    Bad,
}

/// The frames of a TCP syslog stream buffered so far.
pub struct TcpFrames<'a> {
    pub buf: &'a [u8],
    /// Bytes taken by the frames returned so far.
    pub pos: usize,
}

impl<'a> TcpFrames<'a> {
    pub fn next_frame(&mut self) -> Frame<'a> {
        // Blank lines between frames are skipped.
        while matches!(self.buf.get(self.pos), Some(b'\n' | b'\r')) {
            self.pos += 1;
        }
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return Frame::Incomplete;
        }
        if rest[0].is_ascii_digit() {
            let Some(sp) = rest.iter().take(8).position(|&c| c == b' ') else {
                return if rest.len() >= 8 { Frame::Bad } else { Frame::Incomplete };
            };
            let len = match std::str::from_utf8(&rest[..sp]).ok().and_then(|s| s.parse::<usize>().ok()) {
                Some(l) if l <= MAX_FRAME => l,
                _ => return Frame::Bad,
            };
            let Some(msg) = rest.get(sp + 1..sp + 1 + len) else { return Frame::Incomplete };
            self.pos += sp + 1 + len;
            return Frame::Message(msg);
        }
        match rest.iter().position(|&c| c == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                Frame::Message(&rest[..i])
            }
            None if rest.len() > MAX_FRAME => Frame::Bad,
            None => Frame::Incomplete,
        }
    }
}
