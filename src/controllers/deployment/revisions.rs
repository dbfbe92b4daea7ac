//! Deployment revision bookkeeping (`deployment/util`): which ReplicaSet is the new one (its
//! template equals the Deployment's, ignoring `pod-template-hash`), revision numbers and
//! `revision-history` (an old ReplicaSet that becomes new again — `kubectl rollout undo` —
//! gets the next number and remembers its old ones), the replicas annotations, and the
//! Deployment annotations copied onto its ReplicaSets.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;

pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const MAX_HISTORY_CHARS: usize = 2000;
/// Deployment annotations that are not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// The revision number a ReplicaSet carries (0 if none).
pub fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).and_then(|r| r.parse().ok()).unwrap_or(0)
}

pub fn max_revision(sets: &[ReplicaSet]) -> i64 {
    sets.iter().map(revision_of).max().unwrap_or(0)
}

/// Whether two templates are equal once `pod-template-hash` is dropped from their labels.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(HASH_LABEL);
            if labels.is_empty() {
                t.metadata.as_mut().map(|m| m.labels = None);
            }
        }
        serde_json::to_value(t).unwrap_or_default()
    };
    strip(a) == strip(b)
}

/// The oldest ReplicaSet whose template matches the Deployment's; `sets` sorted oldest first.
pub fn find_new<'a>(d: &Deployment, sets: &'a [ReplicaSet]) -> Option<&'a ReplicaSet> {
    let template = &d.spec.as_ref()?.template;
    sets.iter().find(|rs| rs.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| equal_ignore_hash(t, template)))
}

fn annotations(rs: &mut ReplicaSet) -> &mut BTreeMap<String, String> {
    rs.metadata.annotations.get_or_insert_with(BTreeMap::new)
}

/// `SetNewReplicaSetAnnotations`: copies the Deployment's annotations, raises the revision
/// to `new_revision` (recording the old one in `revision-history`) and, for a ReplicaSet
/// about to be created, sets the replicas annotations. Returns whether anything changed.
pub fn set_new_annotations(d: &Deployment, rs: &mut ReplicaSet, new_revision: i64, exists: bool, max_surge: i32) -> bool {
    let mut changed = copy_deployment_annotations(d, rs);
    let old = rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).cloned();
    let old_number = match &old {
        Some(o) => match o.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return changed,
        },
        None => 0,
    };
    if old_number < new_revision {
        annotations(rs).insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = annotations(rs).get(REVISION_HISTORY).cloned().unwrap_or_default();
            let mut entries: Vec<&str> = history.split(',').filter(|e| !e.is_empty()).collect();
            entries.push(&old);
            while entries.len() > 1 && entries.iter().map(|e| e.len() + 1).sum::<usize>() - 1 > MAX_HISTORY_CHARS {
                entries.remove(0);
            }
            let joined = entries.join(",");
            annotations(rs).insert(REVISION_HISTORY.into(), joined);
        }
    }
    if !exists {
        let replicas = replicas_of(d);
        changed |= set_replicas_annotations(rs, replicas, replicas + max_surge);
    }
    changed
}

fn copy_deployment_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let mut changed = false;
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if NOT_COPIED.contains(&k.as_str()) {
            continue;
        }
        if rs.metadata.annotations.as_ref().and_then(|a| a.get(k)) != Some(v) {
            annotations(rs).insert(k.clone(), v.clone());
            changed = true;
        }
    }
    changed
}

/// Sets `desired-replicas` and `max-replicas`; whether they changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let need = replicas_annotations_need_update(rs, desired, max);
    if need {
        annotations(rs).insert(DESIRED_REPLICAS.into(), desired.to_string());
        annotations(rs).insert(MAX_REPLICAS.into(), max.to_string());
    }
    need
}

pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.as_ref();
    a.and_then(|a| a.get(DESIRED_REPLICAS)) != Some(&desired.to_string()) || a.and_then(|a| a.get(MAX_REPLICAS)) != Some(&max.to_string())
}

fn annotation_i32(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

pub fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation_i32(rs, DESIRED_REPLICAS)
}

pub fn max_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation_i32(rs, MAX_REPLICAS)
}

/// The Deployment's desired replicas (default 1).
pub fn replicas_of(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rs(revision: Option<&str>, history: Option<&str>) -> ReplicaSet {
        let mut a = serde_json::Map::new();
        if let Some(r) = revision {
            a.insert(REVISION.into(), json!(r));
        }
        if let Some(h) = history {
            a.insert(REVISION_HISTORY.into(), json!(h));
        }
        serde_json::from_value(json!({"metadata": {"name": "rs", "annotations": a}})).unwrap()
    }

    fn deployment() -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "d", "annotations": {"kubernetes.io/change-cause": "v2", REVISION: "7"}},
            "spec": {"replicas": 3, "selector": {}, "template": {"metadata": {"labels": {"app": "a"}}}}
        }))
        .unwrap()
    }

    #[test]
    fn a_new_set_gets_the_revision_and_replicas_annotations() {
        let mut new = rs(None, None);
        assert!(set_new_annotations(&deployment(), &mut new, 1, false, 1));
        let a = new.metadata.annotations.unwrap();
        assert_eq!(a[REVISION], "1");
        assert_eq!(a[DESIRED_REPLICAS], "3");
        assert_eq!(a[MAX_REPLICAS], "4");
        assert_eq!(a["kubernetes.io/change-cause"], "v2");
        assert!(!a.contains_key(REVISION_HISTORY));
    }

    #[test]
    fn a_rollback_renumbers_and_records_history() {
        let mut old = rs(Some("1"), None);
        assert!(set_new_annotations(&deployment(), &mut old, 3, true, 1));
        let a = old.metadata.annotations.clone().unwrap();
        assert_eq!((a[REVISION].as_str(), a[REVISION_HISTORY].as_str()), ("3", "1"));
        assert!(!a.contains_key(DESIRED_REPLICAS), "existing sets keep their replicas annotations");
        let mut again = rs(Some("3"), Some("1"));
        set_new_annotations(&deployment(), &mut again, 5, true, 1);
        assert_eq!(again.metadata.annotations.unwrap()[REVISION_HISTORY], "1,3");
        let mut current = rs(Some("3"), None);
        current.metadata.annotations.as_mut().unwrap().insert("kubernetes.io/change-cause".into(), "v2".into());
        assert!(!set_new_annotations(&deployment(), &mut current, 3, true, 1), "the newest set keeps its number");
    }

    #[test]
    fn templates_compare_without_the_hash_label() {
        let t = |labels: serde_json::Value| -> PodTemplateSpec { serde_json::from_value(json!({"metadata": {"labels": labels}})).unwrap() };
        assert!(equal_ignore_hash(&t(json!({"app": "a", HASH_LABEL: "x"})), &t(json!({"app": "a"}))));
        assert!(!equal_ignore_hash(&t(json!({"app": "b", HASH_LABEL: "x"})), &t(json!({"app": "a"}))));
        assert_eq!(max_revision(&[rs(Some("2"), None), rs(Some("10"), None), rs(None, None)]), 10);
    }
}
