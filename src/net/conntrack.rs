//! Conntrack over ctnetlink: deleting the UDP flows that were DNATed to endpoints a Service no
//! longer has (as kube-proxy does). A UDP client that keeps sending would otherwise stay on
//! its conntrack entry, and so on the gone endpoint, for as long as it sends.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use rtnetlink::sys::protocols::NETLINK_NETFILTER;
use rtnetlink::sys::Socket;

use super::netns::{self, NetnsError};
use super::nft::set_option;
use super::nft::wire::{self, Attrs, NLMSG_DONE, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const AF_INET: u8 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const IPPROTO_UDP: u8 = 17;
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("conntrack netlink socket: {0}")]
    Socket(std::io::Error),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("conntrack refused {what}: {}", std::io::Error::from_raw_os_error(*.errno))]
    Refused { what: &'static str, errno: i32 },
}

/// Deletes, in the namespace at `netns`, every UDP flow whose replies come from one of
/// `endpoints` (address, port); returns how many it deleted.
pub fn delete_udp_flows_from(netns: Option<&Path>, endpoints: &BTreeSet<(Ipv4Addr, u16)>) -> Result<usize, ConntrackError> {
    if endpoints.is_empty() {
        return Ok(0);
    }
    let socket = netns::run_in(netns, || Socket::new(NETLINK_NETFILTER))?.map_err(ConntrackError::Socket)?;
    let tv = libc::timeval { tv_sec: REPLY_TIMEOUT.as_secs() as libc::time_t, tv_usec: 0 };
    set_option(&socket, libc::SO_RCVTIMEO, &tv).map_err(ConntrackError::Socket)?;
    let kind = |msg: u16| (NFNL_SUBSYS_CTNETLINK << 8) | msg;
    let dump = wire::message(kind(IPCTNL_MSG_CT_GET), NLM_F_REQUEST | NLM_F_DUMP, 1, AF_INET, 0, &Attrs::new());
    socket.send(&dump, 0).map_err(ConntrackError::Socket)?;
    let mut stale: Vec<Vec<u8>> = Vec::new();
    'dump: loop {
        let (buf, _) = socket.recv_from_full().map_err(ConntrackError::Socket)?;
        for reply in wire::parse_replies(&buf) {
            match (reply.kind, reply.error) {
                (NLMSG_DONE, _) => break 'dump,
                (_, Some(errno)) if errno != 0 => return Err(ConntrackError::Refused { what: "the flow dump", errno: -errno }),
                (_, Some(_)) => {}
                (_, None) => {
                    if let Some(orig) = stale_flow(&reply.attrs, endpoints) {
                        stale.push(orig.to_vec());
                    }
                }
            }
        }
    }
    let mut batch = Vec::new();
    for (i, orig) in stale.iter().enumerate() {
        let attrs = Attrs::new().nested_raw(CTA_TUPLE_ORIG, orig);
        batch.extend(wire::message(kind(IPCTNL_MSG_CT_DELETE), NLM_F_REQUEST | NLM_F_ACK, i as u32 + 2, AF_INET, 0, &attrs));
    }
    if batch.is_empty() {
        return Ok(0);
    }
    socket.send(&batch, 0).map_err(ConntrackError::Socket)?;
    let (mut answered, mut deleted) = (0, 0);
    while answered < stale.len() {
        let (buf, _) = socket.recv_from_full().map_err(ConntrackError::Socket)?;
        for reply in wire::parse_replies(&buf) {
            match reply.error {
                Some(0) => deleted += 1,
                // Gone meanwhile (expired, or deleted by someone else).
                Some(e) if -e == libc::ENOENT => {}
                Some(e) => return Err(ConntrackError::Refused { what: "deleting a flow", errno: -e }),
                None => continue,
            }
            answered += 1;
        }
    }
    Ok(deleted)
}

/// The original tuple of a conntrack entry (`attrs` of a dump message) when it is a UDP flow
/// whose reply source is one of `endpoints`.
fn stale_flow<'a>(attrs: &'a [u8], endpoints: &BTreeSet<(Ipv4Addr, u16)>) -> Option<&'a [u8]> {
    let top = wire::attributes(attrs);
    let find = |attrs: &[(u16, &'a [u8])], kind: u16| attrs.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v);
    let orig = find(&top, CTA_TUPLE_ORIG)?;
    let reply = wire::attributes(find(&top, CTA_TUPLE_REPLY)?);
    let ip = wire::attributes(find(&reply, CTA_TUPLE_IP)?);
    let proto = wire::attributes(find(&reply, CTA_TUPLE_PROTO)?);
    let src: [u8; 4] = find(&ip, CTA_IP_V4_SRC)?.try_into().ok()?;
    let num = *find(&proto, CTA_PROTO_NUM)?.first()?;
    let port: [u8; 2] = find(&proto, CTA_PROTO_SRC_PORT)?.try_into().ok()?;
    (num == IPPROTO_UDP && endpoints.contains(&(Ipv4Addr::from(src), u16::from_be_bytes(port)))).then_some(orig)
}
