//! Where daemon pods belong (`NodeShouldRunDaemonPod`): the node must match the template's
//! nodeSelector and required node affinity, and tolerate the node's NoSchedule/NoExecute
//! taints (only NoExecute ones for pods already there). Daemon pods get Kubernetes' default
//! tolerations and a required affinity to exactly their node (`matchFields metadata.name`),
//! which the scheduler honours.

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration,
};

/// Whether daemon pods should be created on the node, and whether existing ones may stay.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Fit {
    pub should_run: bool,
    pub may_stay: bool,
}

pub fn fit(spec: &PodSpec, node: &Node) -> Fit {
    let spec = with_default_tolerations(spec);
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selected = spec.node_selector.iter().flatten().all(|(k, v)| labels.get(k) == Some(v)) && affinity_allows(&spec, node);
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    let tolerated = |t: &Taint| tolerations.iter().any(|tol| tolerates(tol, t));
    let schedule_ok = taints.iter().filter(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute")).all(tolerated);
    let execute_ok = taints.iter().filter(|t| t.effect == "NoExecute").all(tolerated);
    Fit { should_run: selected && schedule_ok, may_stay: selected && execute_ok }
}

fn affinity_allows(spec: &PodSpec, node: &Node) -> bool {
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    let Some(required) = required else { return true };
    required.node_selector_terms.iter().any(|term| term_matches(term, node))
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let name = node.metadata.name.clone().unwrap_or_default();
    let exprs = term.match_expressions.iter().flatten();
    let fields = term.match_fields.iter().flatten();
    let any = term.match_expressions.as_ref().is_some_and(|e| !e.is_empty()) || term.match_fields.as_ref().is_some_and(|f| !f.is_empty());
    any && exprs.clone().all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.clone().all(|r| r.key == "metadata.name" && requirement_matches(r, Some(&name)))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => matches!((value.and_then(number), values.first().and_then(|x| number(x))), (Some(v), Some(x)) if v > x),
        "Lt" => matches!((value.and_then(number), values.first().and_then(|x| number(x))), (Some(v), Some(x)) if v < x),
        _ => false,
    }
}

/// `ToleratesTaint`.
fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    let effect_ok = tol.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
    let key_ok = match tol.key.as_deref() {
        None | Some("") => tol.operator.as_deref() == Some("Exists"),
        Some(k) => k == taint.key,
    };
    let value_ok = match tol.operator.as_deref() {
        Some("Exists") => true,
        _ => tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    };
    effect_ok && key_ok && value_ok
}

/// The pod spec with the tolerations every daemon pod gets (`AddOrUpdateDaemonPodTolerations`).
pub fn with_default_tolerations(spec: &PodSpec) -> PodSpec {
    let mut spec = spec.clone();
    let mut defaults = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        defaults.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in defaults {
        if !tolerations.iter().any(|t| t.key.as_deref() == Some(key) && t.effect.as_deref() == Some(effect)) {
            tolerations.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some(effect.into()),
                ..Default::default()
            });
        }
    }
    spec
}

/// The pod spec bound to `node` by required affinity (`ReplaceDaemonSetPodNodeNameNodeAffinity`).
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
        match_expressions: None,
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector { node_selector_terms: vec![term] });
}

/// The node a daemon pod is for: its nodeName, or the node its affinity pins it to.
pub fn target_node(spec: &PodSpec) -> Option<String> {
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let required = spec.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?;
    let term = required.node_selector_terms.first()?;
    let field = term.match_fields.as_ref()?.iter().find(|f| f.key == "metadata.name" && f.operator == "In")?;
    field.values.as_ref()?.first().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints}})).unwrap()
    }

    fn spec(v: serde_json::Value) -> PodSpec {
        let mut v = v;
        v["containers"] = json!([]);
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn selectors_and_affinity_pick_nodes() {
        let n = node(json!({"disk": "ssd", "zone": "a"}), json!([]));
        assert!(fit(&spec(json!({})), &n).should_run);
        assert!(fit(&spec(json!({"nodeSelector": {"disk": "ssd"}})), &n).should_run);
        assert!(!fit(&spec(json!({"nodeSelector": {"disk": "hdd"}})), &n).should_run);
        let affinity = |op: &str, values: serde_json::Value| {
            spec(json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": op, "values": values}]}]}}}}))
        };
        assert!(fit(&affinity("In", json!(["a", "b"])), &n).should_run);
        assert!(!fit(&affinity("NotIn", json!(["a"])), &n).should_run);
        assert!(!fit(&affinity("DoesNotExist", json!([])), &n).may_stay);
    }

    #[test]
    fn taints_need_tolerations_and_defaults_cover_conditions() {
        let unschedulable = node(json!({}), json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]));
        assert!(fit(&spec(json!({})), &unschedulable).should_run, "daemon pods tolerate cordoned nodes");
        let dedicated = node(json!({}), json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]));
        assert_eq!(fit(&spec(json!({})), &dedicated), Fit { should_run: false, may_stay: true });
        let tolerant = spec(json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}));
        assert!(fit(&tolerant, &dedicated).should_run);
        let evicting = node(json!({}), json!([{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]));
        assert_eq!(fit(&spec(json!({})), &evicting), Fit { should_run: false, may_stay: false });
        assert!(
            fit(&spec(json!({"tolerations": [{"operator": "Exists"}]})), &evicting).should_run,
            "an empty key with Exists tolerates all"
        );
        let defaults = with_default_tolerations(&spec(json!({"hostNetwork": true})));
        assert_eq!(defaults.tolerations.unwrap().len(), 7);
    }

    #[test]
    fn pinned_pods_name_their_node() {
        let mut s = spec(json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}));
        pin_to_node(&mut s, "n7");
        assert_eq!(target_node(&s).as_deref(), Some("n7"));
        let n = node(json!({}), json!([]));
        assert!(!fit(&s, &n).should_run, "pinned to another node");
        s.node_name = Some("n1".into());
        assert_eq!(target_node(&s).as_deref(), Some("n1"));
    }
}
