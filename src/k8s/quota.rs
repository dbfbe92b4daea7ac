//! What a namespace uses of the resources a ResourceQuota limits, free of I/O: object counts
//! (pods, services, configmaps, secrets, persistentvolumeclaims, `count/<resource>`), Service
//! node ports and load balancers, pod cpu/memory requests and limits, PVC storage requests.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The objects of one namespace the usage is computed from.
#[derive(Debug, Default)]
pub struct Objects {
    pub pods: Vec<Pod>,
    pub services: Vec<Service>,
    pub config_maps: Vec<ConfigMap>,
    pub secrets: Vec<Secret>,
    pub claims: Vec<PersistentVolumeClaim>,
}

/// A quantity in thousandths of its unit (rounded up); `None` if malformed.
pub fn milli(q: &Quantity) -> Option<i128> {
    crate::k8s::quantity::milli_value(q).map(i128::from)
}

/// Formats a usage: cpu in cores or millicores, other resources in whole units with a binary
/// suffix when exact.
pub fn format(resource: &str, millis: i128) -> Quantity {
    if resource.ends_with("cpu") {
        return Quantity(if millis % 1000 == 0 { (millis / 1000).to_string() } else { format!("{millis}m") });
    }
    let units = (millis + 999) / 1000;
    let suffixed = [("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)]
        .iter()
        .find(|(_, shift)| units != 0 && units % (1i128 << shift) == 0)
        .map(|(s, shift)| format!("{}{s}", units >> shift));
    Quantity(suffixed.unwrap_or_else(|| units.to_string()))
}

fn terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// A pod's request or limit of one resource: the larger of its containers' sum and any init
/// container's, plus the pod overhead.
fn pod_amount(pod: &Pod, limits: bool, resource: &str) -> i128 {
    let Some(spec) = &pod.spec else { return 0 };
    let of = |c: &k8s_openapi::api::core::v1::Container| {
        let r = c.resources.as_ref();
        let map = if limits { r.and_then(|r| r.limits.as_ref()) } else { r.and_then(|r| r.requests.as_ref()) };
        map.and_then(|m| m.get(resource)).and_then(milli).unwrap_or(0)
    };
    let sum: i128 = spec.containers.iter().map(of).sum();
    let init = spec.init_containers.iter().flatten().map(of).max().unwrap_or(0);
    let overhead = spec.overhead.as_ref().and_then(|o| o.get(resource)).and_then(milli).unwrap_or(0);
    sum.max(init) + overhead
}

/// The usage of each resource named in `hard` that orch knows how to count.
pub fn used(hard: &BTreeMap<String, Quantity>, objects: &Objects) -> BTreeMap<String, Quantity> {
    let pods: Vec<&Pod> = objects.pods.iter().filter(|p| !terminal(p)).collect();
    let count = |n: usize| Some(n as i128 * 1000);
    let services_of = |t: &'static str| objects.services.iter().filter(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some(t));
    hard.keys()
        .filter_map(|key| {
            let millis = match key.as_str() {
                "pods" | "count/pods" => count(pods.len()),
                "services" | "count/services" => count(objects.services.len()),
                "configmaps" | "count/configmaps" => count(objects.config_maps.len()),
                "secrets" | "count/secrets" => count(objects.secrets.len()),
                "persistentvolumeclaims" | "count/persistentvolumeclaims" => count(objects.claims.len()),
                "services.loadbalancers" => count(services_of("LoadBalancer").count()),
                "services.nodeports" => {
                    let ports = |s: &Service| {
                        s.spec.as_ref().and_then(|s| s.ports.as_ref()).map_or(0, |p| p.iter().filter(|p| p.node_port.is_some()).count())
                    };
                    count(services_of("NodePort").chain(services_of("LoadBalancer")).map(ports).sum())
                }
                "requests.storage" => Some(
                    objects
                        .claims
                        .iter()
                        .filter_map(|c| c.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?.get("storage").and_then(milli))
                        .sum(),
                ),
                "cpu" | "memory" => Some(pods.iter().map(|p| pod_amount(p, false, key)).sum()),
                other => match other.split_once('.') {
                    Some(("requests", r @ ("cpu" | "memory" | "ephemeral-storage"))) => {
                        Some(pods.iter().map(|p| pod_amount(p, false, r)).sum())
                    }
                    Some(("limits", r @ ("cpu" | "memory" | "ephemeral-storage"))) => {
                        Some(pods.iter().map(|p| pod_amount(p, true, r)).sum())
                    }
                    _ => None,
                },
            }?;
            Some((key.clone(), format(key, millis)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_parse_to_thousandths() {
        let q = |s: &str| milli(&Quantity(s.into()));
        assert_eq!(
            (q("1"), q("250m"), q("0.5"), q("1Ki"), q("2Gi"), q("1e3"), q("1k")),
            (Some(1000), Some(250), Some(500), Some(1_024_000), Some(2_147_483_648_000), Some(1_000_000), Some(1_000_000))
        );
        assert_eq!(q("1.5Mi"), Some(1_572_864_000));
        assert_eq!(q("bogus"), None);
        assert_eq!(q("1Qi"), None);
    }

    #[test]
    fn usage_counts_objects_and_sums_pod_resources() {
        let pod = |phase: &str, cpu: &str, mem: &str| -> Pod {
            serde_json::from_value(json!({ "spec": { "containers": [
                { "name": "a", "resources": { "requests": { "cpu": cpu, "memory": mem }, "limits": { "cpu": "1" } } },
                { "name": "b", "resources": { "requests": { "cpu": cpu } } } ] }, "status": { "phase": phase } }))
            .unwrap()
        };
        let objects = Objects {
            pods: vec![pod("Running", "250m", "64Mi"), pod("Pending", "250m", "128Mi"), pod("Succeeded", "4", "1Gi")],
            services: vec![
                serde_json::from_value(json!({ "spec": { "type": "NodePort", "ports": [{ "port": 80, "nodePort": 30001 }] } })).unwrap()
            ],
            ..Default::default()
        };
        let hard: BTreeMap<String, Quantity> =
            ["pods", "requests.cpu", "requests.memory", "limits.cpu", "services", "services.nodeports", "configmaps", "example.com/gpu"]
                .iter()
                .map(|k| (k.to_string(), Quantity("10".into())))
                .collect();
        let used = used(&hard, &objects);
        let get = |k: &str| used.get(k).map(|q| q.0.as_str());
        assert_eq!(get("pods"), Some("2"), "finished pods do not count");
        assert_eq!(get("requests.cpu"), Some("1"));
        assert_eq!(get("requests.memory"), Some("192Mi"));
        assert_eq!(get("limits.cpu"), Some("2"));
        assert_eq!((get("services"), get("services.nodeports"), get("configmaps")), (Some("1"), Some("1"), Some("0")));
        assert_eq!(get("example.com/gpu"), None, "unknown resources are not reported");
    }
}
