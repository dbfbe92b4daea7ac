//! What a kubelet serving certificate may name: the node itself and its own addresses. Nodes
//! report their addresses themselves (and a node asks for its certificate before it
//! registers, and again when its address changed), so what is refused is every name and
//! address that belongs to someone else: the control plane's (the server's serving
//! certificate, the `kubernetes` Service IP) and other Nodes'. Loopback is every machine's own.

use std::net::IpAddr;

use crate::store::Store;

/// The names and addresses that belong to this server.
#[derive(Debug, Clone, Default)]
pub struct ControlPlane {
    /// The server's serving certificate's DNS names.
    pub dns_names: Vec<String>,
    /// The server's serving certificate's addresses and the `kubernetes` Service IP.
    pub ips: Vec<IpAddr>,
    /// The node this server runs itself: it may use the server's names and addresses.
    pub local_node: Option<String>,
}

/// Why a serving certificate is refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("a node's serving certificate names only the node itself, not {0:?}")]
    Name(String),
    #[error("{0} is not an address of node {1:?}")]
    Address(IpAddr, String),
    #[error("cannot read the nodes: {0}")]
    Store(String),
}

/// Checks the DNS names and addresses `node` asks for; returns the certificate's DNS names.
pub async fn check(
    store: &dyn Store,
    control_plane: &ControlPlane,
    node: &str,
    dns_names: &[String],
    ips: &[IpAddr],
) -> Result<Vec<String>, Refused> {
    let local = control_plane.local_node.as_deref() == Some(node);
    if let Some(foreign) = dns_names.iter().find(|d| *d != node) {
        return Err(Refused::Name(foreign.clone()));
    }
    if !local && control_plane.dns_names.iter().any(|d| d == node) {
        return Err(Refused::Name(node.to_string()));
    }
    let wanted: Vec<IpAddr> = ips.iter().copied().filter(|ip| !ip.is_loopback()).collect();
    if wanted.is_empty() {
        return Ok(vec![node.to_string()]);
    }
    let nodes = crate::api::node_addresses::all(store).await.map_err(|e| Refused::Store(e.message))?;
    for ip in wanted {
        let control_planes = !local && control_plane.ips.contains(&ip);
        let another_nodes = nodes.iter().any(|(name, addresses)| name != node && addresses.contains(&ip));
        if control_planes || another_nodes {
            return Err(Refused::Address(ip, node.to_string()));
        }
    }
    Ok(vec![node.to_string()])
}
