//! The two kinds the replica controller drives: apps/v1 ReplicaSet and v1
//! ReplicationController (whose selector is a plain label map, defaulting to the template's
//! labels).

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::controllers::common::selector;

/// What the replica controller needs to know about its owner kind.
pub trait Replicated:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// Desired pods (default 1).
    fn replicas(&self) -> i32;
    /// The pod selector; `None` when there is none to act on.
    fn selector(&self) -> Option<LabelSelector>;
    fn template(&self) -> Option<&PodTemplateSpec>;
    fn min_ready_seconds(&self) -> i32;
    /// The current status as JSON (to compare against the computed one).
    fn status_json(&self) -> serde_json::Value;
}

impl Replicated for ReplicaSet {
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn selector(&self) -> Option<LabelSelector> {
        self.spec.as_ref().map(|s| s.selector.clone())
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }

    fn status_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.status).unwrap_or_default()
    }
}

impl Replicated for ReplicationController {
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn selector(&self) -> Option<LabelSelector> {
        let spec = self.spec.as_ref()?;
        let labels = match &spec.selector {
            Some(s) if !s.is_empty() => s,
            _ => spec.template.as_ref()?.metadata.as_ref()?.labels.as_ref()?,
        };
        Some(selector::from_map(labels))
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }

    fn status_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.status).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rc_selector_defaults_to_template_labels() {
        let rc: ReplicationController =
            serde_json::from_value(json!({"spec": {"template": {"metadata": {"labels": {"app": "x"}}}}})).unwrap();
        assert_eq!(rc.selector().unwrap().match_labels.unwrap()["app"], "x");
        assert_eq!(rc.replicas(), 1);
        let rs: ReplicaSet = serde_json::from_value(json!({"spec": {"replicas": 3, "selector": {"matchLabels": {"a": "b"}}}})).unwrap();
        assert_eq!(rs.replicas(), 3);
        assert_eq!(rs.selector().unwrap().match_labels.unwrap()["a"], "b");
    }
}
