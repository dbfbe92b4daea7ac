//! The pod network of a node (DESIGN.md §1, `net/`): per-pod network namespaces joined to the
//! bridge `cni0` by veth pairs, address management from the node's podCIDR, the files a pod's
//! DNS needs, and nftables masquerade and hostPort rules — all through netlink, nothing shells out.

pub mod bridge;
pub mod conntrack;
pub mod dns;
pub mod etc_files;
pub mod fake;
pub mod host_ports;
pub mod hosts;
pub mod ipam;
pub mod names;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod overlay;
pub mod pod_network;
pub mod proxy;
pub mod resolv;

pub use bridge::{BridgeConfig, BridgeNetwork};
pub use ipnetwork::Ipv4Network;
pub use pod_network::{gateway, HostPort, PodAttachment, PodNetRequest, PodNetwork, Protocol};

/// Errors of the pod network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{0:?} cannot name a pod network (use the pod UID)")]
    BadPodId(String),
    #[error(transparent)]
    Ipam(#[from] ipam::IpamError),
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    #[error(transparent)]
    Netlink(#[from] netlink::NetlinkError),
    #[error(transparent)]
    Nft(#[from] nft::NftError),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: std::path::PathBuf, source: std::io::Error },
}
