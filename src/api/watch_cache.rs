//! The watch cache: one store watch per resource, each event decoded once and fanned out to
//! every API watcher of that resource, with a ring of recent decoded events to resume from
//! and an index on pods' `spec.nodeName` so a thousand node agents watching "their" pods cost
//! one map lookup per event instead of a thousand JSON decodes (kube-apiserver's watch cache
//! with indexed triggers does the same).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::objects::{self, SharedStore};
use super::registry::Resource;
use crate::store::{EventKind, KeyRange, Revision, WatchRequest};

/// Decoded events kept per resource for watchers resuming from a recent resourceVersion. A
/// watcher re-watching right after its stream ended needs only the last few; each entry holds
/// two decoded objects (tens of KiB for a pod or node), so a deep ring costs hundreds of MiB on
/// a busy cluster (older resumptions are served from the store's history).
const RING: usize = 512;
/// Events a watcher may fall behind by before it is dropped (its client re-watches, from the
/// store's history when the ring no longer covers it — far costlier than waiting a little: each
/// queued event is one shared pointer, so this is generous).
const SUBSCRIBER_BUFFER: usize = 16384;

/// One change of one object, decoded once for every watcher.
pub struct Change {
    pub revision: Revision,
    pub kind: EventKind,
    /// The object after the change (for a delete: the last state, stamped with the delete's revision).
    pub object: Arc<Value>,
    /// The object before the change, if it existed.
    pub previous: Option<Arc<Value>>,
    /// `{"type":…,"object":…}` lines of the plain-object shape, rendered once on first use.
    rendered: [OnceLock<bytes::Bytes>; 3],
}

impl Change {
    /// The event type of this change for a watcher, given which of the two states it selects:
    /// ADDED / MODIFIED / DELETED, or `None` when it selects neither.
    pub fn event_type(&self, selects_now: bool, selected_before: bool) -> Option<&'static str> {
        match (self.kind, selected_before, selects_now) {
            (EventKind::Delete, true, _) => Some("DELETED"),
            (EventKind::Delete, false, _) => None,
            (_, false, true) => Some("ADDED"),
            (_, true, true) => Some("MODIFIED"),
            (_, true, false) => Some("DELETED"),
            (_, false, false) => None,
        }
    }

    /// The watch line of this change as seen by a watcher (see [`Change::event_type`]),
    /// rendered once per event type for all watchers.
    pub fn line(&self, selects_now: bool, selected_before: bool) -> Option<bytes::Bytes> {
        let kind = self.event_type(selects_now, selected_before)?;
        let slot = match kind {
            "ADDED" => 0,
            "MODIFIED" => 1,
            _ => 2,
        };
        Some(self.rendered[slot].get_or_init(|| line(kind, &self.object)).clone())
    }
}

/// One watch line, `{"type":KIND,"object":OBJECT}` and a newline, written straight from the
/// object (no copy of it into a wrapper value).
pub fn line(kind: &str, object: &Value) -> bytes::Bytes {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(br#"{"type":"#);
    serde_json::to_writer(&mut out, kind).expect("a string always serialises");
    out.extend_from_slice(br#","object":"#);
    serde_json::to_writer(&mut out, object).expect("a JSON value always serialises");
    out.extend_from_slice(b"}\n");
    out.into()
}

fn node_of(obj: &Value) -> Option<&str> {
    obj["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())
}

struct Subscriber {
    sender: mpsc::Sender<Arc<Change>>,
    /// Only changes of objects bound to this node (`spec.nodeName=<node>`), if set.
    node: Option<String>,
}

struct State {
    ring: VecDeque<Arc<Change>>,
    /// Every change of the resource with revision >= `covered_from` is in `ring` (or was
    /// published after it).
    covered_from: Revision,
    subscribers: HashMap<u64, Subscriber>,
    by_node: HashMap<String, Vec<u64>>,
    unindexed: Vec<u64>,
    next_id: u64,
    alive: bool,
}

/// The cache of one resource (all namespaces).
pub struct ResourceCache {
    state: Mutex<State>,
}

/// A watcher's feed: the recent changes it resumes from, then live ones.
pub struct Subscription {
    pub replay: Vec<Arc<Change>>,
    pub live: mpsc::Receiver<Arc<Change>>,
}

impl ResourceCache {
    /// Subscribes to changes after `from`, or `None` when the cache no longer covers `from`
    /// (the caller then reads the store's history itself).
    pub fn subscribe(&self, from: Revision, node: Option<String>) -> Option<Subscription> {
        let mut state = self.state.lock().expect("watch cache lock");
        if !state.alive || from + 1 < state.covered_from {
            return None;
        }
        let replay: Vec<Arc<Change>> = state
            .ring
            .iter()
            .filter(|c| c.revision > from)
            .filter(|c| node.as_deref().is_none_or(|n| touches_node(c, n)))
            .cloned()
            .collect();
        let (sender, live) = mpsc::channel(SUBSCRIBER_BUFFER);
        let id = state.next_id;
        state.next_id += 1;
        match &node {
            Some(n) => state.by_node.entry(n.clone()).or_default().push(id),
            None => state.unindexed.push(id),
        }
        state.subscribers.insert(id, Subscriber { sender, node });
        Some(Subscription { replay, live })
    }

    fn publish(&self, change: Change) {
        let change = Arc::new(change);
        let mut state = self.state.lock().expect("watch cache lock");
        if state.ring.len() == RING {
            if let Some(old) = state.ring.pop_front() {
                state.covered_from = old.revision + 1;
                while state.ring.front().is_some_and(|c| c.revision == old.revision) {
                    state.ring.pop_front();
                }
            }
        }
        state.ring.push_back(change.clone());
        let mut targets: Vec<u64> = state.unindexed.clone();
        for node in [node_of(&change.object), change.previous.as_deref().and_then(node_of)].into_iter().flatten() {
            if let Some(ids) = state.by_node.get(node) {
                for id in ids {
                    if !targets.contains(id) {
                        targets.push(*id);
                    }
                }
            }
        }
        let mut gone = Vec::new();
        for id in targets {
            if let Some(sub) = state.subscribers.get(&id) {
                if sub.sender.try_send(change.clone()).is_err() {
                    gone.push(id);
                }
            }
        }
        for id in gone {
            state.remove(id);
        }
    }

    fn close(&self) {
        let mut state = self.state.lock().expect("watch cache lock");
        state.alive = false;
        state.subscribers.clear();
        state.by_node.clear();
        state.unindexed.clear();
    }
}

impl State {
    fn remove(&mut self, id: u64) {
        if let Some(sub) = self.subscribers.remove(&id) {
            match sub.node {
                Some(n) => {
                    if let Some(ids) = self.by_node.get_mut(&n) {
                        ids.retain(|x| *x != id);
                        if ids.is_empty() {
                            self.by_node.remove(&n);
                        }
                    }
                }
                None => self.unindexed.retain(|x| *x != id),
            }
        }
    }
}

fn touches_node(change: &Change, node: &str) -> bool {
    node_of(&change.object) == Some(node) || change.previous.as_deref().and_then(node_of) == Some(node)
}

/// The caches of every watched resource, started on a resource's first watch.
#[derive(Default)]
pub struct WatchCaches {
    caches: Mutex<HashMap<String, Arc<ResourceCache>>>,
}

impl WatchCaches {
    /// The cache of `resource`, starting it (from the store's current revision) if needed.
    pub async fn get(self: &Arc<Self>, store: &SharedStore, resource: &'static Resource) -> Option<Arc<ResourceCache>> {
        let prefix = resource.key_prefix(None);
        if let Some(c) = self.caches.lock().expect("watch caches lock").get(&prefix) {
            return Some(c.clone());
        }
        let start = store.current_revision().await.ok()? + 1;
        let mut stream = store.watch(WatchRequest { range: KeyRange::prefix(prefix.clone()), start_revision: start }).await.ok()?;
        let cache = Arc::new(ResourceCache {
            state: Mutex::new(State {
                ring: VecDeque::new(),
                covered_from: start,
                subscribers: HashMap::new(),
                by_node: HashMap::new(),
                unindexed: Vec::new(),
                next_id: 0,
                alive: true,
            }),
        });
        {
            let mut caches = self.caches.lock().expect("watch caches lock");
            if let Some(existing) = caches.get(&prefix) {
                return Some(existing.clone());
            }
            caches.insert(prefix.clone(), cache.clone());
        }
        let (caches, feeding) = (self.clone(), cache.clone());
        tokio::spawn(async move {
            while let Some(Ok(batch)) = stream.next().await {
                for ev in batch {
                    if let Some(change) = decode(ev) {
                        feeding.publish(change);
                    }
                }
            }
            tracing::debug!(%prefix, "watch cache stream ended; the next watch restarts it");
            feeding.close();
            let mut map = caches.caches.lock().expect("watch caches lock");
            if map.get(&prefix).is_some_and(|c| Arc::ptr_eq(c, &feeding)) {
                map.remove(&prefix);
            }
        });
        Some(cache)
    }
}

fn decode(ev: crate::store::Event) -> Option<Change> {
    let before = ev.prev_kv.as_ref().and_then(|kv| objects::decode(kv).ok());
    let (object, previous) = match ev.kind {
        EventKind::Delete => {
            let mut last = before?;
            let previous = without_managed_fields(last.clone());
            last["metadata"]["resourceVersion"] = json!(ev.kv.mod_revision.to_string());
            (Arc::new(last), Some(previous))
        }
        EventKind::Put => (Arc::new(objects::decode(&ev.kv).ok()?), before.map(without_managed_fields)),
    };
    Some(Change { revision: ev.kv.mod_revision, kind: ev.kind, object, previous: previous.map(Arc::new), rendered: Default::default() })
}

/// The previous state of a change is only matched against selectors, never sent: its
/// managedFields (often half of an object) need not be kept.
fn without_managed_fields(mut obj: Value) -> Value {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_json_event() {
        let obj = json!({ "kind": "Pod", "metadata": { "name": "a \"quoted\" name" } });
        let l = line("ADDED", &obj);
        assert_eq!(l.last(), Some(&b'\n'));
        let parsed: Value = serde_json::from_slice(&l[..l.len() - 1]).unwrap();
        assert_eq!(parsed, json!({ "type": "ADDED", "object": obj }));
    }

    #[test]
    fn previous_states_drop_managed_fields_but_deletes_keep_them() {
        let kv = |rev, value: &Value| crate::store::KeyValue {
            key: b"/registry/pods/d/a".to_vec(),
            value: serde_json::to_vec(value).unwrap(),
            create_revision: 1,
            mod_revision: rev,
            version: 1,
        };
        let obj = json!({ "metadata": { "name": "a", "managedFields": [ { "manager": "m" } ], "labels": { "x": "y" } } });
        let put = decode(crate::store::Event { kind: EventKind::Put, kv: kv(3, &obj), prev_kv: Some(kv(2, &obj)) }).unwrap();
        assert!(put.object["metadata"]["managedFields"].is_array());
        let previous = put.previous.unwrap();
        assert!(previous["metadata"].get("managedFields").is_none());
        assert_eq!(previous["metadata"]["labels"]["x"], "y");
        let gone = decode(crate::store::Event { kind: EventKind::Delete, kv: kv(4, &json!({})), prev_kv: Some(kv(3, &obj)) }).unwrap();
        assert!(gone.object["metadata"]["managedFields"].is_array());
        assert_eq!(gone.object["metadata"]["resourceVersion"], "4");
    }
}
