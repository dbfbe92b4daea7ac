//! A small rtnetlink client bound to one network namespace: links (bridge, veth pair, up,
//! delete, dummy), addresses and routes — the only link/address/route operations the pod network needs.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{IntoRawFd, RawFd};
use std::path::Path;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::sys::protocols::NETLINK_ROUTE;
use rtnetlink::sys::{Socket, TokioSocket};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkDummy, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};
use tokio::task::JoinHandle;

use super::netns::{self, NetnsError};

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("opening a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("{what}: {source}")]
    Request { what: String, source: rtnetlink::Error },
}

/// Whether a netlink request failed with the errno `code`.
pub(crate) fn is_errno(e: &rtnetlink::Error, code: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -code)
}

/// A route-netlink connection into one network namespace; its background task ends on drop.
pub struct Netlink {
    handle: Handle,
    task: JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Netlink {
    /// A connection into the namespace at `netns`, or this process's own when `None`.
    /// Must be called inside a tokio runtime.
    pub fn open(netns: Option<&Path>) -> Result<Self, NetlinkError> {
        let socket = netns::run_in(netns, || Socket::new(NETLINK_ROUTE))?.map_err(NetlinkError::Socket)?;
        socket.set_non_blocking(true).map_err(NetlinkError::Socket)?;
        // SAFETY: the fd comes from a socket we own and give up here.
        let socket = unsafe { <TokioSocket as std::os::fd::FromRawFd>::from_raw_fd(socket.into_raw_fd()) };
        let (connection, handle, _) = rtnetlink::from_socket(socket);
        Ok(Self { handle, task: tokio::spawn(connection) })
    }

    /// The rtnetlink handle, for the overlay's neighbour, FDB and route requests.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    pub(crate) fn fail(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
        let what = what.into();
        move |source| NetlinkError::Request { what, source }
    }

    /// The index of link `name`, or `None` if there is none.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>, NetlinkError> {
        let mut links = self.handle.link().get().match_name(name).execute();
        match links.try_next().await {
            Ok(link) => Ok(link.map(|l| l.header.index)),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(Self::fail(format!("looking up link {name}"))(e)),
        }
    }

    async fn require_index(&self, name: &str) -> Result<u32, NetlinkError> {
        self.link_index(name)
            .await?
            .ok_or_else(|| NetlinkError::Request { what: format!("looking up link {name}"), source: rtnetlink::Error::RequestFailed })
    }

    /// Creates bridge `name` (up, with `mtu`) unless it exists; returns its index.
    pub async fn ensure_bridge(&self, name: &str, mtu: u32) -> Result<u32, NetlinkError> {
        if let Some(index) = self.link_index(name).await? {
            return Ok(index);
        }
        let msg = LinkBridge::new(name).mtu(mtu).build();
        match self.handle.link().add(msg).execute().await {
            Ok(()) => {}
            Err(e) if is_errno(&e, libc::EEXIST) => {}
            Err(e) => return Err(Self::fail(format!("creating bridge {name}"))(e)),
        }
        self.require_index(name).await
    }

    /// Creates dummy interface `name` unless it exists; returns its index.
    pub async fn ensure_dummy(&self, name: &str) -> Result<u32, NetlinkError> {
        if let Some(index) = self.link_index(name).await? {
            return Ok(index);
        }
        match self.handle.link().add(LinkDummy::new(name).build()).execute().await {
            Ok(()) => {}
            Err(e) if is_errno(&e, libc::EEXIST) => {}
            Err(e) => return Err(Self::fail(format!("creating dummy interface {name}"))(e)),
        }
        self.require_index(name).await
    }

    /// Sets link `index` up.
    pub async fn set_up(&self, index: u32) -> Result<(), NetlinkError> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.handle.link().set(msg).execute().await.map_err(Self::fail(format!("setting link {index} up")))
    }

    /// Turns on hairpin mode of bridge port `index`: frames may leave by the port they came in
    /// (a pod reaching itself through a Service is DNATed back out of its own port).
    pub async fn set_hairpin(&self, index: u32) -> Result<(), NetlinkError> {
        let msg = LinkBridgePort::new(index).hairpin(true).build();
        self.handle.link().set_port(msg).execute().await.map_err(Self::fail(format!("setting hairpin mode on link {index}")))
    }

    /// Creates a veth pair: `host` (in this namespace, up, a port of `bridge` if given) and `peer`
    /// created directly inside the namespace open as `peer_netns`; both with `mtu`.
    pub async fn add_veth_into(
        &self,
        host: &str,
        bridge: Option<u32>,
        peer: &str,
        peer_netns: RawFd,
        mtu: u32,
    ) -> Result<(), NetlinkError> {
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new().name(peer.to_string()).mtu(mtu).setns_by_fd(peer_netns).build();
        let mut msg = LinkVeth::new(host, peer).mtu(mtu).up();
        if let Some(bridge) = bridge {
            msg = msg.controller(bridge);
        }
        let msg = msg.set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg))).build();
        self.handle.link().add(msg).execute().await.map_err(Self::fail(format!("creating veth pair {host}/{peer}")))
    }

    /// Deletes link `name`; returns whether it existed.
    pub async fn delete_link(&self, name: &str) -> Result<bool, NetlinkError> {
        let Some(index) = self.link_index(name).await? else { return Ok(false) };
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(false),
            Err(e) => Err(Self::fail(format!("deleting link {name}"))(e)),
        }
    }

    /// Adds `addr/prefix` to link `index` (no error if it is already there).
    pub async fn ensure_address(&self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), NetlinkError> {
        self.handle
            .address()
            .add(index, IpAddr::V4(addr), prefix)
            .replace()
            .execute()
            .await
            .map_err(Self::fail(format!("adding address {addr}/{prefix} to link {index}")))
    }

    /// Sets (adds or replaces) the default route via `gateway` out of link `index`.
    pub async fn replace_default_route(&self, index: u32, gateway: Ipv4Addr) -> Result<(), NetlinkError> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new().output_interface(index).gateway(gateway).build();
        self.handle.route().add(route).replace().execute().await.map_err(Self::fail(format!("adding the default route via {gateway}")))
    }
}
