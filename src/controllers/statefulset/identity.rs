//! StatefulSet pod identity: `<set>-<ordinal>` names, the pod-name / pod-index /
//! controller-revision-hash labels, hostname + subdomain, and the PersistentVolumeClaims
//! `<claim>-<set>-<ordinal>` from volumeClaimTemplates mounted in place of same-named volumes.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::controllers::common::revision::HASH_LABEL;
use crate::controllers::common::template::{pod_from_template, PodName};

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

pub fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// The ordinal of a pod named `<set>-<n>`, if the name has that shape.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let n = pod.strip_prefix(set)?.strip_prefix('-')?;
    if n.is_empty() || (n.len() > 1 && n.starts_with('0')) {
        return None;
    }
    n.parse().ok().filter(|n: &i32| *n >= 0)
}

pub fn claim_name(claim: &str, set: &str, ordinal: i32) -> String {
    format!("{claim}-{set}-{ordinal}")
}

/// The pod for `ordinal` from `template` (the revision it belongs to, named `revision`).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32, owner: OwnerReference) -> Pod {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let name = pod_name(&set_name, ordinal);
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let mut pod = pod_from_template(template, &ns, PodName::Fixed(name.clone()), owner);
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(HASH_LABEL.into(), revision.into());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(name);
    spec.subdomain = set.spec.as_ref().and_then(|s| s.service_name.clone()).filter(|s| !s.is_empty());
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    for claim in set.spec.as_ref().and_then(|s| s.volume_claim_templates.as_ref()).into_iter().flatten() {
        let claim_template = claim.metadata.name.clone().unwrap_or_default();
        volumes.retain(|v| v.name != claim_template);
        volumes.push(Volume {
            name: claim_template.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&claim_template, &set_name, ordinal),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    if volumes.is_empty() {
        spec.volumes = None;
    }
    pod
}

/// The claims the pod at `ordinal` needs, labelled with the set's selector labels.
pub fn claims(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let Some(spec) = set.spec.as_ref() else { return vec![] };
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector_labels.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(t.metadata.name.as_deref().unwrap_or_default(), &set_name, ordinal)),
                    namespace: set.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ordinals_parse_only_canonical_names() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-012"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webby-1"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
    }

    #[test]
    fn pods_get_identity_and_claims() {
        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "ns"},
            "spec": {"serviceName": "db-svc", "selector": {"matchLabels": {"app": "db"}},
                     "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [], "volumes": [{"name": "data", "emptyDir": {}}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}
        }))
        .unwrap();
        let template = set.spec.as_ref().unwrap().template.clone();
        let pod = new_pod(&set, &template, "db-abc", 2, OwnerReference::default());
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("db-2"));
        assert_eq!(
            (labels[POD_NAME_LABEL].as_str(), labels[POD_INDEX_LABEL].as_str(), labels[HASH_LABEL].as_str()),
            ("db-2", "2", "db-abc")
        );
        let spec = pod.spec.unwrap();
        assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some("db-2"), Some("db-svc")));
        let volumes = spec.volumes.unwrap();
        assert_eq!(volumes.len(), 1, "the claim replaces the same-named volume");
        assert_eq!(volumes[0].persistent_volume_claim.as_ref().unwrap().claim_name, "data-db-2");
        let pvcs = claims(&set, 2);
        assert_eq!(pvcs[0].metadata.name.as_deref(), Some("data-db-2"));
        assert_eq!(pvcs[0].metadata.labels.as_ref().unwrap()["app"], "db");
    }
}
