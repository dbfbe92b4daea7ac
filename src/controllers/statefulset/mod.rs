//! The StatefulSet controller: pods `<set>-<ordinal>` with stable identity and per-ordinal
//! PersistentVolumeClaims (kept when pods go), OrderedReady or Parallel management,
//! RollingUpdate with a partition or OnDelete, ControllerRevisions for its templates, and
//! status (replicas, ready, current/updated counts and revisions, available).

mod identity;
mod plan;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use self::plan::{PodView, Policy, Step};
use super::common::revision::{self, HASH_LABEL};
use super::common::watch::{concerned_controllers, shared};
use super::common::{backoff, is_conflict, is_not_found, owner, pods, selector, Error};
use super::informer::Informer;
use super::Context;

struct Ctx {
    client: kube::Client,
    pods: Informer<Pod>,
}

/// Runs the StatefulSet controller.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let (pods, pod_events) = shared::<Pod>(&ctx.informers);
    let controller = Controller::new(Api::<StatefulSet>::all(ctx.client.clone()), watcher::Config::default());
    let sets = controller.store();
    let state = Arc::new(Ctx { client: ctx.client.clone(), pods });
    let controller = controller
        .watches_shared_stream(pod_events, move |pod| sets_of(&sets, &pod))
        .graceful_shutdown_on(async move { shutdown.cancelled().await });
    backoff::run(controller, reconcile, state).await;
}

fn is_member(set: &StatefulSet, pod: &Pod) -> bool {
    let sel = set.spec.as_ref().map(|s| &s.selector);
    identity::ordinal_of(&set.name_any(), &pod.name_any()).is_some()
        && sel.is_some_and(|s| !selector::is_empty(s) && selector::matches(s, pod.metadata.labels.as_ref()))
}

fn sets_of(sets: &Store<StatefulSet>, pod: &Pod) -> Vec<ObjectRef<StatefulSet>> {
    concerned_controllers(sets, pod, is_member)
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let spec = set.spec.clone().ok_or_else(|| Error::Invalid { what: "statefulset", detail: format!("{name} has no spec") })?;
    if selector::is_empty(&spec.selector) {
        return Err(Error::Invalid { what: "selector", detail: format!("{ns}/{name} selects nothing") });
    }
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let revisions_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let candidates = ctx.pods.claimable(&ns, set.metadata.uid.as_deref().unwrap_or_default());
    let owned = owner::claim(&api, set.as_ref(), &pod_api, candidates, |p| is_member(&set, p)).await?;

    // Revisions: the update revision is the current template's; the current one is what the
    // status says (or the update revision on the first sync).
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let mut revisions: Vec<ControllerRevision> = revisions_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| owner::controller_of(&r.metadata).is_some_and(|o| o.uid == uid))
        .collect();
    let status = set.status.clone().unwrap_or_default();
    let mut collisions = status.collision_count.unwrap_or(0);
    let labels = spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    let update = revision::ensure(
        &revisions_api,
        &owner::controller_ref(set.as_ref()),
        &labels,
        &revisions,
        revision::data_of(&spec.template),
        &mut collisions,
    )
    .await?;
    let update_name = update.metadata.name.clone().unwrap_or_default();
    revisions.retain(|r| r.metadata.name != update.metadata.name);
    revisions.push(update.clone());
    let current = status
        .current_revision
        .as_ref()
        .and_then(|c| revisions.iter().find(|r| r.metadata.name.as_ref() == Some(c)))
        .cloned()
        .unwrap_or_else(|| update.clone());
    let current_name = current.metadata.name.clone().unwrap_or_default();

    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = Timestamp::now();
    let views: Vec<PodView> = owned
        .iter()
        .filter_map(|p| {
            Some(PodView {
                ordinal: identity::ordinal_of(&name, &p.name_any())?,
                name: p.name_any(),
                revision: p.labels().get(HASH_LABEL).cloned().unwrap_or_default(),
                terminating: pods::is_terminating(p),
                finished: matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")),
                healthy: pods::is_running(p) && pods::is_available(p, min_ready, now),
            })
        })
        .collect();
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let policy = Policy {
        replicas: spec.replicas.unwrap_or(1),
        ordered: spec.pod_management_policy.as_deref() != Some("Parallel"),
        rolling: strategy.type_.as_deref() != Some("OnDelete"),
        partition: strategy.rolling_update.and_then(|r| r.partition).unwrap_or(0),
        current_revision: current_name.clone(),
        update_revision: update_name.clone(),
    };
    let steps = plan::plan(&policy, &views);
    let result = execute(&ctx, &set, &steps, (&current, &update)).await;

    write_status(&api, &set, &owned, &policy, collisions, min_ready, now).await?;
    let mut live: HashSet<String> = [current_name, update_name].into();
    live.extend(views.iter().map(|v| v.revision.clone()));
    let limit = spec.revision_history_limit.unwrap_or(10);
    for doomed in revision::prunable(&revisions, &live, limit) {
        if let Err(e) = revisions_api.delete(&doomed, &DeleteParams::default()).await {
            if !is_not_found(&e) {
                return Err(e.into());
            }
        }
    }
    result?;
    match owned.iter().filter_map(|p| pods::seconds_until_available(p, min_ready, now)).min() {
        Some(secs) => Ok(Action::requeue(Duration::from_secs(secs as u64 + 1))),
        None => Ok(Action::requeue(Duration::from_secs(600))),
    }
}

/// Carries out the plan's steps.
async fn execute(
    ctx: &Ctx,
    set: &StatefulSet,
    steps: &[Step],
    (current, update): (&ControllerRevision, &ControllerRevision),
) -> Result<(), Error> {
    let ns = set.namespace().unwrap_or_default();
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let claims_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    for step in steps {
        match step {
            Step::Create { ordinal, current: from_current } => {
                let revision = if *from_current { current } else { update };
                let template = revision::template_of(revision).ok_or_else(|| Error::Invalid {
                    what: "controller revision",
                    detail: format!("{} holds no template", revision.name_any()),
                })?;
                for claim in identity::claims(set, *ordinal) {
                    match claims_api.create(&PostParams::default(), &claim).await {
                        Ok(_) => tracing::info!(claim = %claim.name_any(), "created persistent volume claim"),
                        Err(e) if is_conflict(&e) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                let pod = identity::new_pod(set, &template, &revision.name_any(), *ordinal, owner::controller_ref(set));
                match pod_api.create(&PostParams::default(), &pod).await {
                    Ok(_) => tracing::debug!(pod = %pod.name_any(), "created statefulset pod"),
                    // The previous pod of that ordinal is still going away.
                    Err(e) if is_conflict(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Step::Delete(name) => match pod_api.delete(name, &DeleteParams::default()).await {
                Ok(_) => tracing::debug!(pod = %name, "deleting statefulset pod"),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            },
        }
    }
    Ok(())
}

async fn write_status(
    api: &Api<StatefulSet>,
    set: &StatefulSet,
    owned: &[Arc<Pod>],
    policy: &Policy,
    collisions: i32,
    min_ready: i32,
    now: Timestamp,
) -> Result<(), Error> {
    let live: Vec<&Arc<Pod>> = owned.iter().filter(|p| !pods::is_terminating(p)).collect();
    let count = |f: &dyn Fn(&Pod) -> bool| live.iter().filter(|p| f(p)).count() as i32;
    let revision_is = |p: &Pod, r: &str| p.labels().get(HASH_LABEL).map(String::as_str) == Some(r);
    let replicas = live.len() as i32;
    let ready = count(&|p| pods::is_running(p) && pods::is_ready(p));
    let available = count(&|p| pods::is_running(p) && pods::is_available(p, min_ready, now));
    let updated = count(&|p| revision_is(p, &policy.update_revision));
    let (mut current, mut current_revision) = (count(&|p| revision_is(p, &policy.current_revision)), policy.current_revision.clone());
    if policy.rolling && updated == replicas && ready == replicas {
        current = updated;
        current_revision = policy.update_revision.clone();
    }
    let desired = json!({
        "observedGeneration": set.metadata.generation,
        "replicas": replicas,
        "readyReplicas": ready,
        "availableReplicas": available,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": policy.update_revision,
        "collisionCount": collisions,
    });
    let have = serde_json::to_value(&set.status).unwrap_or_default();
    let same = desired.as_object().into_iter().flatten().all(|(k, v)| &have[k] == v || (v == &json!(0) && have[k].is_null()));
    if !same {
        api.patch_status(&set.name_any(), &PatchParams::default(), &Patch::Merge(json!({ "status": desired }))).await?;
    }
    Ok(())
}
