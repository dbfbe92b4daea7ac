//! The Deployment controller: owns ReplicaSets named `<deployment>-<pod-template-hash>`,
//! rolls templates out with RollingUpdate (maxSurge/maxUnavailable) or Recreate, scales
//! proportionally, keeps revisionHistoryLimit old sets, honours `paused`, and reports
//! status and the Progressing/Available conditions `kubectl rollout status` reads.

mod revisions;
mod rollout;
mod status;
mod sync;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;
use tokio_util::sync::CancellationToken;

use super::common::watch::{concerned_controllers, controller_key, shared};
use super::common::{backoff, owner, selector, Error};
use super::informer::Informer;
use super::Context;

struct Ctx {
    client: kube::Client,
    sets: Informer<ReplicaSet>,
    pods: Informer<Pod>,
}

/// Objects synced at once (--concurrent-deployment-syncs's default in kube-controller-manager): unbounded, hundreds
/// of slow-start batches of creates flood the API at once and hold their bodies in memory.
const CONCURRENT_SYNCS: u16 = 5;

/// Runs the Deployment controller.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let (sets, set_events) = shared::<ReplicaSet>(&ctx.informers);
    let (pods, pod_events) = shared::<Pod>(&ctx.informers);
    let controller = Controller::new(Api::<Deployment>::all(ctx.client.clone()), watcher::Config::default())
        .with_config(controller::Config::default().concurrency(CONCURRENT_SYNCS));
    let deployments = controller.store();
    let by_set = deployments.clone();
    let set_cache = sets.store();
    let state = Arc::new(Ctx { client: ctx.client.clone(), sets, pods });
    let controller = controller
        .watches_shared_stream(set_events, move |rs| deployments_of(&by_set, &rs))
        .watches_shared_stream(pod_events, move |pod| {
            // Pods matter for Recreate (old pods must be gone): map to the Deployment owning
            // the pod's ReplicaSet.
            let set = controller_key::<ReplicaSet>(pod.as_ref()).and_then(|key| set_cache.get(&key));
            set.and_then(|rs| controller_key::<Deployment>(rs.as_ref()))
        })
        .graceful_shutdown_on(async move { shutdown.cancelled().await });
    backoff::run(controller, reconcile, state).await;
}

/// The Deployments a ReplicaSet event concerns: its controller, or for an orphan every
/// Deployment whose selector matches it.
fn deployments_of(deployments: &Store<Deployment>, rs: &ReplicaSet) -> Vec<ObjectRef<Deployment>> {
    concerned_controllers(deployments, rs, |d, rs| {
        d.spec.as_ref().is_some_and(|s| !selector::is_empty(&s.selector) && selector::matches(&s.selector, rs.metadata.labels.as_ref()))
    })
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = d.namespace().unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let sel = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    if selector::is_empty(&sel) {
        tracing::warn!(deployment = %d.name_any(), "deployment selects every pod; not syncing it");
        return sync::observe_generation_only(&api, &d).await.map(|_| Action::await_change());
    }
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let candidates = ctx.sets.claimable(&ns, d.metadata.uid.as_deref().unwrap_or_default());
    let owned = owner::claim(&api, d.as_ref(), &rs_api, candidates, |rs| selector::matches(&sel, rs.metadata.labels.as_ref())).await?;
    let mut sets: Vec<ReplicaSet> = owned.iter().map(|rs| (**rs).clone()).collect();
    sets.sort_by(|a, b| {
        let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(a).cmp(&created(b)).then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    // Only pods of its own ReplicaSets matter (Recreate waits for the old ones to go).
    let pods: Vec<Arc<Pod>> =
        sets.iter().flat_map(|rs| ctx.pods.controlled_by(&ns, rs.metadata.uid.as_deref().unwrap_or_default())).collect();
    let mut rollout = sync::Rollout::new((*d).clone(), sets, pods, api, rs_api);
    rollout.run().await?;
    Ok(rollout.requeue())
}
