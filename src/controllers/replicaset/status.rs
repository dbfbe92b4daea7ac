//! ReplicaSet/ReplicationController status from the pods it owns: replicas,
//! fullyLabeledReplicas, readyReplicas, availableReplicas, observedGeneration and the
//! ReplicaFailure condition.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use super::kinds::Replicated;
use crate::controllers::common::pods;

/// The status `owner` should have with `owned` active pods; `failure` is the reason and
/// message of a failed create/delete in this sync.
pub fn compute<K: Replicated>(owner: &K, owned: &[Arc<Pod>], failure: Option<(&str, String)>, now: Timestamp) -> Value {
    let template_labels = owner.template().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
    let fully_labeled = owned
        .iter()
        .filter(|p| {
            let labels = p.metadata.labels.as_ref();
            template_labels.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .count();
    let ready = owned.iter().filter(|p| pods::is_ready(p)).count();
    let available = owned.iter().filter(|p| pods::is_available(p, owner.min_ready_seconds(), now)).count();
    let current = owner.status_json();
    let mut conditions: Vec<Value> =
        current["conditions"].as_array().into_iter().flatten().filter(|c| c["type"] != "ReplicaFailure").cloned().collect();
    if let Some((reason, message)) = failure {
        let since = current["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "ReplicaFailure" && c["reason"] == reason)
            .map(|c| c["lastTransitionTime"].clone())
            .unwrap_or_else(|| json!(now.to_string()));
        conditions
            .push(json!({"type": "ReplicaFailure", "status": "True", "reason": reason, "message": message, "lastTransitionTime": since}));
    }
    json!({
        "replicas": owned.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": owner.meta().generation.unwrap_or(0),
        "conditions": if conditions.is_empty() { Value::Null } else { Value::Array(conditions) },
    })
}

/// Whether `current` already says what `desired` says (absent counts are zero).
pub fn up_to_date(current: &Value, desired: &Value) -> bool {
    desired.as_object().into_iter().flatten().all(|(k, v)| {
        let have = &current[k];
        match v {
            Value::Number(n) if n.as_i64() == Some(0) => have.is_null() || have == v,
            _ => have == v,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::common::pods::tests::pod;
    use k8s_openapi::api::apps::v1::ReplicaSet;

    #[test]
    fn counts_ready_available_and_labels() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"generation": 4},
            "spec": {"replicas": 3, "minReadySeconds": 10, "selector": {}, "template": {"metadata": {"labels": {"app": "a"}}}}
        }))
        .unwrap();
        let mut labeled = (*pod("l", "n", "Running", true, 60)).clone();
        labeled.metadata.labels = Some([("app".to_string(), "a".to_string())].into());
        let owned = vec![Arc::new(labeled), pod("fresh", "n", "Running", true, 1), pod("unready", "n", "Running", false, 0)];
        let s = compute(&rs, &owned, None, Timestamp::now());
        assert_eq!(s["replicas"], 3);
        assert_eq!(s["fullyLabeledReplicas"], 1);
        assert_eq!(s["readyReplicas"], 2);
        assert_eq!(s["availableReplicas"], 1);
        assert_eq!(s["observedGeneration"], 4);
        assert!(s["conditions"].is_null());
        assert!(!up_to_date(&json!({}), &s));
        assert!(up_to_date(&s, &s));
        let failed = compute(&rs, &owned, Some(("FailedCreate", "quota".into())), Timestamp::now());
        assert_eq!(failed["conditions"][0]["reason"], "FailedCreate");
        assert!(up_to_date(&json!({"replicas": null}), &json!({"replicas": 0})), "absent counts are zero");
    }
}
