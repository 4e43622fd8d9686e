use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Shards of a limiter's map, each behind a lock of its own.
const SHARDS: usize = 32;
/// Keys a limiter holds at most, by default.
const DEFAULT_MAX_KEYS: usize = 100_000;

/// The address a client is limited as: an IPv6 client is its /64 (one subscriber's network,
/// from which it can use any address), an IPv4-mapped one its IPv4 address.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// One shard: buckets by key, and when stale ones were last swept out.
#[derive(Debug)]
struct Shard {
    buckets: HashMap<String, (f64, Instant)>,
    swept: Instant,
}

/// A keyed token bucket: `burst` tokens at once, refilled at `per_minute` a minute.
/// Per node; keys are phone numbers, client addresses, or (for chat) sender and recipient.
///
/// Bounded and O(1) per call whatever the keys: the map is sharded (a call locks one shard),
/// holds at most `max_keys`, and a full shard drops its stale buckets (those refilled anyway)
/// at most once a second, else one bucket at random. A dropped key starts again with a full
/// bucket, so a flood of new keys can only make limits more lenient, never refuse a client.
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_sec: f64,
    per_shard: usize,
    hasher: RandomState,
    shards: Vec<Mutex<Shard>>,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` tokens a minute per key, `per_minute` at once, for at
    /// most [`DEFAULT_MAX_KEYS`] keys.
    pub fn new(per_minute: u64) -> Self {
        Self::with_max_keys(per_minute, DEFAULT_MAX_KEYS)
    }

    /// A limiter holding at most `max_keys` keys (at least one per shard).
    pub fn with_max_keys(per_minute: u64, max_keys: usize) -> Self {
        #[allow(clippy::cast_precision_loss)]
        let burst = per_minute.max(1) as f64;
        let now = Instant::now();
        Self {
            burst,
            per_sec: burst / 60.0,
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        buckets: HashMap::new(),
                        swept: now,
                    })
                })
                .collect(),
        }
    }

    /// Takes one attempt for `key`; `Err(seconds)` says how long until the next is allowed.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        self.take(key, 1)
    }

    /// How many keys the limiter holds.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .buckets
                    .len()
            })
            .sum()
    }

    /// Whether the limiter holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes `cost` tokens for `key` (a cost above the burst needs a full bucket);
    /// `Err(seconds)` says how long until that many are there.
    pub fn take(&self, key: &str, cost: u64) -> Result<(), u64> {
        #[allow(clippy::cast_precision_loss)]
        let cost = (cost as f64).min(self.burst);
        let now = Instant::now();
        let mut shard = self.shard(key);
        if !shard.buckets.contains_key(key) && shard.buckets.len() >= self.per_shard {
            self.make_room(&mut shard, now);
        }
        let (tokens, at) = shard
            .buckets
            .entry(key.to_owned())
            .or_insert((self.burst, now));
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

    /// Gives `tokens` back to `key`'s bucket (up to the burst), as when a request turned out
    /// to be worth more than it cost; a key the limiter does not hold is left alone.
    pub fn give(&self, key: &str, tokens: u64) {
        if let Some((held, _)) = self.shard(key).buckets.get_mut(key) {
            #[allow(clippy::cast_precision_loss)]
            let tokens = tokens as f64;
            *held = (*held + tokens).min(self.burst);
        }
    }

    /// The locked shard `key` lives in.
    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        #[allow(clippy::cast_possible_truncation)]
        let shard = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Frees a place in a full shard: its stale buckets if it was not swept in the last
    /// second, else (or if none was stale) one bucket.
    fn make_room(&self, shard: &mut Shard, now: Instant) {
        if now.duration_since(shard.swept) >= Duration::from_secs(1) {
            shard.swept = now;
            let full = Duration::from_secs_f64(self.burst / self.per_sec);
            shard
                .buckets
                .retain(|_, (_, at)| now.duration_since(*at) < full);
        }
        if shard.buckets.len() >= self.per_shard
            && let Some(victim) = shard.buckets.keys().next().cloned()
        {
            shard.buckets.remove(&victim);
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

    #[test]
    fn given_tokens_refill_up_to_the_burst() {
        let limiter = RateLimiter::new(60);
        assert!(limiter.take("a", 60).is_ok());
        assert!(limiter.check("a").is_err());
        limiter.give("a", 2);
        assert!(limiter.take("a", 2).is_ok());
        assert!(limiter.check("a").is_err());
        limiter.give("a", 1_000);
        assert!(limiter.take("a", 60).is_ok());
        assert!(limiter.check("a").is_err());
        limiter.give("unknown", 5);
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        let key = |ip: &str| address_key(ip.parse().expect("ip")).to_string();
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), "2001:db8:1:2::");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
    }

    #[test]
    fn a_flood_of_new_keys_stays_within_the_bound() {
        let limiter = RateLimiter::with_max_keys(1, 1_000);
        assert!(limiter.check("busy").is_ok());
        for i in 0..200_000 {
            let _ = limiter.check(&format!("flood-{i}"));
        }
        assert!(limiter.len() <= 1_000 + SHARDS, "{}", limiter.len());
        // The flood fills every shard with fresh buckets, so older keys were dropped: the
        // limit grew lenient for them, it never refused anyone it should not have.
        assert!(limiter.len() >= 1_000 / 2, "{}", limiter.len());
    }
}
