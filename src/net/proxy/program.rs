//! The nftables program of table `ip orch-proxy` for a set of [`ServicePort`]s, modelled on
//! kube-proxy's nftables mode: `services` sends a ClusterIP or external IP to the port's chain
//! and local addresses to `nodeports`; a port's `svc-` chain picks one endpoint at random
//! (`numgen random mod N`, as a cascade of 1/N, 1/(N-1), … so the choice is uniform) and goes
//! to that endpoint's `ep-` chain, which DNATs; `svl-` does the same over this node's
//! endpoints; `ext-` applies the externalTrafficPolicy. Traffic that needs masquerading
//! (to a ClusterIP from outside the cluster CIDR, external traffic with policy Cluster, an
//! endpoint reaching itself) is marked and masqueraded in `postrouting`. A port with no endpoints
//! is rejected (TCP reset, or ICMP port unreachable) before DNAT in `endpoints-check`. With
//! `sessionAffinity: ClientIP` each endpoint has a set `aff-` of the clients it served recently
//! (entries time out), and a client in one goes back to that endpoint.

use ipnetwork::Ipv4Network;

use super::model::{Endpoint, ServicePort};
use crate::net::nft::expr;
use crate::net::nft::{address_set, base_chain, regular_chain, replace_table, rule, Expr, Step};
use crate::net::nft::{NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING, NF_INET_PRE_ROUTING, PRIORITY_DSTNAT, PRIORITY_SRCNAT};

/// The proxy's table (family `ip`), kube-proxy's is `kube-proxy`.
pub const TABLE: &str = "orch-proxy";
/// The mark bit of packets to masquerade (kube-proxy's).
const MASQ_MARK: u32 = 0x4000;

const SERVICES: &str = "services";
const NODEPORTS: &str = "nodeports";
const CHECK: &str = "endpoints-check";
const MARK: &str = "mark-for-masquerade";
const MASQUERADING: &str = "masquerading";

/// One rule's expressions from arrays, vectors and single expressions (`[e]`).
macro_rules! exprs {
    ($($part:expr),* $(,)?) => {{
        let mut v: Vec<Expr> = Vec::new();
        $(v.extend($part);)*
        v
    }};
}

/// The steps that replace table `ip orch-proxy` with the rules for `ports`.
pub(crate) fn steps(ports: &[ServicePort], cluster_cidr: Option<Ipv4Network>) -> Vec<Step> {
    let mut p = Program { chains: replace_table(TABLE), rules: Vec::new(), sets: 0 };
    p.chains.extend([
        base_chain(TABLE, "nat-prerouting", "nat", NF_INET_PRE_ROUTING, PRIORITY_DSTNAT),
        base_chain(TABLE, "nat-output", "nat", NF_INET_LOCAL_OUT, PRIORITY_DSTNAT),
        base_chain(TABLE, "nat-postrouting", "nat", NF_INET_POST_ROUTING, PRIORITY_SRCNAT),
        base_chain(TABLE, "filter-prerouting", "filter", NF_INET_PRE_ROUTING, PRIORITY_DSTNAT - 10),
        base_chain(TABLE, "filter-output", "filter", NF_INET_LOCAL_OUT, PRIORITY_DSTNAT - 10),
    ]);
    for name in [SERVICES, NODEPORTS, CHECK, MARK, MASQUERADING] {
        p.chains.push(regular_chain(TABLE, name));
    }
    for chain in ["nat-prerouting", "nat-output"] {
        p.rule(chain, "to the services", vec![expr::jump(SERVICES, false)]);
    }
    for chain in ["filter-prerouting", "filter-output"] {
        p.rule(chain, "new connections to the endpoint check", exprs![expr::ct_state_new(), [expr::jump(CHECK, false)]]);
    }
    p.rule("nat-postrouting", "to masquerading", vec![expr::jump(MASQUERADING, false)]);
    p.rule(MARK, "mark", expr::mark_set(MASQ_MARK, true).into());
    p.rule(MASQUERADING, "unmarked", exprs![expr::mark_lacks(MASQ_MARK), [expr::ret()]]);
    p.rule(MASQUERADING, "marked", exprs![expr::mark_set(MASQ_MARK, false), [expr::masquerade()]]);
    for port in ports {
        p.service_port(port, cluster_cidr);
    }
    // Node ports on the node's addresses, but not on loopback (as kube-proxy by default).
    let loopback: Ipv4Network = Ipv4Network::new(std::net::Ipv4Addr::new(127, 0, 0, 0), 8).expect("valid prefix");
    let mut to_nodeports: Vec<Expr> = expr::addr_is_local(true).into();
    to_nodeports.extend(expr::ip_addr_in(false, loopback.network(), loopback.mask(), false));
    to_nodeports.push(expr::jump(NODEPORTS, false));
    p.rule(SERVICES, "local addresses to the node ports", to_nodeports);
    p.chains.extend(p.rules);
    p.chains
}

/// Chains and sets first (rules refer to them), then rules.
struct Program {
    chains: Vec<Step>,
    rules: Vec<Step>,
    /// Sets created so far (their ids in the batch).
    sets: u32,
}

impl Program {
    fn rule(&mut self, chain: &str, what: impl Into<String>, exprs: Vec<Expr>) {
        self.rules.push(rule(TABLE, chain, what.into(), exprs));
    }

    fn chain(&mut self, name: &str) {
        self.chains.push(regular_chain(TABLE, name));
    }

    fn service_port(&mut self, port: &ServicePort, cluster_cidr: Option<Ipv4Network>) {
        let id = &port.id;
        let (svc, svl, ext) = (format!("svc-{id}"), format!("svl-{id}"), format!("ext-{id}"));
        let proto = port.proto.number();
        let dest = |ip| exprs![expr::ip_addr_is(false, ip), expr::proto_port(proto, port.port)];
        let reject = |mut exprs: Vec<Expr>| {
            exprs.push(expr::reject(port.proto == super::model::Proto::Tcp));
            exprs
        };
        let mut endpoints: Vec<Endpoint> = port.cluster.iter().chain(&port.local).copied().collect();
        endpoints.sort();
        endpoints.dedup();
        for ep in &endpoints {
            let chain = ep_chain(id, ep);
            self.chain(&chain);
            let hairpin = exprs![expr::ip_addr_is(true, ep.ip), [expr::jump(MARK, false)]];
            self.rule(&chain, format!("hairpin {}", ep.ip), hairpin);
            if let Some(timeout) = port.affinity {
                let set = affinity_set(id, ep);
                self.sets += 1;
                self.chains.push(address_set(TABLE, &set, self.sets, timeout));
                self.rule(&chain, "remember the client", expr::update_set_with_saddr(&set, timeout).into());
            }
            let dnat = exprs![expr::ip_protocol(proto), expr::dnat_to(ep.ip, ep.port)];
            self.rule(&chain, format!("dnat to {}:{}", ep.ip, ep.port), dnat);
        }
        if !port.cluster.is_empty() {
            self.chain(&svc);
            let mut outside: Vec<Expr> = match cluster_cidr {
                Some(c) => expr::ip_addr_in(true, c.network(), c.mask(), false).into(),
                None => Vec::new(),
            };
            outside.push(expr::jump(MARK, false));
            self.rule(&svc, "from outside the cluster", outside);
            self.pick(&svc, port, &port.cluster);
        }
        let local_chain = (port.internal_local || port.external_local) && !port.local.is_empty();
        if local_chain {
            self.chain(&svl);
            self.pick(&svl, port, &port.local);
        }
        if let Some(ip) = port.cluster_ip {
            if port.internal().is_empty() {
                self.rule(CHECK, format!("{id} has no endpoints"), reject(dest(ip)));
            } else {
                let target = if port.internal_local { &svl } else { &svc };
                self.rule(SERVICES, format!("{id} cluster IP"), exprs![dest(ip), [expr::jump(target, true)]]);
            }
        }
        if !port.has_external() {
            return;
        }
        if port.cluster.is_empty() {
            for ip in &port.external_ips {
                self.rule(CHECK, format!("{id} has no endpoints"), reject(dest(*ip)));
            }
            if let Some(np) = port.node_port {
                let exprs = exprs![expr::addr_is_local(true), expr::proto_port(proto, np)];
                self.rule(CHECK, format!("{id} has no endpoints"), reject(exprs));
            }
            return;
        }
        self.chain(&ext);
        if port.external_local {
            // Pods and the node itself may use any endpoint (kube-proxy's short-circuit).
            if let Some(c) = cluster_cidr {
                let pods = exprs![expr::ip_addr_in(true, c.network(), c.mask(), true), [expr::jump(&svc, true)]];
                self.rule(&ext, "pods to any endpoint", pods);
            }
            self.rule(&ext, "masquerade the node's own", exprs![expr::addr_is_local(false), [expr::jump(MARK, false)]]);
            self.rule(&ext, "the node's own to any endpoint", exprs![expr::addr_is_local(false), [expr::jump(&svc, true)]]);
            let last = if local_chain { expr::jump(&svl, true) } else { expr::drop_packet() };
            self.rule(&ext, "to a local endpoint", vec![last]);
        } else {
            self.rule(&ext, "masquerade", vec![expr::jump(MARK, false)]);
            self.rule(&ext, "to any endpoint", vec![expr::jump(&svc, true)]);
        }
        for ip in &port.external_ips {
            self.rule(SERVICES, format!("{id} external IP {ip}"), exprs![dest(*ip), [expr::jump(&ext, true)]]);
        }
        if let Some(np) = port.node_port {
            self.rule(NODEPORTS, format!("{id} node port {np}"), exprs![expr::proto_port(proto, np), [expr::jump(&ext, true)]]);
        }
    }

    /// Rules of `chain` that go to one of `endpoints`: with affinity back to the endpoint a
    /// client used before, else each with the same probability.
    fn pick(&mut self, chain: &str, port: &ServicePort, endpoints: &[Endpoint]) {
        let id = &port.id;
        if port.affinity.is_some() {
            for ep in endpoints {
                let back = exprs![expr::saddr_in_set(&affinity_set(id, ep)), [expr::jump(&ep_chain(id, ep), true)]];
                self.rule(chain, format!("clients of {}:{}", ep.ip, ep.port), back);
            }
        }
        let n = endpoints.len();
        for (i, ep) in endpoints.iter().enumerate() {
            let mut exprs: Vec<Expr> = if i + 1 < n { expr::one_in((n - i) as u32).into() } else { Vec::new() };
            exprs.push(expr::jump(&ep_chain(id, ep), true));
            self.rule(chain, format!("to {}:{}", ep.ip, ep.port), exprs);
        }
    }
}

fn ep_chain(id: &str, ep: &Endpoint) -> String {
    format!("ep-{id}/{}:{}", ep.ip, ep.port)
}

fn affinity_set(id: &str, ep: &Endpoint) -> String {
    format!("aff-{id}/{}:{}", ep.ip, ep.port)
}
