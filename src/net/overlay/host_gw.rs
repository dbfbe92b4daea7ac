//! The host-gw backend: no encapsulation, a route `<peer podCIDR> via <peer node-ip>` out of
//! the uplink per peer — only for peers on the same L2 segment (a peer whose address is not
//! directly connected is refused with a message). Pods keep the uplink's MTU.

use async_trait::async_trait;

use super::{Attached, Backend, Dataplane, Entry, LocalNode, OverlayError, Peer, Scope, Uplink};

/// The host-gw backend.
#[derive(Debug, Default)]
pub struct HostGw;

#[async_trait]
impl Backend for HostGw {
    fn kind(&self) -> &'static str {
        "host-gw"
    }

    async fn attach(&self, _dp: &dyn Dataplane, local: &LocalNode, uplink: &Uplink) -> Result<Attached, OverlayError> {
        Ok(Attached {
            scope: Scope { dev: uplink.index, owns_device: false, cluster_cidr: local.cluster_cidr },
            pod_mtu: uplink.mtu,
            backend_data: None,
            device: uplink.name.clone(),
        })
    }

    async fn entries(&self, dp: &dyn Dataplane, attached: &Attached, uplink: &Uplink, peer: &Peer) -> Result<Vec<Entry>, String> {
        match dp.on_link(uplink.index, peer.public_ip).await {
            Ok(true) => Ok(vec![Entry::Route { dev: attached.scope.dev, dst: peer.pod_cidr, via: peer.public_ip, onlink: false }]),
            Ok(false) => Err(format!(
                "host-gw needs every node on one L2 segment, and {} is not directly reachable from {} (use --flannel-backend=vxlan)",
                peer.public_ip, uplink.name
            )),
            Err(e) => Err(format!("cannot tell whether {} is directly reachable: {e}", peer.public_ip)),
        }
    }
}
