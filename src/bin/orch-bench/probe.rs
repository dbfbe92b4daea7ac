//! The API latency probe: on its own connection, a GET of one small ConfigMap and a LIST of a
//! namespace of a few every 100 ms, as a user's kubectl would see the API during a run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use orch::rpc::HttpClient;

const EVERY: Duration = Duration::from_millis(100);
/// A probe slower than this counts as this (and as an error).
const TIMEOUT: Duration = Duration::from_secs(10);

/// Latencies of the probe's requests, in microseconds.
#[derive(Default)]
pub struct Samples {
    pub micros: Vec<u64>,
    pub errors: u64,
}

/// Probes `get_url` and `list_url` every 100 ms until the task is aborted.
pub fn start(http: HttpClient, get_url: String, list_url: String) -> (Arc<Mutex<Samples>>, tokio::task::JoinHandle<()>) {
    let samples = Arc::new(Mutex::new(Samples::default()));
    let shared = samples.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for url in [&get_url, &list_url] {
                let t0 = Instant::now();
                let ok = match http::Request::get(url.as_str()).body(Full::default()) {
                    Ok(req) => matches!(http.fetch(req, TIMEOUT).await, Ok((s, _)) if s.is_success()),
                    Err(_) => false,
                };
                let mut s = shared.lock().expect("probe lock");
                s.micros.push(t0.elapsed().min(TIMEOUT).as_micros() as u64);
                s.errors += u64::from(!ok);
            }
        }
    });
    (samples, task)
}

/// The `p`-quantile (0..1) of `micros`, in milliseconds (0 when empty).
pub fn quantile_ms(micros: &mut [u64], p: f64) -> f64 {
    if micros.is_empty() {
        return 0.0;
    }
    micros.sort_unstable();
    let i = ((micros.len() as f64 * p).ceil() as usize).clamp(1, micros.len()) - 1;
    micros[i] as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::quantile_ms;

    #[test]
    fn quantiles() {
        let mut v: Vec<u64> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(quantile_ms(&mut v, 0.99), 99.0);
        assert_eq!(quantile_ms(&mut v, 0.5), 50.0);
        assert_eq!(quantile_ms(&mut [], 0.99), 0.0);
        assert_eq!(quantile_ms(&mut [7000], 0.99), 7.0);
    }
}
