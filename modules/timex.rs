//! `timex`: the kernel clock discipline (NTP) state, from the `adjtimex(2)` system call.
//!
//! | stat | units | type | kind | meaning |
//! |---|---|---|---|---|
//! | `timex.sync_status` | | int | gauge | 1 when the kernel considers the clock synchronized, 0 when `adjtimex` returns `TIME_ERROR` |
//! | `timex.offset_seconds` | s | float | gauge | offset between the system clock and the reference the NTP daemon last gave |
//! | `timex.frequency_adjustment_ratio` | | float | gauge | the clock's frequency correction as a ratio (1 = none) |
//! | `timex.maxerror_seconds` | s | float | gauge | maximum error the kernel assumes |
//! | `timex.estimated_error_seconds` | s | float | gauge | estimated error |
//! | `timex.status` | | int | gauge | the clock status bits (`STA_*`) |
//! | `timex.loop_time_constant` | | int | gauge | time constant of the phase-locked loop |
//! | `timex.tick_seconds` | s | float | gauge | time between clock ticks |
//! | `timex.pps_frequency_hertz` | Hz | float | gauge | frequency offset measured from a pulse-per-second signal |
//! | `timex.pps_jitter_seconds` | s | float | gauge | jitter of the PPS signal |
//! | `timex.pps_shift_seconds` | | int | gauge | length of the PPS calibration interval, as a power of 2 seconds |
//! | `timex.pps_stability_hertz` | Hz | float | gauge | stability of the PPS signal (average of recent frequency changes) |
//! | `timex.pps_jitter_total` | | int | counter | PPS jitter limit exceeded |
//! | `timex.pps_calibration_total` | | int | counter | PPS calibration intervals |
//! | `timex.pps_error_total` | | int | counter | PPS calibration errors |
//! | `timex.pps_stability_exceeded_total` | | int | counter | PPS stability limit exceeded |
//! | `timex.tai_offset_seconds` | s | int | gauge | TAI − UTC, in whole seconds, when the NTP daemon set it |
//!
//! As node_exporter's `timex` collector (`node_timex_offset_seconds`, …), with its unit
//! conversions: offsets and jitter in nanoseconds when the status has `STA_NANO`, else in
//! microseconds; frequencies in 2⁻¹⁶ ppm. The call only reads (`modes` = 0), which needs
//! no privilege. It is not a file, so the fixture trees cannot hold it: the module reads
//! the running kernel even under a fixture root, and its tests check the conversions on
//! hand-made values and the live call on the test machine (it is not in the golden outputs).
//! A host without the call (a seccomp filter that forbids it) makes the module unavailable.
//!
//! Config keys: only the common ones (`interval`, `blacklist`, `timeout`).

use std::time::Instant;

use serde::Deserialize;

use badger_api::plugin::{BuildError, CollectError, Module, ModuleContext, ModuleSpec, PluginConf};
use badger_api::point::{Point, Value};

pub static SPEC: ModuleSpec =
    ModuleSpec { name: "timex", aliases: &[], summary: "clock discipline (NTP) state from adjtimex(2)", build };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

fn build(_ctx: &ModuleContext, conf: &PluginConf) -> Result<Box<dyn Module>, BuildError> {
    let Config {} = conf.parse()?;
    read().map_err(|e| BuildError::Unavailable(format!("adjtimex: {e}")))?;
    Ok(Box::new(Timex))
}

struct Timex;

/// The fields of `struct timex` the module uses, and the call's return value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Raw {
    pub state: i32,
    pub status: i64,
    pub offset: i64,
    pub freq: i64,
    pub maxerror: i64,
    pub esterror: i64,
    pub constant: i64,
    pub tick: i64,
    pub ppsfreq: i64,
    pub jitter: i64,
    pub shift: i64,
    pub stabil: i64,
    pub jitcnt: i64,
    pub calcnt: i64,
    pub errcnt: i64,
    pub stbcnt: i64,
    pub tai: i64,
}

/// `adjtimex` returns this when the clock is not synchronized.
const TIME_ERROR: i32 = 5;
/// Status bit: `offset` and `jitter` are in nanoseconds.
const STA_NANO: i64 = 0x2000;
/// Frequencies are in ppm with a 16-bit fraction.
const PPM16: f64 = 1_000_000.0 * 65536.0;

/// One read-only `adjtimex` call.
pub fn read() -> std::io::Result<Raw> {
    // SAFETY: `timex` is a plain C struct for which all-zero bytes are valid; with `modes`
    // 0 the kernel only writes into the struct we pass, which lives for the whole call.
    let (state, t) = unsafe {
        let mut t: libc::timex = std::mem::zeroed();
        (libc::adjtimex(&mut t), t)
    };
    if state < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Raw {
        state,
        status: i64::from(t.status),
        offset: t.offset,
        freq: t.freq,
        maxerror: t.maxerror,
        esterror: t.esterror,
        constant: t.constant,
        tick: t.tick,
        ppsfreq: t.ppsfreq,
        jitter: t.jitter,
        shift: i64::from(t.shift),
        stabil: t.stabil,
        jitcnt: t.jitcnt,
        calcnt: t.calcnt,
        errcnt: t.errcnt,
        stbcnt: t.stbcnt,
        tai: i64::from(t.tai),
    })
}

/// The points of one reading, in the table's order.
pub fn points(r: &Raw, out: &mut Vec<Point>) {
    let per_second = if r.status & STA_NANO != 0 { 1e9 } else { 1e6 };
    let f = |field, units, v: f64| Point::simple("timex", field, units, Value::Float(v));
    let i = |field, units, v: i64| Point::simple("timex", field, units, Value::Int(v));
    out.push(i("sync_status", "", i64::from(r.state != TIME_ERROR)));
    out.push(f("offset_seconds", "s", r.offset as f64 / per_second));
    out.push(f("frequency_adjustment_ratio", "", 1.0 + r.freq as f64 / PPM16));
    out.push(f("maxerror_seconds", "s", r.maxerror as f64 / 1e6));
    out.push(f("estimated_error_seconds", "s", r.esterror as f64 / 1e6));
    out.push(i("status", "", r.status));
    out.push(i("loop_time_constant", "", r.constant));
    out.push(f("tick_seconds", "s", r.tick as f64 / 1e6));
    out.push(f("pps_frequency_hertz", "Hz", r.ppsfreq as f64 / PPM16));
    out.push(f("pps_jitter_seconds", "s", r.jitter as f64 / per_second));
    out.push(i("pps_shift_seconds", "", r.shift));
    out.push(f("pps_stability_hertz", "Hz", r.stabil as f64 / PPM16));
    out.push(i("pps_jitter_total", "", r.jitcnt).counter());
    out.push(i("pps_calibration_total", "", r.calcnt).counter());
    out.push(i("pps_error_total", "", r.errcnt).counter());
    out.push(i("pps_stability_exceeded_total", "", r.stbcnt).counter());
    out.push(i("tai_offset_seconds", "s", r.tai));
}

impl Module for Timex {
    fn collect(&mut self, _now: Instant, out: &mut Vec<Point>) -> Result<(), CollectError> {
        let r = read().map_err(|e| CollectError(format!("adjtimex: {e}")))?;
        points(&r, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use badger_api::point::Kind;
    use badger_test_support::fixture;

    #[test]
    fn conversions() {
        // What this VM's kernel returned once (no NTP daemon: unsynchronized, STA_UNSYNC),
        // with a few fields changed to exercise every conversion.
        let r = Raw {
            state: TIME_ERROR,
            status: 0x40,
            offset: -1500,
            freq: 65536 * 12,
            maxerror: 16_000_000,
            esterror: 16_000_000,
            constant: 2,
            tick: 10000,
            ppsfreq: 65536,
            jitter: 250,
            shift: 4,
            stabil: 32768,
            jitcnt: 1,
            calcnt: 2,
            errcnt: 3,
            stbcnt: 4,
            tai: 37,
        };
        let mut p = Vec::new();
        points(&r, &mut p);
        fixture::assert_documented(include_str!("timex.rs"), &p);
        let get = |n: &str| fixture::value(&p, &format!("timex.{n}")).unwrap();
        assert_eq!(get("sync_status"), Value::Int(0));
        assert_eq!(get("offset_seconds"), Value::Float(-0.0015));
        fixture::assert_close(get("frequency_adjustment_ratio").as_f64(), 1.000012);
        assert_eq!(get("maxerror_seconds"), Value::Float(16.0));
        assert_eq!(get("tick_seconds"), Value::Float(0.01));
        assert_eq!(get("pps_frequency_hertz"), Value::Float(1e-6));
        assert_eq!(get("pps_jitter_seconds"), Value::Float(0.00025));
        assert_eq!(get("pps_stability_hertz"), Value::Float(0.5e-6));
        assert_eq!(get("tai_offset_seconds"), Value::Int(37));
        assert_eq!(p.len(), 17);
        let counters: Vec<&str> = p.iter().filter(|p| p.kind == Kind::Counter).map(|p| &*p.field).collect();
        assert_eq!(
            counters,
            ["pps_jitter_total", "pps_calibration_total", "pps_error_total", "pps_stability_exceeded_total"]
        );

        // STA_NANO: offset and jitter in nanoseconds.
        let mut p = Vec::new();
        points(&Raw { state: 0, status: STA_NANO, offset: -1500, jitter: 250, ..r }, &mut p);
        assert_eq!(fixture::value(&p, "timex.sync_status"), Some(Value::Int(1)));
        assert_eq!(fixture::value(&p, "timex.offset_seconds"), Some(Value::Float(-1.5e-6)));
        assert_eq!(fixture::value(&p, "timex.pps_jitter_seconds"), Some(Value::Float(2.5e-7)));
    }

    #[test]
    fn live_call_on_this_machine() {
        let root = fixture::FixtureRoot::new("vm-6.18");
        let mut m = fixture::build(&SPEC, &root.ctx(), "{}");
        let p = fixture::collect(m.as_mut(), 0.0);
        fixture::assert_documented(include_str!("timex.rs"), &p);
        assert_eq!(p.len(), 17);
        // USER_HZ-independent: the kernel tick is 1/CONFIG_HZ s, between 1/1000 and 1/100.
        let tick = fixture::float(&p, "timex.tick_seconds");
        assert!((0.000_99..=0.010_01).contains(&tick), "{tick}");
        assert!(fixture::float(&p, "timex.maxerror_seconds") >= 0.0);
    }
}
