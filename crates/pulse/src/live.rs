//! Live data: `GET /live` (server-sent events, one event per stored point) and Mist
//! publishing (`mist-address`), as the original: for every stat of every `got`,
//! `{"command":"publish","tags":[<collector tags…>,"metrics","host:<id>","<stat>"],"data":"<value>"}`.
//! Fixed: Mist is reconnected (every 5 s) when it drops; messages are dropped, never
//! queued without bound, while it is away.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc};

use super::http::{num, Api};
use super::store::{Batch, Filters};

/// One Mist message.
#[derive(Serialize)]
pub struct Publish {
    pub command: &'static str,
    pub tags: Vec<String>,
    pub data: String,
}

/// The Mist client's queue.
pub type MistTx = mpsc::Sender<String>;

async fn mist_connect(
    addr: &str,
    token: &str,
) -> Result<(BufReader<tokio::net::tcp::OwnedReadHalf>, tokio::net::tcp::OwnedWriteHalf), String> {
    let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr}: timed out"))?
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut hello = String::new();
    if !token.is_empty() {
        hello.push_str(&serde_json::json!({"command": "auth", "data": token}).to_string());
        hello.push('\n');
    }
    hello.push_str("{\"command\":\"ping\"}\n");
    w.write_all(hello.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut line = String::new();
    match tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 => Ok((r, w)),
        _ => Err(format!("{addr} did not answer the ping")),
    }
}

/// Connects to Mist (auth, ping, wait for the answer) and starts the publisher; an error
/// here stops the server from starting, as the original.
pub async fn start_mist(addr: String, token: String) -> Result<MistTx, String> {
    let (mut conn, (tx, mut rx)) = (Some(mist_connect(&addr, &token).await?), mpsc::channel::<String>(65_536));
    tokio::spawn(async move {
        loop {
            let Some((mut r, mut w)) = conn.take() else {
                tokio::time::sleep(Duration::from_secs(5)).await;
                // Drop what piled up while Mist was away.
                while rx.try_recv().is_ok() {}
                match mist_connect(&addr, &token).await {
                    Ok(c) => {
                        log::info!("pulse mist: connected to {addr} again");
                        conn = Some(c);
                    }
                    Err(e) => log::debug!("pulse mist: {e}"),
                }
                continue;
            };
            let mut sink = String::new();
            loop {
                tokio::select! {
                    msg = rx.recv() => {
                        let Some(msg) = msg else { return };
                        if let Err(e) = w.write_all(msg.as_bytes()).await {
                            log::warn!("pulse mist: lost {addr}: {e}");
                            break;
                        }
                    }
                    // Mist's answers are read and dropped; EOF means it closed.
                    n = r.read_line(&mut sink) => {
                        sink.clear();
                        if !matches!(n, Ok(n) if n > 0) {
                            log::warn!("pulse mist: {addr} closed the connection");
                            break;
                        }
                    }
                }
            }
        }
    });
    Ok(tx)
}

/// The Mist messages of one `got` item.
pub fn mist_message(collector_tags: &[String], host: &str, stat: &str, value: &str) -> String {
    let mut tags: Vec<String> = collector_tags.to_vec();
    tags.push("metrics".into());
    tags.push(format!("host:{host}"));
    tags.push(stat.to_string());
    let mut s =
        serde_json::to_string(&Publish { command: "publish", tags, data: value.to_string() }).unwrap_or_default();
    s.push('\n');
    s
}

/// `GET /live`: every new point as an SSE event `{"host","stat","tags","time","value"}`;
/// `?stat=` selects stats (repeatable), other parameters are tag filters.
pub async fn live(State(api): State<Arc<Api>>, Query(pairs): Query<Vec<(String, String)>>) -> axum::response::Response {
    let Some(tx) = &api.live else {
        return super::http::error(axum::http::StatusCode::NOT_FOUND, "Not Found");
    };
    let mut stats: Vec<String> = Vec::new();
    let mut filters = Filters::default();
    for (k, v) in pairs {
        match k.as_str() {
            "stat" => stats.push(v),
            "x-auth-token" | "X-AUTH-TOKEN" => {}
            _ => filters.0.entry(k).or_default().push(v),
        }
    }
    let rx = tx.subscribe();
    let stream = futures_util::stream::unfold(
        (rx, stats, filters, Vec::<String>::new()),
        |(mut rx, stats, filters, mut queue)| async move {
            loop {
                if let Some(ev) = queue.pop() {
                    return Some((Ok::<Event, Infallible>(Event::default().data(ev)), (rx, stats, filters, queue)));
                }
                let batch: Arc<Batch> = match rx.recv().await {
                    Ok(b) => b,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                for (k, v) in batch.points.iter().rev() {
                    if !stats.is_empty() && !stats.iter().any(|s| *s == k.measurement) {
                        continue;
                    }
                    if !filters.matches(&k.tags) {
                        continue;
                    }
                    let tags: serde_json::Map<String, serde_json::Value> =
                        k.tags.iter().map(|(a, b)| (a.clone(), serde_json::Value::String(b.clone()))).collect();
                    queue.push(format!(
                        "{{\"host\":{},\"stat\":{},\"tags\":{},\"time\":{},\"value\":{}}}",
                        serde_json::Value::String(k.tag("host").to_string()),
                        serde_json::Value::String(k.measurement.clone()),
                        serde_json::Value::Object(tags),
                        batch.time_ms,
                        num(*v)
                    ));
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}
