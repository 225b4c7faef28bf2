//! The HTTP client plugins send and scrape with: ureq's [`ureq::Agent`] with [`Resolver`].
//!
//! ureq resolves the host before every request (before it looks in its connection pool),
//! and with a timeout set its default resolver does each lookup on a thread of its own, an IP
//! address included: a thread started and ended for every write or scrape. [`Resolver`]
//! uses an IP address as it is and keeps a name's addresses for `RESOLVE_TTL`.
//!
//! ureq gives each connection an input and an output buffer of 128 KiB, zeroed when first
//! used and so resident for as long as the connection stays in the pool: 256 KiB for every
//! server an emitter or a scrape keeps a connection to. [`agent`] makes them
//! [`BUFFER_BYTES`] each; bodies stream through them in pieces, so only headers must fit,
//! and a response header is bounded by [`MAX_RESPONSE_HEADER`] (ureq's default is 64 KiB).

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// How long the addresses a name resolved to are used before it is resolved again.
const RESOLVE_TTL: Duration = Duration::from_secs(30);

/// ureq's resolver without a thread for an IP address, and with the last name's addresses
/// kept for [`RESOLVE_TTL`] (failures are not kept).
#[derive(Debug, Default)]
pub struct Resolver {
    inner: DefaultResolver,
    last: Mutex<Option<(String, Instant, ResolvedSocketAddrs)>>,
}

impl ureq::unversioned::resolver::Resolver for Resolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        if let Some(addr) = literal(uri) {
            let mut addrs = self.empty();
            addrs.push(addr);
            return Ok(addrs);
        }
        let key = uri.authority().map_or("", |a| a.as_str());
        let now = Instant::now();
        if let Some((k, at, addrs)) = &*self.last.lock().unwrap_or_else(|e| e.into_inner()) {
            if k == key && now.saturating_duration_since(*at) < RESOLVE_TTL {
                return Ok(addrs.clone());
            }
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((key.to_string(), now, addrs.clone()));
        Ok(addrs)
    }
}

/// The socket address of a URI whose host is an IP address (`127.0.0.1`, `[::1]`).
fn literal(uri: &ureq::http::Uri) -> Option<SocketAddr> {
    let host = uri.host()?;
    let ip: IpAddr = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).parse().ok()?;
    let port = uri.port_u16().or(match uri.scheme_str() {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    })?;
    Some(SocketAddr::new(ip, port))
}

/// Bytes of each of a connection's two buffers: what is read or written in one piece.
pub const BUFFER_BYTES: usize = 16 * 1024;

/// The largest response header (status line and headers) accepted; a bigger one fails the
/// request ("response header too large"). The servers badger writes to and scrapes answer
/// with a few hundred bytes; 8 KiB is the request-header limit of nginx and Apache.
pub const MAX_RESPONSE_HEADER: usize = 8 * 1024;

/// An agent with `config`, badger's buffer sizes ([`BUFFER_BYTES`],
/// [`MAX_RESPONSE_HEADER`]) and [`Resolver`] (ureq's default connector: TCP, TLS).
pub fn agent(config: ureq::config::ConfigBuilder<ureq::typestate::AgentScope>) -> ureq::Agent {
    let config = config
        .input_buffer_size(BUFFER_BYTES)
        .output_buffer_size(BUFFER_BYTES)
        .max_response_header_size(MAX_RESPONSE_HEADER)
        .build();
    ureq::Agent::with_parts(config, DefaultConnector::default(), Resolver::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::unversioned::resolver::Resolver as _;

    fn resolve(r: &Resolver, uri: &str) -> Vec<SocketAddr> {
        let uri: ureq::http::Uri = uri.parse().unwrap();
        let config = ureq::config::Config::default();
        let after = ureq::unversioned::transport::time::Duration::Exact(Duration::from_secs(1));
        let timeout = NextTimeout { after, reason: ureq::Timeout::Resolve, ..NextTimeout::default() };
        r.resolve(&uri, &config, timeout).unwrap().to_vec()
    }

    /// Serves one connection on loopback: reads a request (its headers and a body of
    /// `Content-Length` bytes), writes `answer`; the thread's result is the request's body.
    fn serve_once(answer: Vec<u8>) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            let mut want = None;
            loop {
                if want.is_none() {
                    if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                        let len = head.lines().find_map(|l| l.strip_prefix("content-length: ")?.parse().ok());
                        got.drain(..end + 4);
                        want = Some(len.unwrap_or(0));
                    }
                }
                if want.is_some_and(|n| got.len() >= n) {
                    break;
                }
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(&answer);
            got
        });
        (port, server)
    }

    #[test]
    fn bodies_stream_through_the_small_buffers_and_a_huge_response_header_fails() {
        let agent = agent(ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))));
        let body: Vec<u8> = (0..20 * BUFFER_BYTES).map(|i| (i % 251) as u8).collect();
        let mut answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        answer.extend_from_slice(&body);
        let (port, server) = serve_once(answer);
        let mut r = agent.post(format!("http://127.0.0.1:{port}/")).send(&body[..3 * BUFFER_BYTES + 1]).unwrap();
        assert_eq!(r.body_mut().with_config().limit(u64::MAX).read_to_vec().unwrap(), body);
        assert_eq!(server.join().unwrap(), body[..3 * BUFFER_BYTES + 1]);

        let header = format!("X-Big: {}\r\n", "x".repeat(MAX_RESPONSE_HEADER));
        let (port, _server) = serve_once(format!("HTTP/1.1 204 No Content\r\n{header}\r\n").into_bytes());
        match agent.get(format!("http://127.0.0.1:{port}/")).call() {
            Err(ureq::Error::LargeResponseHeader(..)) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_ip_address_is_used_as_it_is_and_a_name_is_kept_a_while() {
        assert_eq!(literal(&"http://127.0.0.1:8086/write".parse().unwrap()), Some("127.0.0.1:8086".parse().unwrap()));
        assert_eq!(literal(&"https://[::1]/v1/metrics".parse().unwrap()), Some("[::1]:443".parse().unwrap()));
        assert_eq!(literal(&"http://10.0.0.1/".parse().unwrap()), Some("10.0.0.1:80".parse().unwrap()));
        assert_eq!(literal(&"http://localhost:8086/".parse().unwrap()), None);
        let r = Resolver::default();
        assert_eq!(resolve(&r, "http://127.0.0.1:8086/write"), ["127.0.0.1:8086".parse().unwrap()]);
        assert!(r.last.lock().unwrap().is_none(), "an address is not a name to keep");
        let addrs = resolve(&r, "http://localhost:8086/write");
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 8086), "{addrs:?}");
        let kept = r.last.lock().unwrap().as_ref().map(|(k, _, a)| (k.clone(), a.to_vec()));
        assert_eq!(kept, Some(("localhost:8086".to_string(), addrs.clone())));
        assert_eq!(resolve(&r, "http://localhost:8086/query"), addrs);
    }
}
