//! The HTTP side: writes (`/write` of 1.x, `/api/v2/write` of 2.x), database creation,
//! and what each answer means for the outbox.
//!
//! Credentials travel only in the `Authorization` header (basic auth for 1.x, `Token` for
//! 2.x), never in a URL, and no message built here contains the password or the token.

use std::io::Read;
use std::time::{Duration, Instant};

use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use badger_outbox::{SendError, Transport};

use crate::http_client::Body;

/// Characters left as they are in a query value: RFC 3986 unreserved.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// How much of an error answer is kept for the log.
const MAX_ERROR_TEXT: u64 = 1024;

/// Where and how to write; built from the config.
#[derive(Debug, Clone)]
pub struct Target {
    /// `scheme://host:port[/path]`, no trailing slash, no credentials.
    pub base_url: String,
    pub api: Api,
    pub gzip: bool,
    pub timeout: Duration,
}

/// The write API and its settings.
#[derive(Clone)]
pub enum Api {
    V1 {
        database: String,
        retention_policy: String,
        user: Option<String>,
        password: Option<String>,
        create_database: bool,
    },
    V2 {
        org: String,
        bucket: String,
        token: Option<String>,
    },
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints the password or the token.
        match self {
            Api::V1 { database, retention_policy, user, create_database, .. } => f
                .debug_struct("V1")
                .field("database", database)
                .field("retention_policy", retention_policy)
                .field("user", user)
                .field("create_database", create_database)
                .finish_non_exhaustive(),
            Api::V2 { org, bucket, .. } => {
                f.debug_struct("V2").field("org", org).field("bucket", bucket).finish_non_exhaustive()
            }
        }
    }
}

/// Percent-encodes a query value.
pub fn encode_query_value(v: &str) -> String {
    utf8_percent_encode(v, QUERY_VALUE).to_string()
}

/// An InfluxQL identifier in double quotes (`"my \"db\""`), safe for any name.
pub fn quote_ident(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    s.push('"');
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                s.push('\\');
                s.push(c);
            }
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// The InfluxDB transport of the outbox.
pub struct HttpTransport {
    /// The emitter's name, for log lines.
    name: String,
    agent: ureq::Agent,
    /// The write URL with its query string (no credentials: safe to log).
    write_url: String,
    /// 1.x `/query`, when the database is created by badger.
    query_url: Option<String>,
    database: String,
    /// The 1.x API (else 2.x).
    v1: bool,
    /// Who the requests are made as, for messages: `user "bob"`, `the token` (never a secret).
    identity: String,
    /// The `Authorization` header value (secret).
    authorization: Option<String>,
    timeout: Duration,
    /// Set at shutdown: no request may go on past it.
    deadline: Option<Instant>,
    /// Whether `CREATE DATABASE` still has to be tried before the next write.
    create_pending: bool,
    body: Body,
}

/// An answer from the server, or why there was none.
enum Answer {
    Status(u16, String),
    Failed(String),
}

impl HttpTransport {
    pub fn new(name: &str, target: &Target) -> HttpTransport {
        let agent = crate::http_client::agent(target.timeout, None);
        let base = &target.base_url;
        let q = encode_query_value;
        let (write_url, query_url, database, identity, authorization) = match &target.api {
            Api::V1 { database, retention_policy, user, password, create_database } => {
                let mut url = format!("{base}/write?db={}", q(database));
                if !retention_policy.is_empty() {
                    url.push_str("&rp=");
                    url.push_str(&q(retention_policy));
                }
                url.push_str("&precision=s");
                let auth = user.as_ref().map(|u| {
                    let pair = format!("{u}:{}", password.as_deref().unwrap_or(""));
                    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
                });
                let query_url = create_database.then(|| format!("{base}/query"));
                let identity = match user {
                    Some(u) => format!("user \"{u}\""),
                    None => "an anonymous user".into(),
                };
                (url, query_url, database.clone(), identity, auth)
            }
            Api::V2 { org, bucket, token } => {
                let url = format!("{base}/api/v2/write?org={}&bucket={}&precision=s", q(org), q(bucket));
                let identity = if token.is_some() { "the token" } else { "a request without a token" };
                (url, None, bucket.clone(), identity.to_string(), token.as_ref().map(|t| format!("Token {t}")))
            }
        };
        HttpTransport {
            name: name.to_string(),
            agent,
            write_url,
            create_pending: query_url.is_some(),
            query_url,
            database,
            v1: matches!(target.api, Api::V1 { .. }),
            identity,
            authorization,
            timeout: target.timeout,
            deadline: None,
            body: Body::new(target.gzip),
        }
    }

    /// The URL writes go to (no credentials).
    pub fn write_url(&self) -> &str {
        &self.write_url
    }

    /// From now on, no request goes on past `deadline` (shutdown).
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// The time one request may take now.
    fn request_timeout(&self) -> Option<Duration> {
        match self.deadline {
            None => Some(self.timeout),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| left.min(self.timeout))
            }
        }
    }

    fn post(&self, url: &str, content_type: &str, gzip: bool, body: &[u8]) -> Answer {
        let Some(timeout) = self.request_timeout() else {
            return Answer::Failed("the shutdown deadline has passed".into());
        };
        let mut req = self.agent.post(url).config().timeout_global(Some(timeout)).build().content_type(content_type);
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        if gzip {
            req = req.header("Content-Encoding", "gzip");
        }
        match req.send(body) {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                if (300..400).contains(&status) {
                    let to = resp.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or("?");
                    return Answer::Status(status, format!("redirected to {to}: set url to the final address"));
                }
                let mut text = Vec::new();
                // A failure here only shortens the error text.
                let _ = resp.body_mut().as_reader().take(MAX_ERROR_TEXT).read_to_end(&mut text);
                Answer::Status(status, error_text(&text))
            }
            Err(e) => Answer::Failed(format!("POST {url}: {e}")),
        }
    }

    /// `CREATE DATABASE "<db>"` on 1.x. Err: why it did not work.
    fn create_database(&mut self) -> Result<(), String> {
        let Some(url) = &self.query_url else { return Ok(()) };
        let form = format!("q={}", encode_query_value(&format!("CREATE DATABASE {}", quote_ident(&self.database))));
        match self.post(url, "application/x-www-form-urlencoded", false, form.as_bytes()) {
            Answer::Status(200..=299, text) if text.is_empty() => {
                self.create_pending = false;
                Ok(())
            }
            Answer::Status(200..=299, text) => {
                self.create_pending = false;
                Err(format!("creating database \"{}\": {text}", self.database))
            }
            Answer::Status(401, text) => {
                self.create_pending = false;
                Err(format!("creating database \"{}\": HTTP 401 {text}: {}", self.database, self.refused()))
            }
            Answer::Status(403, text) => {
                self.create_pending = false;
                Err(format!(
                    "creating database \"{}\": HTTP 403 {text}: {} may not create databases (create it yourself, or set create_database: false)",
                    self.database, self.identity
                ))
            }
            Answer::Status(s, text) => {
                self.create_pending = false;
                Err(format!("creating database \"{}\": HTTP {s} {text}", self.database))
            }
            Answer::Failed(e) => Err(e),
        }
    }

    /// What a 401 means for the configured credentials.
    fn refused(&self) -> String {
        match (&self.authorization, self.v1) {
            (Some(_), true) => format!("the server refused the credentials of {}: check user and pass", self.identity),
            (None, true) => "the server wants credentials: set user and pass".into(),
            (Some(_), false) => "the server refused the token: check it".into(),
            (None, false) => "the server wants a token: set token".into(),
        }
    }

    fn write(&self) -> Answer {
        self.post(&self.write_url, "text/plain; charset=utf-8", self.body.gzipped(), &self.body.bytes)
    }

    /// What a write answer means for the outbox.
    fn judge(&self, answer: Answer) -> Result<(), SendError> {
        match answer {
            Answer::Status(200..=299, _) => Ok(()),
            Answer::Status(s @ (400 | 413 | 422), text) => {
                let hint = if s == 413 { " (lower max_batch_bytes)" } else { "" };
                Err(SendError::Reject(format!("HTTP {s} from {}: {text}{hint}", self.write_url)))
            }
            Answer::Status(401, text) => Err(SendError::Retry(format!(
                "HTTP 401 from {}: {text}: {}; the data is kept and sent once they work",
                self.write_url,
                self.refused()
            ))),
            Answer::Status(403, text) => Err(SendError::Retry(format!(
                "HTTP 403 from {}: {text}: {} may not write there; grant it (the data is kept and sent once it may)",
                self.write_url, self.identity
            ))),
            Answer::Status(s, text) => Err(SendError::Retry(format!("HTTP {s} from {}: {text}", self.write_url))),
            Answer::Failed(e) => Err(SendError::Retry(e)),
        }
    }
}

fn is_database_not_found(answer: &Answer) -> bool {
    matches!(answer, Answer::Status(404, text) if text.contains("database not found"))
}

impl Transport for HttpTransport {
    fn send(&mut self, records: &[&[u8]]) -> Result<(), SendError> {
        let sent = self.send_body(records);
        self.body.trim();
        sent
    }
}

impl HttpTransport {
    fn send_body(&mut self, records: &[&[u8]]) -> Result<(), SendError> {
        if self.create_pending {
            if let Err(e) = self.create_database() {
                // Not fatal: the database may exist already; the write tells. When the server
                // did not answer, the write fails too and the outbox reports it.
                if !self.create_pending {
                    log::warn!("emitter \"{}\": {e}", self.name);
                }
            }
        }
        self.body.fill(records).map_err(|e| SendError::Retry(format!("compressing the body: {e}")))?;
        let answer = self.write();
        if is_database_not_found(&answer) {
            if self.query_url.is_none() {
                return Err(SendError::Retry(format!(
                    "database \"{}\" not found (create_database is false): the data is kept until it exists",
                    self.database
                )));
            }
            return match self.create_database() {
                Ok(()) => {
                    log::info!("emitter \"{}\": database \"{}\" was missing: created it", self.name, self.database);
                    let again = self.write();
                    self.judge(again)
                }
                Err(e) => Err(SendError::Retry(format!("database \"{}\" not found; {e}", self.database))),
            };
        }
        self.judge(answer)
    }
}

/// The error text of an answer: the `error` (1.x) or `message` (2.x) of a JSON body, or
/// the body itself, on one line.
fn error_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        if let Some(e) = v.get("error").or_else(|| v.get("message")).and_then(|e| e.as_str()) {
            return e.to_string();
        }
        // /query answers 200 with errors inside the results.
        if let Some(results) = v.get("results").and_then(|r| r.as_array()) {
            let errors: Vec<&str> = results.iter().filter_map(|r| r.get("error").and_then(|e| e.as_str())).collect();
            return errors.join("; ");
        }
    }
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_and_identifiers() {
        assert_eq!(encode_query_value("my db/x&y=1"), "my%20db%2Fx%26y%3D1");
        assert_eq!(encode_query_value("a-b_c.d~"), "a-b_c.d~");
        assert_eq!(quote_ident("stats"), "\"stats\"");
        assert_eq!(quote_ident(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn error_texts() {
        assert_eq!(error_text(br#"{"error":"database not found: \"x\""}"#), "database not found: \"x\"");
        assert_eq!(error_text(br#"{"code":"invalid","message":"bad line"}"#), "bad line");
        assert_eq!(error_text(br#"{"results":[{"statement_id":0}]}"#), "");
        assert_eq!(error_text(br#"{"results":[{"statement_id":0,"error":"nope"}]}"#), "nope");
        assert_eq!(error_text(b"plain\ntext"), "plain text");
    }

    #[test]
    fn urls_and_debug_hide_secrets() {
        let api = Api::V1 {
            database: "my db".into(),
            retention_policy: "one week".into(),
            user: Some("u".into()),
            password: Some("s3cret".into()),
            create_database: true,
        };
        assert!(!format!("{api:?}").contains("s3cret"));
        let t = HttpTransport::new(
            "influxdb",
            &Target { base_url: "http://127.0.0.1:8086".into(), api, gzip: true, timeout: Duration::from_secs(1) },
        );
        assert_eq!(t.write_url(), "http://127.0.0.1:8086/write?db=my%20db&rp=one%20week&precision=s");
        assert_eq!(t.authorization.as_deref(), Some("Basic dTpzM2NyZXQ="));
        let api = Api::V2 { org: "o&1".into(), bucket: "b".into(), token: Some("tok".into()) };
        assert!(!format!("{api:?}").contains("tok"));
        let t = HttpTransport::new(
            "influxdb",
            &Target { base_url: "https://x/influx".into(), api, gzip: false, timeout: Duration::from_secs(1) },
        );
        assert_eq!(t.write_url(), "https://x/influx/api/v2/write?org=o%261&bucket=b&precision=s");
        assert_eq!(t.authorization.as_deref(), Some("Token tok"));
    }
}
