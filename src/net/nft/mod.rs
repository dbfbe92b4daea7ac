//! nftables through netlink (no `nft` binary): the table `ip orch` with masquerade for traffic
//! from the cluster CIDR leaving it and for hairpin traffic (a pod reaching a pod of this node
//! through a hostPort), both in `postrouting`, and hostPort DNAT (`prerouting` for traffic
//! arriving at the node, `output` for the node's own), and in `forward` an accept for traffic
//! from or to the cluster CIDR (pods of other nodes come through the overlay). The whole table is replaced in one
//! nf_tables transaction every time, so the rules always match the node's pods exactly.

mod expr;
mod wire;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use ipnetwork::Ipv4Network;
use rtnetlink::sys::protocols::NETLINK_NETFILTER;
use rtnetlink::sys::Socket;

use self::expr::{Base, Expr, REG1, REG2};
use self::wire::{Attrs, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST};
use super::netns::{self, NetnsError};
use super::pod_network::{HostPort, Protocol};

/// The table orch owns (family `ip`).
pub const TABLE: &str = "orch";

const NFPROTO_IPV4: u8 = 2;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_FORWARD: u32 = 2;
const NF_INET_LOCAL_OUT: u32 = 3;
const NF_INET_POST_ROUTING: u32 = 4;
const PRIORITY_DSTNAT: i32 = -100;
const PRIORITY_SRCNAT: i32 = 100;
const PRIORITY_FILTER: i32 = 0;
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nftables netlink socket: {0}")]
    Socket(std::io::Error),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("nftables refused {step}: {}", std::io::Error::from_raw_os_error(*.errno))]
    Refused { step: String, errno: i32 },
    #[error("nftables did not confirm the transaction ({acked} of {expected} steps acknowledged)")]
    Unconfirmed { acked: usize, expected: usize },
}

/// A pod's hostPort mapping together with the pod's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodHostPort {
    pub pod_ip: Ipv4Addr,
    pub port: HostPort,
}

/// The NAT rules of one node.
#[derive(Clone, Debug)]
pub struct NatRules {
    pub cluster_cidr: Ipv4Network,
    /// This node's podCIDR.
    pub pod_cidr: Ipv4Network,
    pub host_ports: Vec<PodHostPort>,
}

/// One nf_tables message of a transaction, with what it does (for errors).
struct Step {
    what: String,
    kind: u16,
    flags: u16,
    attrs: Attrs,
}

impl NatRules {
    /// Replaces table `ip orch` in the namespace at `netns` (this process's when `None`).
    pub fn apply(&self, netns: Option<&Path>) -> Result<(), NftError> {
        transact(netns, self.steps())
    }

    fn steps(&self) -> Vec<Step> {
        let table = Attrs::new().str(1, TABLE);
        let mut steps = vec![
            // Create-if-missing then delete makes the delete safe when the table is not there.
            step("creating table orch", NFT_MSG_NEWTABLE, NLM_F_CREATE, table.clone()),
            step("deleting the old table orch", NFT_MSG_DELTABLE, 0, table.clone()),
            step("creating table orch", NFT_MSG_NEWTABLE, NLM_F_CREATE, table),
            chain("postrouting", "nat", NF_INET_POST_ROUTING, PRIORITY_SRCNAT),
            chain("prerouting", "nat", NF_INET_PRE_ROUTING, PRIORITY_DSTNAT),
            chain("output", "nat", NF_INET_LOCAL_OUT, PRIORITY_DSTNAT),
            chain("forward", "filter", NF_INET_FORWARD, PRIORITY_FILTER),
        ];
        let (net, mask) = (self.cluster_cidr.network(), self.cluster_cidr.mask());
        for (source, dir) in [(true, "from"), (false, "to")] {
            let mut exprs: Vec<Expr> = expr::ip_addr_in(source, net, mask, true).into();
            exprs.push(expr::accept());
            steps.push(rule("forward", format!("accept forwarding {dir} {}", self.cluster_cidr), exprs));
        }
        let multicast: Ipv4Network = Ipv4Network::new(Ipv4Addr::new(224, 0, 0, 0), 4).expect("valid prefix");
        let mut masq: Vec<Expr> = Vec::new();
        masq.extend(expr::ip_addr_in(true, net, mask, true));
        masq.extend(expr::ip_addr_in(false, net, mask, false));
        masq.extend(expr::ip_addr_in(false, multicast.network(), multicast.mask(), false));
        masq.push(expr::masquerade());
        steps.push(rule("postrouting", format!("masquerade for {} leaving it", self.cluster_cidr), masq));
        // A pod's own reply to a DNATed peer on the same bridge would otherwise bypass the
        // reverse NAT; sending the request from the bridge address brings it back through here.
        let (pod_net, pod_mask) = (self.pod_cidr.network(), self.pod_cidr.mask());
        let mut hairpin: Vec<Expr> = Vec::new();
        hairpin.extend(expr::ip_addr_in(true, pod_net, pod_mask, true));
        hairpin.extend(expr::ip_addr_in(false, pod_net, pod_mask, true));
        hairpin.extend(expr::ct_status_dnat(REG1));
        hairpin.push(expr::masquerade());
        steps.push(rule("postrouting", format!("hairpin masquerade inside {}", self.pod_cidr), hairpin));
        for hp in &self.host_ports {
            for chain in ["prerouting", "output"] {
                let p = &hp.port;
                let what = format!(
                    "hostPort {:?} {}:{} -> {}:{}",
                    p.protocol,
                    p.host_ip.map_or("*".into(), |ip| ip.to_string()),
                    p.host_port,
                    hp.pod_ip,
                    p.container_port
                );
                steps.push(rule(chain, what, host_port_rule(hp)));
            }
        }
        steps
    }
}

fn step(what: impl Into<String>, msg: u16, flags: u16, attrs: Attrs) -> Step {
    Step { what: what.into(), kind: (NFNL_SUBSYS_NFTABLES << 8) | msg, flags: NLM_F_REQUEST | NLM_F_ACK | flags, attrs }
}

fn chain(name: &str, kind: &str, hook: u32, priority: i32) -> Step {
    let hook_attrs = Attrs::new().be32(1, hook).be32(2, priority as u32);
    let attrs = Attrs::new().str(1, TABLE).str(3, name).nested(4, hook_attrs).str(7, kind);
    step(format!("creating chain {name}"), NFT_MSG_NEWCHAIN, NLM_F_CREATE, attrs)
}

fn rule(chain: &str, what: String, exprs: Vec<Expr>) -> Step {
    let attrs = Attrs::new().str(1, TABLE).str(2, chain).nested(4, expr::list(exprs));
    step(format!("rule {what} in chain {chain}"), NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, attrs)
}

/// `[ip daddr HOST_IP | fib daddr type local] ip protocol P th dport HOST_PORT dnat to POD:PORT`.
fn host_port_rule(hp: &PodHostPort) -> Vec<Expr> {
    let p = &hp.port;
    let mut exprs = match p.host_ip.filter(|ip| !ip.is_unspecified()) {
        Some(ip) => vec![expr::payload(REG1, Base::Network, 16, 4), expr::cmp(REG1, true, &ip.octets())],
        None => vec![expr::fib_daddr_type(REG1), expr::cmp(REG1, true, &expr::rtn_local())],
    };
    let proto: u8 = match p.protocol {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
    };
    exprs.extend([
        expr::payload(REG1, Base::Network, 9, 1),
        expr::cmp(REG1, true, &[proto]),
        expr::payload(REG1, Base::Transport, 2, 2),
        expr::cmp(REG1, true, &p.host_port.to_be_bytes()),
        expr::immediate(REG1, &hp.pod_ip.octets()),
        expr::immediate(REG2, &p.container_port.to_be_bytes()),
        expr::dnat(REG1, REG2),
    ]);
    exprs
}

/// Sends `steps` as one batch and waits until the kernel has acknowledged each of them.
fn transact(netns: Option<&Path>, steps: Vec<Step>) -> Result<(), NftError> {
    let socket = netns::run_in(netns, || Socket::new(NETLINK_NETFILTER))?.map_err(NftError::Socket)?;
    set_receive_timeout(&socket)?;
    let subsys = NFNL_SUBSYS_NFTABLES;
    let mut batch = wire::message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, 0, subsys, &Attrs::new());
    for (i, s) in steps.iter().enumerate() {
        batch.extend(wire::message(s.kind, s.flags, i as u32 + 1, NFPROTO_IPV4, 0, &s.attrs));
    }
    batch.extend(wire::message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, steps.len() as u32 + 1, 0, subsys, &Attrs::new()));
    socket.send(&batch, 0).map_err(NftError::Socket)?;
    let mut acked = 0;
    while acked < steps.len() {
        let (buf, _) = socket.recv_from_full().map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => NftError::Unconfirmed { acked, expected: steps.len() },
            _ => NftError::Socket(e),
        })?;
        for reply in wire::parse_replies(&buf) {
            match reply.error {
                Some(0) => acked += 1,
                Some(code) => {
                    let step = steps.get((reply.seq as usize).wrapping_sub(1)).map_or("the batch".to_string(), |s| s.what.clone());
                    return Err(NftError::Refused { step, errno: -code });
                }
                None => {}
            }
        }
    }
    Ok(())
}

fn set_receive_timeout(socket: &Socket) -> Result<(), NftError> {
    let tv = libc::timeval { tv_sec: REPLY_TIMEOUT.as_secs() as libc::time_t, tv_usec: 0 };
    // SAFETY: a valid socket fd and a correctly sized timeval.
    let ret = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(socket),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(NftError::Socket(std::io::Error::last_os_error()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_per_chain_and_host_port() {
        let rules = NatRules {
            cluster_cidr: "10.42.0.0/16".parse().unwrap(),
            pod_cidr: "10.42.1.0/24".parse().unwrap(),
            host_ports: vec![PodHostPort {
                pod_ip: Ipv4Addr::new(10, 42, 1, 5),
                port: HostPort { protocol: Protocol::Tcp, host_ip: None, host_port: 8080, container_port: 80 },
            }],
        };
        let what: Vec<_> = rules.steps().into_iter().map(|s| s.what).collect();
        assert_eq!(what.len(), 7 + 2 + 2 + 2);
        assert_eq!(what[7], "rule accept forwarding from 10.42.0.0/16 in chain forward");
        assert_eq!(what[8], "rule accept forwarding to 10.42.0.0/16 in chain forward");
        assert_eq!(what[9], "rule masquerade for 10.42.0.0/16 leaving it in chain postrouting");
        assert_eq!(what[10], "rule hairpin masquerade inside 10.42.1.0/24 in chain postrouting");
        assert_eq!(what[11], "rule hostPort Tcp *:8080 -> 10.42.1.5:80 in chain prerouting");
        assert!(what[12].ends_with("in chain output"));
    }
}
