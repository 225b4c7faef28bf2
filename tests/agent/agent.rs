//! The scheduler in-process, with test plugins: a module that hangs forever, a module that
//! counts, and emitters that record what they receive.
//!
//! One 10-second run checks the cadence (10 payloads, timestamps 1 s apart, each sent well
//! inside its second) while a hung module is present, emitter batching by interval, both
//! blacklist levels, and that stopping flushes what a batching emitter still holds.

use badger_test_support::process as common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{unbounded, Sender};
use serde::Deserialize;

use badger::config::Registries;
use badger::scheduler::{run, Control};
use badger_api::plugin::*;
use badger_api::point::{Point, Value};
use common::TempConfig;

// ---- test plugins -------------------------------------------------------------------------

struct Hang;
impl Module for Hang {
    fn collect(&mut self, _: Instant, _: &mut Vec<Point>) -> Result<(), CollectError> {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}
static HANG: ModuleSpec =
    ModuleSpec { name: "hang", aliases: &[], summary: "never returns", build: |_, _| Ok(Box::new(Hang)) };

static TICKS: AtomicU64 = AtomicU64::new(0);
struct Ticker;
impl Module for Ticker {
    fn collect(&mut self, _: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let n = TICKS.fetch_add(1, Ordering::SeqCst) as i64;
        out.push(Point::simple("t", "n", "", Value::Int(n)));
        out.push(Point::simple("t", "hidden", "", Value::Int(n)));
        out.push(Point::simple("t", "shown", "", Value::Float(0.5)));
        Ok(())
    }
}
static TICKER: ModuleSpec =
    ModuleSpec { name: "ticker", aliases: &["ticker_alias"], summary: "counts", build: |_, _| Ok(Box::new(Ticker)) };

/// (arrival wall time in seconds, [(timestamp, point names)])
type Received = (f64, Vec<(i64, Vec<String>)>);

fn sinks() -> &'static Mutex<HashMap<String, Sender<Received>>> {
    static S: OnceLock<Mutex<HashMap<String, Sender<Received>>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordConf {
    id: String,
}

struct Record(Sender<Received>);
impl Emitter for Record {
    fn emit(&mut self, batch: &Batch<'_>) -> Result<(), EmitError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        let got = batch.payloads().map(|p| (p.timestamp(), p.points().map(|pt| pt.name.clone()).collect())).collect();
        let _ = self.0.send((now, got));
        Ok(())
    }
}
static RECORD: EmitterSpec = EmitterSpec {
    name: "record",
    aliases: &["record2"],
    summary: "records",
    build: |_, conf| {
        let c: RecordConf = conf.parse()?;
        let tx =
            sinks().lock().unwrap().get(&c.id).cloned().ok_or_else(|| BuildError::Unavailable("no sink".into()))?;
        Ok(Box::new(Record(tx)))
    },
    counters: true,
};

static MODULES: &[&ModuleSpec] = &[&TICKER, &HANG];
static EMITTERS: &[&EmitterSpec] = &[&RECORD];

// ---- the run --------------------------------------------------------------------------------

#[test]
fn cadence_isolation_batching_blacklists_and_flush() {
    let (tx_a, rx_a) = unbounded();
    let (tx_b, rx_b) = unbounded();
    sinks().lock().unwrap().insert("a".into(), tx_a);
    sinks().lock().unwrap().insert("b".into(), tx_b);
    let c = TempConfig::new(
        r#"{"core": {"hostname": "h", "ipv4": "", "ipv6": "", "log": {"level": "warn"}},
            "modules": ["hang", "ticker"], "emitters": ["record", "record2"]}"#,
        &[
            ("ticker", r#"{"blacklist": ["t.hidden"]}"#),
            ("hang", r#"{"timeout": "300ms"}"#),
            ("record", r#"{"id": "a"}"#),
            ("record2", r#"{"id": "b", "interval": 3, "blacklist": "t.n*"}"#),
        ],
    );
    let reg = Registries { modules: MODULES, emitters: EMITTERS };
    let (ctl_tx, ctl_rx) = std::sync::mpsc::channel();
    let path = c.path();
    let agent = std::thread::spawn(move || run(&path, &reg, None, &ctl_rx));

    // Emitter "a" (every tick): 10 payloads.
    let mut a = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(14);
    while a.len() < 10 {
        let (arrived, batch) = rx_a.recv_deadline(deadline).expect("10 payloads within 14 s");
        assert_eq!(batch.len(), 1, "interval 0 gets one payload per batch");
        a.push((arrived, batch.into_iter().next().unwrap()));
    }
    let stop_sent = Instant::now();
    ctl_tx.send(Control::Stop).unwrap();
    assert_eq!(agent.join().unwrap(), 0);
    assert!(stop_sent.elapsed() < Duration::from_secs(5), "stop took {:?}", stop_sent.elapsed());

    for w in a.windows(2) {
        assert_eq!(
            w[1].1 .0 - w[0].1 .0,
            1,
            "timestamps 1 s apart: {:?}",
            a.iter().map(|x| x.1 .0).collect::<Vec<_>>()
        );
    }
    for (arrived, (ts, names)) in &a {
        let lag = arrived - *ts as f64;
        // Sent within its second, even with a module that never returns.
        assert!((0.0..0.9).contains(&lag), "payload {ts} arrived {lag:.3}s after its tick");
        // Module-level blacklist: t.hidden never enters the payload.
        assert_eq!(names, &["t.n", "t.shown"]);
    }

    // Emitter "b" (interval 3, blacklist t.n*): batches end on multiples of 3, except the
    // flush at stop; together they hold every payload "a" saw, in order.
    let mut b: Vec<Vec<(i64, Vec<String>)>> = Vec::new();
    while let Ok((_, batch)) = rx_b.try_recv() {
        b.push(batch);
    }
    let (last, full) = b.split_last().expect("b got batches");
    for batch in full {
        assert_eq!(batch.last().unwrap().0 % 3, 0, "batch ends on a multiple of 3: {batch:?}");
        assert!(batch.len() <= 3);
    }
    assert!(!last.is_empty());
    let b_ts: Vec<i64> = b.iter().flatten().map(|p| p.0).collect();
    let a_ts: Vec<i64> = a.iter().map(|p| p.1 .0).collect();
    assert!(b_ts.starts_with(&a_ts), "b {b_ts:?} vs a {a_ts:?}");
    for p in b.iter().flatten() {
        assert_eq!(p.1, vec!["t.shown".to_string()], "emitter-level blacklist drops t.n* for b only");
    }
}
