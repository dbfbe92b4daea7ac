//! The watch cache: one store watch per resource, each event's watch line rendered once (from
//! the stored bytes) and fanned out to every API watcher of that resource, with a ring of
//! recent events to resume from and an index on pods' `spec.nodeName` so a thousand node
//! agents watching "their" pods cost one map lookup per event instead of a thousand selector
//! checks (kube-apiserver's watch cache with indexed triggers does the same). The ring and
//! each watcher's queue are bounded in events and in bytes; a watcher whose queue overflows
//! (a client that stopped reading) is terminated, as kube-apiserver terminates unresponsive
//! watchers: its queue is freed at once and its stream ends once the client reads again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::objects::{Selection, SharedStore};
use super::raw_json;
use super::registry::Resource;
use crate::store::{EventKind, KeyRange, Revision, WatchRequest};

/// Events kept per resource for watchers resuming from a recent resourceVersion. A watcher
/// re-watching right after its stream ended needs only the last few; each entry holds two
/// stored objects (several KiB for a pod or node), and older resumptions catch up from the
/// store's history.
const RING: usize = 512;
/// Most bytes of stored objects the ring keeps per resource.
const RING_BYTES: usize = 16 << 20;
/// Events a watcher may fall behind by before it is dropped (its client re-watches, from the
/// store's history when the ring no longer covers it — far costlier than waiting a little: each
/// queued event is one shared pointer, so this is generous).
const SUBSCRIBER_BUFFER: usize = 16384;
/// Bytes of stored objects a watcher's queue may hold before it is dropped: a queued change
/// shared with no other watcher keeps its objects alive.
const SUBSCRIBER_BYTES: usize = 16 << 20;

/// One change of one object, kept as the store's bytes: its watch line is those bytes with the
/// resourceVersion spliced in, rendered once per event type for all watchers; the JSON tree is
/// built only for watchers whose selectors need it.
pub struct Change {
    pub revision: Revision,
    pub kind: EventKind,
    /// The object's namespace, from its key (empty for cluster-scoped objects).
    pub namespace: String,
    /// The stored object after the change; for a delete, its last state.
    raw: Vec<u8>,
    /// The stored object before a put, if it existed (a delete's previous state is `raw`).
    previous_raw: Option<Vec<u8>>,
    /// `spec.nodeName` now and before (pods only: the node index).
    node: Option<String>,
    previous_node: Option<String>,
    object: OnceLock<Option<Value>>,
    previous: OnceLock<Option<Value>>,
    /// `{"type":…,"object":…}` lines of the plain-object shape, rendered once on first use.
    rendered: [OnceLock<bytes::Bytes>; 3],
}

impl Change {
    /// The change of a store event, with node names read when `index_nodes` (pods).
    fn new(ev: crate::store::Event, key_prefix_len: usize, namespaced: bool, index_nodes: bool) -> Option<Self> {
        let namespace = if namespaced {
            let rest = ev.kv.key.get(key_prefix_len..).unwrap_or_default();
            String::from_utf8_lossy(rest.split(|b| *b == b'/').next().unwrap_or_default()).into_owned()
        } else {
            String::new()
        };
        let (raw, previous_raw) = match ev.kind {
            EventKind::Delete => (ev.prev_kv?.value, None),
            EventKind::Put => (ev.kv.value, ev.prev_kv.map(|kv| kv.value)),
        };
        let node = index_nodes.then(|| raw_json::node_name(&raw)).flatten();
        let previous_node = match (ev.kind, &previous_raw) {
            (EventKind::Delete, _) => node.clone(),
            (EventKind::Put, Some(prev)) if index_nodes => raw_json::node_name(prev),
            _ => None,
        };
        Some(Change {
            revision: ev.kv.mod_revision,
            kind: ev.kind,
            namespace,
            raw,
            previous_raw,
            node,
            previous_node,
            object: OnceLock::new(),
            previous: OnceLock::new(),
            rendered: Default::default(),
        })
    }

    /// The memory this change holds: its stored objects.
    fn size(&self) -> usize {
        self.raw.len() + self.previous_raw.as_ref().map_or(0, Vec::len)
    }

    fn previous_bytes(&self) -> Option<&[u8]> {
        match self.kind {
            EventKind::Delete => Some(&self.raw),
            EventKind::Put => self.previous_raw.as_deref(),
        }
    }

    /// The object after the change (for a delete: the last state, stamped with the delete's
    /// revision), decoded on first use; `None` if the stored bytes are not JSON.
    pub fn object(&self) -> Option<&Value> {
        self.object
            .get_or_init(|| {
                let mut obj: Value = serde_json::from_slice(&self.raw).ok()?;
                obj["metadata"]["resourceVersion"] = json!(self.revision.to_string());
                Some(obj)
            })
            .as_ref()
    }

    /// The object before the change, decoded on first use (only ever matched against
    /// selectors, never sent, so without its managedFields).
    fn previous(&self) -> Option<&Value> {
        self.previous
            .get_or_init(|| self.previous_bytes().and_then(|b| serde_json::from_slice(b).ok()).map(without_managed_fields))
            .as_ref()
    }

    /// Whether `selector` selects the object after the change and before it (see
    /// [`Change::event_type`]); decodes the object only for selectors that need its fields.
    pub fn selected_by(&self, selector: &Selection, index_nodes: bool) -> (bool, bool) {
        let put = self.kind == EventKind::Put;
        if selector.labels.is_empty() && selector.fields.is_empty() {
            return (put, self.previous_bytes().is_some());
        }
        if let (true, true, Some(node)) = (index_nodes, selector.labels.is_empty(), selector.fields.only("spec.nodeName")) {
            let now = put && self.node.as_deref().unwrap_or_default() == node;
            let before = self.previous_bytes().is_some() && self.previous_node.as_deref().unwrap_or_default() == node;
            return (now, before);
        }
        let now = put && self.object().is_some_and(|o| selector.matches(o));
        let before = self.previous().is_some_and(|p| selector.matches(p));
        (now, before)
    }

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
        Some(self.rendered[slot].get_or_init(|| self.render(kind)).clone())
    }

    /// `{"type":KIND,"object":…}` from the stored bytes, or from the decoded object when
    /// they cannot be spliced.
    fn render(&self, kind: &str) -> bytes::Bytes {
        match raw_json::with_resource_version(&self.raw, self.revision) {
            Some(object) => framed(kind, object.len(), |out| out.extend_from_slice(&object)),
            None => line(kind, self.object().unwrap_or(&Value::Null)),
        }
    }
}

/// One watch line, `{"type":KIND,"object":OBJECT}` and a newline, written straight from the
/// object (no copy of it into a wrapper value).
pub fn line(kind: &str, object: &Value) -> bytes::Bytes {
    framed(kind, 4096, |out| serde_json::to_writer(out, object).expect("a JSON value always serialises"))
}

/// `{"type":KIND,"object":` + what `write_object` writes + `}` and a newline.
fn framed(kind: &str, object_len: usize, write_object: impl FnOnce(&mut Vec<u8>)) -> bytes::Bytes {
    let mut out = Vec::with_capacity(object_len + 32);
    out.extend_from_slice(br#"{"type":"#);
    serde_json::to_writer(&mut out, kind).expect("a string always serialises");
    out.extend_from_slice(br#","object":"#);
    write_object(&mut out);
    out.extend_from_slice(b"}\n");
    out.into()
}

struct Subscriber {
    queue: Arc<Queue>,
    /// Only changes of objects bound to this node (`spec.nodeName=<node>`), if set.
    node: Option<String>,
}

/// The changes waiting for one watcher, bounded in events and bytes.
struct Queue {
    pending: Mutex<Pending>,
    ready: tokio::sync::Notify,
}

#[derive(Default)]
struct Pending {
    changes: VecDeque<Arc<Change>>,
    bytes: usize,
    /// No more changes: the watcher was dropped, or its reader went away.
    closed: bool,
}

impl Queue {
    /// Queues `change`; false (and the queue emptied and closed) when it is closed or would
    /// overflow.
    fn push(&self, change: &Arc<Change>) -> bool {
        let mut p = self.pending.lock();
        if !p.closed && p.changes.len() < SUBSCRIBER_BUFFER && p.bytes + change.size() <= SUBSCRIBER_BYTES {
            p.bytes += change.size();
            p.changes.push_back(change.clone());
            drop(p);
            self.ready.notify_one();
            return true;
        }
        if !p.closed {
            tracing::info!(queued = p.changes.len(), bytes = p.bytes, "terminating an unresponsive watcher");
        }
        self.close_locked(&mut p);
        false
    }

    fn close_locked(&self, p: &mut Pending) {
        p.closed = true;
        p.changes = VecDeque::new();
        p.bytes = 0;
        self.ready.notify_one();
    }

    fn close(&self) {
        self.close_locked(&mut self.pending.lock());
    }
}

/// The reading end of a watcher's queue: the changes in order, ending when it is closed.
pub struct Receiver(Arc<Queue>);

impl Receiver {
    pub async fn recv(&self) -> Option<Arc<Change>> {
        loop {
            {
                let mut p = self.0.pending.lock();
                if let Some(change) = p.changes.pop_front() {
                    p.bytes -= change.size();
                    return Some(change);
                }
                if p.closed {
                    return None;
                }
            }
            self.0.ready.notified().await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.0.close();
    }
}

struct State {
    ring: VecDeque<Arc<Change>>,
    /// Bytes of stored objects in `ring`.
    ring_bytes: usize,
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
    pub live: Receiver,
}

impl ResourceCache {
    /// An empty cache covering the changes from revision `start` on.
    fn new(start: Revision) -> Self {
        let state = State {
            ring: VecDeque::new(),
            ring_bytes: 0,
            covered_from: start,
            subscribers: HashMap::new(),
            by_node: HashMap::new(),
            unindexed: Vec::new(),
            next_id: 0,
            alive: true,
        };
        Self { state: Mutex::new(state) }
    }

    /// Subscribes to changes after `from`, or `None` when the cache no longer covers `from`
    /// (the caller then reads the store's history itself).
    pub fn subscribe(&self, from: Revision, node: Option<String>) -> Option<Subscription> {
        let mut state = self.state.lock();
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
        let queue = Arc::new(Queue { pending: Mutex::default(), ready: tokio::sync::Notify::new() });
        let id = state.next_id;
        state.next_id += 1;
        match &node {
            Some(n) => state.by_node.entry(n.clone()).or_default().push(id),
            None => state.unindexed.push(id),
        }
        state.subscribers.insert(id, Subscriber { queue: queue.clone(), node });
        Some(Subscription { replay, live: Receiver(queue) })
    }

    fn publish(&self, change: Change) {
        let change = Arc::new(change);
        let mut state = self.state.lock();
        while !state.ring.is_empty() && (state.ring.len() >= RING || state.ring_bytes + change.size() > RING_BYTES) {
            let old = state.ring.front().map(|c| c.revision).expect("not empty");
            state.covered_from = old + 1;
            while let Some(gone) = state.ring.pop_front_if(|c| c.revision == old) {
                state.ring_bytes -= gone.size();
            }
        }
        if change.size() <= RING_BYTES {
            state.ring_bytes += change.size();
            state.ring.push_back(change.clone());
        } else {
            // Larger than the ring: watchers resuming from before it read the store's history.
            state.covered_from = change.revision + 1;
        }
        let mut targets: Vec<u64> = state.unindexed.clone();
        for node in [change.node.as_deref(), change.previous_node.as_deref()].into_iter().flatten() {
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
                if !sub.queue.push(&change) {
                    gone.push(id);
                }
            }
        }
        for id in gone {
            state.remove(id);
        }
    }

    fn close(&self) {
        let mut state = self.state.lock();
        state.alive = false;
        for sub in state.subscribers.values() {
            sub.queue.close();
        }
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
    change.node.as_deref() == Some(node) || change.previous_node.as_deref() == Some(node)
}

/// The caches of every watched resource, started on a resource's first watch.
pub struct WatchCaches {
    caches: Mutex<HashMap<String, Arc<ResourceCache>>>,
    /// Where the caches' feeders run.
    tasks: crate::tasks::Tasks,
}

impl WatchCaches {
    pub fn new(tasks: crate::tasks::Tasks) -> Self {
        Self { caches: Mutex::default(), tasks }
    }

    /// The cache of `resource`, starting it (from the store's current revision) if needed;
    /// none once the server is stopping (watches are then served from the store).
    pub async fn get(self: &Arc<Self>, store: &SharedStore, resource: &'static Resource) -> Option<Arc<ResourceCache>> {
        if self.tasks.cancel.is_cancelled() {
            return None;
        }
        let prefix = resource.key_prefix(None);
        if let Some(c) = self.caches.lock().get(&prefix) {
            return Some(c.clone());
        }
        let start = store.current_revision().await.ok()? + 1;
        let mut stream = store.watch(WatchRequest { range: KeyRange::prefix(prefix.clone()), start_revision: start }).await.ok()?;
        let cache = Arc::new(ResourceCache::new(start));
        {
            let mut caches = self.caches.lock();
            if let Some(existing) = caches.get(&prefix) {
                return Some(existing.clone());
            }
            caches.insert(prefix.clone(), cache.clone());
        }
        let (caches, feeding) = (self.clone(), cache.clone());
        let (prefix_len, namespaced, index_nodes) = (prefix.len(), resource.namespaced, indexes_nodes(resource));
        let stop = self.tasks.cancel.clone();
        // Not `Tasks::spawn`: a stopping server still closes the cache, so its watchers end.
        self.tasks.tracker.spawn(async move {
            loop {
                let batch = tokio::select! {
                    _ = stop.cancelled() => break,
                    next = stream.next() => match next {
                        Some(Ok(batch)) => batch,
                        _ => break,
                    },
                };
                for ev in batch {
                    if let Some(change) = Change::new(ev, prefix_len, namespaced, index_nodes) {
                        feeding.publish(change);
                    }
                }
            }
            tracing::debug!(%prefix, "watch cache stream ended; the next watch restarts it");
            feeding.close();
            let mut map = caches.caches.lock();
            if map.get(&prefix).is_some_and(|c| Arc::ptr_eq(c, &feeding)) {
                map.remove(&prefix);
            }
        });
        Some(cache)
    }
}

/// Pods are indexed by `spec.nodeName` (node agents watch their own pods).
pub fn indexes_nodes(resource: &Resource) -> bool {
    (resource.group, resource.plural) == ("", "pods")
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

    fn event(kind: EventKind, rev: i64, value: &Value, prev: Option<&Value>) -> crate::store::Event {
        let kv = |rev, value: &Value| crate::store::KeyValue {
            key: b"/registry/core/pods/d/a".to_vec(),
            value: serde_json::to_vec(value).unwrap(),
            create_revision: 1,
            mod_revision: rev,
            version: 1,
        };
        crate::store::Event { kind, kv: kv(rev, value), prev_kv: prev.map(|p| kv(rev - 1, p)) }
    }

    fn change(ev: crate::store::Event) -> Change {
        Change::new(ev, "/registry/core/pods/".len(), true, true).unwrap()
    }

    fn parsed(line: &bytes::Bytes) -> Value {
        serde_json::from_slice(&line[..line.len() - 1]).unwrap()
    }

    #[test]
    fn previous_states_drop_managed_fields_but_deletes_keep_them() {
        let obj = json!({ "metadata": { "name": "a", "managedFields": [ { "manager": "m" } ], "labels": { "x": "y" } } });
        let put = change(event(EventKind::Put, 3, &obj, Some(&obj)));
        assert_eq!(put.namespace, "d");
        assert!(put.object().unwrap()["metadata"]["managedFields"].is_array());
        let previous = put.previous().unwrap();
        assert!(previous["metadata"].get("managedFields").is_none());
        assert_eq!(previous["metadata"]["labels"]["x"], "y");
        let gone = change(event(EventKind::Delete, 4, &json!({}), Some(&obj)));
        assert!(gone.object().unwrap()["metadata"]["managedFields"].is_array());
        let line = gone.line(false, true).unwrap();
        assert_eq!(parsed(&line)["type"], "DELETED");
        assert_eq!(parsed(&line)["object"]["metadata"]["resourceVersion"], "4");
        assert!(parsed(&line)["object"]["metadata"]["managedFields"].is_array());
    }

    #[test]
    fn lines_from_stored_bytes_equal_lines_from_decoded_objects() {
        let obj = json!({ "kind": "Pod", "metadata": { "name": "a", "namespace": "d" }, "spec": { "nodeName": "n1" } });
        let put = change(event(EventKind::Put, 9, &obj, None));
        let mut want = obj.clone();
        want["metadata"]["resourceVersion"] = json!("9");
        assert_eq!(parsed(&put.line(true, false).unwrap()), json!({ "type": "ADDED", "object": want }));
        // Bytes that cannot be spliced (metadata already has a resourceVersion) are re-rendered.
        let odd = json!({ "metadata": { "name": "a", "resourceVersion": "1" } });
        let put = change(event(EventKind::Put, 9, &odd, None));
        assert_eq!(parsed(&put.line(true, false).unwrap())["object"]["metadata"]["resourceVersion"], "9");
    }

    #[test]
    fn selectors_see_both_states() {
        let pod = |node: &str, app: &str| json!({ "metadata": { "name": "a", "labels": { "app": app } }, "spec": { "nodeName": node } });
        let pods = super::super::registry::lookup("", "v1", "pods").unwrap();
        let select = |labels: &str, fields: &str| Selection {
            labels: super::super::selector::LabelSelector::parse(labels).unwrap(),
            fields: super::super::fields::FieldSelector::parse(pods, fields).unwrap(),
        };
        let moved = change(event(EventKind::Put, 5, &pod("n2", "web"), Some(&pod("n1", "db"))));
        assert_eq!(moved.selected_by(&select("", ""), true), (true, true));
        assert_eq!(moved.selected_by(&select("", "spec.nodeName=n1"), true), (false, true));
        assert_eq!(moved.selected_by(&select("", "spec.nodeName=n2"), true), (true, false));
        assert_eq!(moved.selected_by(&select("", "spec.nodeName=n2"), false), (true, false), "decoded path");
        assert_eq!(moved.selected_by(&select("app=web", ""), true), (true, false));
        assert_eq!(moved.selected_by(&select("app=db", "spec.nodeName=n1"), true), (false, true));
        let unscheduled = change(event(EventKind::Put, 6, &json!({ "metadata": { "name": "b" }, "spec": {} }), None));
        assert_eq!(unscheduled.selected_by(&select("", "spec.nodeName="), true), (true, false));
        let gone = change(event(EventKind::Delete, 7, &json!({}), Some(&pod("n1", "db"))));
        assert_eq!(gone.selected_by(&select("", "spec.nodeName=n1"), true), (false, true));
        assert_eq!(gone.event_type(false, true), Some("DELETED"));
    }

    #[tokio::test]
    async fn a_watcher_that_stops_reading_is_dropped_and_its_queue_freed() {
        let cache = ResourceCache::new(1);
        let big = json!({ "metadata": { "name": "a" }, "data": { "k": "x".repeat(1 << 20) } });
        let reader = cache.subscribe(0, None).unwrap();
        let stalled = cache.subscribe(0, None).unwrap();
        for rev in 1..=40 {
            cache.publish(change(event(EventKind::Put, rev, &big, None)));
            assert_eq!(reader.live.recv().await.unwrap().revision, rev, "a reading watcher gets every change");
        }
        let state = cache.state.lock();
        assert_eq!(state.subscribers.len(), 1, "the stalled watcher is dropped");
        assert!(state.ring_bytes <= RING_BYTES && state.ring.len() < 40, "the ring is bounded in bytes: {}", state.ring.len());
        drop(state);
        assert_eq!(stalled.live.0.pending.lock().bytes, 0, "its queue is freed at once");
        assert!(stalled.live.recv().await.is_none(), "its stream ends");
        assert!(cache.subscribe(0, None).is_none(), "revisions before the ring are read from the store");
    }
}
