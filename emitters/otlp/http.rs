//! The HTTP side of the `otlp` emitter: `POST {endpoint}/v1/metrics` with a protobuf body,
//! and what each answer means for the outbox (the OTLP/HTTP rules).
//!
//! Header values (tokens) travel only in the request; no message built here contains one.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use badger_api::throttle::LogThrottle;
use badger_formats::otlp::partial_success;
use badger_outbox::{SendError, Transport};

use crate::http_client::Body;

/// How much of an answer's body is read (an error text, or a partial success).
const MAX_ANSWER: u64 = 64 * 1024;
/// How much of an error text goes into a log line.
const MAX_ERROR_TEXT: usize = 512;

/// Where and how to send; built from the config.
#[derive(Clone)]
pub struct Target {
    /// `{endpoint}/v1/metrics`.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub gzip: bool,
    pub timeout: Duration,
    /// PEM certificates to trust instead of the system's roots.
    pub ca: Option<Vec<ureq::tls::Certificate<'static>>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values (tokens) are never printed.
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("headers", &names)
            .field("gzip", &self.gzip)
            .field("timeout", &self.timeout)
            .field("ca", &self.ca.as_ref().map(|c| c.len()))
            .finish()
    }
}

/// The OTLP transport of the outbox.
pub struct HttpTransport {
    name: String,
    agent: ureq::Agent,
    url: String,
    headers: Vec<(String, String)>,
    timeout: Duration,
    deadline: Option<Instant>,
    body: Body,
    /// `Retry-After` of the last answer that asked for a retry.
    retry_after: Option<Duration>,
    /// Data points a collector accepted the request of but dropped (`partial_success`).
    pub partial_rejected: Arc<AtomicU64>,
    partial_log: LogThrottle,
}

enum Answer {
    Status { status: u16, retry_after: Option<Duration>, body: Vec<u8> },
    Failed(String),
}

impl HttpTransport {
    pub fn new(name: &str, target: &Target) -> HttpTransport {
        let agent = crate::http_client::agent(target.timeout, target.ca.as_ref());
        HttpTransport {
            name: name.to_string(),
            agent,
            url: target.url.clone(),
            headers: target.headers.clone(),
            timeout: target.timeout,
            deadline: None,
            body: Body::new(target.gzip),
            retry_after: None,
            partial_rejected: Arc::new(AtomicU64::new(0)),
            partial_log: LogThrottle::default(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// From now on, no request goes on past `deadline` (shutdown).
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// The `Retry-After` of the last failed send, once.
    pub fn take_retry_after(&mut self) -> Option<Duration> {
        self.retry_after.take()
    }

    fn post(&self) -> Answer {
        let timeout = match self.deadline {
            None => self.timeout,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Answer::Failed("the shutdown deadline has passed".into());
                }
                left.min(self.timeout)
            }
        };
        let mut req = self
            .agent
            .post(&self.url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .content_type("application/x-protobuf");
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if self.body.gzipped() {
            req = req.header("Content-Encoding", "gzip");
        }
        match req.send(&self.body.bytes[..]) {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let mut body = Vec::new();
                // A failure here only shortens the body.
                let _ = resp.body_mut().as_reader().take(MAX_ANSWER).read_to_end(&mut body);
                Answer::Status { status, retry_after, body }
            }
            Err(e) => Answer::Failed(format!("POST {}: {e}", self.url)),
        }
    }

    /// What an answer means for the outbox.
    fn judge(&mut self, answer: Answer) -> Result<(), SendError> {
        match answer {
            Answer::Status { status: 200..=299, body, .. } => {
                if let Some((rejected, message)) = partial_success(&body) {
                    if rejected > 0 {
                        self.partial_rejected.fetch_add(rejected as u64, Ordering::Relaxed);
                        if let Some(more) = self.partial_log.allow() {
                            log::warn!(
                                "emitter \"{}\": {} accepted the request but dropped {rejected} data points: {} ({more} more partial successes since the last line)",
                                self.name,
                                self.url,
                                clip(&message)
                            );
                        }
                    }
                }
                Ok(())
            }
            Answer::Status { status: s @ (429 | 502 | 503 | 504), retry_after, body } => {
                self.retry_after = retry_after;
                let wait = retry_after.map(|d| format!(" (Retry-After: {}s)", d.as_secs())).unwrap_or_default();
                Err(SendError::Retry(format!("HTTP {s} from {}{wait}: {}", self.url, error_text(&body))))
            }
            Answer::Status { status: s @ 300..=399, .. } => Err(SendError::Retry(format!(
                "HTTP {s} from {}: a redirect; set endpoint to the final address",
                self.url
            ))),
            Answer::Status { status, body, .. } => {
                Err(SendError::Reject(format!("HTTP {status} from {}: {}", self.url, error_text(&body))))
            }
            Answer::Failed(e) => Err(SendError::Retry(e)),
        }
    }
}

impl Transport for HttpTransport {
    fn send(&mut self, records: &[&[u8]]) -> Result<(), SendError> {
        self.retry_after = None;
        // Encoded requests one after the other are one request holding them all.
        self.body.fill(records).map_err(|e| SendError::Retry(format!("compressing the body: {e}")))?;
        let answer = self.post();
        self.body.trim();
        self.judge(answer)
    }
}

/// The message of an OTLP error answer (a `google.rpc.Status`: field 2 is the message), or
/// the body as text, on one line and clipped.
fn error_text(body: &[u8]) -> String {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Status {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    use prost::Message;
    if let Ok(s) = Status::decode(body) {
        if !s.message.is_empty() {
            return clip(&s.message);
        }
    }
    clip(&String::from_utf8_lossy(body))
}

fn clip(text: &str) -> String {
    let one_line = text.trim().replace(['\n', '\r'], " ");
    match one_line.char_indices().nth(MAX_ERROR_TEXT) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts() {
        // google.rpc.Status { code: 3, message: "bad" }
        assert_eq!(error_text(&[0x08, 0x03, 0x12, 0x03, b'b', b'a', b'd']), "bad");
        assert_eq!(error_text(b"plain\ntext"), "plain text");
        assert_eq!(error_text(b""), "");
        assert_eq!(clip(&"x".repeat(600)).chars().count(), MAX_ERROR_TEXT + 1);
    }
}
