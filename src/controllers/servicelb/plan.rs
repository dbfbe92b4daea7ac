//! Which nodes serve which LoadBalancer Service, as k3s's ServiceLB decides by running one
//! `svclb` pod with host ports per Service on every eligible node: a node is eligible when it
//! is Ready, carries no taint those pods do not tolerate and — when any node has the label
//! `svccontroller.k3s.cattle.io/enablelb=true` — has that label; it serves a Service when no
//! older Service already holds one of its ports (port + protocol) there. The Service's
//! ingress is the serving nodes' ExternalIPs, or their InternalIPs when none has an ExternalIP.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, Service};

/// The node label that, once any node carries it as `true`, limits ServiceLB to those nodes.
pub const ENABLE_LB_LABEL: &str = "svccontroller.k3s.cattle.io/enablelb";

/// Taint keys the `svclb` pods tolerate (k3s's own tolerations plus the DaemonSet ones).
const TOLERATED: &[&str] = &[
    "CriticalAddonsOnly",
    "node-role.kubernetes.io/master",
    "node-role.kubernetes.io/control-plane",
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/disk-pressure",
    "node.kubernetes.io/memory-pressure",
    "node.kubernetes.io/pid-pressure",
    "node.kubernetes.io/unschedulable",
    "node.kubernetes.io/network-unavailable",
];

/// A Service's `namespace/name`.
pub type Key = (String, String);

/// Whether ServiceLB serves `svc`: type LoadBalancer without a `loadBalancerClass` (a class
/// hands it to another load balancer implementation).
pub fn is_served(svc: &Service) -> bool {
    svc.spec.as_ref().is_some_and(|s| s.type_.as_deref() == Some("LoadBalancer") && s.load_balancer_class.is_none())
}

fn key(svc: &Service) -> Key {
    (svc.metadata.namespace.clone().unwrap_or_default(), svc.metadata.name.clone().unwrap_or_default())
}

fn is_ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

fn tolerated(node: &Node) -> bool {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    taints.into_iter().flatten().all(|t| t.effect == "PreferNoSchedule" || TOLERATED.contains(&t.key.as_str()))
}

fn enable_lb(node: &Node) -> bool {
    node.metadata.labels.as_ref().and_then(|l| l.get(ENABLE_LB_LABEL)).is_some_and(|v| v == "true")
}

/// The nodes ServiceLB may use, sorted by name.
fn eligible<'a>(nodes: &[&'a Node]) -> Vec<&'a Node> {
    let labelled = nodes.iter().any(|n| enable_lb(n));
    let mut out: Vec<&Node> = nodes.iter().copied().filter(|n| is_ready(n) && tolerated(n) && (!labelled || enable_lb(n))).collect();
    out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out
}

/// The (port, protocol) pairs a Service holds on every node serving it.
fn ports(svc: &Service) -> Vec<(i32, String)> {
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
    ports.into_iter().flatten().map(|p| (p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into()))).collect()
}

/// The ingress addresses of a Service served by `nodes`: ExternalIPs when any node has one,
/// else InternalIPs, of the Service's IP families only, sorted.
fn addresses(svc: &Service, nodes: &[&Node]) -> Vec<String> {
    let (mut external, mut internal) = (BTreeSet::new(), BTreeSet::new());
    for a in nodes.iter().flat_map(|n| n.status.as_ref().and_then(|s| s.addresses.as_ref()).into_iter().flatten()) {
        match a.type_.as_str() {
            "ExternalIP" => external.insert(a.address.clone()),
            "InternalIP" => internal.insert(a.address.clone()),
            _ => false,
        };
    }
    let families = svc.spec.as_ref().and_then(|s| s.ip_families.clone()).unwrap_or_default();
    let family_ok = |ip: &String| match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => families.is_empty() || families.iter().any(|f| f == "IPv4"),
        Ok(IpAddr::V6(_)) => families.is_empty() || families.iter().any(|f| f == "IPv6"),
        Err(_) => false,
    };
    let chosen = if external.is_empty() { internal } else { external };
    chosen.into_iter().filter(family_ok).collect()
}

/// The ingress addresses of every Service ServiceLB serves among `services` (empty: no node
/// can serve it). Older Services claim their ports first, as their `svclb` pods would have.
pub fn plan(services: &[&Service], nodes: &[&Node]) -> BTreeMap<Key, Vec<String>> {
    let mut ordered: Vec<&Service> = services.iter().copied().filter(|s| is_served(s)).collect();
    ordered.sort_by(|a, b| {
        let created = |s: &Service| s.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(a).cmp(&created(b)).then_with(|| key(a).cmp(&key(b)))
    });
    let eligible = eligible(nodes);
    let mut held: HashSet<(&str, i32, String)> = HashSet::new();
    let mut out = BTreeMap::new();
    for svc in ordered {
        let wanted = ports(svc);
        let mut serving = Vec::new();
        for node in &eligible {
            let name = node.metadata.name.as_deref().unwrap_or_default();
            if wanted.iter().any(|(port, proto)| held.contains(&(name, *port, proto.clone()))) {
                continue;
            }
            held.extend(wanted.iter().map(|(port, proto)| (name, *port, proto.clone())));
            serving.push(*node);
        }
        out.insert(key(svc), addresses(svc, &serving));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, ready: bool, labels: serde_json::Value, addresses: &[(&str, &str)], taints: serde_json::Value) -> Node {
        let addresses: Vec<_> = addresses.iter().map(|(t, a)| json!({"type": t, "address": a})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
            "status": {
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "addresses": addresses,
            }
        }))
        .unwrap()
    }

    fn plain(name: &str, ip: &str) -> Node {
        node(name, true, json!({}), &[("InternalIP", ip), ("Hostname", name)], json!([]))
    }

    fn lb(name: &str, created: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": name, "creationTimestamp": created},
            "spec": {"type": "LoadBalancer", "ports": ports, "ipFamilies": ["IPv4"]},
        }))
        .unwrap()
    }

    fn ingress<'a>(plan: &'a BTreeMap<Key, Vec<String>>, name: &str) -> &'a [String] {
        &plan[&("default".to_string(), name.to_string())]
    }

    #[test]
    fn every_ready_node_serves_and_external_ips_win() {
        let nodes = [
            plain("a", "192.0.2.1"),
            plain("b", "192.0.2.2"),
            node("down", false, json!({}), &[("InternalIP", "192.0.2.3")], json!([])),
            node("tainted", true, json!({}), &[("InternalIP", "192.0.2.4")], json!([{"key": "dedicated", "effect": "NoSchedule"}])),
            node(
                "control",
                true,
                json!({}),
                &[("InternalIP", "192.0.2.5")],
                json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
            ),
        ];
        let refs: Vec<&Node> = nodes.iter().collect();
        let web = lb("web", "2026-01-01T00:00:00Z", json!([{"port": 80, "protocol": "TCP"}]));
        let plan = plan(&[&web], &refs);
        assert_eq!(ingress(&plan, "web"), ["192.0.2.1", "192.0.2.2", "192.0.2.5"]);

        let ext = node("c", true, json!({}), &[("InternalIP", "192.0.2.6"), ("ExternalIP", "203.0.113.6")], json!([]));
        let refs: Vec<&Node> = nodes.iter().chain([&ext]).collect();
        assert_eq!(ingress(&super::plan(&[&web], &refs), "web"), ["203.0.113.6"], "ExternalIPs when any node has one");
    }

    #[test]
    fn the_enablelb_label_restricts_once_any_node_has_it() {
        let nodes = [plain("a", "192.0.2.1"), node("b", true, json!({ENABLE_LB_LABEL: "true"}), &[("InternalIP", "192.0.2.2")], json!([]))];
        let refs: Vec<&Node> = nodes.iter().collect();
        let web = lb("web", "2026-01-01T00:00:00Z", json!([{"port": 80, "protocol": "TCP"}]));
        assert_eq!(ingress(&plan(&[&web], &refs), "web"), ["192.0.2.2"]);
    }

    #[test]
    fn one_service_per_port_and_protocol_on_a_node_the_oldest_wins() {
        let nodes = [plain("a", "192.0.2.1")];
        let refs: Vec<&Node> = nodes.iter().collect();
        let old = lb("old", "2026-01-01T00:00:00Z", json!([{"port": 80, "protocol": "TCP"}]));
        let new = lb("new", "2026-01-02T00:00:00Z", json!([{"port": 443, "protocol": "TCP"}, {"port": 80, "protocol": "TCP"}]));
        let udp = lb("udp", "2026-01-03T00:00:00Z", json!([{"port": 80, "protocol": "UDP"}]));
        let mut class = lb("classy", "2025-01-01T00:00:00Z", json!([{"port": 80, "protocol": "UDP"}]));
        class.spec.as_mut().unwrap().load_balancer_class = Some("example.com/other".into());
        let plan = plan(&[&new, &udp, &old, &class], &refs);
        assert_eq!(ingress(&plan, "old"), ["192.0.2.1"]);
        assert!(ingress(&plan, "new").is_empty(), "port 80/TCP is taken on the only node");
        assert_eq!(ingress(&plan, "udp"), ["192.0.2.1"], "80/UDP is another port");
        assert!(!plan.contains_key(&("default".to_string(), "classy".to_string())), "another class is not ServiceLB's");
    }
}
