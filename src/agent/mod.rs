//! The node agent (`orch agent`): joins a cluster as `system:node:<name>` with the join token
//! and a node password kept in the data dir, then runs the node: a real one on containerd
//! ([`kubelet`]) or a hollow one with the fake runtime ([`hollow`]).

pub mod client;
pub mod heartbeat;
pub mod hollow;
pub mod kubelet;
pub mod node_object;
mod pod_ips;
pub mod pod_status;
pub mod runtime;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;

use crate::agent::runtime::log_rotation::LogRotation;
use crate::cli::{AgentArgs, Runtime};
use crate::pki::PkiError;
use crate::server::JoinError;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Flag(String),
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// The node password in `<data-dir>/agent/node-password`, created on first use (k3s keeps it
/// in /etc/rancher/node/password): it proves this machine owns its node name on later joins.
pub fn node_password(data_dir: &Path) -> Result<String, AgentError> {
    let path = data_dir.join("agent").join("node-password");
    let io = |source| AgentError::Io { path: path.display().to_string(), source };
    match std::fs::read_to_string(&path) {
        Ok(p) if p.trim().len() >= 8 => return Ok(p.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let password: String = (0..16).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
    std::fs::create_dir_all(path.parent().expect("a file in a dir")).map_err(io)?;
    crate::pki::write_private(&path, &password)?;
    Ok(password)
}

/// Parses `--node-taint key=value:Effect` (the value is optional).
pub fn parse_taint(s: &str) -> Result<Taint, String> {
    let (kv, effect) = s.rsplit_once(':').ok_or_else(|| format!("{s:?} is not a taint; use key=value:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!("taint effect {effect:?} must be NoSchedule, PreferNoSchedule or NoExecute"));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err(format!("{s:?} has no taint key"));
    }
    Ok(Taint { key: key.into(), value, effect: effect.into(), time_added: None })
}

/// Parses `--node-label key=value`.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.into(), v.into()))
        .ok_or_else(|| format!("{s:?} is not a label; use key=value"))
}

/// The kubelet config of `orch agent` flags.
pub fn kubelet_config(
    data_dir: &Path,
    args: &AgentArgs,
    server: &str,
    token: &str,
    name: &str,
) -> Result<kubelet::KubeletConfig, AgentError> {
    let cluster_cidr = args.cluster_cidr.parse().map_err(|e| AgentError::Flag(format!("--cluster-cidr: {e:?}")))?;
    let reserved = args.kube_reserved.unwrap_or_default().plus(args.system_reserved.unwrap_or_default());
    Ok(kubelet::KubeletConfig {
        server: server.into(),
        token: token.into(),
        node_name: name.into(),
        data_dir: data_dir.to_path_buf(),
        node_ip: args.node_ip,
        labels: args.node_label.iter().cloned().collect(),
        taints: args.node_taint.clone(),
        container_runtime_endpoint: args.container_runtime_endpoint.clone(),
        reserved,
        kubelet_port: args.kubelet_port,
        cluster_cidr,
        cluster_dns: vec![args.cluster_dns],
        cluster_domain: args.cluster_domain.clone(),
        host_netns: args.netns.clone(),
        lease_renew_interval: args.node_lease_renew_interval,
        status_update_interval: args.node_status_update_frequency,
        log_rotation: LogRotation { max_size: args.container_log_max_size, max_files: args.container_log_max_files.into() },
    })
}

/// Starts a node with `start` (retrying every 2 s while the server cannot be reached), runs
/// it until SIGINT/SIGTERM and stops it with `stop`.
async fn run_until_signal<N, S, F, X, XF>(what: &str, mut start: S, stop: X) -> Result<(), AgentError>
where
    S: FnMut() -> F,
    F: std::future::Future<Output = Result<N, AgentError>>,
    X: FnOnce(N) -> XF,
    XF: std::future::Future<Output = ()>,
{
    let starting = async {
        loop {
            match start().await {
                Ok(node) => return Ok(node),
                Err(e @ (AgentError::Runtime(_) | AgentError::Flag(_))) => return Err(e),
                Err(e) => tracing::warn!(error = %e, "cannot start the {what} yet; retrying in 2s"),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    let node = tokio::select! {
        node = starting => node?,
        _ = crate::server::wait_for_signal() => return Ok(()),
    };
    tracing::info!("{what} running");
    crate::server::wait_for_signal().await;
    tracing::info!("shutting down");
    stop(node).await;
    Ok(())
}

/// `orch agent`: joins and runs the node until SIGINT/SIGTERM.
pub async fn run(data_dir: &Path, args: AgentArgs) -> Result<(), AgentError> {
    if args.runtime == Runtime::Containerd && args.container_runtime_endpoint.is_none() {
        // A missing containerd or runc is reported first: it is what the user must fix.
        runtime::supervisor::check_binaries()?;
    }
    let server = args.join.clone().ok_or_else(|| AgentError::Flag("--join https://SERVER:6443 is required".into()))?;
    let token = args.token.clone().ok_or_else(|| AgentError::Flag("--token is required (the token printed by `orch server`)".into()))?;
    crate::pki::JoinToken::parse(&token)?;
    let name = args.node_name.clone().unwrap_or_else(crate::server::hostname);
    if args.runtime == Runtime::Containerd {
        let config = kubelet_config(data_dir, &args, &server, &token, &name)?;
        return run_until_signal("node", || kubelet::Kubelet::start(config.clone()), kubelet::Kubelet::stop).await;
    }
    let mut config = hollow::HollowConfig::new(&server, &token, &name, &node_password(data_dir)?);
    config.shape.labels.extend(args.node_label);
    config.shape.taints = args.node_taint;
    config.shape.capacity = node_object::resources(&args.fake_cpu, &args.fake_memory, args.fake_pods);
    config.shape.allocatable = config.shape.capacity.clone();
    if let Some(ip) = args.node_ip {
        config.shape.internal_ip = ip;
    }
    config.job_duration = args.fake_job_duration;
    config.lease_renew_interval = args.node_lease_renew_interval;
    config.status_update_interval = args.node_status_update_frequency;
    tracing::warn!(node = %name, "this is a HOLLOW node (--runtime fake): it reports pods as running but runs NO containers");
    run_until_signal("hollow node", || hollow::HollowNode::start(config.clone()), hollow::HollowNode::stop).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_and_labels_parse() {
        let t = parse_taint("dedicated=gpu:NoSchedule").unwrap();
        assert_eq!((t.key.as_str(), t.value.as_deref(), t.effect.as_str()), ("dedicated", Some("gpu"), "NoSchedule"));
        assert_eq!(parse_taint("special:NoExecute").unwrap().value, None);
        assert!(parse_taint("k=v").is_err());
        assert!(parse_taint("k=v:Sometimes").is_err());
        assert_eq!(parse_label("a=b").unwrap(), ("a".to_string(), "b".to_string()));
        assert!(parse_label("=b").is_err());
    }

    #[test]
    fn the_node_password_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = node_password(dir.path()).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(node_password(dir.path()).unwrap(), first);
    }
}
