//! Pod traffic between nodes, compatible with flannel: a [`Backend`] (VXLAN `flannel.1`,
//! host-gw routes) sets up the node's side once and says which kernel [`Entry`]s each peer needs;
//! [`reconcile`] makes the kernel hold exactly the entries of the current peers (adding and
//! replacing in order neighbour → FDB → route, removing stale ones routes first), and [`run`]
//! does that on every change of the peers and periodically. Every kernel change goes through the
//! [`Dataplane`] seam: [`kernel::KernelDataplane`] (rtnetlink) or [`fake::FakeDataplane`].

pub mod annotations;
pub mod fake;
pub mod host_gw;
pub mod kernel;
pub mod vxlan;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ipnetwork::Ipv4Network;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A link-layer (MAC) address.
pub type Mac = [u8; 6];

/// How often the kernel state is compared with the peers even when no peer changed.
const RESYNC: Duration = Duration::from_secs(30);
/// How long a failed reconcile waits before the next attempt.
const RETRY: Duration = Duration::from_secs(2);

/// Errors of the overlay; each names what failed and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Netlink(#[from] super::netlink::NetlinkError),
    #[error(transparent)]
    Netns(#[from] super::netns::NetnsError),
}

/// The node's own side, as the overlay needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalNode {
    pub name: String,
    pub pod_cidr: Ipv4Network,
    pub cluster_cidr: Ipv4Network,
    /// The node's InternalIP (`--node-ip`): the tunnel's local end, and what picks the uplink.
    pub node_ip: Ipv4Addr,
    /// `--flannel-iface`: the uplink by name.
    pub iface: Option<String>,
}

/// Another node as its Node object describes it (flannel's annotations and its podCIDR).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub node: String,
    pub pod_cidr: Ipv4Network,
    /// Where its tunnel ends (`public-ip`, or `public-ip-overwrite`).
    pub public_ip: Ipv4Addr,
    /// `backend-type`.
    pub backend_type: String,
    /// `VtepMAC` of `backend-data` (VXLAN only).
    pub vtep_mac: Option<Mac>,
}

/// The interface the overlay's traffic leaves by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uplink {
    pub name: String,
    pub index: u32,
    /// The local address used for tunnels (the node IP when the interface holds it).
    pub ip: Ipv4Addr,
    pub mtu: u32,
}

/// A VXLAN device to create (or keep, when it already matches).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanSpec {
    pub name: String,
    pub vni: u32,
    pub port: u16,
    pub local: Ipv4Addr,
    pub uplink: u32,
    pub mtu: u32,
    /// Held as `/32` (flannel gives the device its podCIDR's network address).
    pub address: Ipv4Addr,
}

/// A device as created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    pub index: u32,
    pub mac: Mac,
}

/// One piece of kernel state a peer needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entry {
    /// `ip neigh replace IP lladdr MAC dev DEV nud permanent`
    Neighbour { dev: u32, ip: Ipv4Addr, mac: Mac },
    /// `bridge fdb replace MAC dev DEV dst DST self permanent`
    Fdb { dev: u32, mac: Mac, dst: Ipv4Addr },
    /// `ip route replace DST via VIA dev DEV [onlink]`
    Route { dev: u32, dst: Ipv4Network, via: Ipv4Addr, onlink: bool },
}

/// What identifies an entry in the kernel: a second entry with the same key replaces the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    // Declared in removal order: routes go before the FDB and neighbour entries they use.
    Route(Ipv4Network),
    Fdb(u32, Mac),
    Neighbour(u32, Ipv4Addr),
}

impl Entry {
    pub fn key(&self) -> Key {
        match *self {
            Entry::Neighbour { dev, ip, .. } => Key::Neighbour(dev, ip),
            Entry::Fdb { dev, mac, .. } => Key::Fdb(dev, mac),
            Entry::Route { dst, .. } => Key::Route(dst),
        }
    }
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Neighbour { dev, ip, mac } => write!(f, "neighbour {ip} lladdr {} dev #{dev}", mac_string(mac)),
            Entry::Fdb { dev, mac, dst } => write!(f, "fdb {} dst {dst} dev #{dev}", mac_string(mac)),
            Entry::Route { dev, dst, via, onlink } => {
                write!(f, "route {dst} via {via} dev #{dev}{}", if *onlink { " onlink" } else { "" })
            }
        }
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(mac: &Mac) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<Mac> {
    let parts: Vec<u8> = s.split(':').map(|p| u8::from_str_radix(p, 16).ok().filter(|_| p.len() == 2)).collect::<Option<_>>()?;
    parts.try_into().ok()
}

/// Which entries of the kernel belong to the overlay: those on `dev` — neighbours and FDB
/// entries only when the overlay owns the device, routes only into the cluster CIDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope {
    pub dev: u32,
    pub owns_device: bool,
    pub cluster_cidr: Ipv4Network,
}

/// The kernel side of the overlay (real: rtnetlink; fake: memory).
#[async_trait]
pub trait Dataplane: Send + Sync {
    /// The uplink: the interface named `iface`, else the one holding `node_ip`, else the
    /// default route's.
    async fn uplink(&self, iface: Option<&str>, node_ip: Ipv4Addr) -> Result<Uplink, OverlayError>;
    /// Creates the VXLAN device of `spec` (replacing one of the same name that differs), with
    /// its address, MTU, tx checksum offload off, and up.
    async fn ensure_vxlan(&self, spec: &VxlanSpec) -> Result<Device, OverlayError>;
    /// A route of the main table (out of a link not named in `except`) whose destination
    /// overlaps `cidr`, as `ip route` would print it.
    async fn route_overlapping(&self, cidr: Ipv4Network, except: &[&str]) -> Result<Option<String>, OverlayError>;
    /// Whether `ip` lies in a subnet directly connected to link `dev`.
    async fn on_link(&self, dev: u32, ip: Ipv4Addr) -> Result<bool, OverlayError>;
    /// The entries the kernel holds in `scope`.
    async fn entries(&self, scope: &Scope) -> Result<Vec<Entry>, OverlayError>;
    /// Adds `entry`, replacing one with the same key.
    async fn apply(&self, entry: &Entry) -> Result<(), OverlayError>;
    /// Removes `entry` (nothing there is fine).
    async fn remove(&self, entry: &Entry) -> Result<(), OverlayError>;
}

/// The node's side as a backend set it up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    pub scope: Scope,
    /// The MTU pods get.
    pub pod_mtu: u32,
    /// flannel's `backend-data` (JSON), if the backend has any.
    pub backend_data: Option<String>,
    /// Human-readable device name, for the logs.
    pub device: String,
}

/// An overlay backend (flannel's `backend-type`).
#[async_trait]
pub trait Backend: Send + Sync {
    /// flannel's name of the backend: `vxlan`, `host-gw`.
    fn kind(&self) -> &'static str;
    /// Sets up the node's side (idempotent).
    async fn attach(&self, dp: &dyn Dataplane, local: &LocalNode, uplink: &Uplink) -> Result<Attached, OverlayError>;
    /// What the kernel must hold for `peer`, in the order it is added; `Err` says why the peer
    /// cannot be served (it is then skipped).
    async fn entries(&self, dp: &dyn Dataplane, attached: &Attached, uplink: &Uplink, peer: &Peer) -> Result<Vec<Entry>, String>;
}

/// What one reconcile changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub applied: Vec<Entry>,
    pub removed: Vec<Entry>,
    /// Peers skipped, with why.
    pub skipped: Vec<(String, String)>,
}

/// The overlay of one node, set up and ready to follow its peers.
pub struct Overlay {
    pub dataplane: Arc<dyn Dataplane>,
    pub backend: Arc<dyn Backend>,
    pub local: LocalNode,
    pub uplink: Uplink,
    pub attached: Attached,
}

impl Overlay {
    /// Finds the uplink and attaches `backend` to it.
    /// Refuses a podCIDR that overlaps a route of the host's own (a LAN in 10.42.0.0/16).
    pub async fn attach(dataplane: Arc<dyn Dataplane>, backend: Arc<dyn Backend>, local: LocalNode) -> Result<Self, OverlayError> {
        if let Some(route) = dataplane.route_overlapping(local.pod_cidr, &[super::bridge::BRIDGE, vxlan::DEVICE]).await? {
            return Err(OverlayError::Setup(format!(
                "this node's podCIDR {} overlaps the host's route {route}: pick a --cluster-cidr outside the host's networks",
                local.pod_cidr
            )));
        }
        let uplink = dataplane.uplink(local.iface.as_deref(), local.node_ip).await?;
        let attached = backend.attach(dataplane.as_ref(), &local, &uplink).await?;
        tracing::info!(
            backend = backend.kind(), device = %attached.device, uplink = %uplink.name, local_ip = %uplink.ip,
            pod_cidr = %local.pod_cidr, pod_mtu = attached.pod_mtu, "overlay ready"
        );
        Ok(Self { dataplane, backend, local, uplink, attached })
    }

    /// Makes the kernel hold exactly the entries of `peers` (see the module doc).
    pub async fn reconcile(&self, peers: &BTreeMap<String, Peer>) -> Result<Changes, OverlayError> {
        let dp = self.dataplane.as_ref();
        let mut changes = Changes::default();
        let mut desired: Vec<(&str, Entry)> = Vec::new();
        for peer in peers.values() {
            match self.usable(peer) {
                Ok(()) => match self.backend.entries(dp, &self.attached, &self.uplink, peer).await {
                    Ok(entries) => desired.extend(entries.into_iter().map(|e| (peer.node.as_str(), e))),
                    Err(why) => changes.skipped.push((peer.node.clone(), why)),
                },
                Err(why) => changes.skipped.push((peer.node.clone(), why)),
            }
        }
        let wanted: BTreeSet<Key> = desired.iter().map(|(_, e)| e.key()).collect();
        let current: BTreeMap<Key, Entry> = dp.entries(&self.attached.scope).await?.into_iter().map(|e| (e.key(), e)).collect();
        for (key, entry) in &current {
            if !wanted.contains(key) {
                dp.remove(entry).await?;
                tracing::info!(%entry, "overlay: removed a stale entry");
                changes.removed.push(*entry);
            }
        }
        for (node, entry) in desired {
            if current.get(&entry.key()) != Some(&entry) {
                dp.apply(&entry).await?;
                tracing::info!(peer = node, %entry, "overlay: set");
                changes.applied.push(entry);
            }
        }
        Ok(changes)
    }

    /// Why `peer` cannot be a peer of this node, if it cannot.
    fn usable(&self, peer: &Peer) -> Result<(), String> {
        if peer.backend_type != self.backend.kind() {
            return Err(format!("it runs backend {:?}, this node {:?}", peer.backend_type, self.backend.kind()));
        }
        if peer.pod_cidr.overlaps(self.local.pod_cidr) {
            return Err(format!("its podCIDR {} overlaps this node's {}", peer.pod_cidr, self.local.pod_cidr));
        }
        if !self.local.cluster_cidr.contains(peer.pod_cidr.network()) {
            return Err(format!("its podCIDR {} lies outside the cluster CIDR {}", peer.pod_cidr, self.local.cluster_cidr));
        }
        Ok(())
    }

    /// Reconciles whenever `peers` changes and every [`RESYNC`] until `cancel` fires; failures
    /// are logged and retried.
    pub async fn run(self, mut peers: watch::Receiver<BTreeMap<String, Peer>>, cancel: CancellationToken) {
        let mut skipped_before = Vec::new();
        loop {
            let current = peers.borrow_and_update().clone();
            let wait = match self.reconcile(&current).await {
                Ok(changes) => {
                    if changes.skipped != skipped_before {
                        for (node, why) in &changes.skipped {
                            tracing::warn!(peer = %node, "overlay: not reaching this node's pods: {why}");
                        }
                        skipped_before = changes.skipped;
                    }
                    RESYNC
                }
                Err(e) => {
                    tracing::warn!(error = %e, "overlay: reconcile failed; retrying");
                    RETRY
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = peers.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
