//! InfluxDB 1.x storage (`influx-address`), in the original's layout: database
//! `statistics`, raw points in the default policy `one_day` (one measurement per stat, the
//! field named like the measurement), aggregates written by the continuous query
//! `aggregate` into `one_week.aggregate`.
//!
//! Fixed: the retention policies are ALTERed to the configured durations when they exist
//! already (raw: `--raw-retention`, 8 h by default as the original's `one_day`;
//! aggregates: `retention` weeks); errors inside InfluxDB's answers are errors (500), not
//! "Not Found"; every identifier is quoted and every string escaped, so no filter value can
//! change a query; the continuous query has no dangling comma without tag keys and does
//! not leave out a stat named `cpu`; write failures are logged and retried.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use super::store::{Backend, Batch, Filters, Latest, LatestQuery, RangeQuery, Row};

/// Pending line protocol kept while InfluxDB is away, at most.
const MAX_PENDING: usize = 64 << 20;

/// The InfluxDB backend.
pub struct Influx {
    base: String,
    agent: ureq::Agent,
    agg_minutes: u64,
    pending: Mutex<String>,
    last_cq: Mutex<Option<std::time::Instant>>,
    dropped: std::sync::atomic::AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `"name"` with `"` and `\` escaped.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

/// A bare identifier when InfluxQL allows one (the original's CQ text), else quoted.
fn ident_maybe(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        s.to_string()
    } else {
        ident(s)
    }
}

/// `'value'` with `'` and `\` escaped.
pub fn string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'").replace('\n', "\\n"))
}

/// The WHERE terms of the tag filters, `("k" = 'a' OR "k" = 'b') AND …` (sorted by key),
/// each followed by ` AND `.
pub fn filter_terms(f: &Filters) -> String {
    let mut s = String::new();
    for (k, vals) in &f.0 {
        let ors: Vec<String> = vals.iter().map(|v| format!("{} = {}", ident(k), string(v))).collect();
        s.push('(');
        s.push_str(&ors.join(" OR "));
        s.push_str(") AND ");
    }
    s
}

fn escape_lp(s: &str, extra: &[char]) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if c == ',' || c == ' ' || extra.contains(&c) {
            o.push('\\');
        }
        if c == '\n' {
            o.push_str("\\n");
            continue;
        }
        o.push(c);
    }
    o
}

/// A retention duration as InfluxQL writes it (`8h`, `90m`, `2w`).
fn influx_span(d: Duration) -> String {
    let s = d.as_secs();
    if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else {
        format!("{}m", s.div_ceil(60))
    }
}

impl Influx {
    /// Connects, creates the database and the retention policies (the original's three
    /// statements, then ALTERs so changed settings apply).
    pub fn open(
        base: &str,
        raw_retention: Duration,
        retention_weeks: i64,
        agg_interval: Duration,
    ) -> Result<Influx, String> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let db = Influx {
            base: base.trim_end_matches('/').to_string(),
            agent,
            agg_minutes: (agg_interval.as_secs() / 60).max(1),
            pending: Mutex::new(String::new()),
            last_cq: Mutex::new(None),
            dropped: Default::default(),
        };
        let raw = influx_span(raw_retention);
        db.query("CREATE DATABASE statistics", false).map_err(|e| format!("Failed to query influx - {e}"))?;
        // A policy that exists with other settings makes CREATE fail; the ALTERs below
        // then apply the settings (the original left them as they were).
        for q in [
            format!("CREATE RETENTION POLICY one_day ON statistics DURATION {raw} REPLICATION 1 DEFAULT"),
            format!("CREATE RETENTION POLICY one_week ON statistics DURATION {retention_weeks}w REPLICATION 1"),
        ] {
            if let Err(e) = db.query(&q, false) {
                log::debug!("pulse influx: {q}: {e}");
            }
        }
        for q in [
            format!("ALTER RETENTION POLICY one_day ON statistics DURATION {raw} REPLICATION 1 DEFAULT"),
            format!("ALTER RETENTION POLICY one_week ON statistics DURATION {retention_weeks}w REPLICATION 1"),
        ] {
            db.query(&q, false).map_err(|e| format!("Failed to query influx - {e}"))?;
        }
        Ok(db)
    }

    /// Runs InfluxQL (`;`-separated); an error in any statement is an error.
    pub fn query(&self, q: &str, read: bool) -> Result<Value, String> {
        let url = format!("{}/query", self.base);
        let req = if read {
            self.agent.get(&url).query("db", "statistics").query("epoch", "ms").query("q", q).call()
        } else {
            self.agent.post(&url).query("db", "statistics").query("epoch", "ms").send_form([("q", q)])
        };
        let mut resp = req.map_err(|e| format!("{}: {e}", self.base))?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string().map_err(|e| e.to_string())?;
        let v: Value =
            serde_json::from_str(&text).map_err(|_| format!("InfluxDB answered {status}: {}", text.trim()))?;
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            return Err(e.to_string());
        }
        if let Some(results) = v.get("results").and_then(Value::as_array) {
            for r in results {
                if let Some(e) = r.get("error").and_then(Value::as_str) {
                    return Err(e.to_string());
                }
            }
        }
        if !status.is_success() {
            return Err(format!("InfluxDB answered {status}"));
        }
        Ok(v)
    }

    /// The series of the first statement's result.
    fn series(v: &Value) -> Vec<&Value> {
        v.get("results")
            .and_then(|r| r.get(0))
            .and_then(|r| r.get("series"))
            .and_then(Value::as_array)
            .map(|s| s.iter().collect())
            .unwrap_or_default()
    }

    /// Unique first-column values of a SHOW … statement, sorted.
    fn show(&self, q: &str) -> Result<Vec<String>, String> {
        let v = self.query(q, true)?;
        let mut set = BTreeSet::new();
        for s in Self::series(&v) {
            for row in s.get("values").and_then(Value::as_array).into_iter().flatten() {
                if let Some(name) = row.get(0).and_then(Value::as_str) {
                    set.insert(name.to_string());
                }
            }
        }
        Ok(set.into_iter().collect())
    }

    /// The continuous query for these fields and tag keys.
    pub fn cq_text(fields: &[String], tags: &[String], minutes: u64) -> String {
        let sel: Vec<String> =
            fields.iter().map(|f| format!("mean({}) AS {}", ident_maybe(f), ident_maybe(f))).collect();
        let mut group = format!("time({minutes}m)");
        for t in tags {
            group.push_str(", ");
            group.push_str(&ident_maybe(t));
        }
        format!(
            "CREATE CONTINUOUS QUERY aggregate ON statistics BEGIN SELECT {} INTO statistics.one_week.aggregate FROM statistics.one_day./.*/ GROUP BY {group} END",
            sel.join(", ")
        )
    }

    /// Keeps the `aggregate` continuous query in step with the fields and tag keys.
    pub fn update_cq(&self) -> Result<bool, String> {
        let fields: Vec<String> = self.show("SHOW FIELD KEYS")?.into_iter().filter(|f| f != "time").collect();
        if fields.is_empty() {
            return Ok(false);
        }
        let tags = self.show("SHOW TAG KEYS")?;
        let want = Self::cq_text(&fields, &tags, self.agg_minutes);
        let v = self.query("SHOW CONTINUOUS QUERIES", true)?;
        let mut have = None;
        for s in v
            .get("results")
            .and_then(|r| r.get(0))
            .and_then(|r| r.get("series"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if s.get("name").and_then(Value::as_str) != Some("statistics") {
                continue;
            }
            for row in s.get("values").and_then(Value::as_array).into_iter().flatten() {
                if row.get(0).and_then(Value::as_str) == Some("aggregate") {
                    have = row.get(1).and_then(Value::as_str).map(str::to_string);
                }
            }
        }
        if have.as_deref() == Some(want.as_str()) {
            return Ok(false);
        }
        if have.is_some() {
            self.query("DROP CONTINUOUS QUERY aggregate ON statistics", false)?;
        }
        self.query(&want, false)?;
        log::info!("pulse influx: continuous query is now: {want}");
        Ok(true)
    }
}

/// `[time, value, extra…]` rows of a result's only series.
fn rows(v: &Value) -> Option<(Vec<String>, Vec<Vec<Value>>)> {
    let series = Influx::series(v);
    if series.len() != 1 {
        return None;
    }
    let s = series[0];
    let cols = s.get("columns")?.as_array()?.iter().filter_map(|c| c.as_str().map(str::to_string)).collect();
    let values = s.get("values")?.as_array()?.iter().filter_map(|r| r.as_array().cloned()).collect();
    Some((cols, values))
}

impl Backend for Influx {
    fn write(&self, batch: &Batch) -> Result<(), String> {
        let mut p = lock(&self.pending);
        for (k, v) in &batch.points {
            let prefix = k.line.get_or_init(|| {
                let mut l = escape_lp(&k.measurement, &[]);
                for (tk, tv) in &k.tags {
                    if tv.is_empty() {
                        continue;
                    }
                    l.push(',');
                    l.push_str(&escape_lp(tk, &['=']));
                    l.push('=');
                    l.push_str(&escape_lp(tv, &['=']));
                }
                l.push(' ');
                l.push_str(&escape_lp(&k.measurement, &['=']));
                l
            });
            use std::fmt::Write;
            let _ = writeln!(p, "{prefix}={v:?} {}", batch.time_ms);
        }
        if p.len() > MAX_PENDING {
            let n = p.lines().count() as u64;
            p.clear();
            self.dropped.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            log::error!("pulse influx: {} is away; dropped {n} points", self.base);
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), String> {
        let body = std::mem::take(&mut *lock(&self.pending));
        if body.is_empty() {
            return Ok(());
        }
        let url = format!("{}/write", self.base);
        let r = self
            .agent
            .post(&url)
            .query("db", "statistics")
            .query("rp", "one_day")
            .query("precision", "ms")
            .send(body.as_bytes());
        let failed = match r {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(mut resp) if resp.status().as_u16() == 400 => {
                // Bad points (a field type conflict): retrying cannot help.
                let t = resp.body_mut().read_to_string().unwrap_or_default();
                return Err(format!("InfluxDB refused points: {}", t.trim()));
            }
            Ok(resp) => format!("InfluxDB answered {}", resp.status()),
            Err(e) => e.to_string(),
        };
        let mut p = lock(&self.pending);
        let newer = std::mem::take(&mut *p);
        *p = body;
        p.push_str(&newer);
        Err(format!("writing to {}: {failed} (will retry)", self.base))
    }

    fn maintain(&self, _now_ms: i64) {
        let due = {
            let mut last = lock(&self.last_cq);
            let every = Duration::from_secs(self.agg_minutes * 60);
            if last.is_some_and(|t| t.elapsed() < every) {
                false
            } else {
                *last = Some(std::time::Instant::now());
                true
            }
        };
        if due {
            if let Err(e) = self.update_cq() {
                log::warn!("pulse influx: continuous query: {e}");
                // Retry in a minute (the original's fix for its start-up panic).
                *lock(&self.last_cq) = Some(
                    std::time::Instant::now()
                        - Duration::from_secs(self.agg_minutes * 60).saturating_sub(Duration::from_secs(60)),
                );
            }
        }
    }

    fn keys(&self) -> Result<Vec<String>, String> {
        self.show("SHOW FIELD KEYS FROM one_day./.*/")
    }

    fn tags(&self) -> Result<Vec<String>, String> {
        self.show("SHOW TAG KEYS FROM one_day./.*/")
    }

    fn latest(&self, q: &LatestQuery, _now_ms: i64) -> Result<Latest, String> {
        let poll = q.poll.as_secs().max(1);
        let filters = filter_terms(&q.filters);
        let m = ident(&q.stat);
        let text = match q.verb {
            Some(verb) => format!(
                "SELECT {}({m}) FROM {m} WHERE {filters}time > now() - {}s GROUP BY time({poll}s) FILL(none) ORDER BY time DESC LIMIT 1",
                verb.name(),
                2 * poll
            ),
            None => {
                let (extra, n) = q.filters.multi();
                let mut cols = m.clone();
                for k in &extra {
                    cols.push_str(", ");
                    cols.push_str(&ident(k));
                }
                format!("SELECT {cols} FROM {m} WHERE {filters}time > now() - {}s ORDER BY time DESC LIMIT {n}", 2 * poll)
            }
        };
        let v = self.query(&text, true)?;
        let Some((cols, values)) = rows(&v) else { return Ok(Latest::NotFound) };
        let mut out: Vec<Row> = Vec::new();
        for r in values {
            let (Some(t), Some(val)) = (r.first().and_then(Value::as_i64), r.get(1).and_then(Value::as_f64)) else {
                continue;
            };
            let extra = cols
                .iter()
                .zip(r.iter())
                .skip(2)
                .map(|(c, x)| (c.clone(), x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())))
                .collect();
            out.push(Row { time_ms: t, value: val, extra });
        }
        Ok(match out.len() {
            0 => Latest::NotFound,
            1 => Latest::One { time_ms: out[0].time_ms, value: out[0].value },
            _ => Latest::Rows(out),
        })
    }

    fn range(&self, q: &RangeQuery) -> Result<Vec<(i64, f64)>, String> {
        let fill = match q.fill {
            None => "FILL(none)".to_string(),
            Some(f) => format!("FILL({f:.6})"),
        };
        let text = format!(
            "SELECT {}({}) FROM one_week.aggregate WHERE {}time > {}ms AND time < {}ms GROUP BY time({}s) {fill}",
            q.verb.name(),
            ident(&q.stat),
            filter_terms(&q.filters),
            q.from_ms,
            q.to_ms,
            q.bucket.as_secs().max(1),
        );
        let v = self.query(&text, true)?;
        let Some((_, values)) = rows(&v) else { return Ok(Vec::new()) };
        Ok(values.iter().filter_map(|r| Some((r.first()?.as_i64()?, r.get(1)?.as_f64()?))).collect())
    }

    fn window_mean(&self, stat: &str, filters: &Filters, from_ms: i64, to_ms: i64) -> Result<Option<f64>, String> {
        let m = ident(stat);
        let text = format!(
            "SELECT mean({m}) FROM {m} WHERE {}time > {from_ms}ms AND time <= {to_ms}ms",
            filter_terms(filters)
        );
        let v = self.query(&text, true)?;
        Ok(rows(&v).and_then(|(_, values)| values.first().and_then(|r| r.get(1)).and_then(Value::as_f64)))
    }

    fn close(&self) {
        if let Err(e) = self.flush() {
            log::error!("pulse influx: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_originals_cq_text() {
        let f = vec!["cpu_used".to_string(), "ram_used".to_string()];
        assert_eq!(
            Influx::cq_text(&f, &["host".to_string()], 1),
            "CREATE CONTINUOUS QUERY aggregate ON statistics BEGIN SELECT mean(cpu_used) AS cpu_used, mean(ram_used) AS ram_used INTO statistics.one_week.aggregate FROM statistics.one_day./.*/ GROUP BY time(1m), host END"
        );
        assert_eq!(
            Influx::cq_text(&["load.one".to_string()], &[], 15),
            "CREATE CONTINUOUS QUERY aggregate ON statistics BEGIN SELECT mean(\"load.one\") AS \"load.one\" INTO statistics.one_week.aggregate FROM statistics.one_day./.*/ GROUP BY time(15m) END"
        );
    }

    #[test]
    fn escaping() {
        let mut f = Filters::default();
        f.0.insert("service".into(), vec!["web1".into(), "a' OR '1'='1".into()]);
        assert_eq!(filter_terms(&f), "(\"service\" = 'web1' OR \"service\" = 'a\\' OR \\'1\\'=\\'1') AND ");
        assert_eq!(ident("a\"b"), "\"a\\\"b\"");
        assert_eq!(escape_lp("a b,c=d", &['=']), "a\\ b\\,c\\=d");
        assert_eq!(influx_span(Duration::from_secs(8 * 3600)), "8h");
        assert_eq!(influx_span(Duration::from_secs(90 * 60)), "90m");
    }
}
