//! The kubelet of a real node: joins the cluster, registers the Node with the host's facts,
//! renews its Lease, runs the pods bound to it on containerd with the bridge pod network (one
//! [`worker::PodWorker`] per pod), serves container logs, exec, attach, port-forward and resource stats (sampled
//! from the cgroups every ten seconds) on the kubelet port, cleans up what belongs to no pod and removes unused images when the image
//! file system fills up. Restarting it adopts running containers instead of killing them.

mod api_state;
mod atomic_writer;
mod backoff;
mod beneath;
mod cgroups;
mod claims;
mod container_run;
mod container_spec;
mod downward;
mod env;
mod events;
mod file_volumes;
pub mod host;
mod host_mounts;
mod host_path;
mod image_gc;
mod layout;
mod lifecycle;
mod local_path;
mod logs;
mod node;
mod objects;
mod probes;
mod pull_secrets;
mod sandbox;
mod server;
mod service_env;
mod stats_sampler;
mod status;
mod streaming;
mod token_cache;
mod volumes;
mod worker;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;

pub use node::Kubelet;
pub use server::require_api_server;

use crate::net::etc_files::NodeEtc;
use crate::net::PodNetwork;
use crate::node::runtime::ContainerRuntime;
use crate::tasks::Tasks;
use downward::NodeAllocatable;
use layout::Layout;

/// What every pod worker shares.
pub struct NodeContext {
    pub client: kube::Client,
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The pod network, once the node has a podCIDR.
    pub network: watch::Receiver<Option<Arc<dyn PodNetwork>>>,
    pub layout: Layout,
    pub node_ip: IpAddr,
    /// Where host-network pods' containers live (`None`: the node's own namespace).
    pub host_netns: Option<PathBuf>,
    pub etc: NodeEtc,
    pub allocatable: NodeAllocatable,
    /// Every Service, for the containers' Service environment variables.
    pub services: service_env::ServiceCache,
    /// Every task of the kubelet, so stopping it can wait for them; its token fires when the
    /// kubelet stops.
    pub tasks: Tasks,
}

/// A file system step on the node that failed: what it was, on which path, and why.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
pub struct FsError {
    what: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

/// The error of file system step `what` (creating, writing …) on `path`, for `map_err`.
pub fn fs(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FsError {
    let path = path.to_path_buf();
    move |source| FsError { what, path, source }
}
