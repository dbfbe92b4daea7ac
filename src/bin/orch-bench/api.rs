//! `orch-bench api`: the Kubernetes API of one `orch server` over HTTPS — create, get, list and
//! update of ConfigMaps with 1, 16 and 64 concurrent clients, and watch fan-out to 100 watchers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use orch::rpc::HttpClient;
use orch::testkit::ServerProc;

use super::harness::{self, Measurement, VALUE_SIZE};

const CLIENTS: [usize; 3] = [1, 16, 64];
const WATCHERS: usize = 100;
const WATCH_EVENTS: u64 = 2000;

async fn call(http: &HttpClient, method: &str, url: String, body: String) -> bool {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("valid request");
    matches!(http.fetch(req, Duration::from_secs(30)).await, Ok((s, _)) if s.is_success())
}

fn body(name: &str) -> String {
    format!(r#"{{"metadata":{{"name":"{name}"}},"data":{{"v":"{}"}}}}"#, "x".repeat(VALUE_SIZE))
}

/// Runs one operation kind at one concurrency; `op(client, i)` gives method, URL and body.
async fn cell(
    http: &[HttpClient],
    clients: usize,
    measure: Duration,
    op: impl Fn(usize, u64) -> (&'static str, String, String) + Send + Sync + 'static,
) -> Measurement {
    let http: Arc<Vec<HttpClient>> = Arc::new(http.to_vec());
    let op = Arc::new(op);
    harness::run(clients, Duration::from_secs(1), measure, move |c, i| {
        let (http, op) = (http.clone(), op.clone());
        async move {
            let (method, url, body) = op(c, i);
            call(&http[c % http.len()], method, url, body).await
        }
    })
    .await
}

/// Delivers `WATCH_EVENTS` creates to `WATCHERS` watchers; returns events delivered per second.
async fn watch_fan_out(http: &[HttpClient], base: &str) -> f64 {
    let delivered = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..WATCHERS {
        let (client, delivered) = (http[w % http.len()].clone(), delivered.clone());
        let url = format!("{base}/namespaces/bench-watch/configmaps?watch=true&timeoutSeconds=120");
        tasks.push(tokio::spawn(async move {
            let req = http::Request::get(url).body(Full::default()).expect("valid request");
            let Ok(resp) = client.send(req, Duration::from_secs(30)).await else { return };
            let mut body = resp.into_body();
            let mut got = 0;
            while got < WATCH_EVENTS {
                match body.frame().await {
                    Some(Ok(f)) => {
                        let lines = f.into_data().map(|d| d.iter().filter(|b| **b == b'\n').count() as u64).unwrap_or(0);
                        got += lines;
                        delivered.fetch_add(lines, Ordering::Relaxed);
                    }
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = Instant::now();
    let writers: Vec<_> = (0..16u64)
        .map(|wi| {
            let client = http[wi as usize % http.len()].clone();
            let url = format!("{base}/namespaces/bench-watch/configmaps");
            tokio::spawn(async move {
                for i in (wi..WATCH_EVENTS).step_by(16) {
                    call(&client, "POST", url.clone(), body(&format!("w{i}"))).await;
                }
            })
        })
        .collect();
    for w in writers {
        let _ = w.await;
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(120), t).await;
    }
    delivered.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

pub async fn run(binary: &std::path::Path, root: &std::path::Path, seconds: u64) -> anyhow::Result<()> {
    // `ORCH_BENCH_SERVER_ARGS="--disable-controllers"` measures the API without its controllers.
    let extra: Vec<String> = std::env::var("ORCH_BENCH_SERVER_ARGS").unwrap_or_default().split_whitespace().map(str::to_string).collect();
    let server = ServerProc::start(binary, &root.join("api-server"), &extra);
    server.wait_member(Duration::from_secs(30)).await;
    let http: Vec<HttpClient> = (0..4).map(|_| server.admin_client().expect("admin credentials")).collect();
    let base = format!("{}/api/v1", server.url());
    for ns in ["bench", "bench-list", "bench-watch"] {
        let mut created = false;
        for _ in 0..100 {
            if call(&http[0], "POST", format!("{base}/namespaces"), format!(r#"{{"metadata":{{"name":"{ns}"}}}}"#)).await {
                created = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::ensure!(created, "could not create namespace {ns}");
    }
    for i in 0..100 {
        call(&http[0], "POST", format!("{base}/namespaces/bench-list/configmaps"), body(&format!("l{i}"))).await;
    }
    let measure = Duration::from_secs(seconds);
    println!("API benchmark: ConfigMaps with {VALUE_SIZE}-byte values over HTTPS/2, one server, {seconds} s per cell");
    println!("{:<8} {:>7} | {:>9} {:>8} {:>8}", "op", "clients", "ops/s", "p50 ms", "p99 ms");
    let mut create_64 = Measurement::default();
    let mut get_64 = Measurement::default();
    for clients in CLIENTS {
        let ns = format!("{base}/namespaces/bench/configmaps");
        let epoch = clients;
        let create_url = ns.clone();
        let create = cell(&http, clients, measure, move |c, i| ("POST", create_url.clone(), body(&format!("c{epoch}-{c}-{i}")))).await;
        let get_url = ns.clone();
        let get = cell(&http, clients, measure, move |c, i| ("GET", format!("{get_url}/c{epoch}-{c}-{}", i % 50), String::new())).await;
        let list_url = format!("{base}/namespaces/bench-list/configmaps");
        let list = cell(&http, clients, measure, move |_, _| ("GET", list_url.clone(), String::new())).await;
        let update_url = ns.clone();
        let update = cell(&http, clients, measure, move |c, i| {
            ("PUT", format!("{update_url}/c{epoch}-{c}-{}", i % 50), body(&format!("c{epoch}-{c}-{}", i % 50)))
        })
        .await;
        for (op, m) in [("create", create), ("get", get), ("list100", list), ("update", update)] {
            println!(
                "{op:<8} {clients:>7} | {:>9.0} {:>8.2} {:>8.2}{}",
                m.ops_per_s,
                m.p50_ms,
                m.p99_ms,
                if m.errors > 0 { format!("  ({} errors)", m.errors) } else { String::new() }
            );
        }
        if clients == 64 {
            create_64 = create;
            get_64 = get;
        }
    }
    let fan_out = watch_fan_out(&http, &base).await;
    println!("watch fan-out: {WATCHERS} watchers, {WATCH_EVENTS} events each: {fan_out:.0} events/s delivered");
    println!(
        "RESULT api_create_64c_ops={:.0} api_create_64c_p99_ms={:.2} api_get_p99_ms={:.2}",
        create_64.ops_per_s, create_64.p99_ms, get_64.p99_ms
    );
    Ok(())
}
