//! The controller manager: Kubernetes' controllers (and the scheduler) running inside
//! `orch server` on kube-runtime, all through an in-process `kube::Client`. Exactly one
//! server runs them at a time (see `leader`); each controller lives in its own module and
//! exposes `run(ctx, shutdown)`.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub mod api_resources;
pub mod cron_schedule;
pub mod cronjob;
pub mod gc;
pub mod gc_graph;
pub mod gone;
pub mod job;
pub mod job_conditions;
pub mod job_status;
pub mod kube_time;
pub mod namespace;
pub mod serviceaccount;
pub mod tz;

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
    /// The cluster CA certificate (PEM), published in every namespace as `kube-root-ca.crt`.
    pub ca_pem: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self { cluster_cidr: "10.42.0.0/16".into(), node_monitor_grace_period: std::time::Duration::from_secs(40), ca_pem: String::new() }
    }
}

/// Runs every controller until `shutdown` is cancelled.
pub async fn run_all(ctx: Arc<Context>, shutdown: CancellationToken) {
    let _ = ctx;
    shutdown.cancelled().await;
}
