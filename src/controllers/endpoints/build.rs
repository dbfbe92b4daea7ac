//! What a Service's endpoints should be, from its selector and the pods' addresses and
//! readiness: the core/v1 Endpoints (subsets grouped by resolved port set, ready and not-ready
//! addresses) and the discovery.k8s.io/v1 EndpointSlices (one or more per port set, at most
//! 100 endpoints each, with ready/serving/terminating conditions). Pure functions.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, EndpointSubset, Endpoints, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
const MAX_PER_SLICE: usize = 100;

/// A resolved port: (name, port, protocol, appProtocol).
type PortKey = (Option<String>, i32, String, Option<String>);

/// Whether the controller maintains this Service's endpoints (it has a selector and is not
/// an ExternalName).
pub fn managed(service: &Service) -> bool {
    let spec = service.spec.as_ref();
    spec.and_then(|s| s.selector.as_ref()).is_some_and(|s| !s.is_empty()) && spec.and_then(|s| s.type_.as_deref()) != Some("ExternalName")
}

/// Whether `service` selects `pod`.
pub fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()).filter(|s| !s.is_empty()) else { return false };
    let labels = pod.labels();
    service.namespace() == pod.namespace() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn resolve(port: &ServicePort, pod: &Pod) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
            containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                .map(|p| p.container_port)
        }
    }
}

/// One selected pod, as an endpoint.
struct Member {
    ip: String,
    ready: bool,
    terminating: bool,
    node: Option<String>,
    hostname: Option<String>,
    target: ObjectReference,
    ports: Vec<PortKey>,
}

fn pod_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The selected pods that have an address and have not finished, sorted by address.
fn members(service: &Service, pods: &[Arc<Pod>]) -> Vec<Member> {
    let ports = service.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default();
    let publish_not_ready = service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let mut out: Vec<Member> = pods
        .iter()
        .filter(|p| selects(service, p))
        .filter_map(|pod| {
            let status = pod.status.as_ref()?;
            let ip = status.pod_ip.clone().filter(|ip| !ip.is_empty())?;
            if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
                return None;
            }
            let resolved: Vec<PortKey> = ports
                .iter()
                .filter_map(|p| {
                    let port = resolve(p, pod)?;
                    Some((p.name.clone(), port, p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.app_protocol.clone()))
                })
                .collect();
            if !ports.is_empty() && resolved.is_empty() {
                return None;
            }
            let spec = pod.spec.as_ref();
            let subdomain_matches = spec.and_then(|s| s.subdomain.as_deref()) == Some(service.name_any().as_str());
            Some(Member {
                ip,
                ready: publish_not_ready || pod_ready(pod),
                terminating: pod.metadata.deletion_timestamp.is_some(),
                node: spec.and_then(|s| s.node_name.clone()),
                hostname: spec.and_then(|s| s.hostname.clone()).filter(|_| subdomain_matches),
                target: ObjectReference {
                    kind: Some("Pod".into()),
                    namespace: pod.namespace(),
                    name: Some(pod.name_any()),
                    uid: pod.uid(),
                    ..Default::default()
                },
                ports: resolved,
            })
        })
        .collect();
    out.sort_by(|a, b| a.ip.cmp(&b.ip).then_with(|| a.target.name.cmp(&b.target.name)));
    out
}

fn labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.labels().clone();
    if service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

/// The Endpoints object for `service` given all `pods` (of any namespace).
pub fn endpoints(service: &Service, pods: &[Arc<Pod>]) -> Endpoints {
    let publish_not_ready = service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let mut groups: BTreeMap<Vec<PortKey>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> = BTreeMap::new();
    for m in members(service, pods).into_iter().filter(|m| !m.terminating || publish_not_ready) {
        let address = EndpointAddress { ip: m.ip, hostname: m.hostname, node_name: m.node, target_ref: Some(m.target) };
        let group = groups.entry(m.ports).or_default();
        if m.ready {
            group.0.push(address)
        } else {
            group.1.push(address)
        }
    }
    let subsets: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: Some(ready).filter(|a| !a.is_empty()),
            not_ready_addresses: Some(not_ready).filter(|a| !a.is_empty()),
            ports: Some(
                ports
                    .into_iter()
                    .map(|(name, port, protocol, app_protocol)| CorePort { name, port, protocol: Some(protocol), app_protocol })
                    .collect::<Vec<_>>(),
            )
            .filter(|p| !p.is_empty()),
        })
        .collect();
    Endpoints {
        metadata: ObjectMeta {
            name: Some(service.name_any()),
            namespace: service.namespace(),
            labels: Some(labels(service)),
            ..Default::default()
        },
        subsets: Some(subsets).filter(|s| !s.is_empty()),
    }
}

fn short_hash(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect::<String>()[..7].to_string()
}

/// The EndpointSlices for `service` given all `pods`: named `<service>-<hash>` after their
/// port set and position, so that reconciling is a matter of comparing by name. A service
/// selecting nothing gets one empty slice.
pub fn slices(service: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSlice> {
    let svc = service.name_any();
    let mut groups: BTreeMap<Vec<PortKey>, Vec<Endpoint>> = BTreeMap::new();
    for m in members(service, pods) {
        let publish_not_ready = service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
        let endpoint = Endpoint {
            addresses: vec![m.ip],
            conditions: Some(EndpointConditions {
                ready: Some(m.ready && (!m.terminating || publish_not_ready)),
                serving: Some(m.ready),
                terminating: Some(m.terminating),
            }),
            hostname: m.hostname,
            node_name: m.node,
            target_ref: Some(m.target),
            ..Default::default()
        };
        groups.entry(m.ports).or_default().push(endpoint);
    }
    if groups.is_empty() {
        groups.insert(Vec::new(), Vec::new());
    }
    let mut labels = labels(service);
    labels.insert(SERVICE_NAME_LABEL.into(), svc.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.clone(),
        uid: service.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let prefix: String = svc.chars().take(56).collect();
    let mut out = Vec::new();
    for (ports, endpoints) in groups {
        let chunks: Vec<Vec<Endpoint>> =
            if endpoints.is_empty() { vec![Vec::new()] } else { endpoints.chunks(MAX_PER_SLICE).map(<[Endpoint]>::to_vec).collect() };
        for (i, chunk) in chunks.into_iter().enumerate() {
            let ports: Vec<EndpointPort> = ports
                .iter()
                .map(|(name, port, protocol, app_protocol)| EndpointPort {
                    name: name.clone(),
                    port: Some(*port),
                    protocol: Some(protocol.clone()),
                    app_protocol: app_protocol.clone(),
                })
                .collect();
            out.push(EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(format!("{prefix}-{}", short_hash(&format!("{ports:?}/{i}")))),
                    namespace: service.namespace(),
                    labels: Some(labels.clone()),
                    owner_references: Some(vec![owner.clone()]),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints: chunk,
                ports: Some(ports),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(
            json!({ "metadata": { "name": "web", "namespace": "default", "uid": "svc-uid", "labels": { "app": "web" } }, "spec": spec }),
        )
        .unwrap()
    }

    fn pod(name: &str, ip: Option<&str>, ready: bool, extra: serde_json::Value) -> Arc<Pod> {
        let mut p = json!({
            "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": { "app": "web" } },
            "spec": { "nodeName": "n1", "containers": [{ "name": "c", "ports": [{ "name": "http", "containerPort": 8080 }] }] },
            "status": { "phase": "Running", "podIP": ip, "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }] },
        });
        json_patch::merge(&mut p, &extra);
        Arc::new(serde_json::from_value(p).unwrap())
    }

    fn web() -> Service {
        service(
            json!({ "selector": { "app": "web" }, "ports": [{ "name": "http", "port": 80, "targetPort": "http", "protocol": "TCP" }, { "name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP" }] }),
        )
    }

    #[test]
    fn endpoints_split_ready_and_not_ready_and_resolve_named_ports() {
        let pods = vec![
            pod("b", Some("10.42.0.3"), true, json!({})),
            pod("a", Some("10.42.0.2"), false, json!({})),
            pod("no-ip", None, true, json!({})),
            pod("done", Some("10.42.0.9"), true, json!({ "status": { "phase": "Succeeded" } })),
            pod("other", Some("10.42.0.5"), true, json!({ "metadata": { "labels": { "app": "db" } } })),
            pod("leaving", Some("10.42.0.6"), true, json!({ "metadata": { "deletionTimestamp": "2025-01-01T00:00:00Z" } })),
        ];
        let ep = endpoints(&web(), &pods);
        let subsets = ep.subsets.unwrap();
        assert_eq!(subsets.len(), 1);
        let ips = |a: &Option<Vec<EndpointAddress>>| a.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>();
        assert_eq!(ips(&subsets[0].addresses), ["10.42.0.3"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.42.0.2"]);
        let ports: Vec<_> = subsets[0].ports.iter().flatten().map(|p| (p.name.clone().unwrap(), p.port)).collect();
        assert_eq!(ports, [("http".to_string(), 8080), ("metrics".to_string(), 9090)]);
        assert_eq!(subsets[0].addresses.as_ref().unwrap()[0].target_ref.as_ref().unwrap().name.as_deref(), Some("b"));
        assert_eq!(ep.metadata.labels.unwrap()["app"], "web");
    }

    #[test]
    fn pods_without_the_named_port_form_their_own_subset() {
        let pods = vec![
            pod("a", Some("10.42.0.2"), true, json!({})),
            pod("b", Some("10.42.0.3"), true, json!({ "spec": { "containers": [{ "name": "c", "ports": [] }] } })),
        ];
        let subsets = endpoints(&web(), &pods).subsets.unwrap();
        assert_eq!(subsets.len(), 2);
        let port_counts: Vec<usize> = subsets.iter().map(|s| s.ports.as_ref().unwrap().len()).collect();
        assert!(port_counts.contains(&1) && port_counts.contains(&2), "{port_counts:?}");
    }

    #[test]
    fn slices_carry_conditions_labels_and_owner() {
        let pods = vec![
            pod("a", Some("10.42.0.2"), true, json!({})),
            pod("leaving", Some("10.42.0.6"), true, json!({ "metadata": { "deletionTimestamp": "2025-01-01T00:00:00Z" } })),
        ];
        let slices = slices(&web(), &pods);
        assert_eq!(slices.len(), 1);
        let s = &slices[0];
        assert!(s.metadata.name.as_ref().unwrap().starts_with("web-"));
        let labels = s.metadata.labels.as_ref().unwrap();
        assert_eq!((labels[SERVICE_NAME_LABEL].as_str(), labels[MANAGED_BY_LABEL].as_str()), ("web", MANAGED_BY));
        assert_eq!(s.metadata.owner_references.as_ref().unwrap()[0].uid, "svc-uid");
        let conds: Vec<_> =
            s.endpoints.iter().map(|e| e.conditions.clone().unwrap()).map(|c| (c.ready, c.serving, c.terminating)).collect();
        assert_eq!(conds, [(Some(true), Some(true), Some(false)), (Some(false), Some(true), Some(true))]);
        assert_eq!(s.endpoints[0].node_name.as_deref(), Some("n1"));
        assert_eq!(s.ports.as_ref().unwrap()[0].port, Some(8080));
    }

    #[test]
    fn empty_services_get_one_empty_slice_and_big_ones_are_split() {
        assert_eq!(slices(&web(), &[]).len(), 1);
        assert!(slices(&web(), &[])[0].endpoints.is_empty());
        let many: Vec<Arc<Pod>> =
            (0..250).map(|i| pod(&format!("p{i}"), Some(&format!("10.42.{}.{}", i / 200, i % 200 + 2)), true, json!({}))).collect();
        let split = slices(&web(), &many);
        assert_eq!(split.iter().map(|s| s.endpoints.len()).collect::<Vec<_>>(), [100, 100, 50]);
        let mut names: Vec<_> = split.iter().map(|s| s.metadata.name.clone()).collect();
        names.dedup();
        assert_eq!(names.len(), 3, "distinct names");
        assert!(!managed(&service(json!({ "ports": [{ "port": 80 }] }))), "no selector: not ours");
    }
}
