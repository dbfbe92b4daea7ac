//! `GetPodFromTemplate`: a pod from a workload's pod template, with its controllerRef.

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// How the new pod is named.
pub enum PodName {
    /// `metadata.generateName` (ReplicaSets, DaemonSets: `<owner>-`).
    Generate(String),
    /// A fixed name (StatefulSets: `<sts>-<ordinal>`).
    Fixed(String),
}

/// The pod `template` describes, in `namespace`, controlled by `owner`.
pub fn pod_from_template(template: &PodTemplateSpec, namespace: &str, name: PodName, owner: OwnerReference) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    let (name, generate_name) = match name {
        PodName::Generate(prefix) => (None, Some(prefix)),
        PodName::Fixed(name) => (Some(name), None),
    };
    Pod {
        metadata: ObjectMeta {
            name,
            generate_name,
            namespace: Some(namespace.to_string()),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_labels_annotations_and_spec() {
        let template: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}, "name": "ignored"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}
        }))
        .unwrap();
        let owner = OwnerReference { name: "rs".into(), uid: "u".into(), controller: Some(true), ..Default::default() };
        let pod = pod_from_template(&template, "ns", PodName::Generate("rs-".into()), owner);
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("rs-"));
        assert_eq!(pod.metadata.name, None);
        assert_eq!(pod.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(pod.metadata.labels.unwrap()["app"], "web");
        assert_eq!(pod.metadata.annotations.unwrap()["a"], "b");
        assert_eq!(pod.metadata.owner_references.unwrap()[0].uid, "u");
        assert_eq!(pod.spec.unwrap().containers[0].image.as_deref(), Some("nginx"));
    }
}
