//! Resource accounting as kube-scheduler does it: a pod's effective requests (app containers
//! summed, init containers as a running maximum with sidecars, plus overhead; a limit stands in
//! for a missing request) and the "non-zero" requests used only for scoring.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::k8s::quantity;

/// Default CPU request (millicores) assumed for scoring when a container sets none.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Default memory request (bytes) assumed for scoring when a container sets none.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of every resource the scheduler tracks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Only meaningful for node allocatable: how many pods fit.
    pub pods: i64,
    /// Extended and hugepages resources, by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Reads a resource list (node allocatable or a container's requests).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Self {
        let mut out = Resources::default();
        for (name, q) in list {
            out.set(name, q);
        }
        out
    }

    fn set(&mut self, name: &str, q: &Quantity) {
        match name {
            "cpu" => self.milli_cpu = quantity::milli_value(q).unwrap_or(0),
            "memory" => self.memory = quantity::value(q).unwrap_or(0),
            "ephemeral-storage" => self.ephemeral_storage = quantity::value(q).unwrap_or(0),
            "pods" => self.pods = quantity::value(q).unwrap_or(0),
            other if is_scalar(other) => {
                self.scalar.insert(other.to_string(), quantity::value(q).unwrap_or(0));
            }
            _ => {}
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0 && self.memory == 0 && self.ephemeral_storage == 0 && self.scalar.values().all(|v| *v == 0)
    }
}

/// Extended resources (`example.com/foo`), hugepages and attachable volumes count like cpu.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-") || name.starts_with("attachable-volumes-") || name.contains('/')
}

/// A container's requests, with limits standing in for missing requests.
fn container_requests(res: Option<&ResourceRequirements>) -> Resources {
    let mut out = Resources::default();
    let Some(res) = res else { return out };
    if let Some(limits) = &res.limits {
        for (name, q) in limits {
            out.set(name, q);
        }
    }
    if let Some(requests) = &res.requests {
        for (name, q) in requests {
            out.set(name, q);
        }
    }
    out
}

/// Whether the container sets (as request or limit) the named resource.
fn sets(res: Option<&ResourceRequirements>, name: &str) -> bool {
    res.is_some_and(|r| {
        r.requests.as_ref().is_some_and(|m| m.contains_key(name)) || r.limits.as_ref().is_some_and(|m| m.contains_key(name))
    })
}

/// Requests with kube-scheduler's defaults filled in for cpu and memory a container leaves unset.
fn non_zero_container_requests(c: &Container) -> Resources {
    let res = c.resources.as_ref();
    let mut out = container_requests(res);
    if !sets(res, "cpu") {
        out.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
    }
    if !sets(res, "memory") {
        out.memory = DEFAULT_MEMORY_REQUEST;
    }
    out
}

/// The pod's effective requests (`PodRequests` in Kubernetes).
pub fn pod_requests(pod: &Pod) -> Resources {
    pod_requests_with(pod, |c| container_requests(c.resources.as_ref()))
}

/// The pod's requests with scoring defaults for unset cpu/memory (`NonMissingContainerRequests`).
pub fn pod_non_zero_requests(pod: &Pod) -> Resources {
    pod_requests_with(pod, non_zero_container_requests)
}

fn pod_requests_with(pod: &Pod, per_container: impl Fn(&Container) -> Resources) -> Resources {
    let Some(spec) = &pod.spec else { return Resources::default() };
    let mut reqs = Resources::default();
    for c in &spec.containers {
        reqs.add(&per_container(c));
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let mut r = per_container(c);
        if c.restart_policy.as_deref() == Some("Always") {
            reqs.add(&r);
            sidecars.add(&r);
            r = sidecars.clone();
        } else {
            r.add(&sidecars);
        }
        init_max.max_with(&r);
    }
    reqs.max_with(&init_max);
    if let Some(overhead) = &spec.overhead {
        reqs.add(&Resources::from_list(overhead));
    }
    reqs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({ "metadata": { "name": "p" }, "spec": spec })).unwrap()
    }

    #[test]
    fn sums_app_containers_and_takes_init_maximum() {
        let p = pod(json!({
            "containers": [
                { "name": "a", "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } } },
                { "name": "b", "resources": { "requests": { "cpu": "200m" }, "limits": { "memory": "128Mi" } } }
            ],
            "initContainers": [
                { "name": "i1", "resources": { "requests": { "cpu": "1", "memory": "10Mi" } } },
                { "name": "i2", "resources": { "requests": { "cpu": "50m", "memory": "1Gi" } } }
            ],
            "overhead": { "cpu": "10m" }
        }));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 1010, "max(300m, 1) + overhead");
        assert_eq!(r.memory, 1 << 30, "max(64Mi + 128Mi from the limit, 1Gi)");
    }

    #[test]
    fn sidecars_add_to_app_containers_and_later_init_containers() {
        let p = pod(json!({
            "containers": [ { "name": "a", "resources": { "requests": { "cpu": "100m" } } } ],
            "initContainers": [
                { "name": "side", "restartPolicy": "Always", "resources": { "requests": { "cpu": "200m" } } },
                { "name": "init", "resources": { "requests": { "cpu": "250m" } } }
            ]
        }));
        assert_eq!(pod_requests(&p).milli_cpu, 450, "max(100m + 200m, 200m + 250m)");
    }

    #[test]
    fn non_zero_defaults_only_for_unset_resources() {
        let p = pod(json!({ "containers": [
            { "name": "a" },
            { "name": "b", "resources": { "requests": { "cpu": "0", "memory": "1Mi" } } }
        ] }));
        let r = pod_non_zero_requests(&p);
        assert_eq!(r.milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(r.memory, DEFAULT_MEMORY_REQUEST + (1 << 20));
        assert!(pod_requests(&p).milli_cpu == 0);
    }

    #[test]
    fn extended_resources_are_scalar() {
        let r = Resources::from_list(&[("nvidia.com/gpu".to_string(), Quantity("2".into()))].into());
        assert_eq!(r.scalar["nvidia.com/gpu"], 2);
    }
}
