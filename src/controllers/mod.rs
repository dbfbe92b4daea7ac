//! The controller manager: Kubernetes' controllers (and the scheduler) running inside
//! `orch server` on kube-runtime, all through an in-process `kube::Client`. Exactly one
//! server runs them at a time (see `leader`); each controller lives in its own module and
//! exposes `run(ctx, shutdown)`.

mod cache;
pub mod endpoints;
pub mod kubernetes_service;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod node_rbac;
pub mod pod_gc;
pub mod taint_eviction;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// What every controller shares.
pub struct Context {
    /// An in-process client acting as `system:kube-controller-manager`.
    pub client: kube::Client,
    pub settings: Settings,
}

/// Cluster settings the controllers need (from `orch server` flags).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Pod addresses of the cluster, split into one /24 per node (`--cluster-cidr`).
    pub cluster_cidr: String,
    /// How long a node may miss Lease renewals before it is marked Unknown.
    pub node_monitor_grace_period: std::time::Duration,
    /// ClusterIP of the `kubernetes` Service (the first address of `--service-cidr`).
    pub kubernetes_service_ip: std::net::IpAddr,
    /// Where the API servers are reached (their advertised address and port), for the
    /// `kubernetes` Service's endpoints.
    pub api_servers: Vec<std::net::SocketAddr>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cluster_cidr: "10.42.0.0/16".into(),
            node_monitor_grace_period: std::time::Duration::from_secs(40),
            kubernetes_service_ip: std::net::Ipv4Addr::new(10, 43, 0, 1).into(),
            api_servers: Vec::new(),
        }
    }
}

/// Runs every controller until `shutdown` is cancelled.
pub async fn run_all(ctx: Arc<Context>, shutdown: CancellationToken) {
    let tasks = tokio_util::task::TaskTracker::new();
    tasks.spawn(crate::scheduler::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(node_rbac::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(node_ipam::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(node_lifecycle::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(taint_eviction::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(pod_gc::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(endpoints::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(kubernetes_service::run(ctx.clone(), shutdown.clone()));
    tasks.close();
    tasks.wait().await;
}
