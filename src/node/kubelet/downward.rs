//! The downward API: a pod's own fields (`fieldRef`) and its containers' resources
//! (`resourceFieldRef`) as strings, for environment variables and downwardAPI volumes.

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::k8s::quantity::{milli_value, value};

/// A downward API reference this node cannot resolve.
#[derive(Debug, thiserror::Error)]
pub enum DownwardError {
    #[error("unsupported fieldPath {0:?}")]
    Field(String),
    #[error("unsupported resource {0:?}")]
    Resource(String),
}

/// The addresses a pod has when its containers start.
#[derive(Debug, Clone, Default)]
pub struct PodAddresses {
    pub pod_ip: String,
    pub host_ip: String,
}

/// What a container gets for a resource without a limit: the node's allocatable amount.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeAllocatable {
    pub millicpu: i64,
    pub memory: i64,
}

fn map_entry(map: Option<&std::collections::BTreeMap<String, String>>, key: &str) -> String {
    map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
}

/// `key="value"` lines of a label or annotation map, sorted (as the kubelet writes them).
fn map_lines(map: Option<&std::collections::BTreeMap<String, String>>) -> String {
    map.into_iter().flatten().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join("\n")
}

/// The value of `fieldRef.fieldPath`, or an error naming the unsupported path.
pub fn field(pod: &Pod, path: &str, addrs: &PodAddresses) -> Result<String, DownwardError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let bracketed = |prefix: &str| path.strip_prefix(prefix).and_then(|r| r.strip_suffix("']")).map(str::to_string);
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => map_lines(meta.labels.as_ref()),
        "metadata.annotations" => map_lines(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => addrs.host_ip.clone(),
        "status.podIP" | "status.podIPs" => addrs.pod_ip.clone(),
        _ => {
            if let Some(k) = bracketed("metadata.labels['") {
                map_entry(meta.labels.as_ref(), &k)
            } else if let Some(k) = bracketed("metadata.annotations['") {
                map_entry(meta.annotations.as_ref(), &k)
            } else {
                return Err(DownwardError::Field(path.to_string()));
            }
        }
    })
}

fn ceil_div(a: i64, b: i64) -> i64 {
    if b <= 0 {
        a
    } else {
        (a + b - 1) / b
    }
}

/// The value of `resourceFieldRef` (`limits.cpu`, `requests.memory` …) of `container`, divided by `divisor`.
pub fn resource(container: &Container, resource: &str, divisor: Option<&Quantity>, node: NodeAllocatable) -> Result<String, DownwardError> {
    let unsupported = || DownwardError::Resource(resource.to_string());
    let res = container.resources.clone().unwrap_or_default();
    let (kind, name) = resource.split_once('.').ok_or_else(unsupported)?;
    let list = match kind {
        "limits" => res.limits.unwrap_or_default(),
        "requests" => res.requests.unwrap_or_default(),
        _ => return Err(unsupported()),
    };
    let q = list.get(name);
    match name {
        "cpu" => {
            let millis = q.and_then(milli_value).unwrap_or(if kind == "limits" { node.millicpu } else { 0 });
            let div = divisor.and_then(milli_value).filter(|d| *d > 0).unwrap_or(1000);
            Ok(ceil_div(millis, div).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let fallback = if kind == "limits" && name == "memory" { node.memory } else { 0 };
            let bytes = q.and_then(value).unwrap_or(fallback);
            let div = divisor.and_then(value).filter(|d| *d > 0).unwrap_or(1);
            Ok(ceil_div(bytes, div).to_string())
        }
        _ => Err(unsupported()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_and_resources() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "web", "tier": "a"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}}}]}
        }))
        .unwrap();
        let addrs = PodAddresses { pod_ip: "10.42.0.5".into(), host_ip: "192.0.2.1".into() };
        assert_eq!(field(&pod, "metadata.namespace", &addrs).unwrap(), "ns");
        assert_eq!(field(&pod, "metadata.labels['app']", &addrs).unwrap(), "web");
        assert_eq!(field(&pod, "metadata.labels", &addrs).unwrap(), "app=\"web\"\ntier=\"a\"");
        assert_eq!(field(&pod, "status.podIP", &addrs).unwrap(), "10.42.0.5");
        assert!(field(&pod, "spec.bogus", &addrs).is_err());
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let node = NodeAllocatable { millicpu: 4000, memory: 1 << 30 };
        assert_eq!(resource(c, "limits.cpu", None, node).unwrap(), "1");
        assert_eq!(resource(c, "limits.cpu", Some(&Quantity("1m".into())), node).unwrap(), "250");
        assert_eq!(resource(c, "limits.memory", Some(&Quantity("1Mi".into())), node).unwrap(), "64");
        assert_eq!(resource(c, "requests.memory", None, node).unwrap(), "0");
    }
}
