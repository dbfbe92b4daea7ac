//! The proxy's model and program for tables of Services and EndpointSlices.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::model::{desired, Endpoint, ProxyConfig};
use super::program::steps;

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

fn rules_of(services: &[Service], slices: &[EndpointSlice]) -> Vec<String> {
    steps(&desired(&config(), services, slices), config().cluster_cidr).into_iter().map(|s| s.what).collect()
}

#[test]
fn the_program_dnats_through_service_and_endpoint_chains_and_rejects_without_endpoints() {
    let web = service("web", json!({"type": "NodePort", "clusterIP": "10.43.0.20", "ports": [{"port": 80, "nodePort": 30080}]}));
    let empty = service(
        "empty",
        json!({"type": "NodePort", "clusterIP": "10.43.0.21", "ports": [{"port": 53, "protocol": "UDP", "nodePort": 30053}]}),
    );
    let eps = slice("web", json!([{"port": 8080}]), &[("10.42.1.5", "node-1", json!({})), ("10.42.2.5", "node-2", json!({}))]);
    let what = rules_of(&[web, empty], &[eps]);
    let has = |s: &str| assert!(what.iter().any(|w| w == s), "{s:?} missing from {what:#?}");
    has("creating chain svc-default/web/tcp/");
    has("creating chain ep-default/web/tcp//10.42.1.5:8080");
    has("rule default/web/tcp/ cluster IP in chain services");
    has("rule default/web/tcp/ node port 30080 in chain nodeports");
    has("rule masquerade in chain ext-default/web/tcp/");
    has("rule to 10.42.1.5:8080 in chain svc-default/web/tcp/");
    has("rule to 10.42.2.5:8080 in chain svc-default/web/tcp/");
    has("rule hairpin 10.42.2.5 in chain ep-default/web/tcp//10.42.2.5:8080");
    has("rule dnat to 10.42.2.5:8080 in chain ep-default/web/tcp//10.42.2.5:8080");
    let rejects = what.iter().filter(|w| *w == "rule default/empty/udp/ has no endpoints in chain endpoints-check").count();
    assert_eq!(rejects, 2, "the ClusterIP and the node port of the empty Service are rejected");
    assert!(!what.iter().any(|w| w.contains("svc-default/empty")), "no service chain without endpoints");
}

#[test]
fn external_traffic_policy_local_without_local_endpoints_drops_external_traffic_only() {
    let svc = service(
        "web",
        json!({"type": "NodePort", "clusterIP": "10.43.0.20", "externalTrafficPolicy": "Local", "ports": [{"port": 80, "nodePort": 30080}]}),
    );
    let eps = slice("web", json!([{"port": 8080}]), &[("10.42.2.5", "node-2", json!({}))]);
    let what = rules_of(&[svc], &[eps]);
    let ext: Vec<_> = what.iter().filter(|w| w.ends_with("in chain ext-default/web/tcp/")).map(String::as_str).collect();
    assert_eq!(
        ext,
        [
            "rule pods to any endpoint in chain ext-default/web/tcp/",
            "rule masquerade the node's own in chain ext-default/web/tcp/",
            "rule the node's own to any endpoint in chain ext-default/web/tcp/",
            "rule to a local endpoint in chain ext-default/web/tcp/",
        ]
    );
    assert!(!what.iter().any(|w| w.contains("svl-")), "no local chain without local endpoints (the last rule drops)");
    assert!(
        what.iter().any(|w| w == "rule default/web/tcp/ cluster IP in chain services"),
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
    let what = rules_of(&[svc], &[eps]);
    let svc_chain: Vec<_> = what.iter().filter(|w| w.ends_with("in chain svc-default/web/tcp/")).map(String::as_str).collect();
    assert_eq!(
        svc_chain,
        [
            "rule from outside the cluster in chain svc-default/web/tcp/",
            "rule clients of 10.42.1.5:8080 in chain svc-default/web/tcp/",
            "rule clients of 10.42.2.5:8080 in chain svc-default/web/tcp/",
            "rule to 10.42.1.5:8080 in chain svc-default/web/tcp/",
            "rule to 10.42.2.5:8080 in chain svc-default/web/tcp/",
        ]
    );
    assert!(what.iter().any(|w| w == "creating set aff-default/web/tcp//10.42.1.5:8080"));
    assert!(what.iter().any(|w| w == "rule remember the client in chain ep-default/web/tcp//10.42.1.5:8080"));
}
