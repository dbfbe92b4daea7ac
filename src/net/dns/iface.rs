//! The dummy interface `orch-dns` that holds the cluster DNS address (10.43.0.10/32) in the
//! node's network namespace, as NodeLocal DNSCache does: pods reach it through their default
//! route to the host, so every node answers locally even while the server is down.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::net::netlink::{Netlink, NetlinkError};

/// The interface's name.
pub const DEVICE: &str = "orch-dns";

/// Creates (or keeps) the dummy interface with `address`/32, up, in the namespace at `netns`
/// (this process's own when `None`).
pub async fn ensure(netns: Option<&Path>, address: Ipv4Addr) -> Result<(), NetlinkError> {
    let netlink = Netlink::open(netns)?;
    let index = netlink.ensure_dummy(DEVICE).await?;
    netlink.ensure_address(index, address, 32).await?;
    netlink.set_up(index).await
}
