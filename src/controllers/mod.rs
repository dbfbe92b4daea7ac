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

pub use cache::trim_managed_fields;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

mod api_resources;
mod cron_schedule;
mod cronjob;
mod disruption;
mod gc;
mod gc_graph;
mod gc_meta;
mod gone;
mod job;
mod job_conditions;
mod job_failure_policy;
mod job_status;
mod kube_time;
mod namespace;
mod quota_usage;
mod resourcequota;
mod serviceaccount;
mod tz;

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
    /// The cluster CA certificate (PEM), published in every namespace as `kube-root-ca.crt`.
    pub ca_pem: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cluster_cidr: "10.42.0.0/16".into(),
            node_monitor_grace_period: std::time::Duration::from_secs(40),
            kubernetes_service_ip: std::net::Ipv4Addr::new(10, 43, 0, 1).into(),
            api_servers: Vec::new(),
            ca_pem: String::new(),
        }
    }
}

/// A controller's entry point: runs until the token is cancelled.
type RunFn = fn(Arc<Context>, CancellationToken) -> BoxFuture<'static, ()>;

/// Every controller, by name.
const CONTROLLERS: &[(&str, RunFn)] = &[
    ("scheduler", |c, s| Box::pin(crate::scheduler::run(c, s))),
    ("node-rbac", |c, s| Box::pin(node_rbac::run(c, s))),
    ("node-ipam", |c, s| Box::pin(node_ipam::run(c, s))),
    ("node-lifecycle", |c, s| Box::pin(node_lifecycle::run(c, s))),
    ("taint-eviction", |c, s| Box::pin(taint_eviction::run(c, s))),
    ("pod-gc", |c, s| Box::pin(pod_gc::run(c, s))),
    ("endpoints", |c, s| Box::pin(endpoints::run(c, s))),
    ("kubernetes-service", |c, s| Box::pin(kubernetes_service::run(c, s))),
    ("job", |c, s| Box::pin(job::run(c, s))),
    ("cronjob", |c, s| Box::pin(cronjob::run(c, s))),
    ("namespace", |c, s| Box::pin(namespace::run(c, s))),
    ("serviceaccount", |c, s| Box::pin(serviceaccount::run(c, s))),
    ("garbagecollector", |c, s| Box::pin(gc::run(c, s))),
    ("disruption", |c, s| Box::pin(disruption::run(c, s))),
    ("resourcequota", |c, s| Box::pin(resourcequota::run(c, s))),
];

/// Runs every controller until `shutdown` is cancelled.
pub async fn run_all(ctx: Arc<Context>, shutdown: CancellationToken) {
    let mut tasks = tokio::task::JoinSet::new();
    for (name, run) in CONTROLLERS {
        tracing::info!(controller = name, "starting controller");
        tasks.spawn(run(ctx.clone(), shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
}
