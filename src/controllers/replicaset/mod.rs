//! The ReplicaSet and ReplicationController controller (one implementation for both kinds):
//! keeps the number of active pods matching the selector at `replicas`, adopting orphans and
//! releasing pods that stopped matching, creating in slow-start batches and deleting the
//! cheapest pods first, guarded by expectations so a lagging cache never over-acts, and
//! reports status through the status subresource.

mod kinds;
mod status;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use self::kinds::Replicated;
use super::common::expectations::Expectations;
use super::common::template::{pod_from_template, PodName};
use super::common::watch::{concerned_controllers, watch_pods};
use super::common::{backoff, batch, is_not_found, owner, pods, selector, Error};
use super::informer::Informer;
use super::Context;

/// At most this many pods are created or deleted in one sync (`BurstReplicas`).
const BURST: usize = 500;

/// Objects synced at once (--concurrent-replicaset-syncs's default in kube-controller-manager): unbounded, hundreds
/// of slow-start batches of creates flood the API at once and hold their bodies in memory.
const CONCURRENT_SYNCS: u16 = 5;

struct Ctx {
    client: kube::Client,
    pods: Informer<Pod>,
    expectations: Arc<Expectations>,
}

/// Runs the ReplicaSet controller.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    run_kind::<ReplicaSet>(ctx, shutdown).await
}

/// Runs the ReplicationController controller.
pub async fn run_replication_controllers(ctx: Arc<Context>, shutdown: CancellationToken) {
    run_kind::<ReplicationController>(ctx, shutdown).await
}

async fn run_kind<K: Replicated>(ctx: Arc<Context>, shutdown: CancellationToken) {
    let expectations = Arc::new(Expectations::default());
    let (pods, pod_events) = watch_pods(&ctx.informers, K::kind(&()).into_owned(), expectations.clone());
    let controller = Controller::new(Api::<K>::all(ctx.client.clone()), watcher::Config::default())
        .with_config(controller::Config::default().concurrency(CONCURRENT_SYNCS));
    let owners = controller.store();
    let state = Arc::new(Ctx { client: ctx.client.clone(), pods, expectations });
    let controller = controller
        .watches_shared_stream(pod_events, move |pod| owners_of(&owners, &pod))
        .graceful_shutdown_on(async move { shutdown.cancelled().await });
    backoff::run(controller, reconcile::<K>, state).await;
}

/// The owners a pod event concerns: its controller, or (for an orphan) every owner whose
/// selector matches it.
fn owners_of<K: Replicated>(owners: &Store<K>, pod: &Pod) -> Vec<ObjectRef<K>> {
    concerned_controllers(owners, pod, |o, pod| {
        o.selector().is_some_and(|s| !selector::is_empty(&s) && selector::matches(&s, pod.metadata.labels.as_ref()))
    })
}

async fn reconcile<K: Replicated>(owner: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = owner.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", owner.name_any());
    let Some(sel) = owner.selector().filter(|s| !selector::is_empty(s)) else {
        return Err(Error::Invalid { what: "selector", detail: format!("{key} selects nothing") });
    };
    if owner.meta().deletion_timestamp.is_some() {
        ctx.expectations.forget(&key);
    }
    let needs_sync = ctx.expectations.satisfied(&key);
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let candidates: Vec<Arc<Pod>> = ctx.pods.claimable(&ns, &uid).into_iter().filter(|p| pods::is_active(p)).collect();
    let owners: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let owned =
        owner::claim(&owners, owner.as_ref(), &pod_api, candidates, |p| selector::matches(&sel, p.metadata.labels.as_ref())).await?;

    let failure = if needs_sync && owner.meta().deletion_timestamp.is_none() {
        manage(&ctx, owner.as_ref(), &key, &pod_api, &owned).await.err()
    } else {
        None
    };
    let now = k8s_openapi::jiff::Timestamp::now();
    let desired = status::compute(owner.as_ref(), &owned, failure.as_ref().map(|(reason, e)| (*reason, e.to_string())), now);
    if !status::up_to_date(&owner.status_json(), &desired) {
        owners.patch_status(&owner.name_any(), &PatchParams::default(), &Patch::Merge(json!({ "status": desired }))).await?;
    }
    if let Some((_, e)) = failure {
        return Err(e);
    }
    if !needs_sync {
        // Observations normally trigger the next sync; this is a safety net for lost events.
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    let min_ready = owner.min_ready_seconds();
    match owned.iter().filter_map(|p| pods::seconds_until_available(p, min_ready, now)).min() {
        Some(secs) => Ok(Action::requeue(Duration::from_secs(secs as u64 + 1))),
        None => Ok(Action::requeue(Duration::from_secs(600))),
    }
}

/// Creates or deletes pods so `owned` reaches the desired count; the error carries the
/// condition reason.
async fn manage<K: Replicated>(
    ctx: &Ctx,
    owner: &K,
    key: &str,
    pod_api: &Api<Pod>,
    owned: &[Arc<Pod>],
) -> Result<(), (&'static str, Error)> {
    let diff = owned.len() as i64 - i64::from(owner.replicas().max(0));
    if diff < 0 {
        let Some(template) = owner.template() else {
            return Err(("FailedCreate", Error::Invalid { what: "template", detail: format!("{key} has no pod template") }));
        };
        let count = (-diff as usize).min(BURST);
        ctx.expectations.expect_creations(key, count);
        let ns = owner.namespace().unwrap_or_default();
        let pod = pod_from_template(template, &ns, PodName::Generate(format!("{}-", owner.name_any())), owner::controller_ref(owner));
        tracing::debug!(%key, count, "creating pods");
        let (created, error) =
            batch::slow_start(count, || async { pod_api.create(&PostParams::default(), &pod).await.map(|_| ()).map_err(Error::from) })
                .await;
        for _ in created..count {
            ctx.expectations.creation_observed(key);
        }
        if let Some(e) = error {
            return Err(("FailedCreate", e));
        }
    } else if diff > 0 {
        let count = (diff as usize).min(BURST);
        let mut doomed = owned.to_vec();
        pods::sort_for_deletion(&mut doomed, owned);
        doomed.truncate(count);
        let names: Vec<String> = doomed.iter().map(|p| p.name_any()).collect();
        ctx.expectations.expect_deletions(key, names.clone());
        tracing::debug!(%key, count, "deleting pods");
        let params = DeleteParams::default();
        let results = futures::future::join_all(names.iter().map(|n| pod_api.delete(n, &params))).await;
        let mut first_error = None;
        for (name, result) in names.iter().zip(results) {
            if let Err(e) = result {
                ctx.expectations.deletion_observed(key, name);
                if !is_not_found(&e) {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(("FailedDelete", e.into()));
        }
    }
    Ok(())
}
