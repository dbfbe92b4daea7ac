//! `orch-bench scheduler`: one `orch server` (child process, own data dir, loopback), N hollow
//! nodes in one other process, then D Deployments × R replicas created as fast as the API
//! takes them. Measures pods bound per second (from a pod watch), seconds from the first create
//! until every pod runs, the server's peak RSS (VmHWM) and the API's p99 latency (a probe's
//! GETs/LISTs every 100 ms, and the creates).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use orch::rpc::HttpClient;
use orch::testkit::ServerProc;

use super::cluster::{create_with_retry, proc_mib, request, wait_nodes_ready};
use super::hollow::HollowNodes;
use super::pod_watch;
use super::probe::{self, quantile_ms};
use super::workload::Workload;

const NAMESPACE: &str = "bench";
/// A /24 per node: 1,024 of them, clear of the service range 10.43.0.0/16.
const CLUSTER_CIDR: &str = "10.64.0.0/14";
/// How long the nodes get to join and turn Ready.
const NODE_WAIT: Duration = Duration::from_secs(600);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

pub struct Config {
    pub nodes: usize,
    pub deployments: usize,
    pub replicas: usize,
    pub workload: Workload,
    /// Concurrent create requests.
    pub clients: usize,
    /// Give up waiting for pods to run after this long.
    pub timeout: Duration,
}

/// Create latencies in microseconds, and failures.
#[derive(Default)]
struct Creates {
    micros: Vec<u64>,
    errors: u64,
}

/// Creates every body with `clients` concurrent requests, counting them in `created`.
async fn create_all(http: Vec<HttpClient>, url: String, bodies: Vec<String>, clients: usize, created: Arc<AtomicUsize>) -> Creates {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(Creates::default()));
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let (http, url, bodies, next, out, created) =
                (http[c % http.len()].clone(), url.clone(), bodies.clone(), next.clone(), out.clone(), created.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { return };
                    let t0 = Instant::now();
                    let ok = matches!(request(&http, "POST", &url, body.clone()).await, Ok((s, _)) if s.is_success());
                    let mut out = out.lock().expect("creates lock");
                    if ok {
                        out.micros.push(t0.elapsed().as_micros() as u64);
                        created.fetch_add(1, Ordering::Relaxed);
                    } else {
                        out.errors += 1;
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    Arc::try_unwrap(out).map(|m| m.into_inner().expect("creates lock")).unwrap_or_default()
}

/// Bindings per second between the first and the last, and the most in any one second.
fn bind_rates(times: &[Instant]) -> (f64, usize) {
    let (Some(first), Some(last)) = (times.first(), times.last()) else { return (0.0, 0) };
    let span = last.duration_since(*first).as_secs_f64();
    let mean = if span > 0.0 { (times.len() - 1) as f64 / span } else { 0.0 };
    let mut peak = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi].duration_since(times[lo]) >= Duration::from_secs(1) {
            lo += 1;
        }
        peak = peak.max(hi - lo + 1);
    }
    (mean, peak)
}

pub async fn run(binary: &Path, root: &Path, cfg: Config) -> anyhow::Result<()> {
    let total = cfg.deployments * cfg.replicas;
    println!(
        "scheduler benchmark: {} hollow nodes, {} {:?} x {} replicas = {total} pods, {} create clients",
        cfg.nodes, cfg.deployments, cfg.workload, cfg.replicas, cfg.clients
    );
    let server = ServerProc::start(binary, &root.join("server"), &[format!("--cluster-cidr={CLUSTER_CIDR}")]);
    server.wait_member(Duration::from_secs(60)).await;
    let pid = server.pid().context("the server is not running")?;
    let admin = || server.admin_client().context("the server's admin credentials");
    let http = admin()?;
    let api = format!("{}/api/v1", server.url());

    let t_nodes = Instant::now();
    let mut hollow = HollowNodes::start(cfg.nodes, &server.url(), &server.agent_token(), &root.join("hollow-nodes.log"))?;
    hollow.wait_started(NODE_WAIT).await?;
    wait_nodes_ready(&http, &api, cfg.nodes, NODE_WAIT).await?;
    println!("{} nodes Ready in {:.1} s; server RSS {:.0} MiB", cfg.nodes, t_nodes.elapsed().as_secs_f64(), proc_mib(pid, "VmRSS:"));

    create_with_retry(&http, &format!("{api}/namespaces"), &format!(r#"{{"metadata":{{"name":"{NAMESPACE}"}}}}"#)).await?;
    let configmaps = format!("{api}/namespaces/{NAMESPACE}/configmaps");
    for i in 0..5 {
        create_with_retry(&http, &configmaps, &format!(r#"{{"metadata":{{"name":"probe-{i}"}},"data":{{"k":"v"}}}}"#)).await?;
    }
    let (seen, watch) = pod_watch::start(admin()?, api.clone(), NAMESPACE.into());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (probes, probe_task) = probe::start(admin()?, format!("{configmaps}/probe-0"), configmaps.clone());

    let bodies: Vec<String> = (0..cfg.deployments).flat_map(|d| cfg.workload.bodies(d, cfg.replicas)).collect();
    let created = Arc::new(AtomicUsize::new(0));
    let create_http: Vec<HttpClient> = (0..4).map(|_| admin()).collect::<anyhow::Result<_>>()?;
    let url = format!("{}{}", server.url(), cfg.workload.path(NAMESPACE));
    let start = Instant::now();
    let creating = tokio::spawn(create_all(create_http, url, bodies, cfg.clients, created.clone()));
    println!("{:>6} {:>9} {:>7} {:>7} {:>8}", "t s", "created", "bound", "running", "RSS MiB");
    let mut next_report = start + PROGRESS_EVERY;
    let all_running = loop {
        let (bound, running) = {
            let s = seen.lock().expect("pod watch lock");
            (s.bound, s.running)
        };
        if running >= total {
            break true;
        }
        if start.elapsed() > cfg.timeout {
            println!("timed out after {:?}: {running} of {total} pods running", cfg.timeout);
            break false;
        }
        if Instant::now() >= next_report {
            let rss = proc_mib(pid, "VmRSS:");
            let t = start.elapsed().as_secs_f64();
            println!("{t:>6.0} {:>9} {bound:>7} {running:>7} {rss:>8.0}", created.load(Ordering::Relaxed));
            next_report += PROGRESS_EVERY;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    probe_task.abort();
    let mut creates = creating.await.unwrap_or_default();
    watch.abort();

    let seen = seen.lock().expect("pod watch lock");
    let (rate, peak) = bind_rates(&seen.bind_times());
    let running_s = match (all_running, seen.last_running()) {
        (true, Some(t)) => t.duration_since(start).as_secs_f64(),
        _ => f64::NAN,
    };
    let rss = proc_mib(pid, "VmHWM:");
    let nodes_rss = hollow.pid().map_or(0.0, |p| proc_mib(p, "VmHWM:"));
    let mut probes = std::mem::take(&mut *probes.lock().expect("probe lock"));
    let (probe_p50, probe_p99) = (quantile_ms(&mut probes.micros, 0.5), quantile_ms(&mut probes.micros, 0.99));
    let (create_p50, create_p99) = (quantile_ms(&mut creates.micros, 0.5), quantile_ms(&mut creates.micros, 0.99));
    println!("pods bound: {} of {total}; {rate:.0} bindings/s on average, {peak} in the busiest second", seen.bound);
    println!("all {total} pods Running after {running_s:.1} s");
    println!("probe GET/LIST: {} requests, p50 {probe_p50:.1} ms, p99 {probe_p99:.1} ms, {} errors", probes.micros.len(), probes.errors);
    println!(
        "creates: {} {:?}, p50 {create_p50:.1} ms, p99 {create_p99:.1} ms, {} errors",
        creates.micros.len(),
        cfg.workload,
        creates.errors
    );
    println!("peak RSS: server {rss:.0} MiB, hollow-node process {nodes_rss:.0} MiB");
    println!(
        "RESULT sched_pods_per_s={rate:.0} all_running_s={running_s:.1} server_rss_mib={rss:.0} api_p99_ms={:.0}",
        probe_p99.max(create_p99)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_rate_and_busiest_second() {
        let t0 = Instant::now();
        let times: Vec<Instant> = (0..=20).map(|i| t0 + Duration::from_millis(i * 100)).collect();
        let (mean, peak) = bind_rates(&times);
        assert!((mean - 10.0).abs() < 1e-6, "{mean}");
        assert_eq!(peak, 10);
        assert_eq!(bind_rates(&[]), (0.0, 0));
    }
}
