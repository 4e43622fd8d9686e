use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A keyed token bucket: `burst` tokens at once, refilled at `per_minute` a minute.
/// Per node; keys are phone numbers, client addresses, or (for chat) sender and recipient.
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` tokens a minute per key, `per_minute` at once.
    pub fn new(per_minute: u64) -> Self {
        #[allow(clippy::cast_precision_loss)]
        let burst = per_minute.max(1) as f64;
        Self {
            burst,
            per_sec: burst / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one attempt for `key`; `Err(seconds)` says how long until the next is allowed.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        self.take(key, 1)
    }

    /// Takes `cost` tokens for `key` (a cost above the burst needs a full bucket);
    /// `Err(seconds)` says how long until that many are there.
    pub fn take(&self, key: &str, cost: u64) -> Result<(), u64> {
        #[allow(clippy::cast_precision_loss)]
        let cost = (cost as f64).min(self.burst);
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > 100_000 {
            let full = Duration::from_secs_f64(self.burst / self.per_sec);
            buckets.retain(|_, (_, at)| now.duration_since(*at) < full);
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if *tokens >= cost {
            *tokens -= cost;
            Ok(())
        } else {
            let wait = ((cost - *tokens) / self.per_sec).ceil();
            // `wait` is small and positive: at most 60 s for a one-a-minute limit.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Err(wait as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_refuses_per_key() {
        let limiter = RateLimiter::new(3);
        for _ in 0..3 {
            assert!(limiter.check("a").is_ok());
        }
        let wait = limiter.check("a").expect_err("fourth attempt");
        assert!((1..=20).contains(&wait), "{wait}");
        assert!(limiter.check("b").is_ok());
    }

    #[test]
    fn a_cost_takes_that_many_tokens() {
        let limiter = RateLimiter::new(600);
        assert!(limiter.take("a", 500).is_ok());
        let wait = limiter.take("a", 200).expect_err("only 100 left");
        assert!((10..=11).contains(&wait), "{wait}");
        assert!(limiter.take("a", 100).is_ok());
    }
}
