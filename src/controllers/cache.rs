//! Watch-fed, read-only caches of one kind (kube-runtime reflectors) for controllers that
//! scan their state or pick their own work keys instead of running one reconcile per object.
//! Cached objects drop their managedFields, as kube-controller-manager's informers do: no
//! controller reads them, and they are often the larger part of an object in memory.

use std::fmt::Debug;
use std::hash::Hash;

use futures::{Stream, StreamExt, TryStreamExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// A cache and the stream of watch events that fills it: poll the stream to keep the cache
/// current. Watch errors are logged and retried with backoff.
pub fn reflect<K>(api: Api<K>, config: watcher::Config) -> (Store<K>, impl Stream<Item = Event<K>> + Send)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let trimmed = watcher::watcher(api, config).map_ok(|event| event.modify(trim_managed_fields));
    let events = reflector::reflector(writer, trimmed).default_backoff().filter_map(|event| async move {
        match event {
            Ok(event) => Some(event),
            Err(e) => {
                tracing::warn!(kind = %K::kind(&K::DynamicType::default()), error = %e, "watch failed; retrying");
                None
            }
        }
    });
    (reader, events)
}

/// Drops an object's managedFields (what cached copies keep of it need not include them).
pub fn trim_managed_fields<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}
