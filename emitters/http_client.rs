//! The HTTP client every HTTP emitter (`influxdb`, `otlp`, `remote_write`) sends with: ureq,
//! every status an answer (not an error), no redirects (a write is never replayed elsewhere),
//! one timeout for the whole request, `badger/<version>` as user agent, TLS verified
//! against the platform's trust store or the given certificates, and names resolved by
//! `badger_api::http_client::Resolver` (no thread per request) with its small connection
//! buffers; and [`Body`], the request body they build and gzip.

use std::sync::Arc;

use flate2::{Compress, Compression, FlushCompress, Status};

/// An agent for one emitter; `ca`: the certificates to trust instead of the platform's.
pub(crate) fn agent(timeout: std::time::Duration, ca: Option<&Vec<ureq::tls::Certificate<'static>>>) -> ureq::Agent {
    let roots = match ca {
        Some(certs) => ureq::tls::RootCerts::Specific(Arc::new(certs.clone())),
        None => ureq::tls::RootCerts::PlatformVerifier,
    };
    let tls = ureq::tls::TlsConfig::builder().root_certs(roots).build();
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(Some(timeout))
        .user_agent(concat!("badger/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls);
    badger_api::http_client::agent(config)
}

/// The most of its body buffer and deflate state a transport keeps between sends. A
/// steady-state body is one tick's points, a few kilobytes; the catch-up bodies after an
/// outage reach `max_batch_bytes`, and a buffer kept at that size (or a deflate window filled
/// by one) would stay resident after the backlog has drained.
pub(crate) const KEEP_BODY: usize = 64 * 1024;

/// A request body: the records one after the other, gzipped (one gzip member) or as they
/// are. Kept between sends while they are steady-state sized, let go after a larger one.
///
/// The deflate state is zlib's (flate2's `zlib` backend: the system libz that librdkafka
/// links anyway). zlib allocates its 256 KiB without zeroing it and clears only the 64 KiB
/// hash heads, so a small body keeps about 80 KiB resident where miniz_oxide, which zeroes
/// all of its 330 KiB, kept all of it. It is built at the first send and dropped after a
/// body of more than [`KEEP_BODY`], whose window it has filled.
#[derive(Default)]
pub(crate) struct Body {
    gzip: bool,
    deflate: Option<Compress>,
    /// The bytes to send.
    pub bytes: Vec<u8>,
    /// The records' length before compression, of the last body.
    plain_len: usize,
}

impl Body {
    pub fn new(gzip: bool) -> Body {
        Body { gzip, ..Body::default() }
    }

    /// Whether the body is gzipped (`Content-Encoding: gzip`).
    pub fn gzipped(&self) -> bool {
        self.gzip
    }

    /// Makes the body of `records`.
    pub fn fill(&mut self, records: &[&[u8]]) -> Result<(), String> {
        self.bytes.clear();
        self.plain_len = records.iter().map(|r| r.len()).sum();
        if !self.gzip {
            records.iter().for_each(|r| self.bytes.extend_from_slice(r));
            return Ok(());
        }
        let c = self.deflate.get_or_insert_with(|| Compress::new(Compression::fast(), false));
        gzip(c, records, &mut self.bytes)
    }

    /// After a send: lets the buffer and the deflate state go if the body was larger than
    /// [`KEEP_BODY`], and hands their pages back to the kernel at once, before the next
    /// body's deflate state is carved out of the same, still resident, memory.
    pub fn trim(&mut self) {
        let mut freed = false;
        if self.bytes.capacity() > KEEP_BODY {
            self.bytes = Vec::new();
            freed = true;
        }
        if self.plain_len > KEEP_BODY && self.deflate.take().is_some() {
            freed = true;
        }
        if freed {
            badger_api::memory::release_free_memory();
        }
    }
}

/// Writes `records`, one after the other, as one gzip member (RFC 1952) to `out`.
fn gzip(c: &mut Compress, records: &[&[u8]], out: &mut Vec<u8>) -> Result<(), String> {
    c.reset();
    // Magic, deflate, no flags, no mtime, no extra flags, OS unknown.
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let mut crc = crc32fast::Hasher::new();
    let mut len: u64 = 0;
    let nothing: [&[u8]; 1] = [&[]];
    let records = if records.is_empty() { &nothing[..] } else { records };
    let last = records.len() - 1;
    for (i, r) in records.iter().enumerate() {
        crc.update(r);
        len += r.len() as u64;
        let flush = if i == last { FlushCompress::Finish } else { FlushCompress::None };
        let mut input: &[u8] = r;
        loop {
            out.reserve(input.len() / 2 + 256);
            let before = c.total_in();
            let status = c.compress_vec(input, out, flush).map_err(|e| e.to_string())?;
            input = input.get((c.total_in() - before) as usize..).unwrap_or_default();
            match (flush, status) {
                (FlushCompress::Finish, Status::StreamEnd) => break,
                (FlushCompress::Finish, _) => {}
                _ if input.is_empty() => break,
                _ => {}
            }
        }
    }
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_members_decode() {
        use std::io::Read;
        let mut body = Body::new(true);
        let big = "load,host=h one=1 1700000000\n".repeat(5000);
        for records in [vec![&b"a b=1i 1\n"[..], b"c d=2 2\n"], vec![], vec![big.as_bytes(), b"x y=1 3\n"]] {
            for _ in 0..2 {
                body.fill(&records).unwrap();
                let mut text = Vec::new();
                flate2::read::GzDecoder::new(&body.bytes[..]).read_to_end(&mut text).unwrap();
                assert_eq!(text, records.concat());
            }
        }
        let mut plain = Body::new(false);
        plain.fill(&[b"a b=1i 1\n", b"c d=2 2\n"]).unwrap();
        assert_eq!(plain.bytes, b"a b=1i 1\nc d=2 2\n");
    }

    #[test]
    fn a_large_body_and_its_deflate_state_are_let_go_after_the_send() {
        let line = b"cpu,host=h user=1 1700000000\n".repeat(100);
        for gzip in [false, true] {
            let mut body = Body::new(gzip);
            body.fill(&[&line]).unwrap();
            body.trim();
            assert!(body.bytes.capacity() > 0, "a small body's buffer is kept");
            assert_eq!(body.deflate.is_some(), gzip, "and so is the deflate state");
            let big = vec![&line[..]; 1 + KEEP_BODY / line.len()];
            body.fill(&big).unwrap();
            body.trim();
            assert!(body.deflate.is_none());
            if !gzip {
                assert_eq!(body.bytes.capacity(), 0);
            }
            body.fill(&[&line]).unwrap();
            assert_eq!(body.deflate.is_some(), gzip, "the next body builds it again");
        }
    }
}
