//! The DaemonSet controller: one pod per eligible node (nodeSelector, required node
//! affinity, taints vs tolerations), pinned to its node by affinity and left to the
//! scheduler, following nodes as they join and leave; RollingUpdate (maxUnavailable /
//! maxSurge) or OnDelete over ControllerRevisions; expectations as for ReplicaSets; status.

mod placement;
mod plan;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;
use parking_lot::Mutex;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use self::plan::{DaemonPod, NodePods, Strategy};
use super::common::expectations::Expectations;
use super::common::revision::{self, HASH_LABEL};
use super::common::template::{pod_from_template, PodName};
use super::common::watch::{concerned_controllers, shared, watch_pods};
use super::common::{backoff, batch, intstr, is_not_found, owner, pods, selector, Error};
use super::informer::Informer;
use super::Context;

const TEMPLATE_GENERATION: &str = "pod-template-generation";

struct Ctx {
    client: kube::Client,
    pods: Informer<Pod>,
    nodes: Store<Node>,
    expectations: Arc<Expectations>,
}

/// Runs the DaemonSet controller.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let expectations = Arc::new(Expectations::default());
    let (pods, pod_events) = watch_pods(&ctx.informers, "DaemonSet".into(), expectations.clone());
    let (nodes, node_events) = shared::<Node>(&ctx.informers);
    let controller = Controller::new(Api::<DaemonSet>::all(ctx.client.clone()), watcher::Config::default());
    let sets = controller.store();
    let all_sets = sets.clone();
    let state = Arc::new(Ctx { client: ctx.client.clone(), pods, nodes: nodes.store(), expectations });
    let controller = controller
        .watches_shared_stream(pod_events, move |pod| sets_of(&sets, &pod))
        .watches_shared_stream(node_events, move |_: Arc<Node>| {
            all_sets.state().iter().map(|s| ObjectRef::from_obj(s.as_ref())).collect::<Vec<_>>()
        })
        .graceful_shutdown_on(async move { shutdown.cancelled().await });
    backoff::run(controller, reconcile, state).await;
}

fn selects(ds: &DaemonSet, pod: &Pod) -> bool {
    ds.spec.as_ref().is_some_and(|s| !selector::is_empty(&s.selector) && selector::matches(&s.selector, pod.metadata.labels.as_ref()))
}

fn sets_of(sets: &Store<DaemonSet>, pod: &Pod) -> Vec<ObjectRef<DaemonSet>> {
    concerned_controllers(sets, pod, selects)
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = ds.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", ds.name_any());
    let spec = ds.spec.clone().ok_or_else(|| Error::Invalid { what: "daemonset", detail: format!("{key} has no spec") })?;
    if selector::is_empty(&spec.selector) {
        return Err(Error::Invalid { what: "selector", detail: format!("{key} selects nothing") });
    }
    if ds.metadata.deletion_timestamp.is_some() {
        ctx.expectations.forget(&key);
    }
    let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let candidates = ctx.pods.claimable(&ns, ds.metadata.uid.as_deref().unwrap_or_default());
    let mut owned = owner::claim(&api, ds.as_ref(), &pod_api, candidates, |p| selects(&ds, p)).await?;
    owned.sort_by(|a, b| a.metadata.creation_timestamp.as_ref().map(|t| t.0).cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0)));

    let hash = sync_revisions(&ctx, &ds, &owned).await?;
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = Timestamp::now();
    let template_spec = spec.template.spec.clone().unwrap_or_default();
    let mut by_node: BTreeMap<String, NodePods> = ctx
        .nodes
        .state()
        .iter()
        .map(|n| {
            let fit = placement::fit(&template_spec, n);
            (n.name_any(), NodePods { node: n.name_any(), should_run: fit.should_run, may_stay: fit.may_stay, pods: vec![] })
        })
        .collect();
    for p in &owned {
        let Some(node) = p.spec.as_ref().and_then(placement::target_node) else { continue };
        // Pods for nodes that are gone are deleted (the node entry is ineligible).
        let entry = by_node.entry(node.clone()).or_insert_with(|| NodePods { node, should_run: false, may_stay: false, pods: vec![] });
        entry.pods.push(DaemonPod {
            name: p.name_any(),
            updated: p.labels().get(HASH_LABEL) == Some(&hash),
            available: pods::is_available(p, min_ready, now),
            terminating: pods::is_terminating(p),
            failed: p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"),
        });
    }
    let nodes: Vec<NodePods> = by_node.into_values().collect();
    let desired = nodes.iter().filter(|n| n.should_run).count() as i32;

    let result = if ctx.expectations.satisfied(&key) {
        let strategy = strategy(&ds, desired)?;
        let steps = plan::plan(&nodes, strategy);
        execute(&ctx, &ds, &key, &hash, steps).await
    } else {
        Ok(())
    };
    write_status(&api, &ds, &nodes, &owned, min_ready, now).await?;
    result?;
    match owned.iter().filter_map(|p| pods::seconds_until_available(p, min_ready, now)).min() {
        Some(secs) => Ok(Action::requeue(Duration::from_secs(secs as u64 + 1))),
        None => Ok(Action::requeue(Duration::from_secs(600))),
    }
}

/// The update strategy with maxUnavailable/maxSurge resolved against the desired count.
fn strategy(ds: &DaemonSet, desired: i32) -> Result<Strategy, Error> {
    let s = ds.spec.as_ref().and_then(|s| s.update_strategy.clone()).unwrap_or_default();
    let rolling = s.type_.as_deref() != Some("OnDelete");
    let r = s.rolling_update.unwrap_or_default();
    let max_surge = intstr::scaled(r.max_surge.as_ref(), IntOrString::Int(0), desired, true)?;
    let max_unavailable = intstr::scaled(r.max_unavailable.as_ref(), IntOrString::Int(1), desired, true)?;
    let max_unavailable = if max_surge == 0 && max_unavailable == 0 { 1 } else { max_unavailable };
    Ok(Strategy { rolling, max_unavailable, max_surge })
}

/// Ensures the revision of the current template and prunes old ones; returns its hash.
async fn sync_revisions(ctx: &Ctx, ds: &DaemonSet, owned: &[Arc<Pod>]) -> Result<String, Error> {
    let ns = ds.namespace().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let revisions: Vec<ControllerRevision> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| owner::controller_of(&r.metadata).is_some_and(|o| o.uid == uid))
        .collect();
    let spec = ds.spec.as_ref().ok_or_else(|| Error::Invalid { what: "daemonset", detail: "no spec".into() })?;
    let labels = spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    let mut collisions = ds.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
    let current =
        revision::ensure(&api, &owner::controller_ref(ds), &labels, &revisions, revision::data_of(&spec.template), &mut collisions).await?;
    let name = ds.name_any();
    let hash = current.name_any().strip_prefix(&format!("{name}-")).unwrap_or_default().to_string();
    let mut live: HashSet<String> = owned.iter().filter_map(|p| p.labels().get(HASH_LABEL).map(|h| format!("{name}-{h}"))).collect();
    live.insert(current.name_any());
    for doomed in revision::prunable(&revisions, &live, spec.revision_history_limit.unwrap_or(10)) {
        if let Err(e) = api.delete(&doomed, &DeleteParams::default()).await {
            if !is_not_found(&e) {
                return Err(e.into());
            }
        }
    }
    Ok(hash)
}

/// Creates pods on `plan.create_on` (slow start) and deletes `plan.delete`, with expectations.
async fn execute(ctx: &Ctx, ds: &DaemonSet, key: &str, hash: &str, steps: plan::Plan) -> Result<(), Error> {
    let ns = ds.namespace().unwrap_or_default();
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut first_error = None;
    if !steps.create_on.is_empty() {
        let count = steps.create_on.len();
        ctx.expectations.expect_creations(key, count);
        let queue = Mutex::new(steps.create_on.into_iter());
        let (created, error) = batch::slow_start(count, || {
            let node = queue.lock().next().unwrap_or_default();
            let pod = daemon_pod(ds, hash, &node);
            let pod_api = pod_api.clone();
            async move { pod_api.create(&PostParams::default(), &pod).await.map(|_| ()) }
        })
        .await;
        for _ in created..count {
            ctx.expectations.creation_observed(key);
        }
        first_error = error.map(Error::from);
    }
    if !steps.delete.is_empty() {
        ctx.expectations.expect_deletions(key, steps.delete.clone());
        let params = DeleteParams::default();
        let results = futures::future::join_all(steps.delete.iter().map(|n| pod_api.delete(n, &params))).await;
        for (name, result) in steps.delete.iter().zip(results) {
            if let Err(e) = result {
                ctx.expectations.deletion_observed(key, name);
                if !is_not_found(&e) && first_error.is_none() {
                    first_error = Some(e.into());
                }
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The daemon pod for `node`.
fn daemon_pod(ds: &DaemonSet, hash: &str, node: &str) -> Pod {
    let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut pod = pod_from_template(
        &template,
        &ds.namespace().unwrap_or_default(),
        PodName::Generate(format!("{}-", ds.name_any())),
        owner::controller_ref(ds),
    );
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(HASH_LABEL.into(), hash.into());
    labels.insert(TEMPLATE_GENERATION.into(), ds.metadata.generation.unwrap_or(0).to_string());
    let mut spec = placement::with_default_tolerations(&pod.spec.unwrap_or_default());
    placement::pin_to_node(&mut spec, node);
    pod.spec = Some(spec);
    pod
}

async fn write_status(
    api: &Api<DaemonSet>,
    ds: &DaemonSet,
    nodes: &[NodePods],
    owned: &[Arc<Pod>],
    min_ready: i32,
    now: Timestamp,
) -> Result<(), Error> {
    let pod = |name: &str| owned.iter().find(|p| p.metadata.name.as_deref() == Some(name));
    let desired = nodes.iter().filter(|n| n.should_run).count();
    let has_pods = |n: &NodePods| n.pods.iter().any(|p| !p.terminating);
    let scheduled = nodes.iter().filter(|n| n.should_run && has_pods(n)).count();
    let misscheduled = nodes.iter().filter(|n| !n.should_run && has_pods(n)).count();
    let on_desired = || nodes.iter().filter(|n| n.should_run).flat_map(|n| n.pods.iter().filter(|p| !p.terminating));
    let ready = on_desired().filter(|p| pod(&p.name).is_some_and(|p| pods::is_ready(p))).count();
    let available = on_desired().filter(|p| pod(&p.name).is_some_and(|p| pods::is_available(p, min_ready, now))).count();
    let updated = on_desired().filter(|p| p.updated).count();
    let desired_status = json!({
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": scheduled,
        "numberMisscheduled": misscheduled,
        "numberReady": ready,
        "numberAvailable": available,
        "numberUnavailable": desired.saturating_sub(available),
        "updatedNumberScheduled": updated,
        "observedGeneration": ds.metadata.generation,
    });
    let have = serde_json::to_value(&ds.status).unwrap_or_default();
    let same = desired_status.as_object().into_iter().flatten().all(|(k, v)| &have[k] == v || (v == &json!(0) && have[k].is_null()));
    if !same {
        api.patch_status(&ds.name_any(), &PatchParams::default(), &Patch::Merge(json!({ "status": desired_status }))).await?;
    }
    Ok(())
}
