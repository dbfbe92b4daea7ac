//! The garbage collector's view of an object of any kind: only the metadata it acts on (uid,
//! name, namespace, resourceVersion, ownerReferences, finalizers, deletionTimestamp). Reading
//! watch events into this instead of a `DynamicObject` skips the rest of every object — specs,
//! statuses, managedFields — without building a JSON tree of it, which matters when thousands of
//! pods and events churn.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::core::DynamicResourceScope;
use kube::discovery::ApiResource;
use serde::Deserialize;

/// An object's GC-relevant metadata; a kube `Resource` typed at run time by its `ApiResource`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(from = "Wire")]
pub struct MetaObject {
    pub metadata: ObjectMeta,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    metadata: WireMeta,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct WireMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    finalizers: Option<Vec<String>>,
    deletion_timestamp: Option<Time>,
}

impl From<Wire> for MetaObject {
    fn from(w: Wire) -> Self {
        let m = w.metadata;
        Self {
            metadata: ObjectMeta {
                name: m.name,
                namespace: m.namespace,
                uid: m.uid,
                resource_version: m.resource_version,
                owner_references: m.owner_references,
                finalizers: m.finalizers,
                deletion_timestamp: m.deletion_timestamp,
                ..Default::default()
            },
        }
    }
}

impl kube::Resource for MetaObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.kind)
    }

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.group)
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.version)
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.api_version)
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.plural)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::ResourceExt;
    use serde_json::json;

    #[test]
    fn reads_only_the_metadata_the_collector_needs() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                "labels": { "app": "x" },
                "ownerReferences": [ { "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u0", "controller": true } ],
                "finalizers": ["f"], "deletionTimestamp": "2026-01-01T00:00:00Z",
                "managedFields": [ { "manager": "m", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": { "f:spec": {} } } ],
            },
            "spec": { "containers": [ { "name": "c", "image": "i" } ] },
            "status": { "phase": "Running" },
        });
        let o: MetaObject = serde_json::from_value(pod).unwrap();
        assert_eq!((o.name_any(), o.namespace().as_deref(), o.uid().as_deref()), ("p".to_string(), Some("ns"), Some("u1")));
        assert_eq!(o.resource_version().as_deref(), Some("7"));
        assert_eq!(o.owner_references()[0].uid, "u0");
        assert_eq!(o.finalizers(), ["f".to_string()]);
        assert!(o.metadata.deletion_timestamp.is_some());
        assert!(o.metadata.managed_fields.is_none() && o.metadata.labels.is_none());
        let bare: MetaObject = serde_json::from_value(json!({ "kind": "Event" })).unwrap();
        assert!(bare.uid().is_none());
    }
}
