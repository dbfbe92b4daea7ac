//! NodeName and NodeAffinity: `spec.nodeName`, `spec.nodeSelector` and required node affinity
//! as filters; preferred node affinity as a score.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PodSpec};

use super::{Filtered, Rejection};
use crate::controllers::scheduler::node_info::NodeInfo;

/// NodeName: a pod naming a node fits only there.
pub fn node_name(spec: &PodSpec, node: &NodeInfo) -> Filtered {
    match spec.node_name.as_deref() {
        Some(name) if !name.is_empty() && name != node.name => Err(Rejection::unresolvable("node(s) didn't match the requested node name")),
        _ => Ok(()),
    }
}

/// NodeAffinity filter: the node selector and every required term set.
pub fn node_affinity(spec: &PodSpec, node: &NodeInfo) -> Filtered {
    if matches_selector_and_required_affinity(spec, &node.name, node.labels()) {
        Ok(())
    } else {
        Err(Rejection::unresolvable("node(s) didn't match Pod's node affinity/selector"))
    }
}

/// Whether a node with this name and these labels satisfies the pod's node selector and required
/// node affinity (also used by topology spreading to pick eligible domains).
pub fn matches_selector_and_required_affinity(spec: &PodSpec, name: &str, labels: &BTreeMap<String, String>) -> bool {
    if let Some(selector) = &spec.node_selector {
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref());
    match required {
        None => true,
        Some(sel) => sel.node_selector_terms.iter().any(|t| term_matches(t, name, labels)),
    }
}

/// NodeAffinity score (raw): the summed weights of the preferred terms the node matches.
pub fn preferred_affinity_weight(spec: &PodSpec, node: &NodeInfo) -> i64 {
    let preferred = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.preferred_during_scheduling_ignored_during_execution.as_ref());
    preferred
        .into_iter()
        .flatten()
        .filter(|p| p.weight != 0 && term_matches(&p.preference, &node.name, node.labels()))
        .map(|p| i64::from(p.weight))
        .sum()
}

/// A node selector term: all its expressions (on labels) and fields (on `metadata.name`) hold.
/// A term with neither matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && matches!(r.operator.as_str(), "In" | "NotIn") && requirement_matches(r, Some(name)))
}

/// One requirement against the value of its key (`None` when absent).
pub fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| values.iter().all(|x| x != v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), [want]) = (value.and_then(number), values) else { return false };
            let Some(want) = number(want) else { return false };
            if r.operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;

    fn node(name: &str, labels: serde_json::Value) -> NodeInfo {
        NodeInfo::with_pods(serde_json::from_value::<Node>(json!({ "metadata": { "name": name, "labels": labels } })).unwrap(), [])
    }

    fn spec(v: serde_json::Value) -> PodSpec {
        let mut v = v;
        v["containers"] = json!([]);
        serde_json::from_value(v).unwrap()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement { key: key.into(), operator: op.into(), values: Some(values.iter().map(|s| s.to_string()).collect()) }
    }

    #[test]
    fn requirement_operators() {
        assert!(requirement_matches(&req("k", "In", &["a", "b"]), Some("b")));
        assert!(!requirement_matches(&req("k", "In", &["a"]), None));
        assert!(requirement_matches(&req("k", "NotIn", &["a"]), Some("b")));
        assert!(requirement_matches(&req("k", "NotIn", &["a"]), None));
        assert!(!requirement_matches(&req("k", "NotIn", &["a"]), Some("a")));
        assert!(requirement_matches(&req("k", "Exists", &[]), Some("")));
        assert!(requirement_matches(&req("k", "DoesNotExist", &[]), None));
        assert!(requirement_matches(&req("k", "Gt", &["5"]), Some("6")));
        assert!(!requirement_matches(&req("k", "Gt", &["5"]), Some("5")));
        assert!(requirement_matches(&req("k", "Lt", &["5"]), Some("-1")));
        assert!(!requirement_matches(&req("k", "Lt", &["x"]), Some("1")));
        assert!(!requirement_matches(&req("k", "Gt", &["1", "2"]), Some("3")));
        assert!(!requirement_matches(&req("k", "Bogus", &[]), Some("3")));
    }

    #[test]
    fn node_selector_and_required_affinity() {
        let n = node("n1", json!({ "disk": "ssd", "zone": "a" }));
        assert!(node_affinity(&spec(json!({ "nodeSelector": { "disk": "ssd" } })), &n).is_ok());
        let err = node_affinity(&spec(json!({ "nodeSelector": { "disk": "hdd" } })), &n).unwrap_err();
        assert_eq!(err.reasons, ["node(s) didn't match Pod's node affinity/selector"]);
        let affinity = |terms: serde_json::Value| {
            spec(
                json!({ "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": terms } } } }),
            )
        };
        let either = affinity(json!([
            { "matchExpressions": [ { "key": "zone", "operator": "In", "values": ["b"] } ] },
            { "matchFields": [ { "key": "metadata.name", "operator": "In", "values": ["n1"] } ] }
        ]));
        assert!(node_affinity(&either, &n).is_ok());
        assert!(node_affinity(&either, &node("n2", json!({}))).is_err());
        assert!(node_affinity(&affinity(json!([{}])), &n).is_err(), "an empty term matches nothing");
    }

    #[test]
    fn node_name_and_preferred() {
        let n = node("n1", json!({ "zone": "a" }));
        assert!(node_name(&spec(json!({})), &n).is_ok());
        assert_eq!(
            node_name(&spec(json!({ "nodeName": "n2" })), &n).unwrap_err().reasons,
            ["node(s) didn't match the requested node name"]
        );
        let s = spec(json!({ "affinity": { "nodeAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [
            { "weight": 10, "preference": { "matchExpressions": [ { "key": "zone", "operator": "In", "values": ["a"] } ] } },
            { "weight": 5, "preference": { "matchExpressions": [ { "key": "zone", "operator": "Exists" } ] } },
            { "weight": 7, "preference": { "matchExpressions": [ { "key": "gpu", "operator": "Exists" } ] } }
        ] } } }));
        assert_eq!(preferred_affinity_weight(&s, &n), 15);
    }
}
