//! The node agent (`orch agent`): joins a cluster as `system:node:<name>` with the join token
//! and a node password kept in the data dir, then runs the node. Only the fake runtime
//! ([`hollow`]) exists so far; the containerd runtime comes later.

pub mod client;
pub mod hollow;
pub mod node_object;
mod pod_ips;
pub mod pod_status;
pub mod runtime;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;

use crate::cli::{AgentArgs, Runtime};
use crate::pki::PkiError;
use crate::server::JoinError;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Flag(String),
    #[error("the {0} runtime is not available in this build yet; use --runtime fake for a hollow node")]
    RuntimeUnavailable(&'static str),
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

/// `orch agent`: joins and runs the node until SIGINT/SIGTERM.
pub async fn run(data_dir: &Path, args: AgentArgs) -> Result<(), AgentError> {
    if args.runtime == Runtime::Containerd {
        // A missing containerd or runc is reported first: it is what the user must fix.
        if args.container_runtime_endpoint.is_none() {
            runtime::supervisor::check_binaries()?;
        }
        return Err(AgentError::RuntimeUnavailable("containerd"));
    }
    let server = args.join.ok_or_else(|| AgentError::Flag("--join https://SERVER:6443 is required".into()))?;
    let token = args.token.ok_or_else(|| AgentError::Flag("--token is required (the token printed by `orch server`)".into()))?;
    let name = args.node_name.unwrap_or_else(crate::server::hostname);
    let mut config = hollow::HollowConfig::new(&server, &token, &name, &node_password(data_dir)?);
    config.shape.labels.extend(args.node_label);
    config.shape.taints = args.node_taint;
    config.shape.cpu = args.fake_cpu;
    config.shape.memory = args.fake_memory;
    config.shape.pods = args.fake_pods;
    config.shape.internal_ip = args.node_ip;
    config.job_duration = args.fake_job_duration;
    config.lease_renew_interval = args.node_lease_renew_interval;
    config.status_update_interval = args.node_status_update_frequency;
    tracing::warn!(node = %name, "this is a HOLLOW node (--runtime fake): it reports pods as running but runs NO containers");

    let start = async {
        loop {
            match hollow::HollowNode::start(config.clone()).await {
                Ok(node) => return node,
                Err(e) => tracing::warn!(error = %e, "cannot start the node yet; retrying in 2s"),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    let node = tokio::select! {
        node = start => node,
        _ = crate::server::wait_for_signal() => return Ok(()),
    };
    tracing::info!(node = %name, %server, "node running");
    crate::server::wait_for_signal().await;
    tracing::info!("shutting down");
    node.stop().await;
    Ok(())
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
