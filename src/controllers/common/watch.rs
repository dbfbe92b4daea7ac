//! Controllers' views of the shared informers: a kind's cache and the stream of touched
//! objects that triggers reconciles — the cache is updated before the trigger fires, so a
//! reconcile always sees at least what triggered it. For pods the stream also lowers the
//! owners' expectations (creation = first sight; deletion = deletionTimestamp or gone).

use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::ObjectRef;
use kube::Resource;

use super::expectations::Expectations;
use super::owner::controller_of;
use crate::controllers::informer::{Change, Informer, Informers, Watched};

/// A trigger stream of touched objects, for `Controller::watches_shared_stream` and
/// `owns_shared_stream`.
pub type Touched<K> = BoxStream<'static, Arc<K>>;

/// The shared informer of every `K` and the objects its changes touch.
pub fn shared<K: Watched>(informers: &Informers) -> (Informer<K>, Touched<K>) {
    let informer = informers.get::<K>();
    let touched = informer.touched().boxed();
    (informer, touched)
}

/// Every pod; creations and deletions of pods controlled by a `owner_kind` lower that
/// owner's expectations (keyed `namespace/name`).
pub fn watch_pods(informers: &Informers, owner_kind: String, expectations: Arc<Expectations>) -> (Informer<Pod>, Touched<Pod>) {
    let informer = informers.get::<Pod>();
    let touched = informer.subscribe().filter_map(move |change| {
        observe_pod(&expectations, &owner_kind, &change);
        futures::future::ready(change.object().cloned())
    });
    (informer, touched.boxed())
}

fn observe_pod(expectations: &Expectations, owner_kind: &str, change: &Change<Pod>) {
    let (pod, gone, first_sight) = match change {
        Change::Apply(p, new) | Change::InitApply(p, new) => (p, p.metadata.deletion_timestamp.is_some(), *new),
        Change::Delete(p) => (p, true, false),
        Change::Init | Change::InitDone => return,
    };
    let Some(owner) = controller_of(&pod.metadata).filter(|r| r.kind == owner_kind) else { return };
    let key = format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or_default(), owner.name);
    if gone {
        expectations.deletion_observed(&key, pod.metadata.name.as_deref().unwrap_or_default());
    } else if first_sight {
        expectations.creation_observed(&key);
    }
}

/// The owner of kind `K` controlling `child`, as a reconcile key.
pub fn controller_key<K: Resource<DynamicType = ()>>(child: &impl Resource) -> Option<ObjectRef<K>> {
    let owner = controller_of(child.meta()).filter(|r| r.kind == K::kind(&()))?;
    let r = ObjectRef::new(&owner.name);
    Some(match &child.meta().namespace {
        Some(ns) => r.within(ns),
        None => r,
    })
}

/// The controllers a child's event concerns: its controller of kind `K`, or for an orphan
/// every cached `K` in its namespace that `selects` it (the candidates for adoption).
pub fn concerned_controllers<K, C>(
    cache: &kube::runtime::reflector::Store<K>,
    child: &C,
    selects: impl Fn(&K, &C) -> bool,
) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone,
    C: Resource,
{
    if let Some(key) = controller_key::<K>(child) {
        return vec![key];
    }
    if controller_of(child.meta()).is_some() {
        return vec![];
    }
    cache
        .state()
        .iter()
        .filter(|k| k.meta().namespace == child.meta().namespace && selects(k, child))
        .map(|k| ObjectRef::from_obj(k.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn owned_pod(kind: &str, deleting: bool, new: bool) -> Change<Pod> {
        let mut p = Pod::default();
        p.metadata.name = Some("p".into());
        p.metadata.namespace = Some("ns".into());
        p.metadata.owner_references =
            Some(vec![OwnerReference { kind: kind.into(), name: "rs".into(), controller: Some(true), ..Default::default() }]);
        p.metadata.deletion_timestamp = deleting.then(super::super::now);
        Change::Apply(Arc::new(p), new)
    }

    #[test]
    fn first_sight_lowers_creations_and_deletion_lowers_deletions() {
        let e = Expectations::default();
        e.expect_creations("ns/rs", 1);
        observe_pod(&e, "ReplicaSet", &owned_pod("ReplicaSet", false, false));
        assert!(!e.satisfied("ns/rs"), "an update is not a creation");
        observe_pod(&e, "ReplicaSet", &owned_pod("StatefulSet", false, true));
        assert!(!e.satisfied("ns/rs"), "another kind's pod");
        observe_pod(&e, "ReplicaSet", &owned_pod("ReplicaSet", false, true));
        assert!(e.satisfied("ns/rs"));
        e.expect_deletions("ns/rs", ["p".to_string()]);
        observe_pod(&e, "ReplicaSet", &owned_pod("ReplicaSet", true, false));
        assert!(e.satisfied("ns/rs"), "graceful deletion counts as observed");
    }
}
