//! The one backoff: bounded exponential delays with jitter, for retries and supervised restarts.
//!
//! Pure and clock-free: it only says how long to wait; the caller sleeps (`tokio::time::sleep`,
//! `ctx.run_later`) or stores a deadline. Jitter is added on top of the base delay (at most a
//! quarter of it) so that restarts of many actors or nodes do not fall into step.

use std::time::Duration;

/// Exponential backoff with bounded jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `initial`, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max: max.max(initial), attempt: 0 }
    }

    /// The wait before the next attempt (without jitter), and counts the attempt.
    pub fn next_base(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        self.attempt = self.attempt.saturating_add(1);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The wait before the next attempt, with up to 25 % random jitter added.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next_base();
        let jitter = base.mul_f64(rand::random::<f64>() * 0.25);
        (base + jitter).min(self.max + self.max / 4)
    }

    /// Attempts made since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Forgets past failures.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let waits: Vec<u64> = (0..6).map(|_| b.next_base().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert_eq!(b.next_base(), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        let mut b = Backoff::new(Duration::from_secs(4), Duration::from_secs(100));
        for _ in 0..100 {
            b.reset();
            let d = b.next_delay();
            assert!(d >= Duration::from_secs(4) && d <= Duration::from_secs(5), "{d:?}");
        }
    }
}
