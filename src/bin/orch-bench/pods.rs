//! `orch-bench pods`: pod start-up latency and memory of a real single-node cluster. One
//! `orch server` with its local node (containerd supervised under its data dir, the pod network
//! in a network namespace of the benchmark's own), the busybox image imported through the
//! airgap dir. Measured: the time from starting `orch server` to its node Ready and to a
//! first pod (created as soon as the API takes it) Ready; the server process's RSS when idle
//! and that of everything it started (orch, containerd, shims); the latency from create to the
//! watch event showing the pod Ready for single pods one after another and for N pods created at
//! once, and the RSS with those N pods running. Everything the node made is removed afterwards,
//! also on failure or Ctrl-C.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use orch::rpc::HttpClient;
use orch::testkit::node::{containers_unavailable, NodeSandbox};
use orch::testkit::{free_port, ServerProc};
use serde_json::json;

use super::cluster::{create_with_retry, proc_mib, request, wait_nodes_ready};
use super::pod_watch::{self, Seen};
use super::probe::quantile_ms;

const NAMESPACE: &str = "bench";
const NODE: &str = "bench-node";
/// How long the server gets to start its node and import the image.
const START_WAIT: Duration = Duration::from_secs(120);

pub struct Config {
    /// Pods created at once.
    pub pods: usize,
    /// Single pods started one after another before that.
    pub singles: usize,
    /// Quiet time before each memory reading.
    pub settle: Duration,
    /// Give up waiting for pods to be Ready (or gone) after this long.
    pub timeout: Duration,
    /// Where to keep the server's log (it goes with the sandbox otherwise).
    pub server_log: Option<std::path::PathBuf>,
}

/// Latencies of one case, in microseconds: from create to Ready, and to bound (scheduled).
#[derive(Default)]
struct Case {
    label: String,
    ready: Vec<u64>,
    bound: Vec<u64>,
}

/// What one run measured.
struct Report {
    /// From starting the server to its node Ready, and to the first pod Ready (seconds).
    node_ready_s: f64,
    first_pod_s: f64,
    idle_rss: f64,
    /// orch, containerd and the shims, idle.
    total_idle_rss: f64,
    cases: Vec<Case>,
    loaded_rss: f64,
    peak_rss: f64,
}

fn pod_body(name: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{ "name": "main", "image": "busybox", "imagePullPolicy": "Never", "command": ["sleep", "3600"] }],
        },
    })
    .to_string()
}

/// The running benchmark cluster: the server and the clients of its API.
struct Bench<'a> {
    server: &'a ServerProc,
    http: HttpClient,
    pods_url: String,
    seen: Arc<Mutex<Seen>>,
    cfg: Config,
}

impl Bench<'_> {
    fn rss(&self) -> f64 {
        self.server.pid().map_or(0.0, |pid| proc_mib(pid, "VmRSS:"))
    }

    /// The RSS of every process whose command line names the server's data dir: orch,
    /// containerd (its config is there) and the shims (their socket is).
    fn total_rss(&self) -> f64 {
        let dir = self.server.data_dir.display().to_string();
        let Ok(procs) = std::fs::read_dir("/proc") else { return 0.0 };
        procs
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(&dir)))
            .map(|pid| proc_mib(pid, "VmRSS:"))
            .sum()
    }

    /// Creates `names` at once; adds each pod's latencies from just before its create to the
    /// watch events that showed it bound and Ready to `case`.
    async fn start_pods(&self, names: &[String], case: &mut Case) -> anyhow::Result<()> {
        let creates = names.iter().map(|name| {
            let (http, url, body) = (self.http.clone(), self.pods_url.clone(), pod_body(name));
            tokio::spawn(async move {
                let t0 = Instant::now();
                let (status, answer) = request(&http, "POST", &url, body).await?;
                anyhow::ensure!(status.is_success(), "create answered {status}: {}", String::from_utf8_lossy(&answer));
                Ok::<Instant, anyhow::Error>(t0)
            })
        });
        let mut started = HashMap::new();
        for (name, create) in names.iter().zip(futures::future::join_all(creates.collect::<Vec<_>>()).await) {
            started.insert(name.as_str(), create.context("create task")??);
        }
        let until = Instant::now() + self.cfg.timeout;
        loop {
            {
                let seen = self.seen.lock().expect("pod watch lock");
                let since = |at: Instant, n: &String| at.saturating_duration_since(started[n.as_str()]).as_micros() as u64;
                let ready: Vec<u64> = names.iter().filter_map(|n| Some(since(seen.ready_at(n)?, n))).collect();
                if ready.len() == names.len() {
                    case.bound.extend(names.iter().filter_map(|n| Some(since(seen.bound_at(n)?, n))));
                    case.ready.extend(ready);
                    return Ok(());
                }
                anyhow::ensure!(Instant::now() < until, "only {} of {} pods Ready after {:?}", ready.len(), names.len(), self.cfg.timeout);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Deletes `names` and waits until no pod is left.
    async fn delete_pods(&self, names: &[String]) -> anyhow::Result<()> {
        let urls: Vec<String> = names.iter().map(|n| format!("{}/{n}", self.pods_url)).collect();
        let deletes = urls.iter().map(|url| request(&self.http, "DELETE", url, String::new()));
        for answer in futures::future::join_all(deletes).await {
            let (status, body) = answer?;
            anyhow::ensure!(status.is_success(), "deleting a pod answered {status}: {}", String::from_utf8_lossy(&body));
        }
        let until = Instant::now() + self.cfg.timeout;
        loop {
            let (status, body) = request(&self.http, "GET", &self.pods_url, String::new()).await?;
            let list: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let left = list["items"].as_array().map_or(usize::MAX, Vec::len);
            if status.is_success() && left == 0 {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < until, "{left} pods still there {:?} after deleting them", self.cfg.timeout);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn measure(&self, started: Instant) -> anyhow::Result<Report> {
        let api = format!("{}/api/v1", self.server.url());
        let first = vec!["first".to_string()];
        let first_pod = async {
            // Created as soon as the API takes it (the namespace's ServiceAccount may lag).
            create_with_retry(&self.http, &self.pods_url, &pod_body(&first[0])).await?;
            loop {
                if let Some(at) = self.seen.lock().expect("pod watch lock").ready_at(&first[0]) {
                    return anyhow::Ok(at.saturating_duration_since(started).as_secs_f64());
                }
                anyhow::ensure!(started.elapsed() < START_WAIT, "the first pod was not Ready within {START_WAIT:?}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let node_ready = async {
            wait_nodes_ready(&self.http, &api, 1, START_WAIT).await?;
            anyhow::Ok(started.elapsed().as_secs_f64())
        };
        let (node_ready_s, first_pod_s) = tokio::try_join!(node_ready, first_pod)?;
        println!("from `orch server` start: node Ready after {node_ready_s:.2} s, first pod Ready after {first_pod_s:.2} s");
        self.delete_pods(&first).await?;
        wait_for_image(self.server).await?;
        tokio::time::sleep(self.cfg.settle).await;
        let (idle_rss, total_idle_rss) = (self.rss(), self.total_rss());
        println!(
            "node Ready, image present; orch server RSS idle: {idle_rss:.1} MiB, with containerd and shims {total_idle_rss:.1} MiB; load average {}",
            load_average()
        );

        let mut singles = Case { label: format!("1 pod (x{})", self.cfg.singles), ..Case::default() };
        let single_names: Vec<String> = (0..self.cfg.singles).map(|i| format!("single-{i}")).collect();
        for name in &single_names {
            self.start_pods(std::slice::from_ref(name), &mut singles).await?;
        }
        self.delete_pods(&single_names).await?;
        let names: Vec<String> = (0..self.cfg.pods).map(|i| format!("batch-{i:03}")).collect();
        let mut batch = Case { label: format!("{} at once", self.cfg.pods), ..Case::default() };
        self.start_pods(&names, &mut batch).await?;
        tokio::time::sleep(self.cfg.settle).await;
        let loaded_rss = self.rss();
        let peak_rss = self.server.pid().map_or(0.0, |pid| proc_mib(pid, "VmHWM:"));
        let t0 = Instant::now();
        self.delete_pods(&names).await?;
        println!("{} pods deleted and gone in {:.1} s; load average {}", self.cfg.pods, t0.elapsed().as_secs_f64(), load_average());
        Ok(Report { node_ready_s, first_pod_s, idle_rss, total_idle_rss, cases: vec![singles, batch], loaded_rss, peak_rss })
    }
}

/// The machine's 1-minute load average (other work on it skews the latencies).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next().map(str::to_string)).unwrap_or_default()
}

/// The server's admin client, once it has written its credentials.
async fn admin_client(server: &ServerProc) -> anyhow::Result<HttpClient> {
    let until = Instant::now() + START_WAIT;
    loop {
        if let Some(http) = server.admin_client() {
            return Ok(http);
        }
        anyhow::ensure!(Instant::now() < until, "the server wrote no credentials within {START_WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the node's containerd lists the busybox image (imported from the airgap dir).
async fn wait_for_image(server: &ServerProc) -> anyhow::Result<()> {
    let binary = std::env::current_exe()?.with_file_name("orch");
    let until = Instant::now() + START_WAIT;
    loop {
        let out = tokio::process::Command::new(&binary).args(["images", "ls", "--data-dir"]).arg(&server.data_dir).output().await?;
        if String::from_utf8_lossy(&out.stdout).contains("busybox") {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < until, "the busybox image was not imported within {START_WAIT:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn print(report: &mut Report, pods: usize) {
    println!("create → Ready (watch)     {:>8} {:>8} {:>8} | bound p50 s  p99 s", "p50 s", "p99 s", "max s");
    for case in &mut report.cases {
        let s = |micros: &mut Vec<u64>, p: f64| quantile_ms(micros, p) / 1e3;
        let (p50, p99, max) = (s(&mut case.ready, 0.5), s(&mut case.ready, 0.99), s(&mut case.ready, 1.0));
        let (b50, b99) = (s(&mut case.bound, 0.5), s(&mut case.bound, 0.99));
        println!("{:<26} {p50:>8.3} {p99:>8.3} {max:>8.3} | {b50:>11.3} {b99:>6.3}", case.label);
    }
    println!("{:<24} {:>8}", "orch process memory", "MiB");
    println!("{:<24} {:>8.1}", "idle (no user pods)", report.idle_rss);
    println!("{:<24} {:>8.1}", "idle, + containerd, shims", report.total_idle_rss);
    println!("{:<24} {:>8.1}", format!("{pods} pods running"), report.loaded_rss);
    println!("{:<24} {:>8.1}", "peak (VmHWM)", report.peak_rss);
    let p99 = report.cases.last_mut().map_or(f64::NAN, |c| quantile_ms(&mut c.ready, 0.99) / 1e3);
    println!("RESULT pod_startup_p99_s={p99:.2} idle_rss_mib={:.0} rss_{pods}pods_mib={:.0}", report.idle_rss, report.loaded_rss);
    println!(
        "RESULT start_to_node_ready_s={:.2} start_to_first_pod_ready_s={:.2} total_idle_rss_mib={:.0}",
        report.node_ready_s, report.first_pod_s, report.total_idle_rss
    );
}

/// Starts watching and measures, once the server is up.
async fn session(server: &ServerProc, started: Instant, cfg: Config) -> anyhow::Result<Report> {
    let http = admin_client(server).await?;
    let api = format!("{}/api/v1", server.url());
    create_with_retry(&http, &format!("{api}/namespaces"), &json!({ "metadata": { "name": NAMESPACE } }).to_string()).await?;
    let (seen, watch) = pod_watch::start(http.clone(), api.clone(), NAMESPACE.into());
    let bench = Bench { pods_url: format!("{api}/namespaces/{NAMESPACE}/pods"), server, http, seen, cfg };
    let report = bench.measure(started).await;
    watch.abort();
    report
}

pub async fn run(binary: &Path, cfg: Config) -> anyhow::Result<()> {
    if let Some(why) = containers_unavailable() {
        anyhow::bail!("the pods benchmark runs real containers: it {why}");
    }
    println!(
        "pods benchmark: one orch server with its local node ({} single pods, then {} at once; busybox sleep, image present)",
        cfg.singles, cfg.pods
    );
    let sandbox = NodeSandbox::new("orch-pb").context("creating the node's sandbox")?;
    let images = sandbox.root().join("server/agent/images");
    std::fs::create_dir_all(&images)?;
    orch::testkit::images::busybox_oci_tar(&images.join("busybox.tar")).context("building the busybox image")?;
    let flags =
        [format!("--netns={}", sandbox.netns().display()), format!("--node-name={NODE}"), format!("--kubelet-port={}", free_port())];
    let started = Instant::now();
    let mut server = ServerProc::start_with_node(binary, &sandbox.root().join("server"), &flags);
    let (pods, keep_log) = (cfg.pods, cfg.server_log.clone());
    let outcome = tokio::select! {
        r = session(&server, started, cfg) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if outcome.is_err() {
        let log = server.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("server log (last lines):\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    server.terminate(Duration::from_secs(30));
    if let Some(path) = keep_log {
        std::fs::write(&path, server.log()).with_context(|| format!("writing {}", path.display()))?;
    }
    drop(sandbox);
    print(&mut outcome?, pods);
    Ok(())
}
