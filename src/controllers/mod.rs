//! The controller manager: Kubernetes' controllers (and the scheduler) running inside
//! `orch server` on kube-runtime, all through an in-process `kube::Client`. Exactly one
//! server runs them at a time (see `leader`); each controller lives in its own module and
//! exposes `run(ctx, shutdown)`.

mod addons;
mod api_resources;
pub mod apiserver_leases;
pub(crate) mod cache;
mod common;
mod cronjob;
mod daemonset;
mod deployment;
mod disruption;
pub mod endpoints;
mod event_ttl;
mod gc;
mod hpa;
pub(crate) mod informer;
mod job;
pub mod kube_dns;
pub mod kubernetes_service;
mod leader;
mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod pod_gc;
mod replicaset;
mod resourcequota;
pub mod scheduler;
mod serviceaccount;
mod servicelb;
mod statefulset;
pub mod taint_eviction;
pub(crate) mod volume;

use std::sync::Arc;
use std::time::Duration;

pub use cache::trim_managed_fields;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

/// What every controller of one leadership term shares.
pub struct Context {
    /// An in-process client acting as `system:kube-controller-manager`.
    pub client: kube::Client,
    pub settings: Settings,
    /// One watch and cache per kind, for all of them.
    pub informers: informer::Informers,
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
    /// The API servers' port, the `kubernetes` Service's targetPort.
    pub api_server_port: u16,
    /// ClusterIP of the `kube-system/kube-dns` Service (`--cluster-dns`); `None` with
    /// `--disable coredns`, when the controller keeps no such Service.
    pub cluster_dns: Option<std::net::IpAddr>,
    /// The cluster CA certificate (PEM), published in every namespace as `kube-root-ca.crt`.
    pub ca_pem: String,
    /// How long Events are kept after their last write (`--event-ttl`).
    pub event_ttl: Duration,
    /// Run ServiceLB (off with `--disable servicelb`).
    pub servicelb: bool,
    /// The auto-deployed manifests' directory (`<data-dir>/server/manifests`); none: no
    /// manifests are deployed.
    pub manifests_dir: Option<std::path::PathBuf>,
    /// Where local-path volumes are made on their nodes (`--default-local-storage-path`);
    /// none with `--disable local-storage` (no local-path provisioning).
    pub local_storage_path: Option<std::path::PathBuf>,
}

impl Settings {
    /// Whether controller `name` runs with these settings.
    fn runs(&self, name: &str) -> bool {
        match name {
            "servicelb" => self.servicelb,
            "deploy" => self.manifests_dir.is_some(),
            _ => true,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cluster_cidr: "10.42.0.0/16".into(),
            node_monitor_grace_period: std::time::Duration::from_secs(40),
            kubernetes_service_ip: std::net::Ipv4Addr::new(10, 43, 0, 1).into(),
            api_server_port: 6443,
            cluster_dns: Some(std::net::Ipv4Addr::new(10, 43, 0, 10).into()),
            ca_pem: String::new(),
            event_ttl: Duration::from_secs(3600),
            servicelb: true,
            manifests_dir: None,
            local_storage_path: None,
        }
    }
}

/// A controller's entry point: runs until the token is cancelled.
type RunFn = fn(Arc<Context>, CancellationToken) -> BoxFuture<'static, ()>;

/// Every controller, by name; all of them run while this server holds the lease.
const CONTROLLERS: &[(&str, RunFn)] = &[
    ("scheduler", |c, s| Box::pin(scheduler::run(c, s))),
    ("node-ipam", |c, s| Box::pin(node_ipam::run(c, s))),
    ("node-lifecycle", |c, s| Box::pin(node_lifecycle::run(c, s))),
    ("taint-eviction", |c, s| Box::pin(taint_eviction::run(c, s))),
    ("pod-gc", |c, s| Box::pin(pod_gc::run(c, s))),
    ("endpoints", |c, s| Box::pin(endpoints::run(c, s))),
    ("kubernetes-service", |c, s| Box::pin(kubernetes_service::run(c, s))),
    ("kube-dns", |c, s| Box::pin(kube_dns::run(c, s))),
    ("job", |c, s| Box::pin(job::run(c, s))),
    ("cronjob", |c, s| Box::pin(cronjob::run(c, s))),
    ("namespace", |c, s| Box::pin(namespace::run(c, s))),
    ("serviceaccount", |c, s| Box::pin(serviceaccount::run(c, s))),
    ("garbagecollector", |c, s| Box::pin(gc::run(c, s))),
    ("disruption", |c, s| Box::pin(disruption::run(c, s))),
    ("resourcequota", |c, s| Box::pin(resourcequota::run(c, s))),
    ("daemonset", |c, s| Box::pin(daemonset::run(c, s))),
    ("deployment", |c, s| Box::pin(deployment::run(c, s))),
    ("horizontalpodautoscaling", |c, s| Box::pin(hpa::run(c, s))),
    ("replicaset", |c, s| Box::pin(replicaset::run(c, s))),
    ("replicationcontroller", |c, s| Box::pin(replicaset::run_replication_controllers(c, s))),
    ("statefulset", |c, s| Box::pin(statefulset::run(c, s))),
    ("persistentvolume-binder", |c, s| Box::pin(volume::run(c, s))),
    ("event-ttl", |c, s| Box::pin(event_ttl::run(c, s))),
    ("servicelb", |c, s| Box::pin(servicelb::run(c, s))),
    ("deploy", |c, s| Box::pin(addons::run(c, s))),
];

/// How long controllers get to finish their reconciles once leadership ends.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs every controller while this server is the elected controller manager, until
/// `shutdown` is cancelled; on shutdown the lease is released so another server takes over.
/// `client` acts as `system:kube-controller-manager`.
pub async fn run_all(client: kube::Client, settings: Settings, shutdown: CancellationToken) {
    let elector = leader::Elector::new(client.clone(), leader::Config::default());
    elector.run(shutdown, |leading| start_controllers(client.clone(), settings.clone(), leading)).await;
}

/// Starts every registered controller and returns once all of them stopped after `leading`
/// was cancelled (or after `STOP_GRACE`).
async fn start_controllers(client: kube::Client, settings: Settings, leading: CancellationToken) {
    let informers = informer::Informers::new(client.clone(), leading.clone());
    let ctx = Arc::new(Context { client, settings, informers });
    let mut tasks = tokio::task::JoinSet::new();
    for (name, run) in CONTROLLERS.iter().filter(|(name, _)| ctx.settings.runs(name)) {
        tracing::info!(controller = name, "starting controller");
        tasks.spawn(run(ctx.clone(), leading.clone()));
    }
    leading.cancelled().await;
    let drained = tokio::time::timeout(STOP_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        // Dropping the set aborts them: two leaders must never act at once.
        tracing::warn!("some controllers did not stop within {STOP_GRACE:?}; aborting them");
    }
}
