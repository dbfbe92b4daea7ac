//! `NodeInfo`: one node and the running totals of the pods bound (or assumed) to it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use super::pod_info::PodInfo;
use super::resources::Resources;

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
pub use crate::k8s::names::HOSTNAME_LABEL;
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// A node (if its object is known yet) and the pods on it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub name: String,
    pub node: Option<Arc<Node>>,
    pub allocatable: Resources,
    pub requested: Resources,
    pub non_zero_requested: Resources,
    pub pods: Vec<Arc<PodInfo>>,
    /// Pods on this node per controller owner uid (default topology spreading).
    pub owner_counts: HashMap<String, u32>,
    /// How many of `pods` carry any inter-pod (anti-)affinity term.
    pub pods_with_affinity: usize,
    /// How many of `pods` carry a required anti-affinity term.
    pub pods_with_required_anti_affinity: usize,
    /// The node's `kubernetes.io/hostname` and `topology.kubernetes.io/zone` labels, looked up
    /// once per node update instead of once per node per scheduled pod (spreading).
    pub hostname_label: Option<String>,
    pub zone_label: Option<String>,
}

impl NodeInfo {
    pub fn new(name: &str) -> Self {
        Self { name: name.to_string(), ..Default::default() }
    }

    /// A node info for `node` with `pods` on it (tests and benchmarks).
    pub fn with_pods(node: Node, pods: impl IntoIterator<Item = PodInfo>) -> Self {
        let mut info = NodeInfo::new(node.metadata.name.as_deref().unwrap_or_default());
        info.set_node(Arc::new(node));
        for p in pods {
            info.add_pod(Arc::new(p));
        }
        info
    }

    pub fn set_node(&mut self, node: Arc<Node>) {
        self.allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref()).map(Resources::from_list).unwrap_or_default();
        let labels = node.metadata.labels.as_ref();
        self.hostname_label = labels.and_then(|l| l.get(HOSTNAME_LABEL)).cloned();
        self.zone_label = labels.and_then(|l| l.get(ZONE_LABEL)).cloned();
        self.node = Some(node);
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.node.as_ref().and_then(|n| n.metadata.labels.as_ref()).unwrap_or(&NO_LABELS)
    }

    pub fn taints(&self) -> &[Taint] {
        self.node.as_ref().and_then(|n| n.spec.as_ref()).and_then(|s| s.taints.as_deref()).unwrap_or_default()
    }

    pub fn unschedulable(&self) -> bool {
        self.node.as_ref().and_then(|n| n.spec.as_ref()).and_then(|s| s.unschedulable).unwrap_or(false)
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.add(&pod.non_zero_requests);
        if let Some(owner) = &pod.owner_uid {
            *self.owner_counts.entry(owner.clone()).or_default() += 1;
        }
        self.pods_with_affinity += usize::from(pod.has_affinity());
        self.pods_with_required_anti_affinity += usize::from(!pod.required_anti_affinity.is_empty());
        self.pods.push(pod);
    }

    /// Removes the pod with `key`; returns it if it was here.
    pub fn remove_pod(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let at = self.pods.iter().position(|p| p.key == key)?;
        let pod = self.pods.swap_remove(at);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.sub(&pod.non_zero_requests);
        if let Some(owner) = &pod.owner_uid {
            if let Some(n) = self.owner_counts.get_mut(owner) {
                *n -= 1;
                if *n == 0 {
                    self.owner_counts.remove(owner);
                }
            }
        }
        self.pods_with_affinity -= usize::from(pod.has_affinity());
        self.pods_with_required_anti_affinity -= usize::from(!pod.required_anti_affinity.is_empty());
        Some(pod)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn totals_follow_pods() {
        let node: Node = serde_json::from_value(json!({
            "metadata": { "name": "n1" }, "status": { "allocatable": { "cpu": "2", "memory": "4Gi", "pods": "110" } }
        }))
        .unwrap();
        let pod = |name: &str| {
            PodInfo::new(Arc::new(
                serde_json::from_value(json!({
                    "metadata": { "name": name, "namespace": "d", "ownerReferences": [
                        { "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs1", "controller": true } ] },
                    "spec": { "containers": [ { "name": "c", "resources": { "requests": { "cpu": "500m" } } } ] }
                }))
                .unwrap(),
            ))
        };
        let mut info = NodeInfo::with_pods(node, [pod("a"), pod("b")]);
        assert_eq!(info.allocatable.pods, 110);
        assert_eq!(info.requested.milli_cpu, 1000);
        assert_eq!(info.non_zero_requested.memory, 2 * crate::controllers::scheduler::resources::DEFAULT_MEMORY_REQUEST);
        assert_eq!(info.owner_counts["rs1"], 2);
        assert!(info.remove_pod("d/a").is_some());
        assert!(info.remove_pod("d/a").is_none());
        assert_eq!(info.requested.milli_cpu, 500);
        assert_eq!(info.owner_counts["rs1"], 1);
    }
}
