//! The clock the tick runs on: the monotonic clock, the wall clock, and waiting.
//!
//! Production runs on [`SystemClock`]. Tests use [`ManualClock`], which moves only when it
//! is told (or when something waits on it), so a tick, a stall or a wall-clock step can be
//! replayed without sleeping.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    /// The monotonic time.
    fn now(&self) -> Instant;
    /// The wall-clock time since the Unix epoch.
    fn epoch(&self) -> Duration;
    /// Returns at `t` at the earliest.
    fn sleep_until(&self, t: Instant);
    /// How long to block for real while waiting for an event until `deadline` on this clock;
    /// `None` once the deadline has passed.
    fn wait_for(&self, deadline: Instant) -> Option<Duration> {
        deadline.checked_duration_since(self.now()).filter(|d| !d.is_zero())
    }
    /// A real wait of [`Clock::wait_for`] ended with no event.
    fn waited(&self, deadline: Instant) {
        let _ = deadline;
    }
}

/// The machine's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn epoch(&self) -> Duration {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
    }

    fn sleep_until(&self, t: Instant) {
        std::thread::sleep(t.saturating_duration_since(Instant::now()));
    }
}

/// A clock for tests: it stands still until [`ManualClock::advance`] or
/// [`ManualClock::step_wall`], or until something sleeps or waits on it. `sleep_until`
/// jumps to its instant at once; a wait for an event that does not come within `grace`
/// (real time, generous: it only passes when nothing is coming) jumps to its deadline.
#[derive(Debug, Clone)]
pub struct ManualClock {
    state: Arc<Mutex<(Instant, Duration)>>,
    grace: Duration,
}

impl ManualClock {
    /// Starts at `epoch` on the wall clock.
    pub fn new(epoch: Duration) -> ManualClock {
        ManualClock { state: Arc::new(Mutex::new((Instant::now(), epoch))), grace: Duration::from_secs(1) }
    }

    /// Both clocks move by `d` (a stall).
    pub fn advance(&self, d: Duration) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 += d;
        s.1 += d;
    }

    /// Only the wall clock moves (an NTP step or `date -s`), forward by `d`.
    pub fn step_wall(&self, d: Duration) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1 += d;
    }

    fn jump_to(&self, t: Instant) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = t.checked_duration_since(s.0) {
            s.0 += d;
            s.1 += d;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    fn epoch(&self) -> Duration {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    fn sleep_until(&self, t: Instant) {
        self.jump_to(t);
    }

    fn wait_for(&self, deadline: Instant) -> Option<Duration> {
        (self.now() < deadline).then_some(self.grace)
    }

    fn waited(&self, deadline: Instant) {
        self.jump_to(deadline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Duration::from_secs(1000));
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        c.sleep_until(t0 + Duration::from_millis(1500));
        assert_eq!(c.now(), t0 + Duration::from_millis(1500));
        assert_eq!(c.epoch(), Duration::from_millis(1_001_500));
        c.sleep_until(t0);
        assert_eq!(c.now() - t0, Duration::from_millis(1500));
        c.step_wall(Duration::from_secs(30));
        assert_eq!(c.now() - t0, Duration::from_millis(1500));
        assert_eq!(c.epoch(), Duration::from_millis(1_031_500));
        c.advance(Duration::from_secs(2));
        assert_eq!(c.now() - t0, Duration::from_millis(3500));
        assert_eq!(c.wait_for(t0), None);
        assert!(c.wait_for(t0 + Duration::from_secs(4)).is_some());
    }
}
