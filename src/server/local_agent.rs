//! The server's own node (k3s runs one too): unless `--disable-agent`, the server runs the
//! kubelet in-process, joining itself over loopback with its own token. Where a node cannot run
//! (not root, containerd or runc missing) one warning says so and the server goes on without it.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::agent::kubelet::{Kubelet, KubeletConfig};
use crate::cli::ServerArgs;

/// Why this machine cannot run the server's node, if it cannot.
fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("orch is not running as root".into());
    }
    crate::agent::runtime::supervisor::check_binaries().err().map(|e| e.to_string())
}

/// The local node's config.
pub fn config(data_dir: &Path, args: &ServerArgs, port: u16, token: &str) -> Result<KubeletConfig, String> {
    let labels = [("node-role.kubernetes.io/control-plane", "true"), ("node-role.kubernetes.io/master", "true")];
    Ok(KubeletConfig {
        server: format!("https://127.0.0.1:{port}"),
        token: token.to_string(),
        node_name: args.node_name.clone().unwrap_or_else(super::hostname),
        data_dir: data_dir.to_path_buf(),
        node_ip: args.advertise_address.or_else(|| Some(args.bind_address).filter(|ip| !ip.is_unspecified())),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        taints: Vec::new(),
        container_runtime_endpoint: None,
        reserved: Default::default(),
        kubelet_port: args.kubelet_port,
        cluster_cidr: args.cluster_cidr.parse().map_err(|e| format!("--cluster-cidr: {e:?}"))?,
        cluster_dns: vec![IpAddr::V4(args.cluster_dns)],
        cluster_domain: args.cluster_domain.clone(),
        host_netns: args.netns.clone(),
        lease_renew_interval: Duration::from_secs(10),
        status_update_interval: Duration::from_secs(40),
        log_rotation: Default::default(),
    })
}

/// Runs the local node until `cancel`, retrying its start while the API is not ready yet.
pub async fn run(config: KubeletConfig, cancel: CancellationToken) {
    if let Some(why) = unavailable() {
        tracing::warn!("this server runs no local node ({why}); pods need an `orch agent`, or start with --disable-agent to silence this");
        return;
    }
    let kubelet = loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            started = Kubelet::start(config.clone()) => match started {
                Ok(k) => break k,
                Err(e) => tracing::warn!(error = %e, "cannot start the local node yet; retrying in 2s"),
            },
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    };
    tracing::info!(node = %config.node_name, "local node running");
    cancel.cancelled().await;
    kubelet.stop().await;
}
