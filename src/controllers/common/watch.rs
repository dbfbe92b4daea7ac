//! Reflected watch streams: a cache (`Store`) fed by a watch, and the stream of touched
//! objects that triggers reconciles — the store is updated before the trigger fires, so a
//! reconcile always sees at least what triggered it. For pods the stream also lowers the
//! owners' expectations (creation = first sight; deletion = deletionTimestamp or gone).

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;

use super::expectations::Expectations;
use super::owner::controller_of;

/// A trigger stream of touched objects, ready for `Controller::watches_stream`/`owns_stream`.
pub type Touched<K> = BoxStream<'static, Result<K, watcher::Error>>;

/// Watches `api` into a store (objects without their managedFields); `observe(event,
/// first_sight)` runs after the store took the event (`first_sight` is whether the object was
/// unknown before it).
pub fn reflect<K>(api: Api<K>, mut observe: impl FnMut(&watcher::Event<K>, bool) + Send + 'static) -> (Store<K>, Touched<K>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    ObjectRef<K>: Hash + Eq,
{
    let (reader, mut writer) = reflector::store::<K>();
    let known = reader.clone();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .map_ok(move |event| {
            let event = event.modify(crate::controllers::trim_managed_fields);
            let first_sight = match &event {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => known.get(&ObjectRef::from_obj(o)).is_none(),
                _ => false,
            };
            writer.apply_watcher_event(&event);
            observe(&event, first_sight);
            event
        })
        .touched_objects()
        .boxed();
    (reader, stream)
}

/// Watches every pod; creations and deletions of pods controlled by a `owner_kind` lower
/// that owner's expectations (keyed `namespace/name`).
pub fn watch_pods(client: kube::Client, owner_kind: String, expectations: Arc<Expectations>) -> (Store<Pod>, Touched<Pod>) {
    reflect(Api::<Pod>::all(client), move |event, first_sight| observe_pod(&expectations, &owner_kind, event, first_sight))
}

fn observe_pod(expectations: &Expectations, owner_kind: &str, event: &watcher::Event<Pod>, first_sight: bool) {
    let (pod, gone) = match event {
        watcher::Event::Apply(p) | watcher::Event::InitApply(p) => (p, p.metadata.deletion_timestamp.is_some()),
        watcher::Event::Delete(p) => (p, true),
        _ => return,
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

    fn owned_pod(kind: &str, deleting: bool) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("p".into());
        p.metadata.namespace = Some("ns".into());
        p.metadata.owner_references =
            Some(vec![OwnerReference { kind: kind.into(), name: "rs".into(), controller: Some(true), ..Default::default() }]);
        p.metadata.deletion_timestamp = deleting.then(super::super::now);
        p
    }

    #[test]
    fn first_sight_lowers_creations_and_deletion_lowers_deletions() {
        let e = Expectations::default();
        e.expect_creations("ns/rs", 1);
        observe_pod(&e, "ReplicaSet", &watcher::Event::Apply(owned_pod("ReplicaSet", false)), false);
        assert!(!e.satisfied("ns/rs"), "an update is not a creation");
        observe_pod(&e, "ReplicaSet", &watcher::Event::Apply(owned_pod("StatefulSet", false)), true);
        assert!(!e.satisfied("ns/rs"), "another kind's pod");
        observe_pod(&e, "ReplicaSet", &watcher::Event::Apply(owned_pod("ReplicaSet", false)), true);
        assert!(e.satisfied("ns/rs"));
        e.expect_deletions("ns/rs", ["p".to_string()]);
        observe_pod(&e, "ReplicaSet", &watcher::Event::Apply(owned_pod("ReplicaSet", true)), false);
        assert!(e.satisfied("ns/rs"), "graceful deletion counts as observed");
    }
}
