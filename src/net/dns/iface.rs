//! The interface that holds the cluster DNS address (10.43.0.10/32) in the node's network
//! namespace, as NodeLocal DNSCache does: the dummy interface `orch-dns`, or the loopback
//! device on kernels built without dummy interfaces. Either way the address is local, so pods
//! reach it through their default route to the host and every node answers locally even
//! while the server is down.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::net::netlink::{Netlink, NetlinkError};

/// The dummy interface's name.
pub const DEVICE: &str = "orch-dns";
/// Where the address goes when the kernel has no dummy interfaces.
const LOOPBACK: &str = "lo";

/// Puts `address`/32 on an interface that is up in the namespace at `netns` (this process's
/// own when `None`); returns the interface's name.
pub async fn ensure(netns: Option<&Path>, address: Ipv4Addr) -> Result<&'static str, NetlinkError> {
    let netlink = Netlink::open(netns)?;
    let (name, index) = match netlink.ensure_dummy(DEVICE).await {
        Ok(index) => (DEVICE, index),
        Err(NetlinkError::Request { source, .. }) if crate::net::netlink::is_errno(&source, libc::EOPNOTSUPP) => {
            tracing::info!("this kernel has no dummy interfaces; the cluster DNS address goes on {LOOPBACK}");
            let index = netlink.link_index(LOOPBACK).await?.ok_or_else(|| NetlinkError::Request {
                what: format!("looking up link {LOOPBACK}"),
                source: rtnetlink::Error::RequestFailed,
            })?;
            (LOOPBACK, index)
        }
        Err(e) => return Err(e),
    };
    netlink.ensure_address(index, address, 32).await?;
    netlink.set_up(index).await?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::netns::{run_in, NetnsDir};

    #[tokio::test]
    async fn the_address_is_local_in_the_namespace() {
        if !crate::host::is_root() {
            return eprintln!("skipping: needs root (a network namespace)");
        }
        let dir = tempfile::tempdir().unwrap();
        let namespaces = NetnsDir::new(dir.path().to_path_buf());
        let name = format!("orch-dnsif-{:08x}", rand::random::<u32>());
        let netns = namespaces.create(&name).unwrap();
        let address = Ipv4Addr::new(10, 43, 0, 10);
        let result = async {
            ensure(Some(&netns), address).await?;
            let device = ensure(Some(&netns), address).await?;
            Ok::<_, NetlinkError>(device)
        }
        .await;
        let bound = run_in(Some(&netns), || std::net::UdpSocket::bind((address, 0)).map(|_| ()));
        let _ = namespaces.remove(&name);
        let device = result.expect("putting the address on an interface, twice");
        assert!([DEVICE, LOOPBACK].contains(&device));
        bound.unwrap().expect("the address is local: a socket binds to it");
    }
}
