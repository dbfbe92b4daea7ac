//! Controller references and `ControllerRefManager`: building an owner's controllerRef,
//! adopting orphans its selector matches and releasing children that stopped matching, with
//! JSON patches guarded by `test` ops so a racing writer makes them fail instead of clobber.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::Error;

/// The controllerRef `owner` puts on its children.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The child's controlling owner, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|r| r.controller == Some(true))
}

/// What to do with a child that might belong to an owner.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Ours and still matching.
    Keep,
    /// An orphan that matches: take it.
    Adopt,
    /// Ours but no longer matching: let go.
    Release,
    /// Someone else's, or nothing to do with us.
    Ignore,
}

/// `ClaimObject`'s decision for one child.
pub fn classify(owner_uid: &str, owner_deleting: bool, child: &ObjectMeta, matches: bool) -> Claim {
    match controller_of(child) {
        Some(r) if r.uid == owner_uid => {
            if matches || owner_deleting {
                Claim::Keep
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None if matches && !owner_deleting && child.deletion_timestamp.is_none() => Claim::Adopt,
        None => Claim::Ignore,
    }
}

/// Adopts and releases `candidates` for `owner` and returns the children it owns afterwards.
/// Before adopting it re-reads the owner (`owners`) so a deleted or re-created owner with
/// the same name adopts nothing.
pub async fn claim<K, C>(
    owners: &Api<K>,
    owner: &K,
    children: &Api<C>,
    candidates: Vec<Arc<C>>,
    matches: impl Fn(&C) -> bool,
) -> Result<Vec<Arc<C>>, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    C: Resource + Clone + DeserializeOwned + Debug,
{
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let deleting = owner.meta().deletion_timestamp.is_some();
    let mut owned = Vec::new();
    let mut owner_checked = false;
    for child in candidates {
        match classify(&uid, deleting, child.meta(), matches(&child)) {
            Claim::Keep => owned.push(child),
            Claim::Ignore => {}
            Claim::Adopt => {
                if !owner_checked {
                    let fresh = owners.get(&owner.name_any()).await?;
                    if fresh.meta().uid.as_deref() != Some(uid.as_str()) || fresh.meta().deletion_timestamp.is_some() {
                        return Err(Error::Conflict(format!("{} changed or is being deleted; not adopting", owner.name_any())));
                    }
                    owner_checked = true;
                }
                if let Some(adopted) = adopt(children, &child, controller_ref(owner)).await? {
                    owned.push(Arc::new(adopted));
                }
            }
            Claim::Release => release(children, &child, &uid).await?,
        }
    }
    Ok(owned)
}

/// Adds the controllerRef; `None` if the child changed or vanished meanwhile.
async fn adopt<C: Resource + Clone + DeserializeOwned + Debug>(
    api: &Api<C>,
    child: &C,
    reference: OwnerReference,
) -> Result<Option<C>, kube::Error> {
    let meta = child.meta();
    tracing::debug!(child = %child.name_any(), owner = %reference.name, "adopting");
    let mut ops = vec![json!({"op": "test", "path": "/metadata/uid", "value": meta.uid})];
    match &meta.owner_references {
        Some(refs) if !refs.is_empty() => ops.push(json!({"op": "add", "path": "/metadata/ownerReferences/-", "value": reference})),
        _ => ops.push(json!({"op": "add", "path": "/metadata/ownerReferences", "value": [reference]})),
    }
    guarded_patch(api, child, ops).await
}

/// Removes our controllerRef.
async fn release<C: Resource + Clone + DeserializeOwned + Debug>(api: &Api<C>, child: &C, owner_uid: &str) -> Result<(), kube::Error> {
    let Some(index) = child.meta().owner_references.iter().flatten().position(|r| r.uid == owner_uid) else { return Ok(()) };
    let ops = vec![
        json!({"op": "test", "path": "/metadata/uid", "value": child.meta().uid}),
        json!({"op": "test", "path": format!("/metadata/ownerReferences/{index}/uid"), "value": owner_uid}),
        json!({"op": "remove", "path": format!("/metadata/ownerReferences/{index}")}),
    ];
    tracing::debug!(child = %child.name_any(), "releasing");
    guarded_patch(api, child, ops).await.map(|_| ())
}

/// Applies a JSON patch whose `test` ops may fail: a failed test (422), a vanished object
/// (404) or a conflict means "someone else got there first" and yields `None`.
async fn guarded_patch<C: Resource + Clone + DeserializeOwned + Debug>(
    api: &Api<C>,
    child: &C,
    ops: Vec<serde_json::Value>,
) -> Result<Option<C>, kube::Error> {
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops)).map_err(kube::Error::SerdeError)?;
    match api.patch(&child.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch)).await {
        Ok(c) => Ok(Some(c)),
        Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409 | 422) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(owner: Option<(&str, bool)>, deleting: bool) -> ObjectMeta {
        ObjectMeta {
            owner_references: owner.map(|(uid, controller)| {
                vec![OwnerReference { uid: uid.into(), controller: Some(controller), name: "o".into(), ..Default::default() }]
            }),
            deletion_timestamp: deleting.then(super::super::now),
            ..Default::default()
        }
    }

    #[test]
    fn claims_follow_controller_manager_rules() {
        assert_eq!(classify("u1", false, &meta(Some(("u1", true)), false), true), Claim::Keep);
        assert_eq!(classify("u1", false, &meta(Some(("u1", true)), false), false), Claim::Release);
        assert_eq!(classify("u1", true, &meta(Some(("u1", true)), false), false), Claim::Keep, "a deleting owner releases nothing");
        assert_eq!(classify("u1", false, &meta(Some(("u2", true)), false), true), Claim::Ignore);
        assert_eq!(classify("u1", false, &meta(None, false), true), Claim::Adopt);
        assert_eq!(classify("u1", false, &meta(Some(("u2", false)), false), true), Claim::Adopt, "non-controller refs do not count");
        assert_eq!(classify("u1", false, &meta(None, true), true), Claim::Ignore, "a dying orphan is not adopted");
        assert_eq!(classify("u1", true, &meta(None, false), true), Claim::Ignore, "a deleting owner adopts nothing");
        assert_eq!(classify("u1", false, &meta(None, false), false), Claim::Ignore);
    }
}
