//! One scheduling decision, kube-scheduler's way: filter nodes from a rotating start until
//! enough feasible ones are found (percentageOfNodesToScore), score them with the default
//! plugin weights, and pick the best with a random tie-break.

use k8s_openapi::api::core::v1::PodSpec;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::cache::Cache;
use super::diagnosis;
use super::node_info::NodeInfo;
use super::plugins::interpod::{self, InterPodScore};
use super::plugins::spread::{self, SpreadScore};
use super::plugins::volume_binding::{self, PodVolumes, VolumeStores};
use super::plugins::{self, fit, node_affinity, taints, Rejection};
use super::pod_info::PodInfo;
use super::prepared::Prepared;

/// kube-scheduler's default score plugin weights.
const TAINT_TOLERATION_WEIGHT: i64 = 3;
const NODE_AFFINITY_WEIGHT: i64 = 2;
const RESOURCES_FIT_WEIGHT: i64 = 1;
const TOPOLOGY_SPREAD_WEIGHT: i64 = 2;
const INTER_POD_AFFINITY_WEIGHT: i64 = 2;
const BALANCED_ALLOCATION_WEIGHT: i64 = 1;

/// The outcome of one scheduling attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Node(String),
    /// No node fits; the message is the one kube-scheduler reports.
    Unschedulable(String),
}

/// How many feasible nodes to find before scoring (adaptive percentageOfNodesToScore).
pub fn nodes_to_find(all: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    if all < MIN_FEASIBLE {
        return all;
    }
    let percentage = 50usize.saturating_sub(all / 125).max(5);
    (all * percentage / 100).max(MIN_FEASIBLE)
}

/// The scheduling algorithm's own state: where the next node scan starts, and the tie-break rng.
pub struct Algorithm {
    next_start: usize,
    rng: StdRng,
    /// Claims, volumes and classes for VolumeBinding (none: pods' claims are not looked at).
    volumes: Option<VolumeStores>,
}

impl Default for Algorithm {
    fn default() -> Self {
        Self { next_start: 0, rng: StdRng::from_entropy(), volumes: None }
    }
}

impl Algorithm {
    /// An algorithm that weighs pods' persistentVolumeClaims with these caches.
    pub fn with_volumes(volumes: VolumeStores) -> Self {
        Self { volumes: Some(volumes), ..Self::default() }
    }

    pub fn schedule(&mut self, pod: &PodInfo, cache: &Cache) -> Decision {
        let nodes = cache.nodes();
        let all = cache.node_count();
        if all == 0 {
            return Decision::Unschedulable(diagnosis::NO_NODES.to_string());
        }
        let pod_volumes = match &self.volumes {
            Some(stores) => match stores.prefilter(&pod.pod) {
                Ok(v) => v,
                Err(message) => return Decision::Unschedulable(volume_binding::prefilter_message(all, &message)),
            },
            None => PodVolumes::default(),
        };
        let prepared = Prepared::new(pod, nodes).with_volumes(&pod_volumes);
        let want = nodes_to_find(all);
        let mut feasible = Vec::with_capacity(want);
        let mut rejected: Vec<(usize, Rejection)> = Vec::new();
        let mut processed = 0;
        for offset in 0..nodes.len() {
            let i = (self.next_start + offset) % nodes.len();
            processed = offset + 1;
            if nodes[i].node.is_none() {
                continue;
            }
            match prepared.filter(&nodes[i]) {
                Ok(()) => feasible.push(i),
                Err(r) => rejected.push((i, r)),
            }
            if feasible.len() >= want {
                break;
            }
        }
        self.next_start = (self.next_start + processed) % nodes.len();
        match feasible.as_slice() {
            [] => Decision::Unschedulable(diagnosis::unschedulable_message(pod, nodes, all, &rejected)),
            [only] => Decision::Node(nodes[*only].name.clone()),
            _ => {
                let scores = score(pod, nodes, &feasible);
                Decision::Node(nodes[self.select(&feasible, &scores)].name.clone())
            }
        }
    }

    /// The highest total score; ties broken uniformly at random.
    fn select(&mut self, feasible: &[usize], scores: &[i64]) -> usize {
        let mut best = 0;
        let mut ties = 0;
        for (k, s) in scores.iter().enumerate() {
            if *s > scores[best] {
                best = k;
                ties = 1;
            } else if *s == scores[best] {
                ties += 1;
                if self.rng.gen_range(0..ties) == 0 {
                    best = k;
                }
            }
        }
        feasible[best]
    }
}

/// Weighted sum of the default score plugins for each feasible node (indices into `nodes`).
pub fn score(pod: &PodInfo, nodes: &[NodeInfo], feasible: &[usize]) -> Vec<i64> {
    let no_spec = PodSpec::default();
    let spec = pod.pod.spec.as_ref().unwrap_or(&no_spec);
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let each = |f: &dyn Fn(&NodeInfo) -> i64| -> Vec<i64> { feasible.iter().map(|i| f(&nodes[*i])).collect() };

    let mut taint = each(&|n| taints::intolerable_prefer_no_schedule(tolerations, n));
    plugins::normalize(&mut taint, true);
    let mut affinity = each(&|n| node_affinity::preferred_affinity_weight(spec, n));
    plugins::normalize(&mut affinity, false);
    let least = each(&|n| fit::least_allocated(pod, n));
    let balanced = each(&|n| fit::balanced_allocation(pod, n));
    let spread = match SpreadScore::new(pod, nodes, feasible) {
        Some(s) => spread::normalize(&feasible.iter().map(|i| s.score(pod, &nodes[*i])).collect::<Vec<_>>()),
        None => vec![0; feasible.len()],
    };
    let mut interpod = match InterPodScore::new(pod, nodes) {
        Some(s) => each(&|n| s.score(n)),
        None => vec![0; feasible.len()],
    };
    interpod::normalize(&mut interpod);

    (0..feasible.len())
        .map(|k| {
            taint[k] * TAINT_TOLERATION_WEIGHT
                + affinity[k] * NODE_AFFINITY_WEIGHT
                + least[k] * RESOURCES_FIT_WEIGHT
                + spread[k] * TOPOLOGY_SPREAD_WEIGHT
                + interpod[k] * INTER_POD_AFFINITY_WEIGHT
                + balanced[k] * BALANCED_ALLOCATION_WEIGHT
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::json;
    use std::sync::Arc;

    fn node(name: &str, cpu: &str, extra: serde_json::Value) -> Arc<Node> {
        let mut n = json!({ "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name } },
            "status": { "allocatable": { "cpu": cpu, "memory": "4Gi", "pods": "110" } } });
        if let Some(spec) = extra.get("spec") {
            n["spec"] = spec.clone();
        }
        if let Some(labels) = extra.get("labels").and_then(|l| l.as_object()) {
            for (k, v) in labels {
                n["metadata"]["labels"][k] = v.clone();
            }
        }
        Arc::new(serde_json::from_value(n).unwrap())
    }

    fn pod(name: &str, cpu: &str, spec: serde_json::Value) -> PodInfo {
        let mut spec = spec;
        spec["containers"] = json!([{ "name": "c", "resources": { "requests": { "cpu": cpu } } }]);
        let p: Pod = serde_json::from_value(json!({ "metadata": { "name": name, "namespace": "d" }, "spec": spec })).unwrap();
        PodInfo::new(Arc::new(p))
    }

    #[test]
    fn nodes_to_find_is_adaptive() {
        assert_eq!(nodes_to_find(3), 3);
        assert_eq!(nodes_to_find(99), 99);
        assert_eq!(nodes_to_find(150), 100);
        assert_eq!(nodes_to_find(1000), 420);
        assert_eq!(nodes_to_find(5000), 500, "10%");
        assert_eq!(nodes_to_find(10000), 500, "floor of 5%");
    }

    #[test]
    fn prefers_the_least_allocated_node() {
        let mut cache = Cache::default();
        cache.upsert_node(node("busy", "4", json!({})));
        cache.upsert_node(node("idle", "4", json!({})));
        cache.assume(Arc::new(pod("x", "3", json!({}))), "busy");
        let mut alg = Algorithm::default();
        for _ in 0..5 {
            assert_eq!(alg.schedule(&pod("p", "500m", json!({})), &cache), Decision::Node("idle".into()));
        }
    }

    #[test]
    fn prefer_no_schedule_taint_and_preferred_affinity_steer() {
        let mut cache = Cache::default();
        cache.upsert_node(node("soft", "4", json!({ "spec": { "taints": [ { "key": "k", "effect": "PreferNoSchedule" } ] } })));
        cache.upsert_node(node("plain", "4", json!({})));
        let mut alg = Algorithm::default();
        assert_eq!(alg.schedule(&pod("p", "1", json!({})), &cache), Decision::Node("plain".into()));
        cache.upsert_node(node("ssd", "4", json!({ "labels": { "disk": "ssd" } })));
        let wants_ssd = pod(
            "q",
            "1",
            json!({ "affinity": { "nodeAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [
            { "weight": 100, "preference": { "matchExpressions": [ { "key": "disk", "operator": "In", "values": ["ssd"] } ] } } ] } } }),
        );
        assert_eq!(alg.schedule(&wants_ssd, &cache), Decision::Node("ssd".into()));
    }

    #[test]
    fn ties_are_broken_at_random() {
        let mut cache = Cache::default();
        for name in ["a", "b", "c"] {
            cache.upsert_node(node(name, "4", json!({})));
        }
        let mut alg = Algorithm::default();
        let picked: std::collections::HashSet<_> = (0..60)
            .map(|_| match alg.schedule(&pod("p", "1", json!({})), &cache) {
                Decision::Node(n) => n,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(picked.len(), 3);
    }

    #[test]
    fn samples_a_share_of_large_clusters_and_rotates() {
        let mut cache = Cache::default();
        for i in 0..1000 {
            cache.upsert_node(node(&format!("n{i:04}"), "4", json!({})));
        }
        let mut alg = Algorithm::default();
        let p = pod("p", "1", json!({}));
        assert!(matches!(alg.schedule(&p, &cache), Decision::Node(_)));
        assert_eq!(alg.next_start, 420);
        alg.schedule(&p, &cache);
        assert_eq!(alg.next_start, 840);
    }

    #[test]
    fn reports_why_nothing_fits() {
        let mut cache = Cache::default();
        cache.upsert_node(node(
            "cp",
            "4",
            json!({ "spec": { "taints": [ { "key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule" } ] } }),
        ));
        cache.upsert_node(node("w1", "1", json!({})));
        cache.upsert_node(node("w2", "1", json!({})));
        let mut alg = Algorithm::default();
        let Decision::Unschedulable(msg) = alg.schedule(&pod("big", "2", json!({})), &cache) else { panic!("scheduled") };
        assert_eq!(
            msg,
            "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. \
             preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.."
        );
    }
}
