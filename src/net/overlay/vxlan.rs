//! The VXLAN backend, flannel's default and on the wire like it: device `flannel.1` (VNI 1, UDP
//! 8472, learning off, local = the node's address on the uplink, MTU = uplink − 50, address
//! `<podCIDR network>/32`) and per peer a permanent neighbour `<peer .0> → VtepMAC`, an FDB entry
//! `VtepMAC → public-ip` and the route `<peer podCIDR> via <peer .0> dev flannel.1 onlink`.

use async_trait::async_trait;
use serde_json::json;

use super::{mac_string, Attached, Backend, Dataplane, Entry, LocalNode, OverlayError, Peer, Scope, Uplink, VxlanSpec};

/// flannel's device name for VNI 1.
pub const DEVICE: &str = "flannel.1";
pub const VNI: u32 = 1;
/// The Linux default VXLAN port flannel uses (not IANA's 4789).
pub const PORT: u16 = 8472;
/// Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) headers.
pub const OVERHEAD: u32 = 50;

/// The VXLAN backend.
#[derive(Debug, Default)]
pub struct Vxlan;

#[async_trait]
impl Backend for Vxlan {
    fn kind(&self) -> &'static str {
        "vxlan"
    }

    async fn attach(&self, dp: &dyn Dataplane, local: &LocalNode, uplink: &Uplink) -> Result<Attached, OverlayError> {
        let mtu = uplink.mtu.checked_sub(OVERHEAD).filter(|m| *m >= 576).ok_or_else(|| {
            OverlayError::Setup(format!("the MTU {} of {} leaves no room for VXLAN's {OVERHEAD} bytes", uplink.mtu, uplink.name))
        })?;
        let spec = VxlanSpec {
            name: DEVICE.into(),
            vni: VNI,
            port: PORT,
            local: uplink.ip,
            uplink: uplink.index,
            mtu,
            address: local.pod_cidr.network(),
        };
        let device = dp.ensure_vxlan(&spec).await?;
        Ok(Attached {
            scope: Scope { dev: device.index, owns_device: true, cluster_cidr: local.cluster_cidr },
            pod_mtu: mtu,
            backend_data: Some(json!({ "VNI": VNI, "VtepMAC": mac_string(&device.mac) }).to_string()),
            device: DEVICE.into(),
        })
    }

    async fn entries(&self, _dp: &dyn Dataplane, attached: &Attached, _uplink: &Uplink, peer: &Peer) -> Result<Vec<Entry>, String> {
        let mac = peer.vtep_mac.ok_or("its backend-data has no VtepMAC")?;
        let (dev, gateway) = (attached.scope.dev, peer.pod_cidr.network());
        Ok(vec![
            Entry::Neighbour { dev, ip: gateway, mac },
            Entry::Fdb { dev, mac, dst: peer.public_ip },
            Entry::Route { dev, dst: peer.pod_cidr, via: gateway, onlink: true },
        ])
    }
}
