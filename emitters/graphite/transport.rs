//! How Graphite records reach carbon: one persistent TCP connection (plaintext and pickle)
//! or UDP datagrams of whole lines. Both are [`Transport`]s of the emitter's outbox, which
//! retries with backoff whenever a send fails.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use badger_outbox::{SendError, Transport};

/// Bytes gathered before one `write` on the TCP connection.
const WRITE_CHUNK: usize = 64 * 1024;

/// The most of its gathering buffer the TCP connection keeps between sends. A steady-state
/// send is one tick's record, a few kilobytes; the catch-up sends after an outage fill whole
/// chunks, and a buffer kept at that size would stay resident after the backlog has drained.
/// A larger one is let go after the send and its pages handed back to the kernel.
const KEEP_BUF: usize = 16 * 1024;

/// Where carbon listens, and how long one connect or write may take.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub timeout: Duration,
    /// At shutdown: no connect or write goes past this.
    pub deadline: Option<Instant>,
}

impl Target {
    /// The time one operation may take now: `timeout`, cut short by the deadline.
    fn time_left(&self) -> Result<Duration, SendError> {
        let Some(deadline) = self.deadline else { return Ok(self.timeout) };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(SendError::Retry("the shutdown deadline has passed".into()));
        }
        Ok(left.min(self.timeout))
    }

    fn addrs(&self) -> Result<Vec<SocketAddr>, SendError> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| SendError::Retry(format!("resolving {}: {e}", self.host)))?
            .collect();
        if addrs.is_empty() {
            return Err(SendError::Retry(format!("resolving {}: no address", self.host)));
        }
        Ok(addrs)
    }

    fn name(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One persistent TCP connection, opened when needed and dropped on any error (the outbox
/// then backs off and the next send reconnects).
pub struct TcpLink {
    pub target: Target,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl TcpLink {
    pub fn new(target: Target) -> TcpLink {
        TcpLink { target, stream: None, buf: Vec::new() }
    }

    /// True while a connection is open.
    pub fn connected(&self) -> bool {
        self.stream.is_some()
    }

    fn connect(&self, timeout: Duration) -> Result<TcpStream, SendError> {
        let mut last = None;
        for addr in self.target.addrs()? {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        let why = last.map(|e| e.to_string()).unwrap_or_default();
        Err(SendError::Retry(format!("connecting to {}: {why}", self.target.name())))
    }

    fn write_all(&mut self, records: &[&[u8]], timeout: Duration) -> io::Result<()> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "not connected"));
        };
        stream.set_write_timeout(Some(timeout))?;
        self.buf.clear();
        for r in records {
            if self.buf.len() + r.len() > WRITE_CHUNK && !self.buf.is_empty() {
                stream.write_all(&self.buf)?;
                self.buf.clear();
            }
            if r.len() >= WRITE_CHUNK {
                stream.write_all(r)?;
            } else {
                self.buf.extend_from_slice(r);
            }
        }
        if !self.buf.is_empty() {
            stream.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Carbon never writes to its clients, so a readable socket means the peer closed it (or
/// reset it): writing there would "succeed" into a dead connection and lose the records.
fn peer_closed(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let closed = match stream.peek(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).is_err() || closed
}

impl Transport for TcpLink {
    fn send(&mut self, records: &[&[u8]]) -> Result<(), SendError> {
        let timeout = self.target.time_left()?;
        if self.stream.as_ref().is_some_and(peer_closed) {
            log::debug!("graphite: {} closed the connection; reconnecting", self.target.name());
            self.stream = None;
        }
        if self.stream.is_none() {
            self.stream = Some(self.connect(timeout)?);
        }
        let written = self.write_all(records, timeout).map_err(|e| {
            self.stream = None;
            SendError::Retry(format!("writing to {}: {e}", self.target.name()))
        });
        if self.buf.capacity() > KEEP_BUF {
            self.buf = Vec::new();
            badger_api::memory::release_free_memory();
        }
        written
    }
}

/// Plaintext lines in UDP datagrams, each at most `max_bytes` and holding whole lines.
pub struct UdpLink {
    pub target: Target,
    max_bytes: usize,
    socket: Option<(UdpSocket, SocketAddr)>,
    datagram: Vec<u8>,
}

impl UdpLink {
    pub fn new(target: Target, max_bytes: usize) -> UdpLink {
        UdpLink { target, max_bytes, socket: None, datagram: Vec::new() }
    }

    fn open(&self, timeout: Duration) -> Result<(UdpSocket, SocketAddr), SendError> {
        let addr = self.target.addrs()?[0];
        let local = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let socket = UdpSocket::bind(local).map_err(|e| SendError::Retry(format!("opening a UDP socket: {e}")))?;
        socket.set_write_timeout(Some(timeout)).map_err(|e| SendError::Retry(format!("UDP socket: {e}")))?;
        Ok((socket, addr))
    }

    fn flush_datagram(&mut self) -> Result<(), SendError> {
        if self.datagram.is_empty() {
            return Ok(());
        }
        let Some((socket, addr)) = &self.socket else { return Err(SendError::Retry("no UDP socket".into())) };
        let sent = socket.send_to(&self.datagram, *addr);
        let len = self.datagram.len();
        self.datagram.clear();
        match sent {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::MSGSIZE.raw_os_error()) => {
                log::warn!("graphite: a {len}-byte datagram is too large for {}; left out", self.target.name());
                Ok(())
            }
            Err(e) => {
                self.socket = None;
                Err(SendError::Retry(format!("sending to {}: {e}", self.target.name())))
            }
        }
    }
}

impl Transport for UdpLink {
    fn send(&mut self, records: &[&[u8]]) -> Result<(), SendError> {
        let timeout = self.target.time_left()?;
        if self.socket.is_none() {
            self.socket = Some(self.open(timeout)?);
        }
        self.datagram.clear();
        for record in records {
            for line in record.split_inclusive(|&b| b == b'\n') {
                if !self.datagram.is_empty() && self.datagram.len() + line.len() > self.max_bytes {
                    self.flush_datagram()?;
                }
                self.datagram.extend_from_slice(line);
            }
        }
        self.flush_datagram()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::TcpListener;

    use super::*;

    fn target(port: u16) -> Target {
        Target { host: "127.0.0.1".into(), port, timeout: Duration::from_secs(2), deadline: None }
    }

    #[test]
    fn graphite_udp_packs_whole_lines_into_datagrams() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let port = rx.local_addr().unwrap().port();
        let mut link = UdpLink::new(target(port), 30);
        let a = b"a.b 1 10\nc.d 2 10\n".as_slice(); // 18 bytes
        let b = b"e.f 3 10\n".as_slice(); // 9 bytes
        let long = b"a.very.long.metric.name 12345 10\n".as_slice(); // 33 bytes: alone
        link.send(&[a, b, long, b]).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        for _ in 0..3 {
            let n = rx.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(got, ["a.b 1 10\nc.d 2 10\ne.f 3 10\n", "a.very.long.metric.name 12345 10\n", "e.f 3 10\n"]);
    }

    #[test]
    fn graphite_tcp_reconnects_when_the_peer_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut link = TcpLink::new(target(port));
        link.send(&[b"one 1 1\n"]).unwrap();
        let (mut first, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let n = first.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one 1 1\n");
        drop(first); // the server closes the connection
        std::thread::sleep(Duration::from_millis(50));
        link.send(&[b"two 2 2\n", b"three 3 3\n"]).unwrap();
        let (mut second, _) = listener.accept().unwrap();
        second.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut got = Vec::new();
        while got.len() < 18 {
            let n = second.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"two 2 2\nthree 3 3\n");
    }

    #[test]
    fn graphite_tcp_lets_a_catch_up_sends_buffer_go() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let reader = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            all.len()
        });
        let mut link = TcpLink::new(target(port));
        let record = b"servers.h.cpu.user 1.5 1700000000\n".repeat(100);
        link.send(&[&record]).unwrap();
        assert!(link.buf.capacity() >= record.len(), "a steady-state send keeps its buffer");
        let backlog = vec![&record[..]; 2 * WRITE_CHUNK / record.len()];
        link.send(&backlog).unwrap();
        assert_eq!(link.buf.capacity(), 0);
        drop(link);
        assert_eq!(reader.join().unwrap(), record.len() * (1 + backlog.len()));
    }

    #[test]
    fn graphite_tcp_refused_is_a_retry() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut link = TcpLink::new(target(port));
        match link.send(&[b"x 1 1\n"]) {
            Err(SendError::Retry(m)) => assert!(m.starts_with(&format!("connecting to 127.0.0.1:{port}")), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(!link.connected());
    }

    #[test]
    fn graphite_deadline_bounds_a_send() {
        let mut t = target(1);
        t.deadline = Some(Instant::now() - Duration::from_millis(1));
        let mut link = TcpLink::new(t);
        assert!(matches!(link.send(&[b"x 1 1\n"]), Err(SendError::Retry(_))));
    }
}
