//! In-memory mirrors of store prefixes for the authorizers and the admission webhooks: a task
//! per prefix lists it, then follows its watch, and hands every object (parsed JSON) to a
//! [`Mirror`]; on a lost watch it lists again. Authorisation (or finding a request's webhooks)
//! then costs a lookup, never a store read.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::store::{EventKind, KeyRange, RangeRequest, Store, StoreError, WatchRequest};

/// Something kept up to date from store prefixes.
pub trait Mirror: Send + Sync + 'static {
    /// Everything under `prefix` now (replaces what was known under it).
    fn reset(&self, prefix: &str, objects: Vec<(String, Value)>);
    /// One key under `prefix` changed: its new object, `None` when deleted.
    fn apply(&self, prefix: &str, key: &str, object: Option<Value>);
}

/// Follows each of `prefixes` into `mirror` (held weakly: the tasks end with it) in `tasks`.
pub fn follow<M: Mirror>(store: Arc<dyn Store>, prefixes: &[String], mirror: &Arc<M>, tasks: &crate::tasks::Tasks) {
    for prefix in prefixes {
        let (store, prefix, weak) = (store.clone(), prefix.clone(), Arc::downgrade(mirror));
        tasks.spawn(async move {
            loop {
                if let Err(e) = follow_once(store.as_ref(), &prefix, &weak).await {
                    tracing::warn!(error = %e, prefix, "a mirror of the store lost its watch; reloading");
                }
                if weak.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }
}

async fn follow_once<M: Mirror>(store: &dyn Store, prefix: &str, weak: &Weak<M>) -> Result<(), StoreError> {
    let all = store.range(RangeRequest { range: KeyRange::prefix(prefix), ..Default::default() }).await?;
    let objects = all
        .kvs
        .iter()
        .filter_map(|kv| Some((String::from_utf8_lossy(&kv.key).into_owned(), serde_json::from_slice(&kv.value).ok()?)))
        .collect();
    match weak.upgrade() {
        Some(mirror) => mirror.reset(prefix, objects),
        None => return Ok(()),
    }
    let mut events = store.watch(WatchRequest { range: KeyRange::prefix(prefix), start_revision: all.revision + 1 }).await?;
    while let Some(batch) = events.next().await {
        let Some(mirror) = weak.upgrade() else { return Ok(()) };
        for ev in batch? {
            let key = String::from_utf8_lossy(&ev.kv.key);
            let object = match ev.kind {
                EventKind::Put => serde_json::from_slice(&ev.kv.value).ok(),
                EventKind::Delete => None,
            };
            mirror.apply(prefix, &key, object);
        }
    }
    Ok(())
}
