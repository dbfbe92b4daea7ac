//! `orch-bench net`: pod-to-pod TCP throughput and request/response latency across two real
//! nodes (a [`ClusterBed`]: each node in a network namespace of its own on an underlay bridge),
//! over the VXLAN overlay and over host-gw, against the same measured directly between the two
//! node namespaces (the underlay). The traffic runs between sockets the benchmark opens inside
//! the pods' and nodes' namespaces, so it measures the kernel's datapath orch set up, not a
//! tool in a container. Also: the time from `orch agent --join` to the new node's first pod
//! being reachable from a pod of another node.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use orch::net::netns::run_in;
use orch::testkit::cluster::ClusterBed;
use orch::testkit::node::containers_unavailable;
use serde_json::json;

const CHUNK: usize = 128 * 1024;
const ROUND_TRIPS: usize = 5000;

/// One path's numbers.
struct Numbers {
    gbit_s: f64,
    rr_p50_us: f64,
    rr_p99_us: f64,
}

/// Throughput (`seconds` of bulk transfer) and 1-byte round trips from a socket in `client_ns`
/// to a listener on `server_ip` in `server_ns`.
fn measure(client_ns: &Path, server_ns: &Path, server_ip: Ipv4Addr, seconds: u64) -> anyhow::Result<Numbers> {
    let listener = run_in(Some(server_ns), || TcpListener::bind((server_ip, 0)))??;
    let to = listener.local_addr()?;
    let connect = || -> anyhow::Result<TcpStream> {
        let s = run_in(Some(client_ns), || TcpStream::connect_timeout(&to, Duration::from_secs(5)))??;
        s.set_nodelay(true)?;
        Ok(s)
    };
    let sink = std::thread::spawn(move || -> std::io::Result<(u64, TcpListener)> {
        let (mut conn, _) = listener.accept()?;
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            match conn.read(&mut buf)? {
                0 => return Ok((total, listener)),
                n => total += n as u64,
            }
        }
    });
    let mut bulk = connect()?;
    let chunk = vec![0x5au8; CHUNK];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(seconds) {
        bulk.write_all(&chunk)?;
    }
    bulk.shutdown(std::net::Shutdown::Write)?;
    let (received, listener) = sink.join().map_err(|_| anyhow::anyhow!("the receiver panicked"))??;
    let gbit_s = received as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9;
    let (rr_p50_us, rr_p99_us) = round_trips(client_ns, listener, to)?;
    Ok(Numbers { gbit_s, rr_p50_us, rr_p99_us })
}

/// p50 and p99 in µs of 1-byte round trips from a socket in `client_ns` to `to`, which leads
/// (directly or through a Service) to `listener`.
pub fn round_trips(client_ns: &Path, listener: TcpListener, to: SocketAddr) -> anyhow::Result<(f64, f64)> {
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut conn, _) = listener.accept()?;
        conn.set_nodelay(true)?;
        let mut b = [0u8; 1];
        while conn.read(&mut b)? == 1 {
            conn.write_all(&b)?;
        }
        Ok(())
    });
    let mut rr = run_in(Some(client_ns), || TcpStream::connect_timeout(&to, Duration::from_secs(5)))??;
    rr.set_nodelay(true)?;
    let mut nanos = Vec::with_capacity(ROUND_TRIPS);
    let mut b = [7u8; 1];
    for _ in 0..ROUND_TRIPS {
        let t = Instant::now();
        rr.write_all(&b)?;
        rr.read_exact(&mut b)?;
        nanos.push(t.elapsed().as_nanos() as u64);
    }
    drop(rr);
    echo.join().map_err(|_| anyhow::anyhow!("the echo side panicked"))??;
    nanos.sort_unstable();
    let us = |p: f64| nanos[((nanos.len() as f64 * p).ceil() as usize).clamp(1, nanos.len()) - 1] as f64 / 1000.0;
    Ok((us(0.50), us(0.99)))
}

/// A client of a bed's cluster, as its admin.
pub async fn bed_client(bed: &ClusterBed) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(bed.kubeconfig().await)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// The pods API of a bed's cluster.
async fn pods_api(bed: &ClusterBed) -> anyhow::Result<Api<Pod>> {
    Ok(Api::default_namespaced(bed_client(bed).await?))
}

/// Creates pod `name` bound to `node`, running busybox `command` (retrying while the server
/// starts up).
async fn create_pod(bed: &ClusterBed, pods: &Api<Pod>, name: &str, node: &str, command: &[&str]) -> anyhow::Result<()> {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, "containers": [{
            "name": "main", "image": "busybox", "imagePullPolicy": "Never", "command": command}]},
    }))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while let Err(e) = pods.create(&PostParams::default(), &pod).await {
        anyhow::ensure!(Instant::now() < deadline, "creating pod {name}: {e}\n{}", bed.logs());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Pod `name`'s (uid, IP) once it runs.
async fn running(bed: &ClusterBed, pods: &Api<Pod>, name: &str, within: Duration) -> anyhow::Result<(String, Ipv4Addr)> {
    let deadline = Instant::now() + within;
    loop {
        let p = pods.get(name).await?;
        let status = p.status.clone().unwrap_or_default();
        if let (Some("Running"), Some(ip)) = (status.phase.as_deref(), status.pod_ip.as_deref()) {
            return Ok((p.metadata.uid.clone().unwrap_or_default(), ip.parse()?));
        }
        anyhow::ensure!(Instant::now() < deadline, "pod {name} did not run within {within:?}\n{}", bed.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A pod's network namespace on bed node `node`.
fn pod_netns(bed: &ClusterBed, node: usize, uid: &str) -> PathBuf {
    bed.nodes[node].data_dir().join("agent/netns").join(uid)
}

/// A two-node bed with `backend`, one sleeping pod on each node; returns the bed and each pod's
/// (namespace path, IP).
pub async fn bed_with_pods(binary: &Path, backend: &str) -> anyhow::Result<(ClusterBed, Vec<(PathBuf, Ipv4Addr)>)> {
    let mut bed = ClusterBed::new(binary, 2, &[format!("--flannel-backend={backend}")]).await.context("building the test bed")?;
    bed.start_agents().await;
    let pods = pods_api(&bed).await?;
    let mut found = Vec::new();
    for i in 0..bed.nodes.len() {
        let name = format!("bench-{i}");
        create_pod(&bed, &pods, &name, &bed.nodes[i].name, &["sleep", "36000"]).await?;
        let (uid, ip) = running(&bed, &pods, &name, Duration::from_secs(120)).await?;
        found.push((pod_netns(&bed, i, &uid), ip));
    }
    Ok((bed, found))
}

/// Seconds from starting `orch agent --join` on a second VXLAN node to a pod waiting for that
/// node being reachable from a pod of the first node (a TCP connection to it succeeds).
async fn join_to_reachable(binary: &Path) -> anyhow::Result<f64> {
    let mut bed = ClusterBed::new(binary, 2, &["--flannel-backend=vxlan".to_string()]).await.context("building the test bed")?;
    let pods = pods_api(&bed).await?;
    create_pod(&bed, &pods, "prober", &bed.nodes[0].name, &["sleep", "36000"]).await?;
    let (uid, _) = running(&bed, &pods, "prober", Duration::from_secs(120)).await?;
    let prober = pod_netns(&bed, 0, &uid);
    create_pod(&bed, &pods, "joiner", &bed.nodes[1].name, &["httpd", "-f", "-p", "8080", "-h", "/"]).await?;
    let start = Instant::now();
    bed.start_agents().await;
    let (_, ip) = running(&bed, &pods, "joiner", Duration::from_secs(60)).await?;
    let to = std::net::SocketAddr::from((ip, 8080));
    loop {
        let connect = || TcpStream::connect_timeout(&to, Duration::from_millis(200));
        if run_in(Some(&prober), connect)?.is_ok() {
            return Ok(start.elapsed().as_secs_f64());
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(60),
            "the joined node's pod {to} was not reachable within 60 s\n{}",
            bed.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the benchmark and prints a table and the RESULT line.
pub async fn run(binary: &Path, seconds: u64) -> anyhow::Result<()> {
    if let Some(why) = containers_unavailable() {
        anyhow::bail!("orch-bench net {why}");
    }
    println!("{:<26} {:>10} {:>12} {:>12}", "path (node0 -> node1)", "Gbit/s", "rr p50 µs", "rr p99 µs");
    let row = |label: &str, p: &Numbers| println!("{label:<26} {:>10.2} {:>12.1} {:>12.1}", p.gbit_s, p.rr_p50_us, p.rr_p99_us);
    let mut results = Vec::new();
    for backend in ["vxlan", "host-gw"] {
        let (bed, pods) = bed_with_pods(binary, backend).await?;
        let (n0, n1) = (bed.nodes[0].netns(), bed.nodes[1].netns());
        let (node1_ip, pods) = (bed.nodes[1].ip, pods.clone());
        let (underlay, overlay) = tokio::task::spawn_blocking(move || -> anyhow::Result<(Numbers, Numbers)> {
            Ok((measure(&n0, &n1, node1_ip, seconds)?, measure(&pods[0].0, &pods[1].0, pods[1].1, seconds)?))
        })
        .await??;
        row(&format!("underlay ({backend} bed)"), &underlay);
        row(&format!("pod to pod, {backend}"), &overlay);
        results.push((backend, overlay.gbit_s / underlay.gbit_s, overlay.rr_p99_us));
        drop(bed);
    }
    let join = join_to_reachable(binary).await?;
    println!("join to first pod reachable from another node (vxlan): {join:.2} s");
    let (_, ratio, p99) = results[0];
    let (_, hg_ratio, _) = results[1];
    println!("RESULT vxlan_tput_ratio={ratio:.2} vxlan_rr_p99_us={p99:.0} hostgw_tput_ratio={hg_ratio:.2} join_reachable_s={join:.2}");
    Ok(())
}
