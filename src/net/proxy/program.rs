//! The nftables program of table `ip orch-proxy` for a set of [`ServicePort`]s, modelled on
//! kube-proxy's nftables mode. `services` looks the destination up in verdict maps
//! (`service-ips`: address . protocol . port, `service-nodeports` on local addresses:
//! protocol . port), so its cost does not grow with the number of Services; the map sends a
//! ClusterIP to the port's `svc-` chain, an external IP or NodePort to its `ext-` chain (which
//! applies the externalTrafficPolicy). `svc-` picks one endpoint at random (`numgen random mod
//! N`, as a cascade of 1/N, 1/(N-1), … so the choice is uniform) and DNATs to it; `svl-` does
//! the same over this node's endpoints. Traffic that needs masquerading (to a ClusterIP from
//! outside the cluster CIDR, external traffic with policy Cluster, an endpoint reaching itself:
//! source and destination after DNAT in set `hairpin-endpoints`) is marked and masqueraded in
//! `postrouting`. A port without endpoints is in `no-endpoint-services` / `no-endpoint-nodeports`
//! and rejected (TCP reset, or ICMP port unreachable) before DNAT by `endpoints-check`. With
//! `sessionAffinity: ClientIP` each endpoint has a set `aff-` of the clients it served recently
//! (entries time out), and a client in one goes back to that endpoint.
//!
//! [`Table`] is what the table holds; [`Table::full`] replaces the table with it and
//! [`Table::changes`] turns an applied table into it with only the chains, sets and map elements
//! that differ.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnetwork::Ipv4Network;

use super::model::{Endpoint, Proto, ServicePort};
use crate::net::nft::expr;
use crate::net::nft::{address_set, base_chain, delete_chain, delete_set, flush_chain, keyed_set, regular_chain, replace_table};
use crate::net::nft::{rule, set_elements, Expr, Step};
use crate::net::nft::{NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING, NF_INET_PRE_ROUTING, PRIORITY_DSTNAT, PRIORITY_SRCNAT};

/// The proxy's table (family `ip`), kube-proxy's is `kube-proxy`.
pub const TABLE: &str = "orch-proxy";
/// The mark bit of packets to masquerade (kube-proxy's).
const MASQ_MARK: u32 = 0x4000;

const SERVICES: &str = "services";
const CHECK: &str = "endpoints-check";
const MARK: &str = "mark-for-masquerade";
const MASQUERADING: &str = "masquerading";
const REJECT: &str = "reject-chain";

const SERVICE_IPS: &str = "service-ips";
const SERVICE_NODEPORTS: &str = "service-nodeports";
const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
const HAIRPIN: &str = "hairpin-endpoints";

/// The sets every table has: name, (key type, key length), whether a verdict map.
const FIXED_SETS: [(&str, (u32, u32), bool); 5] = [
    (SERVICE_IPS, expr::SERVICE_KEY, true),
    (SERVICE_NODEPORTS, expr::NODE_PORT_KEY, true),
    (NO_ENDPOINT_SERVICES, expr::SERVICE_KEY, true),
    (NO_ENDPOINT_NODEPORTS, expr::NODE_PORT_KEY, true),
    (HAIRPIN, expr::ADDRESS_PAIR_KEY, false),
];

/// One rule's expressions from arrays, vectors and single expressions (`[e]`).
macro_rules! exprs {
    ($($part:expr),* $(,)?) => {{
        let mut v: Vec<Expr> = Vec::new();
        $(v.extend($part);)*
        v
    }};
}

/// A base chain's hook: type, hook number and priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hook {
    kind: &'static str,
    hook: u32,
    priority: i32,
}

/// A rule with what it does (for errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Rule {
    pub(super) what: String,
    exprs: Vec<Expr>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Chain {
    hook: Option<Hook>,
    pub(super) rules: Vec<Rule>,
}

/// What table `ip orch-proxy` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Table {
    pub(super) chains: BTreeMap<String, Chain>,
    /// The affinity sets and their timeouts.
    pub(super) affinity_sets: BTreeMap<String, Duration>,
    /// The elements of the [`FIXED_SETS`]: key and, in a verdict map, the chain to go to.
    pub(super) elements: BTreeMap<&'static str, BTreeMap<Vec<u8>, Option<String>>>,
}

impl Table {
    /// The steps that replace the table (whatever it holds) by `self`.
    pub(crate) fn full(&self) -> Vec<Step> {
        let mut steps = replace_table(TABLE);
        for (id, (name, (key_type, key_len), verdicts)) in FIXED_SETS.into_iter().enumerate() {
            steps.push(keyed_set(TABLE, name, id as u32 + 1, key_type, key_len, verdicts));
        }
        steps.extend(self.changes(&Table::default()));
        steps
    }

    /// The steps that turn table `old` (as applied) into `self`: new chains and sets first,
    /// then gone or changed map elements out, changed chains flushed and refilled, new
    /// elements in, and last the chains and sets nothing refers to any more deleted.
    pub(crate) fn changes(&self, old: &Table) -> Vec<Step> {
        let mut steps = Vec::new();
        for (name, chain) in self.chains.iter().filter(|(name, _)| !old.chains.contains_key(*name)) {
            steps.push(match chain.hook {
                Some(h) => base_chain(TABLE, name, h.kind, h.hook, h.priority),
                None => regular_chain(TABLE, name),
            });
        }
        let mut set_id = FIXED_SETS.len() as u32;
        for (name, timeout) in self.affinity_sets.iter().filter(|(name, _)| !old.affinity_sets.contains_key(*name)) {
            set_id += 1;
            steps.push(address_set(TABLE, name, set_id, *timeout));
        }
        let empty = BTreeMap::new();
        for (set, _, _) in FIXED_SETS {
            let (before, after) = (old.elements.get(set).unwrap_or(&empty), self.elements.get(set).unwrap_or(&empty));
            let gone = before.iter().filter(|(key, goto)| after.get(*key) != Some(*goto));
            steps.extend(set_elements(TABLE, set, false, gone.map(|(key, _)| (&key[..], None))));
        }
        for (name, chain) in &old.chains {
            if !chain.rules.is_empty() && self.chains.get(name).is_none_or(|c| c.rules != chain.rules) {
                steps.push(flush_chain(TABLE, name));
            }
        }
        for (name, chain) in &self.chains {
            if old.chains.get(name).is_none_or(|c| c.rules != chain.rules) {
                steps.extend(chain.rules.iter().map(|r| rule(TABLE, name, r.what.clone(), r.exprs.clone())));
            }
        }
        for (set, _, _) in FIXED_SETS {
            let (before, after) = (old.elements.get(set).unwrap_or(&empty), self.elements.get(set).unwrap_or(&empty));
            let new = after.iter().filter(|(key, goto)| before.get(*key) != Some(*goto));
            steps.extend(set_elements(TABLE, set, true, new.map(|(key, goto)| (&key[..], goto.as_deref()))));
        }
        steps.extend(old.chains.keys().filter(|name| !self.chains.contains_key(*name)).map(|name| delete_chain(TABLE, name)));
        steps.extend(old.affinity_sets.keys().filter(|name| !self.affinity_sets.contains_key(*name)).map(|name| delete_set(TABLE, name)));
        steps
    }

    fn chain(&mut self, name: &str) {
        self.chains.entry(name.to_string()).or_default();
    }

    fn base_chain(&mut self, name: &str, kind: &'static str, hook: u32, priority: i32) {
        self.chains.insert(name.to_string(), Chain { hook: Some(Hook { kind, hook, priority }), rules: Vec::new() });
    }

    fn rule(&mut self, chain: &str, what: impl Into<String>, exprs: Vec<Expr>) {
        self.chains.entry(chain.to_string()).or_default().rules.push(Rule { what: what.into(), exprs });
    }

    /// Adds `key` to `set` (going to `goto` in a map) unless an earlier port has it already.
    fn element(&mut self, set: &'static str, key: Vec<u8>, goto: Option<&str>) {
        self.elements.entry(set).or_default().entry(key).or_insert_with(|| goto.map(str::to_string));
    }
}

/// The table holding the rules for `ports`.
pub(crate) fn table(ports: &[ServicePort], cluster_cidr: Option<Ipv4Network>) -> Table {
    let mut t = Table::default();
    t.base_chain("nat-prerouting", "nat", NF_INET_PRE_ROUTING, PRIORITY_DSTNAT);
    t.base_chain("nat-output", "nat", NF_INET_LOCAL_OUT, PRIORITY_DSTNAT);
    t.base_chain("nat-postrouting", "nat", NF_INET_POST_ROUTING, PRIORITY_SRCNAT);
    t.base_chain("filter-prerouting", "filter", NF_INET_PRE_ROUTING, PRIORITY_DSTNAT - 10);
    t.base_chain("filter-output", "filter", NF_INET_LOCAL_OUT, PRIORITY_DSTNAT - 10);
    for chain in ["nat-prerouting", "nat-output"] {
        t.rule(chain, "to the services", vec![expr::jump(SERVICES, false)]);
    }
    for chain in ["filter-prerouting", "filter-output"] {
        t.rule(chain, "new connections to the endpoint check", exprs![expr::ct_state_new(), [expr::jump(CHECK, false)]]);
    }
    t.rule("nat-postrouting", "to masquerading", vec![expr::jump(MASQUERADING, false)]);
    t.rule(MARK, "mark", expr::mark_set(MASQ_MARK, true).into());
    t.rule(MASQUERADING, "hairpin", exprs![expr::address_pair_in(HAIRPIN), [expr::jump(MARK, false)]]);
    t.rule(MASQUERADING, "unmarked", exprs![expr::mark_lacks(MASQ_MARK), [expr::ret()]]);
    t.rule(MASQUERADING, "marked", exprs![expr::mark_set(MASQ_MARK, false), [expr::masquerade()]]);
    t.rule(REJECT, "tcp", exprs![expr::ip_protocol(Proto::Tcp.number()), [expr::reject(true)]]);
    t.rule(REJECT, "others", vec![expr::reject(false)]);
    // Node ports on the node's addresses, but not on loopback (as kube-proxy by default).
    let loopback: Ipv4Network = Ipv4Network::new(std::net::Ipv4Addr::new(127, 0, 0, 0), 8).expect("valid prefix");
    let node_addresses = exprs![expr::addr_is_local(true), expr::ip_addr_in(false, loopback.network(), loopback.mask(), false)];
    t.rule(SERVICES, "service IPs", expr::service_vmap(SERVICE_IPS).into());
    t.rule(SERVICES, "node ports", exprs![node_addresses.clone(), expr::node_port_vmap(SERVICE_NODEPORTS)]);
    t.rule(CHECK, "service IPs without endpoints", expr::service_vmap(NO_ENDPOINT_SERVICES).into());
    t.rule(CHECK, "node ports without endpoints", exprs![node_addresses, expr::node_port_vmap(NO_ENDPOINT_NODEPORTS)]);
    for port in ports {
        service_port(&mut t, port, cluster_cidr);
    }
    t
}

fn service_port(t: &mut Table, port: &ServicePort, cluster_cidr: Option<Ipv4Network>) {
    let id = &port.id;
    let (svc, svl, ext) = (format!("svc-{id}"), format!("svl-{id}"), format!("ext-{id}"));
    let proto = port.proto.number();
    let key = |ip| expr::service_key(ip, proto, port.port);
    for ep in port.cluster.iter().chain(&port.local) {
        t.element(HAIRPIN, expr::address_pair_key(ep.ip, ep.ip), None);
        if let Some(timeout) = port.affinity {
            t.affinity_sets.insert(affinity_set(id, ep), timeout);
        }
    }
    if !port.cluster.is_empty() {
        t.chain(&svc);
        let mut outside: Vec<Expr> = match cluster_cidr {
            Some(c) => expr::ip_addr_in(true, c.network(), c.mask(), false).into(),
            None => Vec::new(),
        };
        outside.push(expr::jump(MARK, false));
        t.rule(&svc, "from outside the cluster", outside);
        pick(t, &svc, port, &port.cluster);
    }
    let local_chain = (port.internal_local || port.external_local) && !port.local.is_empty();
    if local_chain {
        t.chain(&svl);
        pick(t, &svl, port, &port.local);
    }
    if let Some(ip) = port.cluster_ip {
        if port.internal().is_empty() {
            t.element(NO_ENDPOINT_SERVICES, key(ip), Some(REJECT));
        } else {
            t.element(SERVICE_IPS, key(ip), Some(if port.internal_local { &svl } else { &svc }));
        }
    }
    if !port.has_external() {
        return;
    }
    if port.cluster.is_empty() {
        for ip in &port.external_ips {
            t.element(NO_ENDPOINT_SERVICES, key(*ip), Some(REJECT));
        }
        if let Some(np) = port.node_port {
            t.element(NO_ENDPOINT_NODEPORTS, expr::node_port_key(proto, np), Some(REJECT));
        }
        return;
    }
    t.chain(&ext);
    if port.external_local {
        // Pods and the node itself may use any endpoint (kube-proxy's short-circuit).
        if let Some(c) = cluster_cidr {
            let pods = exprs![expr::ip_addr_in(true, c.network(), c.mask(), true), [expr::jump(&svc, true)]];
            t.rule(&ext, "pods to any endpoint", pods);
        }
        t.rule(&ext, "masquerade the node's own", exprs![expr::addr_is_local(false), [expr::jump(MARK, false)]]);
        t.rule(&ext, "the node's own to any endpoint", exprs![expr::addr_is_local(false), [expr::jump(&svc, true)]]);
        let last = if local_chain { expr::jump(&svl, true) } else { expr::drop_packet() };
        t.rule(&ext, "to a local endpoint", vec![last]);
    } else {
        t.rule(&ext, "masquerade", vec![expr::jump(MARK, false)]);
        t.rule(&ext, "to any endpoint", vec![expr::jump(&svc, true)]);
    }
    for ip in &port.external_ips {
        t.element(SERVICE_IPS, key(*ip), Some(&ext));
    }
    if let Some(np) = port.node_port {
        t.element(SERVICE_NODEPORTS, expr::node_port_key(proto, np), Some(&ext));
    }
}

/// Rules of `chain` that DNAT to one of `endpoints`: with affinity back to the endpoint a
/// client used before (refreshing its entry), else each with the same probability.
fn pick(t: &mut Table, chain: &str, port: &ServicePort, endpoints: &[Endpoint]) {
    let id = &port.id;
    let dnat = |ep: &Endpoint| -> Vec<Expr> {
        let mut exprs: Vec<Expr> = Vec::new();
        if let Some(timeout) = port.affinity {
            exprs.extend(expr::update_set_with_saddr(&affinity_set(id, ep), timeout));
        }
        exprs.extend(expr::ip_protocol(port.proto.number()));
        exprs.extend(expr::dnat_to(ep.ip, ep.port));
        exprs
    };
    if port.affinity.is_some() {
        for ep in endpoints {
            let back = exprs![expr::saddr_in_set(&affinity_set(id, ep)), dnat(ep)];
            t.rule(chain, format!("clients of {}:{}", ep.ip, ep.port), back);
        }
    }
    let n = endpoints.len();
    for (i, ep) in endpoints.iter().enumerate() {
        let mut exprs: Vec<Expr> = if i + 1 < n { expr::one_in((n - i) as u32).into() } else { Vec::new() };
        exprs.extend(dnat(ep));
        t.rule(chain, format!("to {}:{}", ep.ip, ep.port), exprs);
    }
}

fn affinity_set(id: &str, ep: &Endpoint) -> String {
    format!("aff-{id}/{}:{}", ep.ip, ep.port)
}
