//! A pod's sandbox on the node: its network (the pod network, or the node's for host-network
//! pods), its hosts/resolv.conf/hostname files, and its volumes; and taking all of it away.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::downward::PodAddresses;
use super::file_volumes::VolumeContext;
use super::layout::PodRef;
use super::objects::ApiData;
use super::token_cache::TokenCache;
use super::volumes::{self, VolumeError};
use super::{fs, host_mounts, FsError, NodeContext};
use crate::net::etc_files::EtcFiles;
use crate::net::hosts::pod_hostname;
use crate::net::{NetError, PodNetRequest};

/// What a pod's containers join.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub ip: IpAddr,
    /// The network namespace; `None`: the node's own.
    pub netns: Option<PathBuf>,
    pub hostname: String,
    pub volumes: BTreeMap<String, PathBuf>,
}

/// Why a pod's sandbox cannot be set up: [`SandboxError::reason`] and the message are shown in
/// the pod's status and events.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Request(NetError),
    #[error("the node has no pod network yet (waiting for its podCIDR)")]
    NoNetwork,
    #[error("pod network: {0}")]
    Network(NetError),
    #[error(transparent)]
    Etc(#[from] FsError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
}

impl SandboxError {
    /// The reason of the pod's event and status: FailedMount for its volumes,
    /// FailedCreatePodSandBox for the rest.
    pub fn reason(&self) -> &'static str {
        match self {
            SandboxError::Volume(_) => "FailedMount",
            _ => "FailedCreatePodSandBox",
        }
    }
}

/// Sets up (or, after a restart, finds again: every step is idempotent) the pod's sandbox.
pub async fn setup(ctx: &NodeContext, pod: &Pod, tokens: &TokenCache) -> Result<Sandbox, SandboxError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let request = PodNetRequest::for_pod(pod).map_err(SandboxError::Request)?;
    let (ip, netns) = match request {
        None => (ctx.node_ip, ctx.host_netns.clone()),
        Some(req) => {
            let network = ctx.network.borrow().clone();
            let network = network.ok_or(SandboxError::NoNetwork)?;
            let att = network.setup(&req).await.map_err(SandboxError::Network)?;
            (IpAddr::V4(att.ip), Some(att.netns))
        }
    };
    let host_network = netns == ctx.host_netns;
    let ips = if host_network { vec![] } else { vec![ip] };
    let files = EtcFiles::for_pod(pod, &ips, &ctx.etc);
    let etc = ctx.layout.etc_dir(&uid);
    files.write_to(&etc).map_err(fs("writing", &etc))?;
    let hostname = pod_hostname(pod, &ctx.etc.dns.cluster_domain, &ctx.etc.node_hostname).hostname;
    let addrs = PodAddresses { pod_ip: ip.to_string(), host_ip: ctx.node_ip.to_string() };
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let pod_ref = PodRef { namespace, name: pod.metadata.name.clone().unwrap_or_default(), uid: uid.clone() };
    let source = ApiData { client: ctx.client.clone(), pod: pod_ref };
    let vctx = VolumeContext { pod, addrs: &addrs, node: ctx.allocatable, source: &source, tokens };
    let volumes = volumes::prepare(&ctx.layout.pod_dir(&uid).join("volumes"), &vctx).await?;
    Ok(Sandbox { ip, netns, hostname, volumes })
}

/// Removes the pod's network, files, volumes (unmounting its tmpfs ones; not hostPaths) and
/// cgroup.
pub async fn teardown(ctx: &NodeContext, uid: &str) {
    let network = ctx.network.borrow().clone();
    if let Some(network) = network {
        if let Err(e) = network.teardown(uid).await {
            tracing::warn!(pod = %uid, error = %e, "cannot tear down the pod network");
        }
    }
    let dir = ctx.layout.pod_dir(uid);
    host_mounts::unmount_under(&dir);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the pod's directory");
        }
    }
    remove_cgroup(&super::container_spec::pod_cgroup(uid));
}

/// Removes the (empty) cgroup `path` in every hierarchy.
fn remove_cgroup(path: &str) {
    let rel = path.trim_start_matches('/');
    let root = std::path::Path::new("/sys/fs/cgroup");
    let _ = std::fs::remove_dir(root.join(rel));
    for hierarchy in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let _ = std::fs::remove_dir(hierarchy.path().join(rel));
    }
}

/// The network namespaces of pods a node should have, for [`crate::net::PodNetwork::gc`].
pub fn alive(uids: Arc<std::collections::HashSet<String>>) -> impl Fn(&str) -> bool + Send + Sync {
    move |id| uids.contains(id)
}
