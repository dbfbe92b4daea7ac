//! The real [`PodNetwork`]: each pod gets a network namespace mounted at
//! `<netns-dir>/<pod-id>`, a veth pair whose host side `veth<hash>` is a port of bridge `cni0`
//! and whose pod side is `eth0` with an address from the node's podCIDR, and a default route via
//! the bridge's address (the first of the podCIDR). The bridge, its address, IPv4 forwarding and
//! the nftables NAT table (masquerade, the pods' hostPorts) are set up on first use; the NAT table
//! is rebuilt whenever a pod with hostPorts comes or goes. Everything happens in `host_netns` when set (tests use their own),
//! else in this process's namespace.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use ipnetwork::Ipv4Network;
use parking_lot::Mutex;
use tokio::sync::OnceCell;

use super::host_ports::HostPortStore;
use super::ipam::Ipam;
use super::names::{host_veth_name, valid_pod_id};
use super::netlink::Netlink;
use super::netns::{self, NetnsDir};
use super::nft::{NatRules, PodHostPort};
use super::pod_network::{gateway, PodAttachment, PodNetRequest, PodNetwork};
use super::NetError;

/// The pod-side interface name.
const POD_IFNAME: &str = "eth0";
/// The bridge pods are attached to (flannel's and k3s's name).
pub const BRIDGE: &str = "cni0";
/// MTU that leaves room for VXLAN's 50 bytes on a 1500-byte underlay.
pub const DEFAULT_MTU: u32 = 1450;

/// Settings of a node's bridge network.
#[derive(Clone, Debug)]
pub struct BridgeConfig {
    pub bridge: String,
    /// The node's `spec.podCIDR`.
    pub pod_cidr: Ipv4Network,
    /// The whole cluster's pod range (traffic leaving it is masqueraded).
    pub cluster_cidr: Ipv4Network,
    pub mtu: u32,
    /// Where pod namespaces are mounted (`/run/orch/netns`).
    pub netns_dir: PathBuf,
    /// `<data-dir>/agent`: address allocations live in `ipam/` below it, hostPorts in `net/hostports/`.
    pub state_dir: PathBuf,
    /// The namespace holding the bridge; `None` = this process's.
    pub host_netns: Option<PathBuf>,
}

impl BridgeConfig {
    /// The defaults for a node with `data_dir`: bridge `cni0`, MTU 1450, `/run/orch/netns`.
    pub fn new(data_dir: &Path, pod_cidr: Ipv4Network, cluster_cidr: Ipv4Network) -> Self {
        Self {
            bridge: BRIDGE.to_string(),
            pod_cidr,
            cluster_cidr,
            mtu: DEFAULT_MTU,
            netns_dir: PathBuf::from("/run/orch/netns"),
            state_dir: data_dir.join("agent"),
            host_netns: None,
        }
    }
}

/// A node's pod network on a Linux bridge.
pub struct BridgeNetwork {
    config: BridgeConfig,
    ipam: Ipam,
    netns: NetnsDir,
    host_ports: HostPortStore,
    /// Held while the NAT table is rebuilt, so concurrent rebuilds cannot lose a pod's ports.
    nat_lock: Mutex<()>,
    node_ready: OnceCell<u32>,
}

impl BridgeNetwork {
    pub fn new(config: BridgeConfig) -> Result<Self, NetError> {
        let ipam = Ipam::open(&config.state_dir.join("ipam"), config.pod_cidr)?;
        let netns = NetnsDir::new(&config.netns_dir);
        let host_ports = HostPortStore::new(config.state_dir.join("net/hostports"));
        Ok(Self { config, ipam, netns, host_ports, nat_lock: Mutex::new(()), node_ready: OnceCell::new() })
    }

    pub fn config(&self) -> &BridgeConfig {
        &self.config
    }

    pub fn ipam(&self) -> &Ipam {
        &self.ipam
    }

    fn host(&self) -> Result<Netlink, NetError> {
        Ok(Netlink::open(self.config.host_netns.as_deref())?)
    }

    /// The bridge with the gateway address, and forwarding on; returns the bridge's index.
    async fn ensure_node(&self, host: &Netlink) -> Result<u32, NetError> {
        let index = *self
            .node_ready
            .get_or_try_init(|| async {
                let c = &self.config;
                let index = host.ensure_bridge(&c.bridge, c.mtu).await?;
                host.ensure_address(index, gateway(c.pod_cidr), c.pod_cidr.prefix()).await?;
                host.set_up(index).await?;
                self.write_sysctl("net/ipv4/ip_forward", "1")?;
                // Pod-to-pod traffic on the bridge must pass nftables for a Service's DNAT to
                // be undone on the way back (kube-proxy needs br_netfilter for the same reason).
                if let Err(e) = self.write_sysctl("net/bridge/bridge-nf-call-iptables", "1") {
                    tracing::warn!(error = %e, "bridged traffic skips nftables (load br_netfilter): a pod reaching a Service backed by a pod of the same node will fail");
                }
                self.apply_nat()?;
                tracing::info!(bridge = %c.bridge, gateway = %gateway(c.pod_cidr), "pod network bridge ready");
                Ok::<u32, NetError>(index)
            })
            .await?;
        Ok(index)
    }

    fn write_sysctl(&self, key: &str, value: &str) -> Result<(), NetError> {
        let path = Path::new("/proc/sys").join(key);
        netns::run_in(self.config.host_netns.as_deref(), || std::fs::write(&path, value))?.map_err(|source| NetError::Io {
            what: "writing",
            path,
            source,
        })
    }

    /// Rebuilds the NAT table from the cluster CIDR and the recorded hostPorts of pods that
    /// still have an address.
    fn apply_nat(&self) -> Result<(), NetError> {
        let _guard = self.nat_lock.lock();
        let ips = self.ipam.allocations()?;
        let mut host_ports = Vec::new();
        for (id, ports) in self.host_ports.all()? {
            let Some((pod_ip, _)) = ips.iter().find(|(_, owner)| *owner == id) else { continue };
            host_ports.extend(ports.into_iter().map(|port| PodHostPort { pod_ip: *pod_ip, port }));
        }
        let rules = NatRules { cluster_cidr: self.config.cluster_cidr, pod_cidr: self.config.pod_cidr, host_ports };
        rules.apply(self.config.host_netns.as_deref())?;
        Ok(())
    }

    /// Address, link and route inside the pod's namespace (each step idempotent).
    async fn configure_pod_side(&self, netns: &Path, ip: Ipv4Addr) -> Result<(), NetError> {
        let pod = Netlink::open(Some(netns))?;
        if let Some(lo) = pod.link_index("lo").await? {
            pod.set_up(lo).await?;
        }
        let eth0 = pod.link_index(POD_IFNAME).await?.ok_or_else(|| NetError::Io {
            what: "finding eth0 in",
            path: netns.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
        pod.ensure_address(eth0, ip, self.config.pod_cidr.prefix()).await?;
        pod.set_up(eth0).await?;
        pod.replace_default_route(eth0, gateway(self.config.pod_cidr)).await?;
        Ok(())
    }

    /// Every pod id that has some network state on this node.
    fn known_pods(&self) -> Result<BTreeSet<String>, NetError> {
        let mut ids: BTreeSet<String> = self.ipam.allocations()?.into_iter().map(|(_, owner)| owner).collect();
        ids.extend(self.netns.list()?);
        ids.extend(self.host_ports.all()?.into_iter().map(|(id, _)| id));
        ids.retain(|id| valid_pod_id(id));
        Ok(ids)
    }
}

fn check_id(id: &str) -> Result<(), NetError> {
    if valid_pod_id(id) {
        Ok(())
    } else {
        Err(NetError::BadPodId(id.to_string()))
    }
}

#[async_trait]
impl PodNetwork for BridgeNetwork {
    async fn setup(&self, pod: &PodNetRequest) -> Result<PodAttachment, NetError> {
        check_id(&pod.id)?;
        let host = self.host()?;
        let bridge = self.ensure_node(&host).await?;
        let netns = self.netns.create(&pod.id)?;
        let ip = self.ipam.allocate(&pod.id)?;
        let host_veth = host_veth_name(&pod.id);
        if host.link_index(&host_veth).await?.is_none() {
            let ns_file = std::fs::File::open(&netns).map_err(|source| NetError::Io { what: "opening", path: netns.clone(), source })?;
            host.add_veth_into(&host_veth, Some(bridge), POD_IFNAME, std::os::fd::AsRawFd::as_raw_fd(&ns_file), self.config.mtu).await?;
            if let Some(index) = host.link_index(&host_veth).await? {
                host.set_hairpin(index).await?;
            }
        }
        self.configure_pod_side(&netns, ip).await?;
        if self.host_ports.save(&pod.id, &pod.host_ports)? {
            self.apply_nat()?;
        }
        tracing::debug!(pod = %pod.id, %ip, veth = %host_veth, "pod network set up");
        Ok(PodAttachment { netns, ip, prefix: self.config.pod_cidr.prefix(), gateway: gateway(self.config.pod_cidr), host_veth })
    }

    async fn teardown(&self, pod_id: &str) -> Result<(), NetError> {
        check_id(pod_id)?;
        let host = self.host()?;
        host.delete_link(&host_veth_name(pod_id)).await?;
        self.netns.remove(pod_id)?;
        if self.host_ports.remove(pod_id)? {
            self.apply_nat()?;
        }
        let freed = self.ipam.release(pod_id)?;
        tracing::debug!(pod = %pod_id, ?freed, "pod network torn down");
        Ok(())
    }

    async fn gc(&self, alive: &(dyn for<'a> Fn(&'a str) -> bool + Send + Sync)) -> Result<Vec<String>, NetError> {
        let mut gone = Vec::new();
        for id in self.known_pods()? {
            if !alive(&id) {
                self.teardown(&id).await?;
                gone.push(id);
            }
        }
        // Allocations left empty by a crash have no owner to ask about.
        self.ipam.gc(|owner| !owner.is_empty())?;
        Ok(gone)
    }
}
