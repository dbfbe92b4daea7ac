//! InterPodAffinity: required pod affinity / anti-affinity (the incoming pod's and the existing
//! pods' anti-affinity) as a filter, preferred terms as a score. Both count matching pods per
//! topology domain once per pod (kube's PreFilter/PreScore), so per-node checks are lookups.

use std::collections::{BTreeMap, HashMap};

use super::{Filtered, Rejection, MAX_NODE_SCORE};
use crate::controllers::scheduler::node_info::NodeInfo;
use crate::controllers::scheduler::pod_info::{AffinityTerm, PodInfo, WeightedTerm};

/// Weight of an existing pod's required affinity term that the incoming pod matches.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// topology key → value → count (or score).
#[derive(Debug, Default)]
struct TopologyCounts(HashMap<String, HashMap<String, i64>>);

impl TopologyCounts {
    fn add(&mut self, labels: &BTreeMap<String, String>, key: &str, by: i64) {
        if let Some(value) = labels.get(key) {
            *self.0.entry(key.to_string()).or_default().entry(value.clone()).or_default() += by;
        }
    }

    fn get(&self, key: &str, value: &str) -> i64 {
        self.0.get(key).and_then(|m| m.get(value)).copied().unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn matches_all(terms: &[AffinityTerm], pod: &PodInfo) -> bool {
    terms.iter().all(|t| t.matches(pod))
}

/// Counts for one incoming pod's filter checks.
pub struct InterPodFilter {
    existing_anti: TopologyCounts,
    affinity: TopologyCounts,
    anti_affinity: TopologyCounts,
}

impl InterPodFilter {
    /// `None` when neither the pod nor any existing pod has a required term to check.
    pub fn new(pod: &PodInfo, nodes: &[NodeInfo]) -> Option<Self> {
        let own_terms = !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
        let existing_terms = nodes.iter().any(|n| n.pods_with_required_anti_affinity > 0);
        if !own_terms && !existing_terms {
            return None;
        }
        let mut state = Self {
            existing_anti: TopologyCounts::default(),
            affinity: TopologyCounts::default(),
            anti_affinity: TopologyCounts::default(),
        };
        for node in nodes.iter().filter(|n| n.node.is_some()) {
            let labels = node.labels();
            if node.pods_with_required_anti_affinity > 0 {
                for existing in &node.pods {
                    for term in existing.required_anti_affinity.iter().filter(|t| t.matches(pod)) {
                        state.existing_anti.add(labels, &term.topology_key, 1);
                    }
                }
            }
            if !own_terms {
                continue;
            }
            for existing in &node.pods {
                if !pod.required_affinity.is_empty() && matches_all(&pod.required_affinity, existing) {
                    for term in &pod.required_affinity {
                        state.affinity.add(labels, &term.topology_key, 1);
                    }
                }
                for term in pod.required_anti_affinity.iter().filter(|t| t.matches(existing)) {
                    state.anti_affinity.add(labels, &term.topology_key, 1);
                }
            }
        }
        Some(state)
    }

    pub fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Filtered {
        let labels = node.labels();
        if !self.existing_anti.is_empty() && labels.iter().any(|(k, v)| self.existing_anti.get(k, v) > 0) {
            return Err(Rejection::unschedulable("node(s) didn't satisfy existing pods anti-affinity rules"));
        }
        if !self.satisfies_affinity(pod, labels) {
            return Err(Rejection::unresolvable("node(s) didn't match pod affinity rules"));
        }
        let clash = pod
            .required_anti_affinity
            .iter()
            .any(|t| labels.get(&t.topology_key).is_some_and(|v| self.anti_affinity.get(&t.topology_key, v) > 0));
        if clash {
            return Err(Rejection::unschedulable("node(s) didn't match pod anti-affinity rules"));
        }
        Ok(())
    }

    fn satisfies_affinity(&self, pod: &PodInfo, labels: &BTreeMap<String, String>) -> bool {
        let mut pods_exist = true;
        for term in &pod.required_affinity {
            match labels.get(&term.topology_key) {
                None => return false,
                Some(v) if self.affinity.get(&term.topology_key, v) <= 0 => pods_exist = false,
                Some(_) => {}
            }
        }
        // The first pod of a group with affinity to itself may go anywhere with the topology.
        pods_exist || (self.affinity.is_empty() && matches_all(&pod.required_affinity, pod))
    }
}

fn add_weighted(scores: &mut TopologyCounts, terms: &[WeightedTerm], target: &PodInfo, labels: &BTreeMap<String, String>, sign: i64) {
    for t in terms.iter().filter(|t| t.term.matches(target)) {
        scores.add(labels, &t.term.topology_key, sign * t.weight);
    }
}

/// Per-domain scores from preferred terms (and existing pods' terms about the incoming pod).
pub struct InterPodScore(TopologyCounts);

impl InterPodScore {
    /// `None` when no term on either side can contribute.
    pub fn new(pod: &PodInfo, nodes: &[NodeInfo]) -> Option<Self> {
        let own_preferences = !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
        if !own_preferences && nodes.iter().all(|n| n.pods_with_affinity == 0) {
            return None;
        }
        let mut scores = TopologyCounts::default();
        for node in nodes.iter().filter(|n| n.node.is_some() && !n.labels().is_empty()) {
            let labels = node.labels();
            for existing in node.pods.iter().filter(|p| own_preferences || p.has_affinity()) {
                add_weighted(&mut scores, &pod.preferred_affinity, existing, labels, 1);
                add_weighted(&mut scores, &pod.preferred_anti_affinity, existing, labels, -1);
                for t in existing.required_affinity.iter().filter(|t| t.matches(pod)) {
                    scores.add(labels, &t.topology_key, HARD_POD_AFFINITY_WEIGHT);
                }
                add_weighted(&mut scores, &existing.preferred_affinity, pod, labels, 1);
                add_weighted(&mut scores, &existing.preferred_anti_affinity, pod, labels, -1);
            }
        }
        (!scores.is_empty()).then_some(Self(scores))
    }

    /// The raw score: the sum over the node's labels of its domains' scores.
    pub fn score(&self, node: &NodeInfo) -> i64 {
        node.labels().iter().map(|(k, v)| self.0.get(k, v)).sum()
    }
}

/// InterPodAffinity's NormalizeScore: min–max scaling to 0–100.
pub fn normalize(scores: &mut [i64]) {
    let (Some(min), Some(max)) = (scores.iter().copied().min(), scores.iter().copied().max()) else { return };
    for s in scores {
        *s = if max > min { (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / (max - min) as f64)) as i64 } else { 0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::json;
    use std::sync::Arc;

    fn pod(name: &str, app: &str, affinity: serde_json::Value) -> PodInfo {
        let p: Pod = serde_json::from_value(json!({ "metadata": { "name": name, "namespace": "d", "labels": { "app": app } },
            "spec": { "containers": [], "affinity": affinity } }))
        .unwrap();
        PodInfo::new(Arc::new(p))
    }

    fn node(name: &str, zone: &str, pods: Vec<PodInfo>) -> NodeInfo {
        let n: Node = serde_json::from_value(json!({ "metadata": { "name": name, "labels": {
            "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone } } }))
        .unwrap();
        NodeInfo::with_pods(n, pods)
    }

    fn term(app: &str, key: &str) -> serde_json::Value {
        json!({ "labelSelector": { "matchLabels": { "app": app } }, "topologyKey": key })
    }

    #[test]
    fn required_affinity_follows_the_domain() {
        let nodes = vec![node("a", "z1", vec![pod("db", "db", json!({}))]), node("b", "z1", vec![]), node("c", "z2", vec![])];
        let web = pod(
            "web",
            "web",
            json!({ "podAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [term("db", "topology.kubernetes.io/zone")] } }),
        );
        let f = InterPodFilter::new(&web, &nodes).unwrap();
        assert!(f.filter(&web, &nodes[0]).is_ok());
        assert!(f.filter(&web, &nodes[1]).is_ok(), "same zone");
        let err = f.filter(&web, &nodes[2]).unwrap_err();
        assert_eq!(err.reasons, ["node(s) didn't match pod affinity rules"]);
        assert!(err.unresolvable);
    }

    #[test]
    fn first_pod_with_self_affinity_may_go_anywhere() {
        let nodes = vec![node("a", "z1", vec![]), node("b", "z2", vec![])];
        let first = pod(
            "w1",
            "web",
            json!({ "podAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [term("web", "kubernetes.io/hostname")] } }),
        );
        let f = InterPodFilter::new(&first, &nodes).unwrap();
        assert!(f.filter(&first, &nodes[0]).is_ok() && f.filter(&first, &nodes[1]).is_ok());
    }

    #[test]
    fn anti_affinity_both_ways() {
        let anti =
            json!({ "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [term("web", "kubernetes.io/hostname")] } });
        let nodes = vec![
            node("a", "z1", vec![pod("w1", "web", anti.clone())]),
            node("b", "z1", vec![pod("other", "web", json!({}))]),
            node("c", "z1", vec![]),
        ];
        let plain = pod("w2", "web", json!({}));
        let f = InterPodFilter::new(&plain, &nodes).unwrap();
        assert_eq!(f.filter(&plain, &nodes[0]).unwrap_err().reasons, ["node(s) didn't satisfy existing pods anti-affinity rules"]);
        assert!(f.filter(&plain, &nodes[1]).is_ok());
        let picky = pod("w3", "web", anti);
        let f = InterPodFilter::new(&picky, &nodes).unwrap();
        assert_eq!(f.filter(&picky, &nodes[1]).unwrap_err().reasons, ["node(s) didn't match pod anti-affinity rules"]);
        assert!(f.filter(&picky, &nodes[2]).is_ok());
        assert!(InterPodFilter::new(&plain, &nodes[1..]).is_none(), "nothing to check");
    }

    #[test]
    fn preferred_terms_score() {
        let nodes = vec![
            node("a", "z1", vec![pod("db", "db", json!({}))]),
            node("b", "z2", vec![pod("cache", "cache", json!({}))]),
            node("c", "z3", vec![]),
        ];
        let p = pod(
            "web",
            "web",
            json!({
                "podAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [ { "weight": 50, "podAffinityTerm": term("db", "topology.kubernetes.io/zone") } ] },
                "podAntiAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [ { "weight": 20, "podAffinityTerm": term("cache", "kubernetes.io/hostname") } ] }
            }),
        );
        let s = InterPodScore::new(&p, &nodes).unwrap();
        let mut scores: Vec<i64> = nodes.iter().map(|n| s.score(n)).collect();
        assert_eq!(scores, [50, -20, 0]);
        normalize(&mut scores);
        assert_eq!(scores, [100, 0, 28]);
    }
}
