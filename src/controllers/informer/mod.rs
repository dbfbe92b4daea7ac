//! Shared informers: one watch and one cache per kind for every controller (and the
//! scheduler), as kube-controller-manager's SharedInformerFactory does. Each event is
//! decoded once, stored once (without managedFields) and handed to every subscriber as the
//! same `Arc`; subscribers get their own queue, so a slow controller never holds up
//! another's events, and one that falls too far behind is handed a fresh full list
//! ([`queue`]) rather than holding old versions of objects without bound.

mod queue;

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Weak};

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::queue::Queue;

/// What a subscriber sees: kube-runtime's watcher events with shared objects. `Init`,
/// `InitApply`… `InitDone` (a full list, also replayed to late subscribers) replaces
/// everything known before; the flag of `InitApply`/`Apply` says whether the object was
/// unknown to the cache before this event.
#[derive(Debug, Clone)]
pub enum Change<K> {
    Init,
    InitApply(Arc<K>, bool),
    InitDone,
    Apply(Arc<K>, bool),
    Delete(Arc<K>),
}

impl<K> Change<K> {
    /// The object an event is about (none for `Init`/`InitDone`).
    pub fn object(&self) -> Option<&Arc<K>> {
        match self {
            Change::InitApply(o, _) | Change::Apply(o, _) | Change::Delete(o) => Some(o),
            Change::Init | Change::InitDone => None,
        }
    }
}

/// Bound for the kinds an informer can watch.
pub trait Watched: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static {}
impl<K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static> Watched for K {}

/// (namespace, uid of the controlling owner — empty for objects without one).
type OwnerKey = (String, String);

fn owner_key<K: Resource>(obj: &K) -> OwnerKey {
    let meta = obj.meta();
    let controller = meta.owner_references.iter().flatten().find(|r| r.controller == Some(true));
    (meta.namespace.clone().unwrap_or_default(), controller.map(|r| r.uid.clone()).unwrap_or_default())
}

/// The cached objects by controlling owner, so that a controller syncing one owner looks at
/// its own children (and its namespace's orphans) instead of scanning every object: with tens
/// of thousands of pods, a scan per sync made syncing quadratic.
struct OwnerIndex<K: Watched>(RwLock<HashMap<OwnerKey, HashSet<ObjectRef<K>>>>);

impl<K: Watched> OwnerIndex<K> {
    fn write(&self) -> parking_lot::RwLockWriteGuard<'_, HashMap<OwnerKey, HashSet<ObjectRef<K>>>> {
        self.0.write()
    }

    fn remove(&self, key: &ObjectRef<K>, obj: &K) {
        let mut index = self.write();
        let owner = owner_key(obj);
        if let Some(refs) = index.get_mut(&owner) {
            refs.remove(key);
            if refs.is_empty() {
                index.remove(&owner);
            }
        }
    }

    /// Files `obj` under its (new) owner before it leaves the old one: an object must never be
    /// missing from the index while it is cached, or a concurrent sync of its owner would
    /// count one child short and create another.
    fn moved(&self, key: &ObjectRef<K>, old: Option<&K>, obj: &K) {
        let owner = owner_key(obj);
        if old.is_some_and(|old| owner_key(old) == owner) {
            return;
        }
        self.write().entry(owner).or_default().insert(key.clone());
        if let Some(old) = old {
            self.remove(key, old);
        }
    }

    fn rebuild(&self, store: &Store<K>) {
        let mut index = self.write();
        index.clear();
        for obj in store.state() {
            index.entry(owner_key(obj.as_ref())).or_default().insert(ObjectRef::from_obj(obj.as_ref()));
        }
    }
}

/// One kind's shared watch: its cache and its subscribers.
#[derive(Clone)]
pub struct Informer<K: Watched> {
    store: Store<K>,
    owners: Arc<OwnerIndex<K>>,
    subscribers: Arc<Mutex<Subscribers<K>>>,
    /// Turns true with the first full list, set while the subscribers' lock is held (late
    /// subscribers are then sent the cache first). Not `Store::wait_until_ready`: its future
    /// wakes only the last of several tasks waiting at once.
    listed: watch::Receiver<bool>,
}

struct Subscribers<K> {
    queues: Vec<Weak<Queue<K>>>,
    /// How many changes each queue may hold ([`queue::LIMIT`]).
    limit: usize,
}

impl<K: Watched> Subscribers<K> {
    fn new(limit: usize) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self { queues: Vec::new(), limit }))
    }

    /// Queues `change` for every live subscriber and forgets the ones that went away.
    fn send(&mut self, change: Change<K>) {
        let kind = K::kind(&());
        self.queues.retain(|q| match q.upgrade() {
            Some(q) => {
                q.push(change.clone(), &kind);
                true
            }
            None => false,
        });
    }
}

impl<K: Watched> Informer<K> {
    /// Starts watching every object of `api` until `shutdown`.
    fn start(api: Api<K>, shutdown: CancellationToken) -> Self {
        let (store, writer) = reflector::store::<K>();
        let subscribers = Subscribers::new(queue::LIMIT);
        let (listed_tx, listed) = watch::channel(false);
        let owners = Arc::new(OwnerIndex(RwLock::default()));
        let informer = Self { store: store.clone(), owners: owners.clone(), subscribers: subscribers.clone(), listed };
        tokio::spawn(async move {
            let events = watcher(api, watcher::Config::default()).default_backoff();
            let mut feed = Feed { store, writer, owners, subscribers, listing: Vec::new(), listed: listed_tx };
            let mut events = std::pin::pin!(events);
            loop {
                let event = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    event = events.next() => event,
                };
                match event {
                    None => return,
                    Some(Ok(event)) => feed.apply(event.modify(super::trim_managed_fields)),
                    Some(Err(e)) => tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying"),
                }
            }
        });
        informer
    }

    /// The cache (possibly still empty: see [`Informer::ready`]).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// The cache once it holds a first full list (`None` if shut down before).
    pub async fn ready(&self, shutdown: &CancellationToken) -> Option<Store<K>> {
        let mut listed = self.listed.clone();
        tokio::select! {
            ready = listed.wait_for(|l| *l) => ready.ok().map(|_| self.store.clone()),
            _ = shutdown.cancelled() => None,
        }
    }

    /// The cached objects of `namespace` controlled by the owner with `uid`, or with no
    /// controller at all when `uid` is empty.
    pub fn controlled_by(&self, namespace: &str, uid: &str) -> Vec<Arc<K>> {
        let index = self.owners.0.read();
        let refs = index.get(&(namespace.to_string(), uid.to_string()));
        refs.into_iter().flatten().filter_map(|r| self.store.get(r)).collect()
    }

    /// What an owner with `uid` in `namespace` may claim: its own children and the orphans.
    pub fn claimable(&self, namespace: &str, uid: &str) -> Vec<Arc<K>> {
        let mut out = self.controlled_by(namespace, uid);
        out.extend(self.controlled_by(namespace, ""));
        out
    }

    /// Every change from now on, starting with the current cache as a full list if one
    /// arrived already (and again whenever the subscriber falls too far behind).
    pub fn subscribe(&self) -> impl Stream<Item = Change<K>> + Send + 'static {
        let mut subscribers = self.subscribers.lock();
        let queue = Queue::new(subscribers.limit);
        if *self.listed.borrow() {
            queue.resync(self.store.state());
        }
        subscribers.queues.push(Arc::downgrade(&queue));
        drop(subscribers);
        let (store, subscribers) = (self.store.clone(), self.subscribers.clone());
        futures::stream::unfold(queue, move |queue| {
            let (store, subscribers) = (store.clone(), subscribers.clone());
            async move {
                loop {
                    match queue.pop() {
                        Some(Ok(change)) => return Some((change, queue)),
                        Some(Err(())) => {
                            // Under the feed's lock: the list is exactly what the cache holds
                            // between two changes.
                            let _feed = subscribers.lock();
                            queue.resync(store.state());
                        }
                        None => queue.changed().await,
                    }
                }
            }
        })
    }

    /// The objects touched by each change (created, updated or deleted), for
    /// `Controller::watches_shared_stream` and `owns_shared_stream`.
    pub fn touched(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        self.subscribe().filter_map(|c| futures::future::ready(c.object().cloned()))
    }
}

/// The watch task's side: applies events to the cache, then hands them on.
struct Feed<K: Watched> {
    store: Store<K>,
    writer: reflector::store::Writer<K>,
    owners: Arc<OwnerIndex<K>>,
    subscribers: Arc<Mutex<Subscribers<K>>>,
    /// The objects of a list in progress (with whether each is new), handed on at its end
    /// as the cache's own `Arc`s.
    listing: Vec<(ObjectRef<K>, bool)>,
    listed: watch::Sender<bool>,
}

impl<K: Watched> Feed<K> {
    fn apply(&mut self, event: watcher::Event<K>) {
        let mut subscribers = self.subscribers.lock();
        let seen = match &event {
            watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
                let key = ObjectRef::from_obj(obj);
                let old = self.store.get(&key);
                if matches!(event, watcher::Event::Apply(_)) {
                    self.owners.moved(&key, old.as_deref(), obj);
                }
                Some((key, old.is_none()))
            }
            watcher::Event::Delete(obj) => {
                let key = ObjectRef::from_obj(obj);
                if let Some(old) = self.store.get(&key) {
                    self.owners.remove(&key, &old);
                }
                self.owners.remove(&key, obj);
                None
            }
            _ => None,
        };
        self.writer.apply_watcher_event(&event);
        match (event, seen) {
            (watcher::Event::Init, _) => self.listing.clear(),
            (watcher::Event::InitApply(_), Some(seen)) => self.listing.push(seen),
            (watcher::Event::InitDone, _) => {
                self.owners.rebuild(&self.store);
                subscribers.send(Change::Init);
                for (key, new) in std::mem::take(&mut self.listing) {
                    if let Some(obj) = self.store.get(&key) {
                        subscribers.send(Change::InitApply(obj, new));
                    }
                }
                subscribers.send(Change::InitDone);
                self.listed.send_replace(true);
                tracing::debug!(kind = %K::kind(&()), objects = self.store.state().len(), "informer listed");
            }
            (watcher::Event::Apply(_), Some((key, new))) => {
                if let Some(obj) = self.store.get(&key) {
                    subscribers.send(Change::Apply(obj, new));
                }
            }
            (watcher::Event::Delete(obj), _) => subscribers.send(Change::Delete(Arc::new(obj))),
            _ => {}
        }
    }
}

/// The shared informers of one leadership term, started on first use and stopped with it.
pub struct Informers {
    client: kube::Client,
    shutdown: CancellationToken,
    started: Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
}

impl Informers {
    pub fn new(client: kube::Client, shutdown: CancellationToken) -> Self {
        Self { client, shutdown, started: Mutex::new(HashMap::new()) }
    }

    /// The informer of every `K` in the cluster (started by the first caller).
    pub fn get<K: Watched>(&self) -> Informer<K> {
        let mut started = self.started.lock();
        let entry = started
            .entry(TypeId::of::<K>())
            .or_insert_with(|| Box::new(Informer::<K>::start(Api::all(self.client.clone()), self.shutdown.clone())));
        entry.downcast_ref::<Informer<K>>().expect("informers are keyed by their type").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn cm(name: &str, version: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some("ns".into());
        c.metadata.resource_version = Some(version.into());
        c
    }

    /// The queue limit of the tests' informers.
    const LIMIT: usize = 8;

    fn feed() -> (Informer<ConfigMap>, Feed<ConfigMap>) {
        let (store, writer) = reflector::store::<ConfigMap>();
        let subscribers = Subscribers::new(LIMIT);
        let (listed_tx, listed) = watch::channel(false);
        let owners = Arc::new(OwnerIndex(RwLock::default()));
        let informer = Informer { store: store.clone(), owners: owners.clone(), subscribers: subscribers.clone(), listed };
        (informer, Feed { store, writer, owners, subscribers, listing: Vec::new(), listed: listed_tx })
    }

    /// What a subscription holds so far, as (event, name, version, new) strings.
    fn drain(changes: &mut (impl Stream<Item = Change<ConfigMap>> + Unpin)) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(Some(change)) = changes.next().now_or_never() {
            let describe =
                |o: &ConfigMap| format!("{}@{}", o.metadata.name.as_deref().unwrap(), o.metadata.resource_version.as_deref().unwrap());
            out.push(match change {
                Change::Init => "init".into(),
                Change::InitApply(o, new) => format!("list {} new={new}", describe(&o)),
                Change::InitDone => "listed".into(),
                Change::Apply(o, new) => format!("apply {} new={new}", describe(&o)),
                Change::Delete(o) => format!("delete {}", describe(&o)),
            });
        }
        out
    }

    #[test]
    fn subscribers_see_lists_changes_and_deletions_with_the_cache_updated_first() {
        let (informer, mut feed) = feed();
        let mut early = Box::pin(informer.subscribe());
        feed.apply(watcher::Event::Init);
        feed.apply(watcher::Event::InitApply(cm("a", "1")));
        assert!(drain(&mut early).is_empty(), "a list is handed on when complete");
        feed.apply(watcher::Event::InitDone);
        feed.apply(watcher::Event::Apply(cm("a", "2")));
        feed.apply(watcher::Event::Apply(cm("b", "3")));
        assert_eq!(informer.store().state().len(), 2);
        feed.apply(watcher::Event::Delete(cm("a", "4")));
        assert_eq!(drain(&mut early), ["init", "list a@1 new=true", "listed", "apply a@2 new=false", "apply b@3 new=true", "delete a@4"]);
        assert_eq!(informer.store().state().len(), 1);

        // A late subscriber starts from the cache; a relist tells what was known before.
        let mut late = Box::pin(informer.subscribe());
        assert_eq!(drain(&mut late), ["init", "list b@3 new=true", "listed"]);
        feed.apply(watcher::Event::Init);
        feed.apply(watcher::Event::InitApply(cm("b", "5")));
        feed.apply(watcher::Event::InitApply(cm("c", "6")));
        feed.apply(watcher::Event::InitDone);
        assert_eq!(drain(&mut late), ["init", "list b@5 new=false", "list c@6 new=true", "listed"]);
        assert_eq!(drain(&mut early).len(), 4);
    }

    #[tokio::test]
    async fn every_task_waiting_for_the_first_list_wakes() {
        let (informer, mut feed) = feed();
        let shutdown = CancellationToken::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let (informer, shutdown) = (informer.clone(), shutdown.clone());
                tokio::spawn(async move { informer.ready(&shutdown).await.is_some() })
            })
            .collect();
        tokio::task::yield_now().await;
        feed.apply(watcher::Event::Init);
        feed.apply(watcher::Event::InitDone);
        for waiter in waiters {
            assert!(tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap());
        }
    }

    fn owned(name: &str, version: &str, owner: Option<&str>) -> ConfigMap {
        let mut c = cm(name, version);
        c.metadata.owner_references = owner.map(|uid| {
            vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                uid: uid.into(),
                controller: Some(true),
                ..Default::default()
            }]
        });
        c
    }

    fn names(objs: Vec<Arc<ConfigMap>>) -> Vec<String> {
        let mut names: Vec<String> = objs.iter().map(|o| o.metadata.name.clone().unwrap()).collect();
        names.sort();
        names
    }

    #[test]
    fn objects_are_indexed_by_their_controller() {
        let (informer, mut feed) = feed();
        feed.apply(watcher::Event::Init);
        feed.apply(watcher::Event::InitApply(owned("a", "1", Some("rs-1"))));
        feed.apply(watcher::Event::InitApply(owned("b", "2", None)));
        feed.apply(watcher::Event::InitDone);
        feed.apply(watcher::Event::Apply(owned("c", "3", Some("rs-1"))));
        assert_eq!(names(informer.controlled_by("ns", "rs-1")), ["a", "c"]);
        assert_eq!(names(informer.claimable("ns", "rs-2")), ["b"]);
        // Adoption moves an object; deletion drops it.
        feed.apply(watcher::Event::Apply(owned("b", "4", Some("rs-2"))));
        feed.apply(watcher::Event::Delete(owned("a", "5", Some("rs-1"))));
        assert_eq!(names(informer.claimable("ns", "rs-1")), ["c"]);
        assert_eq!(names(informer.controlled_by("ns", "rs-2")), ["b"]);
        assert!(informer.controlled_by("other", "rs-2").is_empty());
    }

    #[test]
    fn a_subscriber_that_falls_behind_gets_the_cache_as_a_full_list() {
        let (informer, mut feed) = feed();
        feed.apply(watcher::Event::Init);
        feed.apply(watcher::Event::InitDone);
        let mut slow = Box::pin(informer.subscribe());
        assert_eq!(drain(&mut slow), ["init", "listed"]);
        for version in 0..3 * LIMIT {
            feed.apply(watcher::Event::Apply(cm(&format!("o{}", version % 3), &version.to_string())));
        }
        feed.apply(watcher::Event::Delete(cm("o0", "99")));
        let last = 3 * LIMIT - 1;
        let mut got = drain(&mut slow);
        // The cache lists in no particular order.
        got[1..3].sort();
        assert_eq!(
            got,
            ["init".to_string(), format!("list o1@{} new=true", last - 1), format!("list o2@{last} new=true"), "listed".into()],
            "the old versions are gone; the list is the cache now",
        );
        // And it is followed by what comes next, as usual.
        feed.apply(watcher::Event::Apply(cm("o3", "100")));
        assert_eq!(drain(&mut slow), ["apply o3@100 new=true"]);
    }

    #[test]
    fn closed_subscriptions_are_dropped() {
        let (informer, mut feed) = feed();
        drop(informer.subscribe());
        feed.apply(watcher::Event::Apply(cm("a", "1")));
        assert!(feed.subscribers.lock().queues.is_empty());
    }
}
