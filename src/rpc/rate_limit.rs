//! A rate limit for unauthenticated endpoints (CA fetch, join, bootstrap): every refused
//! request (a 4xx answer: wrong token, bad body) costs its client address a token of a small
//! bucket; an address whose bucket is empty gets 429 with `Retry-After` on those endpoints
//! until it refills. Token guessing is slowed to the refill rate while clients that join
//! correctly are never throttled, whatever their number behind one address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use parking_lot::Mutex;

/// Refused requests an address may send in a burst.
const BURST: f64 = 10.0;
/// Refused requests per second an address regains.
const REFILL_PER_SECOND: f64 = 1.0;
/// Addresses tracked at most; beyond, refilled buckets are forgotten first.
const MAX_ADDRESSES: usize = 8192;

/// The buckets of refused requests per client address.
#[derive(Default)]
pub struct FailureLimiter {
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refilled(self, now: Instant) -> Bucket {
        let tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * REFILL_PER_SECOND).min(BURST);
        Bucket { tokens, at: now }
    }
}

impl FailureLimiter {
    /// Seconds `ip` must wait before it may try again, or `None` when it may now.
    fn wait(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let bucket = self.buckets.lock().get(&ip).map(|b| b.refilled(now))?;
        (bucket.tokens < 1.0).then(|| ((1.0 - bucket.tokens) / REFILL_PER_SECOND).ceil().max(1.0) as u64)
    }

    /// Takes a token from `ip`'s bucket.
    fn charge(&self, ip: IpAddr, now: Instant) {
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_ADDRESSES && !buckets.contains_key(&ip) {
            buckets.retain(|_, b| b.refilled(now).tokens < BURST);
            if buckets.len() >= MAX_ADDRESSES {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(ip).or_insert(Bucket { tokens: BURST, at: now });
        *bucket = bucket.refilled(now);
        bucket.tokens -= 1.0;
    }
}

/// `routes` limited (requests without a client address — the in-process client — never are);
/// routes added afterwards are not.
pub fn limit_refused<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes.route_layer(axum::middleware::from_fn_with_state(Arc::<FailureLimiter>::default(), limit))
}

async fn limit(State(limiter): State<Arc<FailureLimiter>>, req: Request, next: Next) -> Response {
    let Some(ip) = super::https::remote_addr(&req).map(|a| a.ip()) else {
        return next.run(req).await;
    };
    if let Some(seconds) = limiter.wait(ip, Instant::now()) {
        tracing::debug!(%ip, path = req.uri().path(), "rate-limited after refused requests");
        let mut response = (StatusCode::TOO_MANY_REQUESTS, "too many refused requests from this address; try again later").into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return response;
    }
    let response = next.run(req).await;
    if response.status().is_client_error() {
        limiter.charge(ip, Instant::now());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_of_refusals_empties_the_bucket_which_refills() {
        let limiter = FailureLimiter::default();
        let (ip, other): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..BURST as usize {
            assert_eq!(limiter.wait(ip, t0), None);
            limiter.charge(ip, t0);
        }
        assert_eq!(limiter.wait(ip, t0), Some(1));
        assert_eq!(limiter.wait(other, t0), None, "other addresses are not affected");
        assert_eq!(limiter.wait(ip, t0 + Duration::from_millis(1100)), None, "one token back after a second");
    }
}
