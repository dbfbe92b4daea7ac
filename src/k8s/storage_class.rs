//! Which StorageClass is the cluster's default: the newest of those annotated
//! `storageclass.kubernetes.io/is-default-class: "true"` (or the beta spelling), as kube's
//! DefaultStorageClass admission and the PersistentVolume controller's retroactive assignment
//! both pick it.

use k8s_openapi::api::storage::v1::StorageClass;

/// The annotation a default StorageClass carries (and its beta spelling).
const DEFAULT_CLASS_ANNOTATIONS: [&str; 2] =
    ["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"];

/// The default StorageClass among `classes`, if any is marked default.
pub fn default_class<'a>(classes: impl IntoIterator<Item = &'a StorageClass>) -> Option<&'a StorageClass> {
    classes
        .into_iter()
        .filter(|c| {
            let annotations = c.metadata.annotations.as_ref();
            DEFAULT_CLASS_ANNOTATIONS.iter().any(|a| annotations.and_then(|m| m.get(*a)).is_some_and(|v| v == "true"))
        })
        .max_by(|a, b| {
            let created = |c: &StorageClass| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(a).cmp(&created(b)).then_with(|| b.metadata.name.cmp(&a.metadata.name))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_newest_default_class_wins() {
        let class = |name: &str, default: &str, created: &str| -> StorageClass {
            serde_json::from_value(json!({"metadata": {"name": name, "creationTimestamp": created,
                "annotations": {"storageclass.kubernetes.io/is-default-class": default}}, "provisioner": "p"}))
            .unwrap()
        };
        let classes = [
            class("a", "true", "2024-01-01T00:00:00Z"),
            class("b", "true", "2024-02-01T00:00:00Z"),
            class("c", "false", "2025-01-01T00:00:00Z"),
        ];
        assert_eq!(default_class(&classes).and_then(|c| c.metadata.name.as_deref()), Some("b"));
        assert!(default_class(&classes[2..]).is_none());
    }
}
