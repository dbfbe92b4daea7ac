//! Pod state as the workload controllers judge it: active, ready, available (ready for
//! minReadySeconds), and the order in which surplus pods are deleted (`ActivePodsWithRanks`).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

/// Annotation that lowers (or raises) a pod's cost of deletion.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Not finished and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

pub fn is_running(pod: &Pod) -> bool {
    phase(pod) == "Running"
}

/// When the pod last became Ready, if it is Ready.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let cond = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?;
    (cond.status == "True").then(|| cond.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => since.as_second() + i64::from(min_ready_seconds) <= now.as_second(),
    }
}

/// Seconds until a ready pod becomes available, if it is ready but not yet available.
pub fn seconds_until_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<i64> {
    let since = ready_since(pod)??;
    let left = since.as_second() + i64::from(min_ready_seconds) - now.as_second();
    (min_ready_seconds > 0 && left > 0).then_some(left)
}

fn restarts(pod: &Pod) -> i32 {
    pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).map_or(0, |cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
}

fn deletion_cost(pod: &Pod) -> i64 {
    pod.metadata.annotations.as_ref().and_then(|a| a.get(DELETION_COST)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn node(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

/// `ActivePodsWithRanks.Less`: `Less` when `a` should be deleted before `b`. `rank_*` is the
/// number of this owner's pods on the same node (more co-located pods go first).
pub fn deletion_order(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize) -> Ordering {
    let phase_rank = |p: &Pod| match phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    // Unassigned first, then Pending < Unknown < Running, not ready first, lower deletion
    // cost first, more co-located first, ready for less time first, more restarts first,
    // newer first.
    node(a)
        .is_empty()
        .cmp(&node(b).is_empty())
        .reverse()
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        .then_with(|| rank_b.cmp(&rank_a))
        .then_with(|| match (ready_since(a).flatten(), ready_since(b).flatten()) {
            (Some(ta), Some(tb)) => tb.cmp(&ta),
            _ => Ordering::Equal,
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(b).cmp(&created(a))
        })
}

/// Sorts `pods` so the ones to delete first come first; `related` are all of the owner's
/// active pods (for the co-location rank).
pub fn sort_for_deletion(pods: &mut [Arc<Pod>], related: &[Arc<Pod>]) {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in related {
        if !node(p).is_empty() {
            *per_node.entry(node(p)).or_default() += 1;
        }
    }
    let rank = |p: &Pod| per_node.get(node(p)).copied().unwrap_or(0);
    pods.sort_by(|a, b| deletion_order(a, rank(a), b, rank(b)));
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use serde_json::json;

    /// A pod for tests: name, node ("" = unscheduled), phase, ready, seconds since ready.
    pub fn pod(name: &str, node: &str, phase: &str, ready: bool, ready_secs_ago: i64) -> Arc<Pod> {
        let since = Timestamp::now().as_second() - ready_secs_ago;
        let since = Timestamp::from_second(since).unwrap().to_string();
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "creationTimestamp": "2024-01-01T00:00:00Z"},
                "spec": {"containers": [], "nodeName": if node.is_empty() { None } else { Some(node) }},
                "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}, "lastTransitionTime": since}]}
            }))
            .unwrap(),
        )
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter().map(|p| p.metadata.name.as_deref().unwrap()).collect()
    }

    #[test]
    fn deletion_prefers_unscheduled_pending_unready() {
        let mut pods = vec![
            pod("ready-old", "n1", "Running", true, 100),
            pod("ready-new", "n2", "Running", true, 5),
            pod("unready", "n3", "Running", false, 0),
            pod("pending", "n4", "Pending", false, 0),
            pod("unscheduled", "", "Pending", false, 0),
        ];
        let all = pods.clone();
        sort_for_deletion(&mut pods, &all);
        assert_eq!(names(&pods), ["unscheduled", "pending", "unready", "ready-new", "ready-old"]);
    }

    #[test]
    fn co_located_pods_go_first() {
        let mut pods = vec![pod("alone", "n1", "Running", true, 10), pod("crowded", "n2", "Running", true, 10)];
        let mut all = pods.clone();
        all.push(pod("neighbour", "n2", "Running", true, 10));
        sort_for_deletion(&mut pods, &all);
        assert_eq!(names(&pods), ["crowded", "alone"]);
    }

    #[test]
    fn availability_waits_min_ready_seconds() {
        let now = Timestamp::now();
        let p = pod("p", "n", "Running", true, 5);
        assert!(is_available(&p, 0, now));
        assert!(is_available(&p, 5, now));
        assert!(!is_available(&p, 10, now));
        assert_eq!(seconds_until_available(&p, 10, now), Some(5));
        assert!(!is_available(&pod("u", "n", "Running", false, 100), 0, now));
    }
}
