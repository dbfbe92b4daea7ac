//! The garbage collector: watches every resource discovery reports (rediscovering now and then
//! for new kinds), keeps the owner → dependents graph (`graph`) and carries out its
//! verdicts through the API — background deletion of dependents of gone owners, foreground
//! deletion (dependents first, then the owner's `foregroundDeletion` finalizer) and orphaning
//! (ownerReferences removed, then the `orphan` finalizer). An owner the graph misses is looked
//! up in the API before anything is deleted for it.

mod graph;
mod meta;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::discovery::{verbs, ApiCapabilities, ApiResource, Scope};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::graph::{Graph, Node, OwnerState, OwnerWork, Propagation, Verdict, FOREGROUND, ORPHAN};
use self::meta::MetaObject;
use super::common::ok_if_gone;
use super::Context;

/// How often discovery is asked again for resources to watch.
const REDISCOVER: Duration = Duration::from_secs(30);
/// How soon failed work is tried again.
const RETRY: Duration = Duration::from_secs(2);

type Resources = Vec<(ApiResource, ApiCapabilities)>;

struct Collector {
    client: kube::Client,
    resources: Resources,
    graph: Graph,
    queue: BTreeSet<String>,
    retry: BTreeSet<String>,
    /// Per resource, the uids seen since its watch (re)started listing.
    listing: HashMap<usize, HashSet<String>>,
}

pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let (tx, mut rx) = mpsc::channel(1024);
    let mut gc = Collector {
        client: ctx.client.clone(),
        resources: Vec::new(),
        graph: Graph::default(),
        queue: BTreeSet::new(),
        retry: BTreeSet::new(),
        listing: HashMap::new(),
    };
    let mut rediscover = tokio::time::interval(REDISCOVER);
    let mut retry = tokio::time::interval(RETRY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = rediscover.tick() => gc.discover(&tx, &shutdown).await,
            _ = retry.tick() => {
                gc.queue.append(&mut gc.retry);
                gc.process().await;
            }
            Some((i, event)) = rx.recv() => {
                gc.on_event(i, event);
                while let Ok((i, event)) = rx.try_recv() {
                    gc.on_event(i, event);
                }
                gc.process().await;
            }
        }
    }
}

fn to_node(resource: usize, obj: &MetaObject) -> Node {
    Node {
        uid: obj.uid().unwrap_or_default(),
        resource,
        namespace: obj.namespace(),
        name: obj.name_any(),
        resource_version: obj.resource_version(),
        owners: obj.owner_references().to_vec(),
        finalizers: obj.finalizers().to_vec(),
        deleting: obj.metadata.deletion_timestamp.is_some(),
    }
}

impl Collector {
    /// Starts watching resources discovery reports that are not watched yet.
    async fn discover(&mut self, tx: &mpsc::Sender<(usize, watcher::Event<MetaObject>)>, shutdown: &CancellationToken) {
        let found = match super::api_resources::deletable(&self.client).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "garbage collector: discovery failed");
                return;
            }
        };
        for (ar, caps) in found.into_iter().filter(|(_, caps)| caps.supports_operation(verbs::WATCH)) {
            if self.resources.iter().any(|(known, _)| known.group == ar.group && known.plural == ar.plural) {
                continue;
            }
            let index = self.resources.len();
            tracing::debug!(resource = %ar.plural, group = %ar.group, "garbage collector watching");
            let api: Api<MetaObject> = Api::all_with(self.client.clone(), &ar);
            let (tx, stop) = (tx.clone(), shutdown.clone());
            tokio::spawn(async move {
                let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        event = events.next() => match event {
                            Some(Ok(event)) => if tx.send((index, event)).await.is_err() { return },
                            Some(Err(e)) => tracing::debug!(error = %e, "garbage collector watch"),
                            None => return,
                        }
                    }
                }
            });
            self.resources.push((ar, caps));
        }
    }

    fn on_event(&mut self, resource: usize, event: watcher::Event<MetaObject>) {
        match event {
            watcher::Event::Init => {
                self.listing.insert(resource, HashSet::new());
            }
            watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
                if let Some(seen) = self.listing.get_mut(&resource) {
                    seen.extend(obj.uid());
                }
                let affected = self.graph.upsert(to_node(resource, &obj));
                self.queue.extend(affected);
            }
            watcher::Event::Delete(obj) => {
                let affected = self.graph.remove(&obj.uid().unwrap_or_default());
                self.queue.extend(affected);
            }
            watcher::Event::InitDone => {
                // Objects deleted while the watch was down are not in the new list.
                let seen = self.listing.remove(&resource).unwrap_or_default();
                for uid in self.graph.uids_of(resource).into_iter().filter(|u| !seen.contains(u)) {
                    let affected = self.graph.remove(&uid);
                    self.queue.extend(affected);
                }
            }
        }
    }

    fn api_for(&self, node: &Node) -> Api<DynamicObject> {
        let (ar, _) = &self.resources[node.resource];
        match &node.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, ar),
            None => Api::all_with(self.client.clone(), ar),
        }
    }

    async fn process(&mut self) {
        let mut visited = HashSet::new();
        while let Some(uid) = self.queue.pop_first() {
            if !visited.insert(uid.clone()) {
                continue;
            }
            let Some(node) = self.graph.get(&uid).cloned() else { continue };
            if let Err(e) = self.attempt(&node).await {
                tracing::debug!(object = %node.name, error = %e, "garbage collector: will retry");
                self.retry.insert(uid);
            }
        }
    }

    async fn attempt(&mut self, node: &Node) -> Result<(), kube::Error> {
        match self.graph.owner_work(node) {
            OwnerWork::Orphan(dependents) => {
                for d in dependents.iter().filter_map(|d| self.graph.get(d).cloned()) {
                    self.drop_owners(&d, &[node.uid.clone()]).await?;
                }
                self.remove_finalizer(node, ORPHAN).await?;
                return Ok(());
            }
            OwnerWork::WaitFor(dependents) => self.queue.extend(dependents),
            OwnerWork::ReleaseForeground => self.remove_finalizer(node, FOREGROUND).await?,
            OwnerWork::None => {}
        }
        if node.owners.is_empty() {
            return Ok(());
        }
        let mut states = HashMap::new();
        for owner in &node.owners {
            let state = match self.graph.owner_state(owner) {
                OwnerState::Absent => self.look_up(owner, node.namespace.as_deref()).await?,
                present => present,
            };
            states.insert(owner.uid.clone(), state);
        }
        match self.graph.verdict(node, |o| states[&o.uid]) {
            Verdict::Keep => {}
            Verdict::DropOwners(uids) => self.drop_owners(node, &uids).await?,
            Verdict::Delete(how) => {
                tracing::info!(object = %node.name, namespace = ?node.namespace, propagation = ?how, "garbage collector deleting a dependent");
                let propagation = match how {
                    Propagation::Background => PropagationPolicy::Background,
                    Propagation::Foreground => PropagationPolicy::Foreground,
                    Propagation::Orphan => PropagationPolicy::Orphan,
                };
                let params = DeleteParams {
                    propagation_policy: Some(propagation),
                    preconditions: Some(Preconditions { uid: Some(node.uid.clone()), resource_version: None }),
                    ..Default::default()
                };
                ok_if_gone(self.api_for(node).delete(&node.name, &params).await)?;
            }
        }
        Ok(())
    }

    /// Asks the API about an owner the graph does not know (yet). Owners of kinds the API does
    /// not serve count as present: nothing is deleted on a guess.
    async fn look_up(&self, owner: &OwnerReference, namespace: Option<&str>) -> Result<OwnerState, kube::Error> {
        let Some((ar, caps)) = self.resources.iter().find(|(ar, _)| ar.api_version == owner.api_version && ar.kind == owner.kind) else {
            return Ok(OwnerState::Present { deleting_dependents: false });
        };
        let api: Api<DynamicObject> = match (caps.scope == Scope::Namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, ar),
            (true, None) => return Ok(OwnerState::Absent),
            (false, _) => Api::all_with(self.client.clone(), ar),
        };
        Ok(match api.get_opt(&owner.name).await? {
            Some(found) if found.uid().as_deref() == Some(owner.uid.as_str()) => {
                let deleting_dependents = found.metadata.deletion_timestamp.is_some() && found.finalizers().iter().any(|f| f == FOREGROUND);
                OwnerState::Present { deleting_dependents }
            }
            _ => OwnerState::Absent,
        })
    }

    async fn drop_owners(&self, node: &Node, uids: &[String]) -> Result<(), kube::Error> {
        let kept: Vec<&OwnerReference> = node.owners.iter().filter(|o| !uids.contains(&o.uid)).collect();
        tracing::debug!(object = %node.name, dropped = ?uids, "garbage collector removing owner references");
        let patch = json!({ "metadata": { "ownerReferences": kept, "resourceVersion": node.resource_version } });
        ok_if_gone(self.api_for(node).patch(&node.name, &PatchParams::default(), &Patch::Merge(patch)).await).map(|_| ())
    }

    async fn remove_finalizer(&self, node: &Node, finalizer: &str) -> Result<(), kube::Error> {
        let kept: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
        tracing::debug!(object = %node.name, finalizer, "garbage collector removing a finalizer");
        let patch = json!({ "metadata": { "finalizers": kept, "resourceVersion": node.resource_version } });
        ok_if_gone(self.api_for(node).patch(&node.name, &PatchParams::default(), &Patch::Merge(patch)).await).map(|_| ())
    }
}
