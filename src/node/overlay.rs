//! The node's side of cluster networking: once the node has a podCIDR it attaches the chosen
//! flannel backend ([`crate::net::overlay`]), publishes flannel's annotations on its Node, and
//! feeds the other Nodes, as peers, to the overlay's reconcile loop from a Node watch.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ipnetwork::Ipv4Network;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use serde_json::json;
use tokio::sync::watch;

use super::{Config, FlannelBackend};
use crate::net::overlay::host_gw::HostGw;
use crate::net::overlay::kernel::KernelDataplane;
use crate::net::overlay::vxlan::Vxlan;
use crate::net::overlay::{annotations, Backend, LocalNode, Overlay, Peer};
use crate::tasks::Tasks;

/// How long a failed annotation write waits before the next attempt.
const PUBLISH_RETRY: Duration = Duration::from_secs(2);

/// Starts the overlay of a node with `pod_cidr`: returns the MTU its pods get, or `None` when
/// it runs no overlay (`--flannel-backend=none`, a loopback node IP, or a setup error, which
/// is logged as one line naming the fix).
pub async fn start(config: &Config, client: kube::Client, node_ip: IpAddr, pod_cidr: Ipv4Network, tasks: &Tasks) -> Option<u32> {
    let backend: Arc<dyn Backend> = match config.flannel.backend {
        FlannelBackend::Vxlan => Arc::new(Vxlan),
        FlannelBackend::HostGw => Arc::new(HostGw),
        FlannelBackend::None => {
            tracing::info!("--flannel-backend=none: pod traffic between nodes is left to you");
            return None;
        }
    };
    let node_ip = match node_ip {
        IpAddr::V4(ip) if !ip.is_loopback() => ip,
        other => {
            tracing::warn!(node_ip = %other, "no overlay: the node IP must be an IPv4 address other nodes reach (set --node-ip)");
            return None;
        }
    };
    let local = LocalNode {
        name: config.node_name.clone(),
        pod_cidr,
        cluster_cidr: config.cluster_cidr,
        node_ip,
        iface: config.flannel.iface.clone(),
    };
    let attached = async {
        let dataplane = Arc::new(KernelDataplane::open(config.host_netns.as_deref())?);
        Overlay::attach(dataplane, backend, local).await
    };
    let overlay = match attached.await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!("the overlay cannot start, pods reach only pods of this node: {e}");
            return None;
        }
    };
    let public_ip = match (config.flannel.use_external_ip, config.node_external_ip) {
        (true, Some(IpAddr::V4(ip))) => ip,
        _ => overlay.uplink.ip,
    };
    let mtu = overlay.attached.pod_mtu;
    let (peers_tx, peers_rx) = watch::channel(BTreeMap::new());
    let nodes: Api<Node> = Api::all(client);
    let (name, kind, data) = (config.node_name.clone(), overlay.backend.kind(), overlay.attached.backend_data.clone());
    let publisher = nodes.clone();
    tasks.spawn(async move { publish(&publisher, &name, kind, data.as_deref(), public_ip).await });
    tasks.spawn(watch_peers(nodes, config.node_name.clone(), peers_tx));
    tasks.spawn(overlay.run(peers_rx, tasks.cancel.clone()));
    Some(mtu)
}

/// Writes flannel's annotations on Node `name`, retrying until it succeeds.
async fn publish(nodes: &Api<Node>, name: &str, kind: &str, data: Option<&str>, public_ip: Ipv4Addr) {
    loop {
        let attempt = async {
            let own = nodes.get(name).await?;
            let wanted = annotations::own(Some(&own), kind, data, public_ip);
            let patch = json!({ "metadata": { "annotations": wanted } });
            nodes.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
            Ok::<_, kube::Error>(wanted[annotations::PUBLIC_IP].clone())
        };
        match attempt.await {
            Ok(ip) => return tracing::info!(node = name, backend = kind, public_ip = %ip, "published the flannel annotations"),
            Err(e) => tracing::warn!(node = name, error = %e, "cannot publish the flannel annotations yet; retrying"),
        }
        tokio::time::sleep(PUBLISH_RETRY).await;
    }
}

/// Follows every Node but `own` and sends the peers they describe whenever they change.
async fn watch_peers(nodes: Api<Node>, own: String, tx: watch::Sender<BTreeMap<String, Peer>>) {
    let mut events = std::pin::pin!(watcher::watcher(nodes, watcher::Config::default()).default_backoff());
    let mut listing: Option<BTreeMap<String, Peer>> = None;
    while let Some(event) = events.next().await {
        let update = |peers: &mut BTreeMap<String, Peer>, node: &Node| {
            let name = node.metadata.name.clone().unwrap_or_default();
            match annotations::peer(node).filter(|_| name != own) {
                Some(peer) => peers.insert(name, peer),
                None => peers.remove(&name),
            };
        };
        match event {
            Ok(Event::Init) => listing = Some(BTreeMap::new()),
            Ok(Event::InitApply(node)) => update(listing.get_or_insert_with(BTreeMap::new), &node),
            Ok(Event::InitDone) => {
                let peers = listing.take().unwrap_or_default();
                tx.send_if_modified(|current| std::mem::replace(current, peers.clone()) != peers);
            }
            Ok(Event::Apply(node)) => {
                tx.send_if_modified(|peers| {
                    let before = peers.clone();
                    update(peers, &node);
                    *peers != before
                });
            }
            Ok(Event::Delete(node)) => {
                let name = node.metadata.name.unwrap_or_default();
                tx.send_if_modified(|peers| peers.remove(&name).is_some());
            }
            Err(e) => tracing::warn!(error = %e, "overlay: the Node watch failed; retrying"),
        }
    }
}
