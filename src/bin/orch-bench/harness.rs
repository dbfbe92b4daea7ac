//! The load generator: N concurrent clients issue puts of 256-byte values for a fixed time;
//! throughput and latency percentiles are computed from every operation's latency.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes in every value written.
pub const VALUE_SIZE: usize = 256;

#[derive(Debug, Clone, Copy, Default)]
pub struct Measurement {
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

/// Runs `clients` concurrent loops of `put(client, i)` for `duration` after `warmup`.
pub async fn run<F, Fut>(clients: usize, warmup: Duration, duration: Duration, put: F) -> Measurement
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let put = Arc::new(put);
    let start = Instant::now() + warmup;
    let end = start + duration;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let put = put.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut i = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let ok = put(c, i).await;
                i += 1;
                if t0 >= start {
                    if ok {
                        lat.push(t0.elapsed().as_micros() as u32);
                    } else {
                        errors += 1;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.expect("bench client panicked");
        all.extend(lat);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).map_or(0.0, |us| *us as f64 / 1000.0);
    Measurement { ops_per_s: all.len() as f64 / duration.as_secs_f64(), p50_ms: pct(0.50), p99_ms: pct(0.99), errors }
}

/// The key a client writes on its i-th put: each client cycles over 1,000 keys of its own.
pub fn key(client: usize, i: u64) -> Vec<u8> {
    format!("/bench/{client:03}/{:04}", i % 1000).into_bytes()
}
