//! The HTTP client plugins send and scrape with: ureq's [`ureq::Agent`] with [`Resolver`].
//!
//! ureq resolves the host before every request (before it looks in its connection pool),
//! and with a timeout set its default resolver does each lookup on a thread of its own, an IP
//! address included: a thread started and ended for every write or scrape. [`Resolver`]
//! uses an IP address as it is and keeps a name's addresses for `RESOLVE_TTL`.

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

/// An agent with `config` and [`Resolver`] (ureq's default connector: TCP, TLS).
pub fn agent(config: ureq::config::Config) -> ureq::Agent {
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
