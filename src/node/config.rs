//! How a node is set up: one plain struct for `orch agent` and the server's own node alike,
//! built by the command line from the node flags both share.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;

use super::kubelet::host::Reserved;
use super::runtime::log_rotation::LogRotation;
use crate::k8s::cidr::Ipv4Network;

/// Which container runtime a node runs its pods on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// containerd and runc: a real node ([`super::kubelet`]).
    Containerd,
    /// No containers at all: a hollow node that reports pods as running ([`super::hollow`]).
    Fake,
}

/// flannel's `--flannel-backend`: how pods reach pods of other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlannelBackend {
    /// The VXLAN overlay `flannel.1` (VNI 1, UDP 8472).
    Vxlan,
    /// Routes via the other nodes' addresses (all nodes on one L2 segment).
    HostGw,
    /// Nothing: pod traffic between nodes is left to the user.
    None,
}

/// How the node connects its pods to other nodes' pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flannel {
    pub backend: FlannelBackend,
    /// The uplink by name; else the interface of the node IP, else the default route's.
    pub iface: Option<String>,
    /// Publish the node's ExternalIP (`--node-external-ip`) as the tunnel end (`--flannel-external-ip`).
    pub use_external_ip: bool,
}

/// What a hollow (fake-runtime) node reports about itself.
#[derive(Debug, Clone)]
pub struct HollowShape {
    /// CPU, memory and pod capacity, as Kubernetes quantities.
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    /// How long pods that run to completion (restartPolicy not Always) run.
    pub job_duration: Duration,
}

/// How a node is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// URL of an API server, e.g. `https://127.0.0.1:6443`.
    pub server: String,
    /// A join token (the agent token, a bootstrap token or the server token).
    pub token: String,
    pub node_name: String,
    pub data_dir: PathBuf,
    /// InternalIP; the default route's address when unset.
    pub node_ip: Option<IpAddr>,
    /// ExternalIP reported in the Node's addresses.
    pub node_external_ip: Option<IpAddr>,
    pub flannel: Flannel,
    /// Whether the node runs the Service proxy ([`super::proxy`]); off with `--disable-kube-proxy`.
    pub service_proxy: bool,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub runtime: RuntimeKind,
    /// Socket of an existing containerd instead of one orch starts and supervises.
    pub container_runtime_endpoint: Option<PathBuf>,
    /// Resources held back for Kubernetes and system daemons.
    pub reserved: Reserved,
    /// Port of the kubelet API; 0 serves none.
    pub kubelet_port: u16,
    pub cluster_cidr: Ipv4Network,
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    /// Answer cluster DNS on the first IPv4 `cluster_dns` address on this node
    /// ([`crate::net::dns`]); off with `--disable coredns`.
    pub dns_server: bool,
    /// A network namespace to build the pod network in instead of this process's (tests).
    pub host_netns: Option<PathBuf>,
    pub lease_renew_interval: Duration,
    pub status_update_interval: Duration,
    /// When container logs are rotated (containerLogMaxSize / containerLogMaxFiles).
    pub log_rotation: LogRotation,
    /// What a fake-runtime node reports.
    pub hollow: HollowShape,
}
