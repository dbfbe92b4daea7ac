//! The endpoints controller: keeps the Endpoints and EndpointSlices of every Service with a
//! selector in line with the pods it selects (see `build` for their shape). Services without
//! a selector keep whatever Endpoints their owner writes; a deleted Service's Endpoints and
//! slices are removed.
//!
//! Work is keyed by Service: changes to Services, pods, Endpoints and managed slices mark the
//! Services they concern; marked Services are reconciled (compare with the cache, write only
//! differences) once the caches hold a first full list. Which pods each Service last included
//! is remembered, so a pod that stops matching (relabelled, deleted) still marks it.

mod build;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::ResourceExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::cache::reflect;
use super::{informer, Context};

pub use build::{MANAGED_BY, MANAGED_BY_LABEL, SERVICE_NAME_LABEL};

/// How long changes are collected before the marked Services are reconciled.
const DEBOUNCE: Duration = Duration::from_millis(20);
const RETRY: Duration = Duration::from_secs(1);

/// (namespace, name)
type Key = (String, String);

fn key_of<K: ResourceExt>(obj: &K) -> Key {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

enum Change {
    Service(informer::Change<Service>),
    Pod(informer::Change<Pod>),
    Endpoints(informer::Change<Endpoints>),
    Slice(Event<EndpointSlice>),
}

fn object<K>(event: &Event<K>) -> Option<&K> {
    match event {
        Event::Apply(o) | Event::Delete(o) | Event::InitApply(o) => Some(o),
        Event::Init | Event::InitDone => None,
    }
}

/// Which pods each Service's endpoints were last built from, both ways round.
#[derive(Default)]
struct Members {
    by_service: HashMap<Key, Vec<Key>>,
    by_pod: HashMap<Key, HashSet<Key>>,
}

impl Members {
    fn set(&mut self, service: &Key, pods: Vec<Key>) {
        for pod in self.by_service.remove(service).unwrap_or_default() {
            if let Some(services) = self.by_pod.get_mut(&pod) {
                services.remove(service);
                if services.is_empty() {
                    self.by_pod.remove(&pod);
                }
            }
        }
        for pod in &pods {
            self.by_pod.entry(pod.clone()).or_default().insert(service.clone());
        }
        if !pods.is_empty() {
            self.by_service.insert(service.clone(), pods);
        }
    }
}

struct EndpointsController {
    client: kube::Client,
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    slices: Store<EndpointSlice>,
    members: Members,
}

impl EndpointsController {
    /// The Services a change concerns.
    fn concerned(&self, change: &Change) -> Vec<Key> {
        match change {
            Change::Service(e) => e.object().map(|s| key_of(s.as_ref())).into_iter().collect(),
            Change::Endpoints(e) => e.object().map(|e| key_of(e.as_ref())).into_iter().collect(),
            Change::Slice(e) => object(e)
                .and_then(|s| Some((s.namespace().unwrap_or_default(), s.labels().get(SERVICE_NAME_LABEL)?.clone())))
                .into_iter()
                .collect(),
            Change::Pod(e) => {
                let Some(pod) = e.object() else { return Vec::new() };
                let pod_key = key_of(pod.as_ref());
                let mut out: Vec<Key> = self.members.by_pod.get(&pod_key).into_iter().flatten().cloned().collect();
                let namespace = pod.namespace();
                out.extend(
                    self.services
                        .state()
                        .iter()
                        .filter(|s| s.namespace() == namespace && build::selects(s, pod))
                        .map(|s| key_of(s.as_ref())),
                );
                out
            }
        }
    }

    async fn reconcile(&mut self, key: &Key) -> Result<(), kube::Error> {
        let (namespace, name) = key;
        let service = self.services.get(&ObjectRef::new(name).within(namespace));
        let endpoints_api: Api<Endpoints> = Api::namespaced(self.client.clone(), namespace);
        let existing = self.endpoints.get(&ObjectRef::new(name).within(namespace));
        let managed = service.as_deref().filter(|s| build::managed(s));
        let (desired_endpoints, desired_slices) = match managed {
            Some(service) => {
                let selected: Vec<Arc<Pod>> = self.pods.state().into_iter().filter(|p| build::selects(service, p)).collect();
                self.members.set(key, selected.iter().map(|p| key_of(p.as_ref())).collect());
                (Some(build::endpoints(service, &selected)), build::slices(service, &selected))
            }
            None => {
                self.members.set(key, Vec::new());
                (None, Vec::new())
            }
        };
        match (desired_endpoints, existing) {
            (Some(want), None) => {
                endpoints_api.create(&PostParams::default(), &want).await?;
            }
            (Some(mut want), Some(have)) if want.subsets != have.subsets || want.metadata.labels != have.metadata.labels => {
                want.metadata.resource_version = have.resource_version();
                want.metadata.annotations = have.metadata.annotations.clone();
                endpoints_api.replace(name, &PostParams::default(), &want).await?;
            }
            // The Service is gone: so are its Endpoints (a selector-less Service's stay theirs).
            (None, Some(_)) if service.is_none() => match endpoints_api.delete(name, &DeleteParams::default()).await {
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                other => {
                    other?;
                }
            },
            _ => {}
        }
        self.sync_slices(key, desired_slices).await
    }

    async fn sync_slices(&self, (namespace, name): &Key, desired: Vec<EndpointSlice>) -> Result<(), kube::Error> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), namespace);
        let ns = Some(namespace.clone());
        let existing: Vec<Arc<EndpointSlice>> =
            self.slices.state_filter(|s| s.namespace() == ns && s.labels().get(SERVICE_NAME_LABEL) == Some(name));
        for mut want in desired.iter().cloned() {
            match existing.iter().find(|s| s.metadata.name == want.metadata.name) {
                None => match api.create(&PostParams::default(), &want).await {
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    other => {
                        other?;
                    }
                },
                Some(have)
                    if have.endpoints != want.endpoints
                        || have.ports != want.ports
                        || have.metadata.labels != want.metadata.labels
                        || have.metadata.owner_references != want.metadata.owner_references =>
                {
                    want.metadata.resource_version = have.resource_version();
                    api.replace(&want.name_any(), &PostParams::default(), &want).await?;
                }
                Some(_) => {}
            }
        }
        for stale in existing.iter().filter(|s| !desired.iter().any(|d| d.metadata.name == s.metadata.name)) {
            match api.delete(&stale.name_any(), &DeleteParams::default()).await {
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }
}

/// The shared cache of every `K` and its changes.
fn subscribe<K: informer::Watched>(informers: &informer::Informers) -> (Store<K>, impl futures::Stream<Item = informer::Change<K>>) {
    let informer = informers.get::<K>();
    (informer.store(), informer.subscribe())
}

/// Runs the endpoints controller until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let (services, service_events) = subscribe::<Service>(&ctx.informers);
    let (pods, pod_events) = subscribe::<Pod>(&ctx.informers);
    let (endpoints, endpoint_events) = subscribe::<Endpoints>(&ctx.informers);
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let (slices, slice_events) = reflect(Api::<EndpointSlice>::all(client.clone()), managed);
    let streams: Vec<BoxStream<'static, Change>> = vec![
        service_events.map(Change::Service).boxed(),
        pod_events.map(Change::Pod).boxed(),
        endpoint_events.map(Change::Endpoints).boxed(),
        slice_events.map(Change::Slice).boxed(),
    ];
    let mut changes = futures::stream::select_all(streams);
    let mut controller = EndpointsController { client, services, pods, endpoints, slices, members: Members::default() };
    let mut listed = [false; 4];
    let mut dirty: HashSet<Key> = HashSet::new();
    let mut failed: HashSet<Key> = HashSet::new();
    let mut retry_at: Option<Instant> = None;
    loop {
        let synced = listed.iter().all(|l| *l);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            change = changes.next() => {
                let Some(change) = change else { return };
                let which = match &change {
                    Change::Service(e) => (0, matches!(e, informer::Change::InitDone)),
                    Change::Pod(e) => (1, matches!(e, informer::Change::InitDone)),
                    Change::Endpoints(e) => (2, matches!(e, informer::Change::InitDone)),
                    Change::Slice(e) => (3, matches!(e, Event::InitDone)),
                };
                listed[which.0] |= which.1;
                dirty.extend(controller.concerned(&change));
            }
            _ = tokio::time::sleep(DEBOUNCE), if synced && !dirty.is_empty() => {
                for key in std::mem::take(&mut dirty) {
                    if let Err(e) = controller.reconcile(&key).await {
                        tracing::debug!(namespace = %key.0, service = %key.1, error = %e, "endpoints reconcile failed; retrying");
                        failed.insert(key);
                    }
                }
                if !failed.is_empty() && retry_at.is_none() {
                    retry_at = Some(Instant::now() + RETRY);
                }
            }
            _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                retry_at = None;
                dirty.extend(failed.drain());
            }
        }
    }
}
