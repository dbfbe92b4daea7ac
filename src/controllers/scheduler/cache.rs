//! The scheduler's cache of cluster state: every node with the pods bound to it, plus pods
//! assumed onto a node while their binding is in flight. Owned by the scheduling loop, which
//! filters and scores straight over it (no per-pod copy of the world).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use super::node_info::NodeInfo;
use super::pod_info::PodInfo;

#[derive(Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// Node each cached pod (by key) sits on.
    pod_nodes: HashMap<String, String>,
    assumed: HashSet<String>,
    /// Number of entries in `nodes` with a Node object.
    known_nodes: usize,
}

/// What a node update means for pods waiting as unschedulable.
#[derive(Debug, PartialEq, Eq)]
pub enum NodeChange {
    /// New node, or one whose labels, taints, allocatable or unschedulable flag changed.
    Relevant,
    Irrelevant,
}

impl Cache {
    /// All node infos, including placeholders for nodes whose object is not known (check `.node`).
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// How many nodes the scheduler can place pods on.
    pub fn node_count(&self) -> usize {
        self.known_nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    fn entry(&mut self, name: &str) -> &mut NodeInfo {
        let i = match self.index.get(name) {
            Some(i) => *i,
            None => {
                self.nodes.push(NodeInfo::new(name));
                self.index.insert(name.to_string(), self.nodes.len() - 1);
                self.nodes.len() - 1
            }
        };
        &mut self.nodes[i]
    }

    pub fn upsert_node(&mut self, node: Arc<Node>) -> NodeChange {
        let name = node.metadata.name.clone().unwrap_or_default();
        let info = self.entry(&name);
        let change = match &info.node {
            None => NodeChange::Relevant,
            Some(old) => {
                let spec_changed =
                    old.spec.as_ref().map(|s| (&s.taints, s.unschedulable)) != node.spec.as_ref().map(|s| (&s.taints, s.unschedulable));
                let allocatable_changed =
                    old.status.as_ref().and_then(|s| s.allocatable.as_ref()) != node.status.as_ref().and_then(|s| s.allocatable.as_ref());
                if spec_changed || allocatable_changed || old.metadata.labels != node.metadata.labels {
                    NodeChange::Relevant
                } else {
                    NodeChange::Irrelevant
                }
            }
        };
        let was_known = info.node.is_some();
        info.set_node(node);
        if !was_known {
            self.known_nodes += 1;
        }
        change
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(&i) = self.index.get(name) else { return };
        if self.nodes[i].node.take().is_some() {
            self.known_nodes -= 1;
        }
        self.drop_if_empty(i);
    }

    fn drop_if_empty(&mut self, i: usize) {
        let info = &self.nodes[i];
        if info.node.is_some() || !info.pods.is_empty() {
            return;
        }
        self.index.remove(&info.name);
        self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
    }

    /// Records a pod bound to `node` (from the informer): confirms an assumed pod or replaces
    /// an older version of it.
    pub fn add_bound_pod(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.assumed.remove(&pod.key);
        self.remove_pod(&pod.key);
        self.pod_nodes.insert(pod.key.clone(), node.to_string());
        self.entry(node).add_pod(pod);
    }

    /// Counts `pod` on `node` before its binding is confirmed.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.add_bound_pod(pod.clone(), node);
        self.assumed.insert(pod.key.clone());
    }

    pub fn is_assumed(&self, key: &str) -> bool {
        self.assumed.contains(key)
    }

    /// Drops an assumed pod whose binding failed (a confirmed pod stays).
    pub fn forget(&mut self, key: &str) {
        if self.assumed.remove(key) {
            self.remove_pod(key);
        }
    }

    /// Removes a pod wherever it is; returns whether it was cached.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        self.assumed.remove(key);
        let Some(node) = self.pod_nodes.remove(key) else { return false };
        if let Some(&i) = self.index.get(&node) {
            self.nodes[i].remove_pod(key);
            self.drop_if_empty(i);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: &str) -> Arc<Node> {
        Arc::new(serde_json::from_value(json!({ "metadata": { "name": name }, "status": { "allocatable": { "cpu": cpu } } })).unwrap())
    }

    fn pod(name: &str) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(
            serde_json::from_value(json!({ "metadata": { "name": name, "namespace": "d" },
                "spec": { "containers": [ { "name": "c", "resources": { "requests": { "cpu": "1" } } } ] } }))
            .unwrap(),
        )))
    }

    #[test]
    fn assume_confirm_and_forget() {
        let mut cache = Cache::default();
        assert_eq!(cache.upsert_node(node("n1", "4")), NodeChange::Relevant);
        assert_eq!(cache.upsert_node(node("n1", "4")), NodeChange::Irrelevant);
        assert_eq!(cache.upsert_node(node("n1", "8")), NodeChange::Relevant);
        cache.assume(pod("a"), "n1");
        cache.assume(pod("b"), "n1");
        assert_eq!(cache.node("n1").unwrap().requested.milli_cpu, 2000);
        cache.add_bound_pod(pod("a"), "n1");
        assert!(!cache.is_assumed("d/a"));
        cache.forget("d/a");
        cache.forget("d/b");
        assert_eq!(cache.node("n1").unwrap().requested.milli_cpu, 1000, "the confirmed pod stays");
    }

    #[test]
    fn pods_on_unknown_nodes_and_node_removal() {
        let mut cache = Cache::default();
        cache.add_bound_pod(pod("a"), "ghost");
        assert_eq!(cache.node_count(), 0);
        cache.upsert_node(node("ghost", "1"));
        cache.upsert_node(node("n2", "1"));
        assert_eq!(cache.node_count(), 2);
        cache.remove_node("ghost");
        assert_eq!(cache.node_count(), 1);
        assert!(cache.node("ghost").is_some(), "still holds a pod");
        assert!(cache.remove_pod("d/a"));
        assert!(cache.node("ghost").is_none());
        assert_eq!(cache.node("n2").unwrap().name, "n2");
    }
}
