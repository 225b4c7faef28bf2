//! One log throttle for every part of badger that may log the same complaint every tick.

use std::time::{Duration, Instant};

/// How often a throttled complaint may be logged.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// Logs at most once a minute ([`LOG_EVERY`]), and says how many were left out.
#[derive(Default, Debug)]
pub struct LogThrottle {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    /// Whether a line may be logged at `now` (without counting a suppressed one).
    pub fn due(&self, now: Instant) -> bool {
        self.last.is_none_or(|t| now.saturating_duration_since(t) >= LOG_EVERY)
    }

    /// `Some(left out since the last line)` when a line may be logged now.
    pub fn allow(&mut self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    /// [`LogThrottle::allow`] at a given time (tests, and callers with an injected clock).
    pub fn allow_at(&mut self, now: Instant) -> Option<u64> {
        if self.due(now) {
            self.last = Some(now);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_a_minute_and_counts_what_it_left_out() {
        let t0 = Instant::now();
        let mut t = LogThrottle::default();
        assert_eq!(t.allow_at(t0), Some(0));
        assert_eq!(t.allow_at(t0 + Duration::from_secs(1)), None);
        assert_eq!(t.allow_at(t0 + Duration::from_secs(59)), None);
        assert!(!t.due(t0 + Duration::from_secs(59)));
        assert_eq!(t.allow_at(t0 + LOG_EVERY), Some(2));
    }
}
