//! A per-source rate limit for the DNS server: a token bucket per client address, so one
//! flooding pod cannot starve the others; queries beyond it are dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use parking_lot::Mutex;

/// The most sources tracked; when full, those whose buckets have refilled are forgotten.
const MAX_SOURCES: usize = 65_536;

/// Queries per second per source, and how many may come at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for Limit {
    /// Generous for any real client (a pod resolving names in a tight loop makes a few
    /// thousand a second); it only stops floods.
    fn default() -> Self {
        Self { per_second: 20_000.0, burst: 40_000.0 }
    }
}

/// Token buckets by source address.
pub struct RateLimiter {
    limit: Limit,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(limit: Limit) -> Self {
        Self { limit, buckets: Mutex::new(HashMap::new()) }
    }

    /// Whether `source` may send one more query at `now`.
    pub fn allow(&self, source: IpAddr, now: Instant) -> bool {
        let Limit { per_second, burst } = self.limit;
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_SOURCES && !buckets.contains_key(&source) {
            buckets.retain(|_, (tokens, last)| *tokens + now.duration_since(*last).as_secs_f64() * per_second < burst);
        }
        let (tokens, last) = buckets.entry(source).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * per_second).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn allows_the_burst_then_the_rate_per_source() {
        let limiter = RateLimiter::new(Limit { per_second: 10.0, burst: 5.0 });
        let (a, b): (IpAddr, IpAddr) = ("10.42.0.5".parse().unwrap(), "10.42.0.6".parse().unwrap());
        let now = Instant::now();
        assert_eq!((0..8).filter(|_| limiter.allow(a, now)).count(), 5, "the burst");
        assert!(limiter.allow(b, now), "another source has its own bucket");
        assert!(!limiter.allow(a, now));
        let later = now + Duration::from_millis(300);
        assert_eq!((0..8).filter(|_| limiter.allow(a, later)).count(), 3, "10/s refills 3 in 300 ms");
    }
}
