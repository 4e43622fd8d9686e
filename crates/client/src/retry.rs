//! Exponential backoff with full jitter for transient failures.

use std::time::Duration;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in all (1 = no retries).
    pub attempts: u32,
    /// The first delay's upper bound; it doubles each time.
    pub base: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 8,
            base: Duration::from_millis(200),
            max: Duration::from_secs(15),
        }
    }
}

impl Retry {
    /// The pause before attempt `n` (1-based, n ≥ 2): uniform in 0..=min(max, base·2^(n-2)).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1 << attempt.saturating_sub(2).min(20))
            .min(self.max);
        let millis = u64::try_from(exp.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::random_range(0..=millis))
    }
}
