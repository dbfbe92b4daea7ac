//! The node (`orch agent`, and the server's own node): joins a cluster as
//! `system:node:<name>` with a join token and the node password kept in the data dir, then runs
//! either a real node on containerd ([`kubelet`]) or a hollow one with the fake runtime
//! ([`hollow`]). Set up by a plain [`Config`]; the command line builds it and owns signals.

pub mod client;
pub mod cluster_dns;
pub mod config;
pub mod heartbeat;
pub mod hollow;
pub mod kubelet;
pub mod node_object;
pub mod overlay;
mod password;
pub mod preflight;
pub mod proxy;
pub mod runtime;
pub mod servers;
pub mod stats;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use config::{Config, Flannel, FlannelBackend, HollowShape, RuntimeKind};
pub use password::node_password;

use crate::join::JoinError;
use crate::pki::PkiError;
use crate::tasks::Tasks;

/// How long a node waits between attempts to start while the server cannot be reached.
const START_RETRY: Duration = Duration::from_secs(2);
/// How long stopping a node waits for its tasks.
const DRAIN: Duration = Duration::from_secs(5);

/// Stops the tasks of node `name`, waiting at most [`DRAIN`] for them.
async fn drain(name: &str, tasks: &Tasks) {
    if !tasks.stop(DRAIN).await {
        tracing::warn!(node = name, tasks = tasks.tracker.len(), "some tasks of the node did not stop within {DRAIN:?}");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Flag(String),
    #[error("orch is not running as root: a node on containerd needs root")]
    NotRoot,
    #[error("this machine cannot run a node:\n{0}\n(`orch check-config` runs every check)")]
    Preflight(String),
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("unexpected {what} from the API: {source}")]
    Decode { what: &'static str, source: serde_json::Error },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl NodeError {
    /// Whether starting again later can help (the server is unreachable or not ready yet),
    /// as opposed to a problem of this machine or its flags.
    fn is_transient(&self) -> bool {
        !matches!(self, NodeError::Flag(_) | NodeError::NotRoot | NodeError::Preflight(_) | NodeError::Runtime(_) | NodeError::Pki(_))
    }

    /// The process exit code for this error: 2 for what the user must fix on this machine
    /// (flags, privileges, missing containerd or runc), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            NodeError::Flag(_)
            | NodeError::NotRoot
            | NodeError::Preflight(_)
            | NodeError::Runtime(runtime::RuntimeError::MissingBinary { .. }) => 2,
            _ => 1,
        }
    }
}

/// Checks that the programs a node on containerd needs are installed (containerd and runc,
/// unless the node is given a containerd to use).
pub fn check_binaries(config: &Config) -> Result<(), NodeError> {
    if config.runtime == RuntimeKind::Containerd && config.container_runtime_endpoint.is_none() {
        runtime::supervisor::check_binaries()?;
    }
    Ok(())
}

/// Checks that this machine can run the node `config` describes, before anything starts: a
/// node on containerd needs its programs ([`check_binaries`]), root, and what
/// [`preflight`] calls fatal (cgroup controllers, overlayfs, free disk).
pub fn check_runnable(config: &Config) -> Result<(), NodeError> {
    check_binaries(config)?;
    if config.runtime != RuntimeKind::Containerd {
        return Ok(());
    }
    if !crate::host::is_root() {
        return Err(NodeError::NotRoot);
    }
    let problems: Vec<String> = preflight::Machine::local(&config.data_dir)
        .fatal()
        .into_iter()
        // Programs were checked above (and are not needed with an existing containerd).
        .filter(|f| !f.check.starts_with("program "))
        .map(|f| format!("  {}: {} — {}", f.check, f.detail, f.problem.map(|(_, fix)| fix).unwrap_or_default()))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(NodeError::Preflight(problems.join("\n")))
    }
}

/// A running node of either kind.
pub enum Node {
    Kubelet(Box<kubelet::Kubelet>),
    Hollow(hollow::HollowNode),
}

impl Node {
    /// Starts the node, trying again every 2 s while the server cannot be reached; `None`
    /// when `cancel` fires first.
    pub async fn start(config: &Config, cancel: &CancellationToken) -> Result<Option<Node>, NodeError> {
        // The node password and pods' Secret volumes live here: owner-only.
        crate::pki::private_dir(&config.data_dir)
            .map_err(|source| NodeError::Io { path: config.data_dir.display().to_string(), source })?;
        if config.runtime == RuntimeKind::Fake {
            tracing::warn!(node = %config.node_name, "this is a HOLLOW node (--runtime fake): it reports pods as running but runs NO containers");
        }
        loop {
            let attempt = async {
                match config.runtime {
                    RuntimeKind::Containerd => kubelet::Kubelet::start(config.clone()).await.map(|k| Node::Kubelet(Box::new(k))),
                    RuntimeKind::Fake => hollow::HollowNode::start(hollow_config(config)?).await.map(Node::Hollow),
                }
            };
            let started = tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                started = attempt => started,
            };
            match started {
                Ok(node) => {
                    tracing::info!(node = %config.node_name, "node running");
                    return Ok(Some(node));
                }
                Err(e) if e.is_transient() => tracing::warn!(error = %e, "cannot start the node yet; retrying in {START_RETRY:?}"),
                Err(e) => return Err(e),
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                _ = tokio::time::sleep(START_RETRY) => {}
            }
        }
    }

    /// Starts the node (as [`Node::start`]), runs it until `cancel` fires and stops it.
    pub async fn run(config: &Config, cancel: &CancellationToken) -> Result<(), NodeError> {
        if let Some(node) = Node::start(config, cancel).await? {
            cancel.cancelled().await;
            node.stop().await;
        }
        Ok(())
    }

    /// Stops the node. A real node's containers keep running (a restarted node adopts them);
    /// the Node object and its pods stay, as when a machine goes away.
    pub async fn stop(self) {
        match self {
            Node::Kubelet(k) => (*k).stop().await,
            Node::Hollow(h) => h.stop().await,
        }
    }
}

/// The hollow node of a fake-runtime `config`.
fn hollow_config(config: &Config) -> Result<hollow::HollowConfig, NodeError> {
    let password = node_password(&config.data_dir)?;
    let mut hollow = hollow::HollowConfig::new(&config.server, &config.token, &config.node_name, &password);
    hollow.servers_file = Some(config.data_dir.join(servers::FILE));
    let shape = &mut hollow.shape;
    shape.labels.extend(config.labels.clone());
    shape.taints = config.taints.clone();
    shape.capacity = node_object::resources(&config.hollow.cpu, &config.hollow.memory, config.hollow.pods);
    shape.allocatable = shape.capacity.clone();
    if let Some(ip) = config.node_ip {
        shape.internal_ip = ip;
    }
    shape.external_ip = config.node_external_ip;
    hollow.job_duration = config.hollow.job_duration;
    hollow.lease_renew_interval = config.lease_renew_interval;
    hollow.status_update_interval = config.status_update_interval;
    Ok(hollow)
}
