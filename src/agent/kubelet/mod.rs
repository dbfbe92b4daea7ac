//! The kubelet of a real node: joins the cluster, registers the Node with the host's facts,
//! renews its Lease, runs the pods bound to it on containerd with the bridge pod network (one
//! [`worker::PodWorker`] per pod), serves container logs, exec, attach and port-forward on the
//! kubelet port, cleans up what belongs to no pod and removes unused images when the image
//! file system fills up. Restarting it adopts running containers instead of killing them.

mod atomic_writer;
mod backoff;
mod claims;
mod container_run;
mod container_spec;
mod downward;
mod env;
mod events;
mod file_volumes;
pub mod host;
mod host_mounts;
mod image_gc;
mod layout;
mod lifecycle;
mod logs;
mod node;
mod objects;
mod probes;
mod pull_secrets;
mod sandbox;
mod server;
mod status;
mod streaming;
mod token_cache;
mod volumes;
mod worker;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;
use tokio::sync::watch;

pub use node::Kubelet;

use crate::agent::runtime::log_rotation::LogRotation;
use crate::agent::runtime::ContainerRuntime;
use crate::net::etc_files::NodeEtc;
use crate::net::{Ipv4Cidr, PodNetwork};
use downward::NodeAllocatable;
use layout::Layout;

/// How a real node is set up (`orch agent` flags, or the server's local node).
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// URL of an API server, e.g. `https://127.0.0.1:6443`.
    pub server: String,
    pub token: String,
    pub node_name: String,
    pub data_dir: PathBuf,
    /// InternalIP; the default route's interface address when unset.
    pub node_ip: Option<IpAddr>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub container_runtime_endpoint: Option<PathBuf>,
    pub reserved: host::Reserved,
    /// Port of the kubelet API; 0 serves none.
    pub kubelet_port: u16,
    pub cluster_cidr: Ipv4Cidr,
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    /// A network namespace to build the pod network in instead of this process's (tests).
    pub host_netns: Option<PathBuf>,
    pub lease_renew_interval: Duration,
    pub status_update_interval: Duration,
    /// When container logs are rotated (containerLogMaxSize / containerLogMaxFiles).
    pub log_rotation: LogRotation,
}

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
}
