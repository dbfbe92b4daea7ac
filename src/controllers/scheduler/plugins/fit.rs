//! NodeResourcesFit (filter, and the LeastAllocated score) and
//! NodeResourcesBalancedAllocation, over cpu and memory with weight 1 each.

use super::{Filtered, Rejection, MAX_NODE_SCORE};
use crate::controllers::scheduler::node_info::NodeInfo;
use crate::controllers::scheduler::pod_info::PodInfo;

/// NodeResourcesFit filter: pod count, then cpu, memory, ephemeral storage and extended
/// resources against what is left of the node's allocatable. Every shortage is a reason.
pub fn fits(pod: &PodInfo, node: &NodeInfo) -> Filtered {
    let mut reasons = Vec::new();
    if node.pods.len() as i64 + 1 > node.allocatable.pods {
        reasons.push("Too many pods".into());
    }
    let want = &pod.requests;
    if !want.is_zero() {
        let (have, used) = (&node.allocatable, &node.requested);
        if want.milli_cpu > 0 && want.milli_cpu > have.milli_cpu - used.milli_cpu {
            reasons.push("Insufficient cpu".into());
        }
        if want.memory > 0 && want.memory > have.memory - used.memory {
            reasons.push("Insufficient memory".into());
        }
        if want.ephemeral_storage > 0 && want.ephemeral_storage > have.ephemeral_storage - used.ephemeral_storage {
            reasons.push("Insufficient ephemeral-storage".into());
        }
        for (name, amount) in &want.scalar {
            let free = have.scalar.get(name).copied().unwrap_or(0) - used.scalar.get(name).copied().unwrap_or(0);
            if *amount > 0 && *amount > free {
                reasons.push(format!("Insufficient {name}").into());
            }
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Rejection { reasons, unresolvable: false })
    }
}

/// `(requested including the pod, allocatable)` for cpu and memory; scoring uses the non-zero
/// requests for LeastAllocated and the plain ones for BalancedAllocation, as kube does.
fn usage(pod: &PodInfo, node: &NodeInfo, non_zero: bool) -> [(i64, i64); 2] {
    let (pod_req, node_req) = if non_zero { (&pod.non_zero_requests, &node.non_zero_requested) } else { (&pod.requests, &node.requested) };
    [(node_req.milli_cpu + pod_req.milli_cpu, node.allocatable.milli_cpu), (node_req.memory + pod_req.memory, node.allocatable.memory)]
}

/// NodeResourcesFit score, LeastAllocated strategy: the share of cpu and memory left free.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let per_resource = usage(pod, node, true).map(|(requested, capacity)| {
        if capacity == 0 || requested > capacity {
            0
        } else {
            (capacity - requested) * MAX_NODE_SCORE / capacity
        }
    });
    per_resource.iter().sum::<i64>() / per_resource.len() as i64
}

/// NodeResourcesBalancedAllocation: 100 × (1 − the spread of the cpu and memory fractions).
pub fn balanced_allocation(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let mut fractions = [0.0f64; 2];
    let mut n = 0;
    for (requested, capacity) in usage(pod, node, false) {
        if capacity != 0 {
            fractions[n] = (requested as f64 / capacity as f64).min(1.0);
            n += 1;
        }
    }
    let std = if n == 2 { ((fractions[0] - fractions[1]) / 2.0).abs() } else { 0.0 };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;
    use std::sync::Arc;

    fn node(allocatable: serde_json::Value, pods: Vec<PodInfo>) -> NodeInfo {
        NodeInfo::with_pods(
            serde_json::from_value::<Node>(json!({ "metadata": { "name": "n" }, "status": { "allocatable": allocatable } })).unwrap(),
            pods,
        )
    }

    fn pod(requests: serde_json::Value) -> PodInfo {
        PodInfo::new(Arc::new(
            serde_json::from_value(json!({ "metadata": { "name": "p", "namespace": "d" },
                "spec": { "containers": [ { "name": "c", "resources": { "requests": requests } } ] } }))
            .unwrap(),
        ))
    }

    #[test]
    fn reports_every_shortage() {
        let n = node(json!({ "cpu": "2", "memory": "4Gi", "pods": "1", "example.com/dongle": "1" }), vec![pod(json!({ "cpu": "1" }))]);
        let err = fits(&pod(json!({ "cpu": "1500m", "memory": "5Gi", "example.com/dongle": "2" })), &n).unwrap_err();
        assert_eq!(err.reasons, ["Too many pods", "Insufficient cpu", "Insufficient memory", "Insufficient example.com/dongle"]);
        assert!(!err.unresolvable);
    }

    #[test]
    fn fits_exactly() {
        let n = node(json!({ "cpu": "2", "memory": "4Gi", "pods": "110" }), vec![pod(json!({ "cpu": "1", "memory": "2Gi" }))]);
        assert!(fits(&pod(json!({ "cpu": "1", "memory": "2Gi" })), &n).is_ok());
        assert_eq!(fits(&pod(json!({ "cpu": "1001m" })), &n).unwrap_err().reasons, ["Insufficient cpu"]);
        assert!(fits(&pod(json!({})), &n).is_ok(), "a pod without requests only needs a pod slot");
    }

    #[test]
    fn least_allocated_and_balanced_scores() {
        let n = node(json!({ "cpu": "4", "memory": "4Gi", "pods": "110" }), vec![]);
        // cpu: 1 of 4 used → 75; memory: 3Gi of 4Gi → 25; average 50.
        let p = pod(json!({ "cpu": "1", "memory": "3Gi" }));
        assert_eq!(least_allocated(&p, &n), 50);
        // fractions 0.25 and 0.75 → std 0.25 → 75.
        assert_eq!(balanced_allocation(&p, &n), 75);
        let even = pod(json!({ "cpu": "2", "memory": "2Gi" }));
        assert_eq!(balanced_allocation(&even, &n), 100);
        // No requests: the non-zero defaults (100m, 200Mi) count for LeastAllocated.
        let empty = pod(json!({}));
        assert_eq!(least_allocated(&empty, &n), ((4000 - 100) * 100 / 4000 + ((4i64 << 30) - (200 << 20)) * 100 / (4i64 << 30)) / 2);
    }
}
