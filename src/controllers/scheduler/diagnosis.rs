//! The FailedScheduling message, worded, counted and sorted exactly as kube-scheduler's
//! `FitError` does it, including the DefaultPreemption post-filter part. orch does not evict
//! pods to make room; it only evaluates, per node, what preemption would find.

use std::collections::HashMap;

use super::node_info::NodeInfo;
use super::plugins::Rejection;
use super::pod_info::PodInfo;
use super::prepared::Prepared;

/// kube-scheduler's ErrNoNodesAvailable.
pub const NO_NODES: &str = "no nodes available to schedule pods";

/// "0/N nodes are available: <count reason, ...>." over every rejection reason.
fn fit_error<'a>(all: usize, reasons: impl Iterator<Item = &'a str>) -> String {
    let mut histogram: HashMap<&str, usize> = HashMap::new();
    for r in reasons {
        *histogram.entry(r).or_default() += 1;
    }
    let mut parts: Vec<String> = histogram.into_iter().map(|(reason, n)| format!("{n} {reason}")).collect();
    parts.sort();
    let mut msg = format!("0/{all} nodes are available:");
    if !parts.is_empty() {
        msg.push_str(&format!(" {}.", parts.join(", ")));
    }
    msg
}

/// The full message for a pod no node could take; `rejected` holds every node's rejection.
pub fn unschedulable_message(pod: &PodInfo, nodes: &[NodeInfo], all: usize, rejected: &[(usize, Rejection)]) -> String {
    let mut msg = fit_error(all, rejected.iter().flat_map(|(_, r)| r.reasons.iter().map(|s| s.as_ref())));
    if let Some(post) = preemption_message(pod, nodes, all, rejected) {
        msg.push_str(&format!(" {post}."));
    }
    msg
}

/// What DefaultPreemption reports; `None` when evicting lower-priority pods would make room
/// somewhere (kube would preempt then; orch does not, and reports only the filter reasons).
fn preemption_message(pod: &PodInfo, nodes: &[NodeInfo], all: usize, rejected: &[(usize, Rejection)]) -> Option<String> {
    let policy = pod.pod.spec.as_ref().and_then(|s| s.preemption_policy.as_deref());
    if policy == Some("Never") {
        return Some("preemption: not eligible due to preemptionPolicy=Never.".into());
    }
    let mut outcomes: Vec<String> = Vec::with_capacity(rejected.len());
    let mut prepared = None;
    for (i, rejection) in rejected {
        if rejection.unresolvable {
            outcomes.push("Preemption is not helpful for scheduling".into());
            continue;
        }
        let node = &nodes[*i];
        let victims: Vec<&str> = node.pods.iter().filter(|p| p.priority < pod.priority).map(|p| p.key.as_str()).collect();
        if victims.is_empty() {
            outcomes.push("No preemption victims found for incoming pod".into());
            continue;
        }
        let mut without = node.clone();
        for key in victims {
            without.remove_pod(key);
        }
        match prepared.get_or_insert_with(|| Prepared::new(pod, nodes)).filter(&without) {
            Ok(()) => return None,
            Err(r) => outcomes.push(r.reasons.join(", ")),
        }
    }
    Some(format!("preemption: {}", fit_error(all, outcomes.iter().map(String::as_str))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::json;
    use std::sync::Arc;

    fn pod(name: &str, priority: i32, cpu: &str, extra: serde_json::Value) -> PodInfo {
        let mut spec = json!({ "priority": priority, "containers": [{ "name": "c", "resources": { "requests": { "cpu": cpu } } }] });
        if let Some(policy) = extra.get("preemptionPolicy") {
            spec["preemptionPolicy"] = policy.clone();
        }
        let p: Pod = serde_json::from_value(json!({ "metadata": { "name": name, "namespace": "d" }, "spec": spec })).unwrap();
        PodInfo::new(Arc::new(p))
    }

    fn node(name: &str, pods: Vec<PodInfo>) -> NodeInfo {
        let n: Node =
            serde_json::from_value(json!({ "metadata": { "name": name }, "status": { "allocatable": { "cpu": "1", "pods": "10" } } }))
                .unwrap();
        NodeInfo::with_pods(n, pods)
    }

    fn rejection(reasons: &[&'static str], unresolvable: bool) -> Rejection {
        Rejection { reasons: reasons.iter().map(|r| (*r).into()).collect(), unresolvable }
    }

    #[test]
    fn counts_and_sorts_reasons_like_kube() {
        let msg = fit_error(12, ["b", "Insufficient cpu", "b", "a"].into_iter().chain(std::iter::repeat_n("a", 9)));
        assert_eq!(msg, "0/12 nodes are available: 1 Insufficient cpu, 10 a, 2 b.", "plain string order, as Go's sort.Strings");
    }

    #[test]
    fn insufficient_everywhere() {
        let nodes = vec![node("a", vec![]), node("b", vec![]), node("c", vec![])];
        let rejected: Vec<_> = (0..3).map(|i| (i, rejection(&["Insufficient cpu"], false))).collect();
        assert_eq!(
            unschedulable_message(&pod("p", 0, "2", json!({})), &nodes, 3, &rejected),
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.."
        );
    }

    #[test]
    fn preemption_policy_never() {
        let nodes = vec![node("a", vec![])];
        let msg = unschedulable_message(
            &pod("p", 0, "2", json!({ "preemptionPolicy": "Never" })),
            &nodes,
            1,
            &[(0, rejection(&["Insufficient cpu"], false))],
        );
        assert_eq!(msg, "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never..");
    }

    #[test]
    fn lower_priority_victims() {
        // Evicting the low-priority pod is not enough: the node is too small anyway.
        let nodes = vec![node("a", vec![pod("low", -1, "500m", json!({}))])];
        let msg = unschedulable_message(&pod("p", 10, "2", json!({})), &nodes, 1, &[(0, rejection(&["Insufficient cpu"], false))]);
        assert_eq!(msg, "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 Insufficient cpu..");
        // Evicting it would make room: kube would preempt, orch reports only the filter reasons.
        let msg = unschedulable_message(&pod("p", 10, "800m", json!({})), &nodes, 1, &[(0, rejection(&["Insufficient cpu"], false))]);
        assert_eq!(msg, "0/1 nodes are available: 1 Insufficient cpu.");
    }
}
