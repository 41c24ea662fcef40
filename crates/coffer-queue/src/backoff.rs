//! Jittered exponential backoff for reconnecting: the delay doubles from `initial` up to `max`,
//! and each wait is drawn uniformly from `[delay / 2, delay]` so a fleet of workers that lost the
//! broker together does not reconnect in lockstep.

use std::time::Duration;

use rand::Rng;

/// Delays between reconnection attempts.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// Starts at `initial`, never waits longer than `max`.
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            failures: 0,
        }
    }

    /// The next wait; each call doubles the ceiling.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let hi = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        let ms = rand::rng().random_range(hi / 2..=hi);
        Duration::from_millis(ms)
    }

    /// Back to `initial` (after a connection that stayed up).
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let second = b.next_delay();
        assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(200));
        for _ in 0..100 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(30));
        }
        assert!(b.next_delay() >= Duration::from_secs(15));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
