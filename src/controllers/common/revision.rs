//! ControllerRevisions (`controller/history`): StatefulSets and DaemonSets snapshot their pod
//! template as `{"spec":{"template":{…,"$patch":"replace"}}}`, named `<owner>-<hash>`,
//! numbered in order; an old template that comes back gets the next number instead of a
//! twin, and history beyond the limit is pruned oldest first.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use super::hash::compute_hash;
use super::{is_conflict, Error};

/// The label pods carry naming (StatefulSet) or hashing (DaemonSet) their revision.
pub const HASH_LABEL: &str = "controller-revision-hash";

/// The revision data of a pod template.
pub fn data_of(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_default();
    if let Some(obj) = t.as_object_mut() {
        obj.insert("$patch".into(), json!("replace"));
    }
    json!({ "spec": { "template": t } })
}

/// The pod template stored in a revision.
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = revision.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

/// The hash naming a revision with this data.
pub fn hash_of(data: &Value, collision_count: i32) -> String {
    compute_hash(data, (collision_count != 0).then_some(collision_count))
}

/// One more than the highest revision number.
pub fn next_number(revisions: &[ControllerRevision]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

fn same_data(r: &ControllerRevision, data: &Value) -> bool {
    r.data.as_ref().is_some_and(|d| &d.0 == data)
}

/// What `ensure` should do to have a revision with `data` as the newest.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// The newest revision already has this data.
    Current(String),
    /// An older revision has it: renumber it to the next number.
    Renumber(String, i64),
    /// None has it: create one with the next number.
    Create(i64),
}

/// The plan for `data` over `revisions`.
pub fn plan(revisions: &[ControllerRevision], data: &Value) -> Plan {
    let newest = revisions.iter().max_by_key(|r| r.revision);
    let equal = revisions.iter().filter(|r| same_data(r, data)).max_by_key(|r| r.revision);
    match (equal, newest) {
        (Some(e), Some(n)) if e.revision == n.revision => Plan::Current(e.metadata.name.clone().unwrap_or_default()),
        (Some(e), _) => Plan::Renumber(e.metadata.name.clone().unwrap_or_default(), next_number(revisions)),
        (None, _) => Plan::Create(next_number(revisions)),
    }
}

/// The revision for `data`, creating or renumbering as needed. `collision_count` grows when
/// the hashed name is taken by different data.
pub async fn ensure(
    api: &Api<ControllerRevision>,
    owner: &OwnerReference,
    labels: &BTreeMap<String, String>,
    revisions: &[ControllerRevision],
    data: Value,
    collision_count: &mut i32,
) -> Result<ControllerRevision, Error> {
    match plan(revisions, &data) {
        Plan::Current(name) => {
            Ok(revisions.iter().find(|r| r.metadata.name.as_deref() == Some(name.as_str())).cloned().unwrap_or_default())
        }
        Plan::Renumber(name, number) => Ok(api.patch(&name, &PatchParams::default(), &Patch::Merge(json!({ "revision": number }))).await?),
        Plan::Create(number) => loop {
            let hash = hash_of(&data, *collision_count);
            let mut labels = labels.clone();
            labels.insert("controller.kubernetes.io/hash".into(), hash.clone());
            let revision = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(format!("{}-{hash}", owner.name)),
                    labels: Some(labels),
                    owner_references: Some(vec![owner.clone()]),
                    ..Default::default()
                },
                data: Some(RawExtension(data.clone())),
                revision: number,
            };
            match api.create(&PostParams::default(), &revision).await {
                Ok(created) => return Ok(created),
                Err(e) if is_conflict(&e) => {
                    let existing = api.get(&format!("{}-{hash}", owner.name)).await?;
                    if same_data(&existing, &data) {
                        return Ok(existing);
                    }
                    *collision_count += 1;
                }
                Err(e) => return Err(e.into()),
            }
        },
    }
}

/// Revisions to delete to keep at most `limit` that are not `live`, oldest first.
pub fn prunable(revisions: &[ControllerRevision], live: &HashSet<String>, limit: i32) -> Vec<String> {
    let mut dead: Vec<&ControllerRevision> =
        revisions.iter().filter(|r| !live.contains(r.metadata.name.as_deref().unwrap_or_default())).collect();
    let excess = dead.len().saturating_sub(limit.max(0) as usize);
    dead.sort_by_key(|r| r.revision);
    dead.into_iter().take(excess).filter_map(|r| r.metadata.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": image}]}}))
            .unwrap()
    }

    fn rev(name: &str, image: &str, number: i64) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            data: Some(RawExtension(data_of(&template(image)))),
            revision: number,
        }
    }

    #[test]
    fn data_round_trips_the_template() {
        let t = template("nginx:1");
        let data = data_of(&t);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(template_of(&rev("r", "nginx:1", 1)), Some(t));
        assert_ne!(hash_of(&data, 0), hash_of(&data, 1));
    }

    #[test]
    fn plans_reuse_renumber_or_create() {
        let revs = vec![rev("a", "v1", 1), rev("b", "v2", 2)];
        assert_eq!(plan(&revs, &data_of(&template("v2"))), Plan::Current("b".into()));
        assert_eq!(plan(&revs, &data_of(&template("v1"))), Plan::Renumber("a".into(), 3), "a rollback renumbers");
        assert_eq!(plan(&revs, &data_of(&template("v3"))), Plan::Create(3));
        assert_eq!(plan(&[], &data_of(&template("v1"))), Plan::Create(1));
    }

    #[test]
    fn pruning_keeps_live_and_newest() {
        let revs = vec![rev("a", "1", 1), rev("b", "2", 2), rev("c", "3", 3), rev("d", "4", 4)];
        let live: HashSet<String> = ["d".to_string(), "a".to_string()].into();
        assert_eq!(prunable(&revs, &live, 1), ["b"]);
        assert_eq!(prunable(&revs, &live, 0), ["b", "c"]);
        assert!(prunable(&revs, &live, 10).is_empty());
    }
}
