//! The table `ip orch`: masquerade for traffic from the cluster CIDR leaving it and for hairpin
//! hostPort traffic (a pod of this node reaching a pod of this node through a hostPort; the
//! hostPort DNAT marks it), both in `postrouting`, and hostPort DNAT (`prerouting` for traffic
//! arriving at the node, `output` for the node's own), and in `forward` an accept for traffic
//! from or to the cluster CIDR (pods of other nodes come through the overlay). The whole table is
//! replaced in one nf_tables transaction every time, so the rules always match the node's pods exactly.

use std::net::Ipv4Addr;
use std::path::Path;

use ipnetwork::Ipv4Network;

use super::expr::{self, Expr};
use super::{base_chain, replace_table, rule, transact, NftError, Step};
use super::{
    NF_INET_FORWARD, NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING, NF_INET_PRE_ROUTING, PRIORITY_DSTNAT, PRIORITY_FILTER, PRIORITY_SRCNAT,
};
use crate::net::pod_network::{HostPort, Protocol};

/// The table orch owns (family `ip`).
pub const TABLE: &str = "orch";

/// The packet mark bit a hostPort DNAT sets, so `postrouting` can masquerade hairpin hostPort
/// traffic (and nothing else, e.g. not a Service's) inside the podCIDR.
const HOST_PORT_MARK: u32 = 0x2000;

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

impl NatRules {
    /// Replaces table `ip orch` in the namespace at `netns` (this process's when `None`).
    pub fn apply(&self, netns: Option<&Path>) -> Result<(), NftError> {
        transact(netns, self.steps())
    }

    fn steps(&self) -> Vec<Step> {
        let mut steps = replace_table(TABLE);
        steps.extend([
            base_chain(TABLE, "postrouting", "nat", NF_INET_POST_ROUTING, PRIORITY_SRCNAT),
            base_chain(TABLE, "prerouting", "nat", NF_INET_PRE_ROUTING, PRIORITY_DSTNAT),
            base_chain(TABLE, "output", "nat", NF_INET_LOCAL_OUT, PRIORITY_DSTNAT),
            base_chain(TABLE, "forward", "filter", NF_INET_FORWARD, PRIORITY_FILTER),
        ]);
        let (net, mask) = (self.cluster_cidr.network(), self.cluster_cidr.mask());
        for (source, dir) in [(true, "from"), (false, "to")] {
            let mut exprs: Vec<Expr> = expr::ip_addr_in(source, net, mask, true).into();
            exprs.push(expr::accept());
            steps.push(rule(TABLE, "forward", format!("accept forwarding {dir} {}", self.cluster_cidr), exprs));
        }
        let multicast: Ipv4Network = Ipv4Network::new(Ipv4Addr::new(224, 0, 0, 0), 4).expect("valid prefix");
        let mut masq: Vec<Expr> = Vec::new();
        masq.extend(expr::ip_addr_in(true, net, mask, true));
        masq.extend(expr::ip_addr_in(false, net, mask, false));
        masq.extend(expr::ip_addr_in(false, multicast.network(), multicast.mask(), false));
        masq.push(expr::masquerade());
        steps.push(rule(TABLE, "postrouting", format!("masquerade for {} leaving it", self.cluster_cidr), masq));
        // Like the portmap CNI plugin: a pod reaching a hostPort of this node is masqueraded, so
        // a pod reaching its own hostPort does not see its own address as the source.
        let (pod_net, pod_mask) = (self.pod_cidr.network(), self.pod_cidr.mask());
        let mut hairpin: Vec<Expr> = Vec::new();
        hairpin.extend(expr::ip_addr_in(true, pod_net, pod_mask, true));
        hairpin.extend(expr::ip_addr_in(false, pod_net, pod_mask, true));
        hairpin.extend(expr::mark_has(HOST_PORT_MARK));
        hairpin.extend(expr::mark_set(HOST_PORT_MARK, false));
        hairpin.push(expr::masquerade());
        steps.push(rule(TABLE, "postrouting", format!("hairpin masquerade inside {}", self.pod_cidr), hairpin));
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
                steps.push(rule(TABLE, chain, what, host_port_rule(hp)));
            }
        }
        steps
    }
}

/// `[ip daddr HOST_IP | fib daddr type local] ip protocol P th dport HOST_PORT meta mark set
/// mark | HOST_PORT_MARK dnat to POD:PORT`.
fn host_port_rule(hp: &PodHostPort) -> Vec<Expr> {
    let p = &hp.port;
    let mut exprs: Vec<Expr> = match p.host_ip.filter(|ip| !ip.is_unspecified()) {
        Some(ip) => expr::ip_addr_is(false, ip).into(),
        None => expr::addr_is_local(true).into(),
    };
    let proto: u8 = match p.protocol {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
    };
    exprs.extend(expr::proto_port(proto, p.host_port));
    exprs.extend(expr::mark_set(HOST_PORT_MARK, true));
    exprs.extend(expr::dnat_to(hp.pod_ip, p.container_port));
    exprs
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
