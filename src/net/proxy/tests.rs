//! The proxy's model and program for tables of Services and EndpointSlices.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::model::{desired, Endpoint, ProxyConfig};
use super::program::{table, Table};
use crate::net::nft::expr::{address_pair_key, node_port_key, service_key};

fn config() -> ProxyConfig {
    ProxyConfig {
        node_name: "node-1".into(),
        cluster_cidr: Some("10.42.0.0/16".parse().unwrap()),
        served_locally: vec![Ipv4Addr::new(10, 43, 0, 10)],
    }
}

fn service(name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({"metadata": {"namespace": "default", "name": name}, "spec": spec})).unwrap()
}

/// A slice of Service `name` with named ports and endpoints `(ip, node, conditions)`.
fn slice(name: &str, ports: serde_json::Value, endpoints: &[(&str, &str, serde_json::Value)]) -> EndpointSlice {
    let eps: Vec<_> = endpoints.iter().map(|(ip, node, cond)| json!({"addresses": [ip], "nodeName": node, "conditions": cond})).collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": format!("{name}-abc"), "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4", "ports": ports, "endpoints": eps,
    }))
    .unwrap()
}

fn ep(ip: &str, port: u16) -> Endpoint {
    Endpoint { ip: ip.parse().unwrap(), port }
}

#[test]
fn cluster_ip_ports_take_ready_endpoints_by_port_name() {
    let svc = service(
        "web",
        json!({"clusterIP": "10.43.0.20", "ports": [{"name": "http", "port": 80, "targetPort": "web"}, {"name": "dns", "port": 53, "protocol": "UDP"}]}),
    );
    let eps = slice(
        "web",
        json!([{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}]),
        &[
            ("10.42.1.5", "node-1", json!({})),
            ("10.42.2.5", "node-2", json!({"ready": true})),
            ("10.42.2.6", "node-2", json!({"ready": false})),
        ],
    );
    let ports = desired(&config(), &[svc], &[eps]);
    let ids: Vec<_> = ports.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["default/web/tcp/http", "default/web/udp/dns"]);
    assert_eq!(ports[0].cluster, [ep("10.42.1.5", 8080), ep("10.42.2.5", 8080)], "nil ready counts as ready, not ready is left out");
    assert_eq!(ports[0].local, [ep("10.42.1.5", 8080)]);
    assert_eq!(ports[1].cluster, [ep("10.42.1.5", 5353), ep("10.42.2.5", 5353)]);
    assert_eq!((ports[0].cluster_ip, ports[0].node_port), (Some(Ipv4Addr::new(10, 43, 0, 20)), None));
}

#[test]
fn without_ready_endpoints_serving_terminating_ones_are_used() {
    let svc = service("web", json!({"clusterIP": "10.43.0.20", "ports": [{"port": 80}]}));
    let eps = slice(
        "web",
        json!([{"port": 8080}]),
        &[
            ("10.42.1.5", "node-1", json!({"ready": false, "serving": true, "terminating": true})),
            ("10.42.1.6", "node-1", json!({"ready": false, "serving": false, "terminating": true})),
        ],
    );
    assert_eq!(desired(&config(), std::slice::from_ref(&svc), &[eps])[0].cluster, [ep("10.42.1.5", 8080)]);
    let ready = slice(
        "web",
        json!([{"port": 8080}]),
        &[
            ("10.42.1.5", "node-1", json!({"ready": false, "serving": true, "terminating": true})),
            ("10.42.2.7", "node-2", json!({"ready": true})),
        ],
    );
    assert_eq!(desired(&config(), &[svc], &[ready])[0].cluster, [ep("10.42.2.7", 8080)], "ready ones win");
}

#[test]
fn local_traffic_policies_use_this_nodes_endpoints() {
    let svc = service(
        "web",
        json!({"type": "LoadBalancer", "clusterIP": "10.43.0.20", "externalIPs": ["203.0.113.9"], "externalTrafficPolicy": "Local",
               "internalTrafficPolicy": "Local", "ports": [{"port": 80, "nodePort": 30080}]}),
    );
    let mut svc = svc;
    svc.status = serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.4"}]}})).unwrap();
    let eps = slice("web", json!([{"port": 8080}]), &[("10.42.1.5", "node-1", json!({})), ("10.42.2.5", "node-2", json!({}))]);
    let port = &desired(&config(), &[svc], &[eps])[0];
    assert_eq!(port.node_port, Some(30080));
    assert_eq!(port.external_ips, [Ipv4Addr::new(203, 0, 113, 9), Ipv4Addr::new(198, 51, 100, 4)]);
    assert!(port.internal_local && port.external_local);
    assert_eq!(port.internal(), [ep("10.42.1.5", 8080)]);
    assert_eq!(port.cluster.len(), 2);
}

#[test]
fn external_names_headless_and_locally_served_services_are_skipped() {
    let services = [
        service("ext", json!({"type": "ExternalName", "externalName": "example.com"})),
        service("headless", json!({"clusterIP": "None", "ports": [{"port": 80}]})),
        service("kube-dns", json!({"clusterIP": "10.43.0.10", "ports": [{"port": 53, "protocol": "UDP"}]})),
        service("np", json!({"type": "ClusterIP", "clusterIP": "10.43.0.30", "ports": [{"port": 80, "nodePort": 30001}]})),
    ];
    let ports = desired(&config(), &services, &[]);
    assert_eq!(ports.len(), 1);
    assert_eq!((ports[0].id.as_str(), ports[0].node_port), ("default/np/tcp/", None), "a ClusterIP Service has no node port");
}

fn table_of(services: &[Service], slices: &[EndpointSlice]) -> Table {
    table(&desired(&config(), services, slices), config().cluster_cidr)
}

/// The rules of `chain` by what they do.
fn rules_in(t: &Table, chain: &str) -> Vec<String> {
    t.chains.get(chain).map(|c| c.rules.iter().map(|r| r.what.clone()).collect()).unwrap_or_default()
}

/// The chain `set` sends `key` to (`Some(None)` for a plain set's element).
fn element<'a>(t: &'a Table, set: &str, key: &[u8]) -> Option<Option<&'a str>> {
    t.elements.get(set)?.get(key).map(|goto| goto.as_deref())
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn web_and_empty() -> (Vec<Service>, EndpointSlice) {
    let web = service("web", json!({"type": "NodePort", "clusterIP": "10.43.0.20", "ports": [{"port": 80, "nodePort": 30080}]}));
    let empty = service(
        "empty",
        json!({"type": "NodePort", "clusterIP": "10.43.0.21", "ports": [{"port": 53, "protocol": "UDP", "nodePort": 30053}]}),
    );
    let eps = slice("web", json!([{"port": 8080}]), &[("10.42.1.5", "node-1", json!({})), ("10.42.2.5", "node-2", json!({}))]);
    (vec![web, empty], eps)
}

#[test]
fn verdict_maps_send_services_to_their_chains_and_ports_without_endpoints_to_the_reject_chain() {
    let (services, eps) = web_and_empty();
    let t = table_of(&services, &[eps]);
    assert_eq!(element(&t, "service-ips", &service_key(ip("10.43.0.20"), 6, 80)), Some(Some("svc-default/web/tcp/")));
    assert_eq!(element(&t, "service-nodeports", &node_port_key(6, 30080)), Some(Some("ext-default/web/tcp/")));
    assert_eq!(element(&t, "no-endpoint-services", &service_key(ip("10.43.0.21"), 17, 53)), Some(Some("reject-chain")));
    assert_eq!(element(&t, "no-endpoint-nodeports", &node_port_key(17, 30053)), Some(Some("reject-chain")));
    assert_eq!(element(&t, "hairpin-endpoints", &address_pair_key(ip("10.42.2.5"), ip("10.42.2.5"))), Some(None));
    assert_eq!(rules_in(&t, "services"), ["service IPs", "node ports"], "one lookup, however many Services");
    assert_eq!(
        rules_in(&t, "svc-default/web/tcp/"),
        ["from outside the cluster", "to 10.42.1.5:8080", "to 10.42.2.5:8080"],
        "the service chain DNATs to a random endpoint"
    );
    assert_eq!(rules_in(&t, "ext-default/web/tcp/"), ["masquerade", "to any endpoint"]);
    assert!(!t.chains.keys().any(|c| c.contains("default/empty")), "no chains for a Service without endpoints");
}

#[test]
fn external_traffic_policy_local_without_local_endpoints_drops_external_traffic_only() {
    let svc = service(
        "web",
        json!({"type": "NodePort", "clusterIP": "10.43.0.20", "externalTrafficPolicy": "Local", "ports": [{"port": 80, "nodePort": 30080}]}),
    );
    let eps = slice("web", json!([{"port": 8080}]), &[("10.42.2.5", "node-2", json!({}))]);
    let t = table_of(&[svc], &[eps]);
    assert_eq!(
        rules_in(&t, "ext-default/web/tcp/"),
        ["pods to any endpoint", "masquerade the node's own", "the node's own to any endpoint", "to a local endpoint"]
    );
    assert!(!t.chains.keys().any(|c| c.starts_with("svl-")), "no local chain without local endpoints (the last rule drops)");
    assert_eq!(
        element(&t, "service-ips", &service_key(ip("10.43.0.20"), 6, 80)),
        Some(Some("svc-default/web/tcp/")),
        "ClusterIP traffic still uses the remote endpoint"
    );
}

#[test]
fn client_ip_affinity_sends_a_client_back_to_its_endpoint() {
    let svc = service(
        "web",
        json!({"clusterIP": "10.43.0.20", "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
               "ports": [{"port": 80}]}),
    );
    let plain = service("plain", json!({"clusterIP": "10.43.0.21", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}));
    let eps = slice("web", json!([{"port": 8080}]), &[("10.42.1.5", "node-1", json!({})), ("10.42.2.5", "node-2", json!({}))]);
    let ports = desired(&config(), &[svc.clone(), plain], std::slice::from_ref(&eps));
    assert_eq!(ports[0].affinity, Some(std::time::Duration::from_secs(10800)), "the default timeout");
    assert_eq!(ports[1].affinity, Some(std::time::Duration::from_secs(60)));
    let t = table_of(&[svc], &[eps]);
    assert_eq!(
        rules_in(&t, "svc-default/web/tcp/"),
        ["from outside the cluster", "clients of 10.42.1.5:8080", "clients of 10.42.2.5:8080", "to 10.42.1.5:8080", "to 10.42.2.5:8080"]
    );
    assert_eq!(t.affinity_sets.get("aff-default/web/tcp//10.42.1.5:8080"), Some(&std::time::Duration::from_secs(60)));
}

/// What the steps turning `old` into `new` do.
fn changes(old: &Table, new: &Table) -> Vec<String> {
    new.changes(old).into_iter().map(|s| s.what).collect()
}

#[test]
fn the_full_program_creates_the_maps_then_chains_then_rules_then_elements() {
    let (services, eps) = web_and_empty();
    let what: Vec<String> = table_of(&services, &[eps]).full().into_iter().map(|s| s.what).collect();
    assert_eq!(what[..3], ["creating table orch-proxy", "deleting the old table orch-proxy", "creating table orch-proxy"]);
    let at = |s: &str| what.iter().position(|w| w == s).unwrap_or_else(|| panic!("{s:?} missing from {what:#?}"));
    assert!(at("creating set service-ips") < at("creating chain svc-default/web/tcp/"));
    assert!(at("creating chain svc-default/web/tcp/") < at("rule to any endpoint in chain ext-default/web/tcp/"));
    assert!(at("rule to any endpoint in chain ext-default/web/tcp/") < at("adding 1 elements of set service-ips"));
}

#[test]
fn an_unchanged_table_needs_no_steps() {
    let (services, eps) = web_and_empty();
    let t = table_of(&services, &[eps]);
    assert!(changes(&t, &t.clone()).is_empty());
}

#[test]
fn an_endpoint_change_rewrites_only_that_services_chain() {
    let (services, eps) = web_and_empty();
    let old = table_of(&services, &[eps]);
    let fewer = slice("web", json!([{"port": 8080}]), &[("10.42.2.5", "node-2", json!({}))]);
    let new = table_of(&services, &[fewer]);
    assert_eq!(
        changes(&old, &new),
        [
            "deleting 1 elements of set hairpin-endpoints",
            "flushing chain svc-default/web/tcp/",
            "rule from outside the cluster in chain svc-default/web/tcp/",
            "rule to 10.42.2.5:8080 in chain svc-default/web/tcp/",
        ]
    );
}

#[test]
fn a_removed_service_loses_its_elements_then_its_chains() {
    let (services, eps) = web_and_empty();
    let old = table_of(&services, std::slice::from_ref(&eps));
    let new = table_of(&services[1..], &[eps]);
    assert_eq!(
        changes(&old, &new),
        [
            "deleting 1 elements of set service-ips",
            "deleting 1 elements of set service-nodeports",
            "deleting 2 elements of set hairpin-endpoints",
            "flushing chain ext-default/web/tcp/",
            "flushing chain svc-default/web/tcp/",
            "deleting chain ext-default/web/tcp/",
            "deleting chain svc-default/web/tcp/",
        ]
    );
    assert_eq!(changes(&new, &old).iter().filter(|w| w.starts_with("creating chain")).count(), 2, "and back");
}

#[test]
fn a_service_losing_all_endpoints_moves_to_the_reject_maps() {
    let (services, eps) = web_and_empty();
    let old = table_of(&services, &[eps]);
    let new = table_of(&services, &[]);
    let what = changes(&old, &new);
    assert!(what.contains(&"deleting 1 elements of set service-ips".to_string()), "{what:#?}");
    assert!(what.contains(&"adding 1 elements of set no-endpoint-services".to_string()), "{what:#?}");
    assert_eq!(element(&new, "no-endpoint-services", &service_key(ip("10.43.0.20"), 6, 80)), Some(Some("reject-chain")));
    let deleted = what.iter().position(|w| w.starts_with("deleting chain")).unwrap();
    assert!(what[..deleted].iter().any(|w| w == "deleting 1 elements of set service-ips"), "elements go before their chains");
}

#[test]
fn affinity_sets_come_and_go_with_their_endpoints() {
    let svc = service("web", json!({"clusterIP": "10.43.0.20", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}));
    let one = slice("web", json!([{"port": 8080}]), &[("10.42.1.5", "node-1", json!({}))]);
    let two = slice("web", json!([{"port": 8080}]), &[("10.42.1.5", "node-1", json!({})), ("10.42.2.5", "node-2", json!({}))]);
    let (old, new) = (table_of(std::slice::from_ref(&svc), &[one]), table_of(&[svc], &[two]));
    assert!(changes(&old, &new).contains(&"creating set aff-default/web/tcp//10.42.2.5:8080".to_string()));
    let back = changes(&new, &old);
    assert_eq!(back.last().map(String::as_str), Some("deleting set aff-default/web/tcp//10.42.2.5:8080"));
}

#[test]
fn two_services_claiming_one_address_and_port_keep_the_first() {
    let a = service("a", json!({"clusterIP": "10.43.0.20", "externalIPs": ["203.0.113.9"], "ports": [{"port": 80}]}));
    let b = service("b", json!({"clusterIP": "10.43.0.21", "externalIPs": ["203.0.113.9"], "ports": [{"port": 80}]}));
    let eps = [
        slice("a", json!([{"port": 8080}]), &[("10.42.1.5", "node-1", json!({}))]),
        slice("b", json!([{"port": 8080}]), &[("10.42.1.6", "node-1", json!({}))]),
    ];
    let t = table_of(&[b, a], &eps);
    assert_eq!(element(&t, "service-ips", &service_key(ip("203.0.113.9"), 6, 80)), Some(Some("ext-default/a/tcp/")));
}
