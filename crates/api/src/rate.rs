//! Per-second rates of kernel counters.
//!
//! A rate is `(current - previous) / elapsed seconds`, with `elapsed` measured on the monotonic
//! clock between the two reads (never the configured interval). There is no rate on the first
//! read of a counter, and none when the counter went backwards (a reset or a wrap): a
//! monitoring agent must never report a negative or made-up rate.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

/// Rate of one counter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rate {
    last: Option<(u64, Instant)>,
}

impl Rate {
    /// Records `value` read at `at`; returns the rate since the previous read, if any.
    pub fn update(&mut self, value: u64, at: Instant) -> Option<f64> {
        let prev = self.last.replace((value, at));
        let (pv, pt) = prev?;
        let secs = at.checked_duration_since(pt)?.as_secs_f64();
        if value < pv || secs <= 0.0 {
            return None;
        }
        Some((value - pv) as f64 / secs)
    }
}

/// Rates of many counters keyed by `K` (device and field). Keys not updated in a collection
/// are forgotten at [`RateTable::sweep`], so a vanished device does not leak memory and a
/// device that comes back starts over (no spike).
#[derive(Debug)]
pub struct RateTable<K> {
    rates: HashMap<K, (Rate, bool)>,
}

impl<K> Default for RateTable<K> {
    fn default() -> Self {
        RateTable { rates: HashMap::new() }
    }
}

impl<K: Hash + Eq + Clone> RateTable<K> {
    pub fn update(&mut self, key: &K, value: u64, at: Instant) -> Option<f64> {
        if let Some((rate, seen)) = self.rates.get_mut(key) {
            *seen = true;
            return rate.update(value, at);
        }
        let mut rate = Rate::default();
        rate.update(value, at);
        self.rates.insert(key.clone(), (rate, true));
        None
    }

    /// Forgets the keys that were not updated since the last sweep.
    pub fn sweep(&mut self) {
        self.rates.retain(|_, (_, seen)| std::mem::replace(seen, false));
    }

    pub fn len(&self) -> usize {
        self.rates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn first_read_has_no_rate_then_per_second() {
        let t0 = Instant::now();
        let mut r = Rate::default();
        assert_eq!(r.update(100, t0), None);
        assert_eq!(r.update(300, t0 + Duration::from_secs(2)), Some(100.0));
        assert_eq!(r.update(301, t0 + Duration::from_millis(2500)), Some(2.0));
    }

    #[test]
    fn counter_reset_gives_no_rate_then_resumes() {
        let t0 = Instant::now();
        let mut r = Rate::default();
        r.update(1000, t0);
        assert_eq!(r.update(10, t0 + Duration::from_secs(1)), None);
        assert_eq!(r.update(20, t0 + Duration::from_secs(2)), Some(10.0));
    }

    #[test]
    fn table_sweeps_vanished_keys() {
        let t0 = Instant::now();
        let mut t = RateTable::default();
        t.update(&"a", 1, t0);
        t.update(&"b", 1, t0);
        t.sweep();
        t.update(&"a", 2, t0 + Duration::from_secs(1));
        t.sweep();
        assert_eq!(t.len(), 1);
        // "b" comes back: starts over, no rate.
        assert_eq!(t.update(&"b", 50, t0 + Duration::from_secs(2)), None);
    }
}
