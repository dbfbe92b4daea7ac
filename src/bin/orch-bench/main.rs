//! `orch-bench`: benchmarks that compare orch with the real thing on this machine.
//!
//! `orch-bench api`: the Kubernetes API of one server (see `api`).
//!
//! `orch-bench pods`: pod start-up latency (create → Ready) of 1 and of 50 pods at once on a
//! real node, and the memory of the orch process idle and with the pods (see `pods`).
//!
//! `orch-bench net`: pod-to-pod TCP throughput and latency across two real nodes over VXLAN
//! and host-gw against the underlay (see `net`).
//!
//! `orch-bench scheduler`: 1,000 hollow nodes, 300 Deployments x 100 replicas scheduled and
//! run (see `scheduler`); `orch-bench hollow-nodes` is its node process.
//!
//! `orch-bench dns`: queries per second and latency of the node-local cluster DNS on loopback
//! (see `dns`).
//!
//! `orch-bench store`: puts/s and p50/p99 latency with 1, 16 and 64 clients, 256-byte values,
//! on a 1-node and a 3-node orch store (each node its own `orch server` process on loopback,
//! driven through the store RPC) and on etcd (1 and 3 members, default durability, driven
//! through its gRPC API) in the same run. Both use mutual TLS between clients and members.

mod api;
mod cluster;
mod dns;
mod etcd;
mod harness;
mod hollow;
mod net;
mod pod_watch;
mod pods;
mod probe;
mod scheduler;
mod services;
mod workload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use orch::rpc::RemoteStore;
use orch::store::{Store, TxnRequest};

use etcd::{EtcdCluster, EtcdKv};
use harness::{key, Measurement, VALUE_SIZE};

#[derive(Parser)]
#[command(name = "orch-bench", about = "Benchmarks orch against the real peers on this machine")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// The Kubernetes API of one server: ConfigMap create/get/list/update at 1/16/64 clients,
    /// watch fan-out to 100 watchers
    Api {
        /// Measured seconds per cell (after one second of warm-up)
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
    /// Pod start-up latency and memory on a real node (root; containerd, runc, busybox-static)
    Pods {
        /// Pods created at once
        #[arg(long, default_value_t = 50)]
        pods: usize,
        /// Single pods started one after another first
        #[arg(long, default_value_t = 5)]
        singles: usize,
        /// Quiet seconds before each memory reading
        #[arg(long, default_value_t = 10)]
        settle: u64,
        /// Seconds to wait for pods to be Ready (or gone)
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Copy the server's log here at the end
        #[arg(long)]
        server_log: Option<PathBuf>,
    },
    /// Pod-to-pod TCP throughput and latency across two nodes, VXLAN and host-gw vs the
    /// underlay (root; containerd, runc, busybox-static)
    Net {
        /// Seconds of bulk transfer per path
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
    /// Services (root; containerd, runc, busybox-static): proxy rule programming time for
    /// 1,000 and 5,000 Services, ClusterIP round-trip overhead against the pod directly, and
    /// the cluster DNS (as `dns`)
    Services,
    /// The node-local cluster DNS on loopback: queries/s and latency over UDP and TCP with
    /// 1 and 16 queries in flight
    Dns {
        /// Measured seconds per row (after one second of warm-up)
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
    /// Scheduling throughput: hollow nodes, Deployments x replicas, time until every pod runs
    Scheduler {
        /// Hollow nodes (all in one child process)
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// Deployments (or ReplicaSets, or groups of bare pods) to create
        #[arg(long, default_value_t = 300)]
        deployments: usize,
        /// Pods per deployment
        #[arg(long, default_value_t = 100)]
        replicas: usize,
        /// What to create
        #[arg(long, value_enum, default_value_t = workload::Workload::Deployments)]
        workload: workload::Workload,
        /// Concurrent create requests
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Seconds to wait for every pod to run
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Where the data dir and logs go [default: a fresh temporary dir]
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
    /// (For `scheduler`) runs hollow nodes in this process until stdin closes
    #[command(hide = true)]
    HollowNodes {
        #[arg(long)]
        count: usize,
        #[arg(long)]
        join: String,
        #[arg(long)]
        token: String,
    },
    /// orch store vs etcd: puts/s and latency at 1/16/64 clients, 1 and 3 nodes
    Store {
        /// Measured seconds per cell (after one second of warm-up)
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Where data dirs go [default: a fresh temporary dir]
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Only these cluster sizes (comma-separated)
        #[arg(long, value_delimiter = ',', default_values_t = [1, 3])]
        nodes: Vec<usize>,
        /// Only these client counts (comma-separated)
        #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 64])]
        clients: Vec<usize>,
        /// Skip etcd (for profiling orch alone)
        #[arg(long)]
        no_etcd: bool,
    },
}

/// The `orch` binary next to this one (both are built by `make bench-store`).
fn orch_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let orch = me.with_file_name("orch");
    anyhow::ensure!(orch.exists(), "{} not found; build it with `cargo build --release --bins`", orch.display());
    Ok(orch)
}

async fn bench_orch(root: &Path, nodes: usize, clients: usize, measure: Duration) -> anyhow::Result<Measurement> {
    let servers = orch::testkit::start_cluster(&orch_binary()?, &root.join(format!("orch-{nodes}n-{clients}c")), nodes, &[]).await;
    let stores: Arc<Vec<RemoteStore>> = Arc::new(servers.iter().map(|s| s.store()).collect());
    let value = Arc::new(vec![b'v'; VALUE_SIZE]);
    let m = harness::run(clients, Duration::from_secs(1), measure, move |c, i| {
        let (stores, value) = (stores.clone(), value.clone());
        async move { stores[c % stores.len()].txn(TxnRequest::put(key(c, i), value.as_slice())).await.is_ok() }
    })
    .await;
    drop(servers);
    Ok(m)
}

async fn bench_etcd(root: &Path, members: usize, clients: usize, measure: Duration) -> anyhow::Result<Measurement> {
    let cluster = EtcdCluster::start(&root.join(format!("etcd-{members}n-{clients}c")), members, &mut orch::testkit::free_port).await?;
    let mut kvs = Vec::new();
    for url in &cluster.client_urls {
        kvs.push(EtcdKv::connect(url, &cluster.ca, &cluster.client).await?);
    }
    let kvs = Arc::new(kvs);
    let value = Arc::new(vec![b'v'; VALUE_SIZE]);
    let m = harness::run(clients, Duration::from_secs(1), measure, move |c, i| {
        let (kvs, value) = (kvs.clone(), value.clone());
        async move { kvs[c % kvs.len()].put(key(c, i), value.to_vec()).await.is_ok() }
    })
    .await;
    drop(cluster);
    Ok(m)
}

struct StoreBench {
    seconds: u64,
    work_dir: Option<PathBuf>,
    nodes: Vec<usize>,
    clients: Vec<usize>,
    no_etcd: bool,
}

async fn store_bench(b: StoreBench) -> anyhow::Result<()> {
    let StoreBench { seconds, work_dir, nodes: node_counts, clients: client_counts, no_etcd } = b;
    let tmp = tempfile::Builder::new().prefix("orch-bench-").tempdir()?;
    let root = work_dir.unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&root)?;
    let measure = Duration::from_secs(seconds);
    println!("store benchmark: puts of {VALUE_SIZE}-byte values, {seconds} s per cell, clients spread over all nodes");
    println!(
        "{:<7} {:>7} | {:>9} {:>8} {:>8} | {:>9} {:>8} {:>8} | {:>7} {:>7}",
        "nodes", "clients", "orch op/s", "p50 ms", "p99 ms", "etcd op/s", "p50 ms", "p99 ms", "tput x", "p99 x"
    );
    let mut result = None;
    for &nodes in &node_counts {
        for &clients in &client_counts {
            let o = bench_orch(&root, nodes, clients, measure).await.context("orch run")?;
            let e = if no_etcd { Measurement::default() } else { bench_etcd(&root, nodes, clients, measure).await.context("etcd run")? };
            let tput = o.ops_per_s / e.ops_per_s.max(1e-9);
            let p99 = o.p99_ms / e.p99_ms.max(1e-9);
            println!(
                "{:<7} {:>7} | {:>9.0} {:>8.2} {:>8.2} | {:>9.0} {:>8.2} {:>8.2} | {:>7.2} {:>7.2}{}",
                nodes,
                clients,
                o.ops_per_s,
                o.p50_ms,
                o.p99_ms,
                e.ops_per_s,
                e.p50_ms,
                e.p99_ms,
                tput,
                p99,
                if o.errors + e.errors > 0 { format!("  (errors: orch {}, etcd {})", o.errors, e.errors) } else { String::new() }
            );
            if nodes == 3 && clients == 64 {
                result = Some((tput, p99));
            }
        }
    }
    if let Some((tput, p99)) = result {
        println!("RESULT store_3node_64c_ratio={tput:.2} p99_ratio={p99:.2}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
    match Cli::parse().bench {
        Bench::Api { seconds } => {
            let tmp = tempfile::Builder::new().prefix("orch-bench-api-").tempdir()?;
            api::run(&orch_binary()?, tmp.path(), seconds).await
        }
        Bench::Scheduler { nodes, deployments, replicas, workload, clients, timeout, work_dir } => {
            let tmp = tempfile::Builder::new().prefix("orch-bench-scheduler-").tempdir()?;
            let root = work_dir.unwrap_or_else(|| tmp.path().to_path_buf());
            std::fs::create_dir_all(&root)?;
            let timeout = Duration::from_secs(timeout);
            scheduler::run(&orch_binary()?, &root, scheduler::Config { nodes, deployments, replicas, workload, clients, timeout }).await
        }
        Bench::Pods { pods, singles, settle, timeout, server_log } => {
            let (settle, timeout) = (Duration::from_secs(settle), Duration::from_secs(timeout));
            pods::run(&orch_binary()?, pods::Config { pods, singles, settle, timeout, server_log }).await
        }
        Bench::Net { seconds } => net::run(&orch_binary()?, seconds).await,
        Bench::Services => {
            let (rules_ms, overhead_us) = services::proxy(&orch_binary()?).await?;
            let (qps, p99_ms) = dns::run(3).await?;
            println!(
                "RESULT svc_rules_5000_ms={rules_ms:.0} svc_rr_overhead_p99_us={overhead_us:.0} dns_qps={qps:.0} dns_p99_ms={p99_ms:.2}"
            );
            Ok(())
        }
        Bench::Dns { seconds } => {
            let (qps, p99_ms) = dns::run(seconds).await?;
            println!("RESULT dns_udp_16_qps={qps:.0} p99_ms={p99_ms:.3}");
            Ok(())
        }
        Bench::HollowNodes { count, join, token } => hollow::serve(count, &join, &token).await,
        Bench::Store { seconds, work_dir, nodes, clients, no_etcd } => {
            store_bench(StoreBench { seconds, work_dir, nodes, clients, no_etcd }).await
        }
    }
}
