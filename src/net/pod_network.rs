//! The seam between the kubelet and the node's pod network: [`PodNetwork`] gives a pod its
//! network namespace and address and takes them away again. [`super::bridge::BridgeNetwork`] is
//! the real one; [`super::fake::FakePodNetwork`] serves the kubelet's unit tests.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;

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

impl PodNetRequest {
    /// What `pod` needs: its UID and the hostPorts of its containers; `None` for a host-network
    /// pod, which skips the pod network entirely. Only TCP and UDP ports with an IPv4 (or no)
    /// hostIP can be published; others are left out with a warning.
    pub fn for_pod(pod: &Pod) -> Result<Option<Self>, NetError> {
        let spec = pod.spec.as_ref();
        if spec.and_then(|s| s.host_network).unwrap_or(false) {
            return Ok(None);
        }
        let id = pod.metadata.uid.clone().unwrap_or_default();
        if !super::names::valid_pod_id(&id) {
            return Err(NetError::BadPodId(id));
        }
        let ports = spec.into_iter().flat_map(|s| s.containers.iter()).flat_map(|c| c.ports.iter().flatten());
        let mut host_ports = Vec::new();
        for p in ports {
            let Some(host_port) = p.host_port.filter(|hp| *hp > 0) else { continue };
            let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => Some(Protocol::Tcp),
                "UDP" => Some(Protocol::Udp),
                _ => None,
            };
            let host_ip = match p.host_ip.as_deref().filter(|ip| !ip.is_empty()) {
                None => Ok(None),
                Some(ip) => ip.parse::<Ipv4Addr>().map(Some),
            };
            match (protocol, host_ip, u16::try_from(host_port), u16::try_from(p.container_port)) {
                (Some(protocol), Ok(host_ip), Ok(host_port), Ok(container_port)) => {
                    host_ports.push(HostPort { protocol, host_ip, host_port, container_port })
                }
                _ => tracing::warn!(pod = %id, port = ?p, "hostPort not published: only TCP/UDP with an IPv4 hostIP are supported"),
            }
        }
        Ok(Some(Self { id, host_ports }))
    }
}

/// The gateway of a podCIDR: its first host address, held by the node's bridge (`10.42.3.1`
/// for `10.42.3.0/24`).
pub fn gateway(pod_cidr: ipnetwork::Ipv4Network) -> Ipv4Addr {
    pod_cidr.nth(1).unwrap_or(pod_cidr.network())
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "uid": "uid-1"}, "spec": spec})).unwrap()
    }

    #[test]
    fn host_ports_come_from_the_containers() {
        let p = pod(json!({"containers": [
            {"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 9090}]},
            {"name": "b", "ports": [{"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "192.0.2.1"},
                                    {"containerPort": 7, "hostPort": 7, "protocol": "SCTP"},
                                    {"containerPort": 8, "hostPort": 8, "hostIP": "fd00::1"}]}]}));
        let req = PodNetRequest::for_pod(&p).unwrap().unwrap();
        assert_eq!(req.id, "uid-1");
        assert_eq!(
            req.host_ports,
            vec![
                HostPort { protocol: Protocol::Tcp, host_ip: None, host_port: 8080, container_port: 80 },
                HostPort { protocol: Protocol::Udp, host_ip: Some(Ipv4Addr::new(192, 0, 2, 1)), host_port: 5353, container_port: 53 },
            ]
        );
    }

    #[test]
    fn host_network_pods_skip_the_pod_network_and_a_uid_is_required() {
        assert_eq!(PodNetRequest::for_pod(&pod(json!({"hostNetwork": true, "containers": []}))).unwrap(), None);
        let no_uid: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": []}})).unwrap();
        assert!(PodNetRequest::for_pod(&no_uid).is_err());
    }
}
