//! PodTopologySpread: `DoNotSchedule` constraints as a filter (maxSkew over the domains of a
//! topology key), `ScheduleAnyway` constraints — or kube-scheduler's system default spreading
//! of a ReplicaSet's/StatefulSet's pods over hostnames and zones — as a score.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use kube::core::{Expression, Selector, SelectorExt};

use super::node_affinity::matches_selector_and_required_affinity;
use super::{Filtered, Rejection, MAX_NODE_SCORE};
use crate::controllers::scheduler::node_info::{NodeInfo, HOSTNAME_LABEL as HOSTNAME, ZONE_LABEL as ZONE};
use crate::controllers::scheduler::pod_info::PodInfo;

/// A constraint's topology key, the two well-known ones resolved once so that the per-node
/// loops read a field instead of searching the node's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TopologyKey {
    Hostname,
    Zone,
    Other(String),
}

impl TopologyKey {
    fn new(key: &str) -> Self {
        match key {
            HOSTNAME => Self::Hostname,
            ZONE => Self::Zone,
            other => Self::Other(other.to_string()),
        }
    }

    /// The node's value of this key (its domain), if it has the label.
    fn value<'a>(&self, node: &'a NodeInfo) -> Option<&'a String> {
        match self {
            Self::Hostname => node.hostname_label.as_ref(),
            Self::Zone => node.zone_label.as_ref(),
            Self::Other(key) => node.labels().get(key),
        }
    }
}

/// Which existing pods a constraint counts.
#[derive(Debug, Clone)]
enum Matcher {
    /// Pods of the same controller (system default spreading).
    Owner(String),
    /// Pods in the incoming pod's namespace matching the selector (`None` matches nothing).
    Labels(Option<Selector>),
}

#[derive(Debug, Clone)]
struct Constraint {
    max_skew: i64,
    topology_key: TopologyKey,
    min_domains: Option<i64>,
    matcher: Matcher,
}

impl Constraint {
    fn parse(c: &TopologySpreadConstraint, pod: &PodInfo) -> Self {
        let selector = c.label_selector.clone().and_then(|s| Selector::try_from(s).ok()).map(|mut s| {
            // matchLabelKeys narrow the selector to pods sharing the incoming pod's values.
            for key in c.match_label_keys.iter().flatten() {
                if let Some(v) = pod.labels().get(key) {
                    s.extend([Expression::Equal(key.clone(), v.clone())]);
                }
            }
            s
        });
        Self {
            max_skew: i64::from(c.max_skew),
            topology_key: TopologyKey::new(&c.topology_key),
            min_domains: c.min_domains.map(i64::from),
            matcher: Matcher::Labels(selector),
        }
    }

    /// How many pods on `node` this constraint counts.
    fn count(&self, node: &NodeInfo, namespace: &str) -> i64 {
        match &self.matcher {
            Matcher::Owner(uid) => node.owner_counts.get(uid).copied().map_or(0, i64::from),
            Matcher::Labels(None) => 0,
            Matcher::Labels(Some(sel)) => node
                .pods
                .iter()
                .filter(|p| p.namespace == namespace && p.pod.metadata.deletion_timestamp.is_none() && sel.matches(p.labels()))
                .count() as i64,
        }
    }

    fn matches_self(&self, pod: &PodInfo) -> bool {
        match &self.matcher {
            Matcher::Owner(_) => true,
            Matcher::Labels(sel) => sel.as_ref().is_some_and(|s| s.matches(pod.labels())),
        }
    }
}

fn constraints(pod: &PodInfo, when: &str) -> Vec<Constraint> {
    let spec = pod.pod.spec.as_ref();
    spec.and_then(|s| s.topology_spread_constraints.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c| Constraint::parse(c, pod))
        .collect()
}

fn has_all_keys(node: &NodeInfo, constraints: &[Constraint]) -> bool {
    constraints.iter().all(|c| c.topology_key.value(node).is_some())
}

/// Pre-computed domain counts for the `DoNotSchedule` constraints of one pod.
pub struct SpreadFilter {
    constraints: Vec<Constraint>,
    /// Per constraint: topology value → matching pods.
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: the global minimum over eligible domains.
    min_match: Vec<i64>,
}

impl SpreadFilter {
    /// `None` when the pod has no hard constraint (nothing to check).
    pub fn new(pod: &PodInfo, nodes: &[NodeInfo]) -> Option<Self> {
        let spec = pod.pod.spec.as_ref()?;
        let constraints = constraints(pod, "DoNotSchedule");
        if constraints.is_empty() {
            return None;
        }
        let mut counts = vec![HashMap::<String, i64>::new(); constraints.len()];
        for node in nodes.iter().filter(|n| n.node.is_some()) {
            if !has_all_keys(node, &constraints) || !matches_selector_and_required_affinity(spec, &node.name, node.labels()) {
                continue;
            }
            for (c, counts) in constraints.iter().zip(&mut counts) {
                let Some(value) = c.topology_key.value(node) else { continue };
                *counts.entry(value.clone()).or_default() += c.count(node, &pod.namespace);
            }
        }
        let min_match =
            constraints
                .iter()
                .zip(&counts)
                .map(|(c, counts)| {
                    if c.min_domains.is_some_and(|min| (counts.len() as i64) < min) {
                        0
                    } else {
                        counts.values().copied().min().unwrap_or(0)
                    }
                })
                .collect();
        Some(Self { constraints, counts, min_match })
    }

    pub fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Filtered {
        for (i, c) in self.constraints.iter().enumerate() {
            let Some(value) = c.topology_key.value(node) else {
                return Err(Rejection::unresolvable("node(s) didn't match pod topology spread constraints (missing required label)"));
            };
            let matched = self.counts[i].get(value).copied().unwrap_or(0);
            let skew = matched + i64::from(c.matches_self(pod)) - self.min_match[i];
            if skew > c.max_skew {
                return Err(Rejection::unschedulable("node(s) didn't match pod topology spread constraints"));
            }
        }
        Ok(())
    }
}

/// Pre-computed state for spreading as a score over the nodes that passed the filters.
pub struct SpreadScore {
    constraints: Vec<Constraint>,
    /// Nodes missing a topology key of explicit constraints score 0.
    require_all_keys: bool,
    /// Per constraint: topology value → matching pods (not used for hostname).
    counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
}

impl SpreadScore {
    /// `None` when there is nothing to spread on.
    pub fn new(pod: &PodInfo, all: &[NodeInfo], feasible: &[usize]) -> Option<Self> {
        let explicit = pod.pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.as_ref()).is_some_and(|c| !c.is_empty());
        let constraints = if explicit {
            constraints(pod, "ScheduleAnyway")
        } else {
            let uid = pod.owner_uid.clone()?;
            [(TopologyKey::Hostname, 3), (TopologyKey::Zone, 5)]
                .map(|(key, max_skew)| Constraint { max_skew, topology_key: key, min_domains: None, matcher: Matcher::Owner(uid.clone()) })
                .to_vec()
        };
        if constraints.is_empty() {
            return None;
        }
        let mut counts = vec![HashMap::<String, i64>::new(); constraints.len()];
        let mut ignored = 0;
        for node in feasible.iter().map(|i| &all[*i]) {
            if explicit && !has_all_keys(node, &constraints) {
                ignored += 1;
                continue;
            }
            for (c, counts) in constraints.iter().zip(&mut counts) {
                // Hostname domains are the nodes themselves: nothing to collect.
                if c.topology_key == TopologyKey::Hostname {
                    continue;
                }
                // Nodes without the key are no domain of it (as PreScore skips them).
                let Some(value) = c.topology_key.value(node) else { continue };
                if !counts.contains_key(value) {
                    counts.insert(value.clone(), 0);
                }
            }
        }
        let weights = constraints
            .iter()
            .zip(&counts)
            .map(|(c, counts)| {
                let size = if c.topology_key == TopologyKey::Hostname { feasible.len() - ignored } else { counts.len() };
                ((size + 2) as f64).ln()
            })
            .collect();
        // Counting matching pods per domain walks every node; skip it when no feasible node
        // has a non-hostname domain (nodes without zone labels, the common small cluster).
        let zoned = constraints.iter().zip(&counts).any(|(c, counts)| c.topology_key != TopologyKey::Hostname && !counts.is_empty());
        for node in all.iter().filter(|n| zoned && n.node.is_some()) {
            if explicit && !has_all_keys(node, &constraints) {
                continue;
            }
            for (c, counts) in constraints.iter().zip(&mut counts) {
                if c.topology_key == TopologyKey::Hostname {
                    continue;
                }
                if let Some(n) = counts.get_mut(c.topology_key.value(node).map_or("", String::as_str)) {
                    *n += c.count(node, &pod.namespace);
                }
            }
        }
        Some(Self { constraints, require_all_keys: explicit, counts, weights })
    }

    /// The raw score of a node (lower is better), or `None` when the node is ignored.
    pub fn score(&self, pod: &PodInfo, node: &NodeInfo) -> Option<i64> {
        if self.require_all_keys && !has_all_keys(node, &self.constraints) {
            return None;
        }
        let mut score = 0.0;
        for (i, c) in self.constraints.iter().enumerate() {
            let Some(value) = c.topology_key.value(node) else { continue };
            let count = if c.topology_key == TopologyKey::Hostname {
                c.count(node, &pod.namespace)
            } else {
                self.counts[i].get(value).copied().unwrap_or(0)
            };
            score += count as f64 * self.weights[i] + (c.max_skew - 1) as f64;
        }
        Some(score.round() as i64)
    }
}

/// PodTopologySpread's NormalizeScore: fewer matching pods → closer to 100; ignored nodes get 0.
pub fn normalize(raw: &[Option<i64>]) -> Vec<i64> {
    let present = raw.iter().flatten();
    let min = present.clone().copied().min().unwrap_or(0);
    let max = present.copied().max().unwrap_or(0);
    raw.iter()
        .map(|s| match s {
            None => 0,
            Some(_) if max == 0 => MAX_NODE_SCORE,
            Some(s) => MAX_NODE_SCORE * (max + min - s) / max,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::json;
    use std::sync::Arc;

    fn pod(name: &str, labels: serde_json::Value, spec: serde_json::Value) -> PodInfo {
        let mut spec = spec;
        spec["containers"] = json!([]);
        let p: Pod =
            serde_json::from_value(json!({ "metadata": { "name": name, "namespace": "d", "labels": labels }, "spec": spec })).unwrap();
        PodInfo::new(Arc::new(p))
    }

    fn node(name: &str, zone: &str, pods: Vec<PodInfo>) -> NodeInfo {
        let n: Node = serde_json::from_value(json!({ "metadata": { "name": name, "labels": { HOSTNAME: name, ZONE: zone } } })).unwrap();
        NodeInfo::with_pods(n, pods)
    }

    fn web(name: &str) -> PodInfo {
        pod(name, json!({ "app": "web" }), json!({}))
    }

    fn spread(when: &str, key: &str) -> serde_json::Value {
        json!({ "topologySpreadConstraints": [
            { "maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": when, "labelSelector": { "matchLabels": { "app": "web" } } }
        ] })
    }

    #[test]
    fn hard_constraint_limits_skew() {
        let nodes = vec![node("a", "z1", vec![web("w1"), web("w2")]), node("b", "z1", vec![web("w3")]), node("c", "z2", vec![])];
        let incoming = pod("new", json!({ "app": "web" }), spread("DoNotSchedule", HOSTNAME));
        let f = SpreadFilter::new(&incoming, &nodes).unwrap();
        assert_eq!(f.filter(&incoming, &nodes[0]).unwrap_err().reasons, ["node(s) didn't match pod topology spread constraints"]);
        assert!(f.filter(&incoming, &nodes[1]).is_err(), "1 + 1 - 0 > 1");
        assert!(f.filter(&incoming, &nodes[2]).is_ok());
        let bare: Node = serde_json::from_value(json!({ "metadata": { "name": "x" } })).unwrap();
        let err = f.filter(&incoming, &NodeInfo::with_pods(bare, [])).unwrap_err();
        assert!(err.unresolvable);
        assert_eq!(err.reasons, ["node(s) didn't match pod topology spread constraints (missing required label)"]);

        let by_zone = pod("new", json!({ "app": "web" }), spread("DoNotSchedule", ZONE));
        let f = SpreadFilter::new(&by_zone, &nodes).unwrap();
        assert!(f.filter(&by_zone, &nodes[1]).is_err(), "zone z1 has 3, z2 has 0");
        assert!(f.filter(&by_zone, &nodes[2]).is_ok());
        assert!(SpreadFilter::new(&web("plain"), &nodes).is_none());
    }

    #[test]
    fn soft_constraint_prefers_emptier_domains() {
        let nodes = vec![node("a", "z1", vec![web("w1"), web("w2")]), node("b", "z1", vec![web("w3")]), node("c", "z2", vec![])];
        let incoming = pod("new", json!({ "app": "web" }), spread("ScheduleAnyway", HOSTNAME));
        let s = SpreadScore::new(&incoming, &nodes, &[0, 1, 2]).unwrap();
        let raw: Vec<_> = nodes.iter().map(|n| s.score(&incoming, n)).collect();
        let scores = normalize(&raw);
        assert!(scores[2] > scores[1] && scores[1] > scores[0], "{scores:?}");
        assert_eq!(scores[2], 100);
    }

    #[test]
    fn default_spreading_by_owner() {
        let owned = |name: &str| {
            let p: Pod = serde_json::from_value(json!({ "metadata": { "name": name, "namespace": "d", "ownerReferences": [
                { "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs1", "controller": true } ] },
                "spec": { "containers": [] } }))
            .unwrap();
            PodInfo::new(Arc::new(p))
        };
        let nodes = vec![node("a", "z1", vec![owned("o1"), owned("o2")]), node("b", "z2", vec![])];
        let s = SpreadScore::new(&owned("new"), &nodes, &[0, 1]).unwrap();
        let scores = normalize(&nodes.iter().map(|n| s.score(&owned("new"), n)).collect::<Vec<_>>());
        assert!(scores[1] > scores[0], "{scores:?}");
        assert!(SpreadScore::new(&web("loner"), &nodes, &[0, 1]).is_none(), "no owner, no default spreading");
    }
}
