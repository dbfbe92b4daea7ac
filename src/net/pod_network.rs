//! The seam between the kubelet and the node's pod network: [`PodNetwork`] gives a pod its
//! network namespace and address and takes them away again. [`super::bridge::BridgeNetwork`] is
//! the real one; [`super::fake::FakePodNetwork`] serves the kubelet's unit tests.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use async_trait::async_trait;

use super::NetError;

/// Transport protocol of a hostPort mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// `containerPort` published on the node as `hostPort` (optionally only on `host_ip`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct HostPort {
    pub protocol: Protocol,
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
}

/// What the kubelet asks for one pod (host-network pods never come here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNetRequest {
    /// The pod's UID (names the namespace, the veth and the address allocation).
    pub id: String,
    pub host_ports: Vec<HostPort>,
}

/// A pod's network as set up: where its namespace is and which address it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodAttachment {
    /// The namespace file to hand to the runtime (`/run/orch/netns/<id>`).
    pub netns: PathBuf,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// The host side of the pod's veth pair.
    pub host_veth: String,
}

/// A node's pod network. Every method is idempotent, so the kubelet may call it again after a
/// crash or restart; `setup` on a pod that is already set up returns the same attachment.
#[async_trait]
pub trait PodNetwork: Send + Sync {
    async fn setup(&self, pod: &PodNetRequest) -> Result<PodAttachment, NetError>;
    /// Removes the pod's veth, namespace mount, address and hostPorts (nothing left is fine).
    async fn teardown(&self, pod_id: &str) -> Result<(), NetError>;
    /// Tears down every pod network whose pod `alive` says is gone; returns their ids.
    async fn gc(&self, alive: &(dyn for<'a> Fn(&'a str) -> bool + Send + Sync)) -> Result<Vec<String>, NetError>;
}
