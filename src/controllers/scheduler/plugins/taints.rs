//! TaintToleration (filter on NoSchedule/NoExecute, score on PreferNoSchedule) and
//! NodeUnschedulable.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use super::{Filtered, Rejection};
use crate::controllers::scheduler::node_info::NodeInfo;

/// The taint `kubectl cordon` stands for.
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Kubernetes' `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    if t.key.as_deref().is_some_and(|k| !k.is_empty() && k != taint.key) {
        return false;
    }
    match t.operator.as_deref() {
        Some("Exists") => true,
        None | Some("") | Some("Equal") => t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default(),
        Some(_) => false,
    }
}

fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// NodeUnschedulable: a cordoned node takes only pods tolerating its unschedulable taint.
pub fn node_unschedulable(tolerations: &[Toleration], node: &NodeInfo) -> Filtered {
    if !node.unschedulable() {
        return Ok(());
    }
    let taint = Taint { key: UNSCHEDULABLE_TAINT.into(), effect: "NoSchedule".into(), ..Default::default() };
    if tolerated(tolerations, &taint) {
        Ok(())
    } else {
        Err(Rejection::unresolvable("node(s) were unschedulable"))
    }
}

/// TaintToleration filter: the first NoSchedule/NoExecute taint the pod does not tolerate.
pub fn taint_toleration(tolerations: &[Toleration], node: &NodeInfo) -> Filtered {
    let untolerated = node.taints().iter().find(|t| (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(tolerations, t));
    match untolerated {
        None => Ok(()),
        Some(t) => {
            Err(Rejection::unresolvable(format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value.as_deref().unwrap_or_default())))
        }
    }
}

/// TaintToleration score (raw): how many PreferNoSchedule taints the pod does not tolerate;
/// normalized in reverse.
pub fn intolerable_prefer_no_schedule(tolerations: &[Toleration], node: &NodeInfo) -> i64 {
    let relevant = |t: &Toleration| t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "PreferNoSchedule");
    node.taints()
        .iter()
        .filter(|taint| taint.effect == "PreferNoSchedule" && !tolerations.iter().any(|t| relevant(t) && tolerates(t, taint)))
        .count() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;

    fn node(spec: serde_json::Value) -> NodeInfo {
        NodeInfo::with_pods(serde_json::from_value::<Node>(json!({ "metadata": { "name": "n" }, "spec": spec })).unwrap(), [])
    }

    fn tolerations(v: serde_json::Value) -> Vec<Toleration> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn toleration_matching() {
        let taint = Taint { key: "k".into(), value: Some("v".into()), effect: "NoSchedule".into(), ..Default::default() };
        let t = |v: serde_json::Value| serde_json::from_value::<Toleration>(v).unwrap();
        assert!(tolerates(&t(json!({ "key": "k", "value": "v" })), &taint));
        assert!(tolerates(&t(json!({ "key": "k", "operator": "Exists", "effect": "NoSchedule" })), &taint));
        assert!(tolerates(&t(json!({ "operator": "Exists" })), &taint), "empty key + Exists tolerates everything");
        assert!(!tolerates(&t(json!({ "key": "k", "value": "w" })), &taint));
        assert!(!tolerates(&t(json!({ "key": "k", "operator": "Exists", "effect": "NoExecute" })), &taint));
        assert!(!tolerates(&t(json!({ "key": "other", "operator": "Exists" })), &taint));
    }

    #[test]
    fn untolerated_taint_message() {
        let n = node(json!({ "taints": [
            { "key": "soft", "effect": "PreferNoSchedule" },
            { "key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule" }
        ] }));
        let err = taint_toleration(&[], &n).unwrap_err();
        assert_eq!(err.reasons, ["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"]);
        assert!(err.unresolvable);
        let ok = tolerations(json!([{ "key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule" }]));
        assert!(taint_toleration(&ok, &n).is_ok());
        let n = node(json!({ "taints": [ { "key": "gpu", "value": "true", "effect": "NoExecute" } ] }));
        assert_eq!(taint_toleration(&[], &n).unwrap_err().reasons, ["node(s) had untolerated taint {gpu: true}"]);
    }

    #[test]
    fn cordoned_nodes() {
        let n = node(json!({ "unschedulable": true }));
        assert_eq!(node_unschedulable(&[], &n).unwrap_err().reasons, ["node(s) were unschedulable"]);
        let t = tolerations(json!([{ "key": UNSCHEDULABLE_TAINT, "operator": "Exists", "effect": "NoSchedule" }]));
        assert!(node_unschedulable(&t, &n).is_ok());
        assert!(node_unschedulable(&[], &node(json!({}))).is_ok());
    }

    #[test]
    fn prefer_no_schedule_counts() {
        let n = node(json!({ "taints": [
            { "key": "a", "effect": "PreferNoSchedule" }, { "key": "b", "effect": "PreferNoSchedule" }, { "key": "c", "effect": "NoSchedule" }
        ] }));
        assert_eq!(intolerable_prefer_no_schedule(&[], &n), 2);
        let t = tolerations(
            json!([{ "key": "a", "operator": "Exists", "effect": "PreferNoSchedule" }, { "key": "b", "operator": "Exists", "effect": "NoSchedule" }]),
        );
        assert_eq!(intolerable_prefer_no_schedule(&t, &n), 1);
    }
}
