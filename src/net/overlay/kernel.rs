//! The real [`Dataplane`]: rtnetlink requests into one network namespace (this process's, or
//! `--netns` in tests) for the uplink's facts, the VXLAN device, neighbours, FDB entries and
//! routes; tx checksum offload is switched off with the `ETHTOOL_STXCSUM` ioctl (the kernel
//! bug behind k3s-io/k3s#2013 and flannel-io/flannel#1282 corrupts offloaded VXLAN checksums).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::TryStreamExt;
use ipnetwork::Ipv4Network;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{InfoData, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{LinkUnspec, LinkVxlan, RouteMessageBuilder};

use super::{Dataplane, Device, Entry, Mac, OverlayError, Scope, Uplink, VxlanSpec};
use crate::net::netlink::{is_errno, Netlink};
use crate::net::netns;

/// `ETHTOOL_STXCSUM` from linux/ethtool.h.
const ETHTOOL_STXCSUM: u32 = 0x17;

/// The kernel of one network namespace.
pub struct KernelDataplane {
    nl: Netlink,
    netns: Option<PathBuf>,
}

fn setup(msg: impl Into<String>) -> OverlayError {
    OverlayError::Setup(msg.into())
}

fn request(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> OverlayError {
    let what = what.into();
    move |e| OverlayError::Netlink(Netlink::fail(what)(e))
}

/// An address message's IPv4 address with its link and prefix.
fn ipv4_of(msg: &AddressMessage) -> Option<(u32, Ipv4Addr, u8)> {
    msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip)) => {
            Some((msg.header.index, *ip, msg.header.prefix_len))
        }
        _ => None,
    })
}

fn route_v4(a: &RouteAttribute) -> Option<Ipv4Addr> {
    match a {
        RouteAttribute::Destination(RouteAddress::Inet(ip)) | RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
        _ => None,
    }
}

impl KernelDataplane {
    /// The kernel of the namespace at `netns` (this process's when `None`).
    pub fn open(netns: Option<&Path>) -> Result<Self, OverlayError> {
        Ok(Self { nl: Netlink::open(netns)?, netns: netns.map(Path::to_path_buf) })
    }

    async fn addresses(&self) -> Result<Vec<(u32, Ipv4Addr, u8)>, OverlayError> {
        let msgs: Vec<AddressMessage> =
            self.nl.handle().address().get().execute().try_collect().await.map_err(request("listing addresses"))?;
        Ok(msgs.iter().filter_map(ipv4_of).collect())
    }

    async fn link(&self, index: u32) -> Result<LinkMessage, OverlayError> {
        let mut links = self.nl.handle().link().get().match_index(index).execute();
        links.try_next().await.map_err(request(format!("reading link #{index}")))?.ok_or_else(|| setup(format!("no link #{index}")))
    }

    async fn link_by_name(&self, name: &str) -> Result<Option<LinkMessage>, OverlayError> {
        let mut links = self.nl.handle().link().get().match_name(name).execute();
        match links.try_next().await {
            Ok(link) => Ok(link),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(request(format!("reading link {name}"))(e)),
        }
    }

    async fn routes(&self) -> Result<Vec<RouteMessage>, OverlayError> {
        let all = RouteMessageBuilder::<Ipv4Addr>::new().build();
        self.nl.handle().route().get(all).execute().try_collect().await.map_err(request("listing routes"))
    }

    async fn neighbours(&self, family: AddressFamily) -> Result<Vec<NeighbourMessage>, OverlayError> {
        let get = self.nl.handle().neighbours().get().set_address_family(family);
        get.execute().try_collect().await.map_err(request("listing neighbours"))
    }

    /// The interface of the main table's default route.
    async fn default_route_link(&self) -> Result<Option<u32>, OverlayError> {
        let routes = self.routes().await?;
        let main = |r: &&RouteMessage| r.header.table == RouteHeader::RT_TABLE_MAIN && r.header.destination_prefix_length == 0;
        Ok(routes.iter().filter(main).find_map(|r| r.attributes.iter().find_map(matches_oif)))
    }

    /// Switches tx checksum offload off on `name` (`ethtool -K NAME tx off`).
    fn tx_checksum_off(&self, name: &str) -> Result<(), OverlayError> {
        let done = netns::run_in(self.netns.as_deref(), || -> std::io::Result<()> {
            let sock = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            let mut value = [ETHTOOL_STXCSUM, 0u32];
            // SAFETY: ifreq is plain data; the name fits (checked below); the ioctl reads the
            // ethtool_value {cmd, data} that ifru_data points to, which lives across the call.
            unsafe {
                let mut req: libc::ifreq = std::mem::zeroed();
                if name.len() >= req.ifr_name.len() {
                    return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
                }
                for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
                    *dst = src as libc::c_char;
                }
                req.ifr_ifru.ifru_data = value.as_mut_ptr().cast();
                if libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&sock), libc::SIOCETHTOOL, &mut req) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        })?;
        done.map_err(|e| setup(format!("switching tx checksum offload off on {name}: {e}")))
    }
}

fn matches_oif(a: &RouteAttribute) -> Option<u32> {
    match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    }
}

fn link_name(link: &LinkMessage) -> String {
    link.attributes.iter().find_map(|a| if let LinkAttribute::IfName(n) = a { Some(n.clone()) } else { None }).unwrap_or_default()
}

fn link_mtu(link: &LinkMessage) -> u32 {
    link.attributes.iter().find_map(|a| if let LinkAttribute::Mtu(m) = a { Some(*m) } else { None }).unwrap_or(1500)
}

fn link_mac(link: &LinkMessage) -> Option<Mac> {
    link.attributes.iter().find_map(|a| if let LinkAttribute::Address(m) = a { m.as_slice().try_into().ok() } else { None })
}

/// Whether an existing VXLAN link has the VNI, local address, port and uplink of `spec`.
fn vxlan_matches(link: &LinkMessage, spec: &VxlanSpec) -> bool {
    let infos = link.attributes.iter().find_map(|a| if let LinkAttribute::LinkInfo(i) = a { Some(i) } else { None });
    let data = infos.into_iter().flatten().find_map(|i| if let LinkInfo::Data(InfoData::Vxlan(d)) = i { Some(d) } else { None });
    let Some(data) = data else { return false };
    let has = |want: &InfoVxlan| data.contains(want);
    has(&InfoVxlan::Id(spec.vni))
        && has(&InfoVxlan::Local(spec.local))
        && has(&InfoVxlan::Port(spec.port))
        && has(&InfoVxlan::Link(spec.uplink))
}

fn mac_attr(msg: &NeighbourMessage) -> Option<Mac> {
    msg.attributes.iter().find_map(|a| if let NeighbourAttribute::LinkLayerAddress(m) = a { m.as_slice().try_into().ok() } else { None })
}

/// `NDA_DST` as IPv4 (an AF_BRIDGE message, an FDB entry, carries it as raw bytes).
fn dst_attr(msg: &NeighbourMessage) -> Option<Ipv4Addr> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from),
        _ => None,
    })
}

fn neighbour_message(family: AddressFamily, dev: u32, attributes: Vec<NeighbourAttribute>) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family;
    msg.header.ifindex = dev;
    msg.header.state = NeighbourState::Permanent;
    if family == AddressFamily::Bridge {
        msg.header.flags = NeighbourFlags::Own;
    }
    msg.attributes = attributes;
    msg
}

fn route_message(dev: u32, dst: Ipv4Network, via: Ipv4Addr, onlink: bool) -> RouteMessage {
    let b = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(dst.network(), dst.prefix()).gateway(via).output_interface(dev);
    if onlink { b.onlink() } else { b }.build()
}

#[async_trait]
impl Dataplane for KernelDataplane {
    async fn uplink(&self, iface: Option<&str>, node_ip: Ipv4Addr) -> Result<Uplink, OverlayError> {
        let addresses = self.addresses().await?;
        let index = match iface {
            Some(name) => {
                let link = self.link_by_name(name).await?;
                link.ok_or_else(|| setup(format!("--flannel-iface {name}: there is no such interface")))?.header.index
            }
            None => match addresses.iter().find(|(_, ip, _)| *ip == node_ip) {
                Some((index, _, _)) => *index,
                None => self.default_route_link().await?.ok_or_else(|| {
                    setup(format!("no interface holds the node IP {node_ip} and there is no default route: set --flannel-iface"))
                })?,
            },
        };
        let link = self.link(index).await?;
        let name = link_name(&link);
        let mine: Vec<Ipv4Addr> = addresses.iter().filter(|(i, _, _)| *i == index).map(|(_, ip, _)| *ip).collect();
        let ip = if mine.contains(&node_ip) { Some(node_ip) } else { mine.first().copied() };
        let ip =
            ip.ok_or_else(|| setup(format!("interface {name} has no IPv4 address: give it one, or pick another with --flannel-iface")))?;
        Ok(Uplink { name, index, ip, mtu: link_mtu(&link) })
    }

    async fn ensure_vxlan(&self, spec: &VxlanSpec) -> Result<Device, OverlayError> {
        if let Some(old) = self.link_by_name(&spec.name).await? {
            if !vxlan_matches(&old, spec) {
                tracing::info!(device = %spec.name, "overlay: replacing a device whose VNI, port, local address or uplink differ");
                self.nl.handle().link().del(old.header.index).execute().await.map_err(request(format!("deleting {}", spec.name)))?;
            }
        }
        if self.link_by_name(&spec.name).await?.is_none() {
            let msg = LinkVxlan::new(&spec.name, spec.vni)
                .dev(spec.uplink)
                .port(spec.port)
                .local(spec.local)
                .learning(false)
                .mtu(spec.mtu)
                .build();
            match self.nl.handle().link().add(msg).execute().await {
                Ok(()) => {}
                Err(e) if is_errno(&e, libc::EOPNOTSUPP) => {
                    return Err(setup(
                        "this kernel cannot create VXLAN devices: load the vxlan module (`modprobe vxlan`), or choose --flannel-backend=host-gw",
                    ))
                }
                Err(e) if is_errno(&e, libc::EEXIST) => {}
                Err(e) => return Err(request(format!("creating {}", spec.name))(e)),
            }
        }
        let link = self.link_by_name(&spec.name).await?.ok_or_else(|| setup(format!("{} vanished after it was created", spec.name)))?;
        let index = link.header.index;
        let set_mtu = LinkUnspec::new_with_index(index).mtu(spec.mtu).build();
        self.nl.handle().link().set(set_mtu).execute().await.map_err(request(format!("setting the MTU of {}", spec.name)))?;
        self.nl.ensure_address(index, spec.address, 32).await?;
        self.tx_checksum_off(&spec.name)?;
        self.nl.set_up(index).await?;
        let mac = link_mac(&link).ok_or_else(|| setup(format!("{} has no MAC address", spec.name)))?;
        Ok(Device { index, mac })
    }

    async fn route_overlapping(&self, cidr: Ipv4Network, except: &[&str]) -> Result<Option<String>, OverlayError> {
        for r in self.routes().await? {
            let (h, prefix) = (&r.header, r.header.destination_prefix_length);
            let dst = r.attributes.iter().find(|a| matches!(a, RouteAttribute::Destination(_))).and_then(route_v4);
            let (Some(dst), Some(oif)) = (dst, r.attributes.iter().find_map(matches_oif)) else { continue };
            let Ok(dst) = Ipv4Network::new(dst, prefix) else { continue };
            if h.table != RouteHeader::RT_TABLE_MAIN || prefix == 0 || !dst.overlaps(cidr) {
                continue;
            }
            let dev = link_name(&self.link(oif).await?);
            if !except.contains(&dev.as_str()) {
                return Ok(Some(format!("{dst} dev {dev}")));
            }
        }
        Ok(None)
    }

    async fn on_link(&self, dev: u32, ip: Ipv4Addr) -> Result<bool, OverlayError> {
        let addresses = self.addresses().await?;
        Ok(addresses
            .iter()
            .filter(|(i, _, _)| *i == dev)
            .any(|(_, addr, prefix)| Ipv4Network::new(*addr, *prefix).is_ok_and(|n| n.contains(ip))))
    }

    async fn entries(&self, scope: &Scope) -> Result<Vec<Entry>, OverlayError> {
        let mut out = Vec::new();
        for r in self.routes().await? {
            let h = &r.header;
            if h.table != RouteHeader::RT_TABLE_MAIN || r.attributes.iter().find_map(matches_oif) != Some(scope.dev) {
                continue;
            }
            let dst = r.attributes.iter().find(|a| matches!(a, RouteAttribute::Destination(_))).and_then(route_v4);
            let via = r.attributes.iter().find(|a| matches!(a, RouteAttribute::Gateway(_))).and_then(route_v4);
            let (Some(dst), Some(via)) = (dst, via) else { continue };
            let Ok(dst) = Ipv4Network::new(dst, h.destination_prefix_length) else { continue };
            if dst.prefix() >= scope.cluster_cidr.prefix() && scope.cluster_cidr.contains(dst.network()) {
                out.push(Entry::Route { dev: scope.dev, dst, via, onlink: h.flags.contains(RouteFlags::Onlink) });
            }
        }
        if scope.owns_device {
            for n in self.neighbours(AddressFamily::Inet).await? {
                let permanent = n.header.state == NeighbourState::Permanent;
                if let (true, true, Some(ip), Some(mac)) = (n.header.ifindex == scope.dev, permanent, dst_attr(&n), mac_attr(&n)) {
                    out.push(Entry::Neighbour { dev: scope.dev, ip, mac });
                }
            }
            for n in self.neighbours(AddressFamily::Bridge).await? {
                if let (true, Some(dst), Some(mac)) = (n.header.ifindex == scope.dev, dst_attr(&n), mac_attr(&n)) {
                    out.push(Entry::Fdb { dev: scope.dev, mac, dst });
                }
            }
        }
        Ok(out)
    }

    async fn apply(&self, entry: &Entry) -> Result<(), OverlayError> {
        let h = self.nl.handle();
        let what = format!("setting {entry}");
        match *entry {
            Entry::Neighbour { dev, ip, mac } => {
                h.neighbours().add(dev, IpAddr::V4(ip)).link_layer_address(&mac).state(NeighbourState::Permanent).replace().execute().await
            }
            Entry::Fdb { dev, mac, dst } => {
                let add = h.neighbours().add_bridge(dev, &mac).flags(NeighbourFlags::Own).state(NeighbourState::Permanent);
                add.destination(IpAddr::V4(dst)).replace().execute().await
            }
            Entry::Route { dev, dst, via, onlink } => h.route().add(route_message(dev, dst, via, onlink)).replace().execute().await,
        }
        .map_err(request(what))
    }

    async fn remove(&self, entry: &Entry) -> Result<(), OverlayError> {
        let h = self.nl.handle();
        let done = match *entry {
            Entry::Neighbour { dev, ip, .. } => {
                let attrs = vec![NeighbourAttribute::Destination(NeighbourAddress::Inet(ip))];
                h.neighbours().del(neighbour_message(AddressFamily::Inet, dev, attrs)).execute().await
            }
            Entry::Fdb { dev, mac, dst } => {
                let attrs =
                    vec![NeighbourAttribute::LinkLayerAddress(mac.to_vec()), NeighbourAttribute::Destination(NeighbourAddress::Inet(dst))];
                h.neighbours().del(neighbour_message(AddressFamily::Bridge, dev, attrs)).execute().await
            }
            Entry::Route { dev, dst, via, onlink } => h.route().del(route_message(dev, dst, via, onlink)).execute().await,
        };
        match done {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::ENOENT) || is_errno(&e, libc::ESRCH) => Ok(()),
            Err(e) => Err(request(format!("removing {entry}"))(e)),
        }
    }
}
