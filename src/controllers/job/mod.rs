//! The Job controller (batch/v1): runs a Job's pods to completion. It labels and selects them by
//! `batch.kubernetes.io/controller-uid`, tracks finished pods with the job-tracking finalizer
//! (see `status`), creates and deletes pods as `status::decide` says, writes the status
//! and deletes finished Jobs after ttlSecondsAfterFinished. Pods whose Job is gone lose the
//! finalizer so they can go too.

pub(super) mod conditions;
mod failure_policy;
mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use self::conditions::{finished_condition, true_condition, FinishedAs};
use self::status::{self as accounting, is_tracked, COMPLETION_INDEX, TRACKING_FINALIZER};
use super::common::{backoff, ok_if_gone};
use super::informer::{Change as InformerChange, Informer};
use super::Context;
use crate::k8s::time::from_k8s;

/// The labels a Job's pods carry (and its selector matches).
pub const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";
/// The same labels without a prefix, as Kubernetes still sets them for older selectors.
const LEGACY_LABELS: [&str; 2] = ["controller-uid", "job-name"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("job has no namespace")]
    NoNamespace,
}

pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .owns_shared_stream(ctx.informers.get::<Pod>().touched());
    let orphans = release_orphans(client.clone(), ctx.informers.get::<Pod>(), shutdown.clone());
    let jobs = backoff::run(controller.graceful_shutdown_on(shutdown.cancelled_owned()), reconcile, Arc::new(client));
    tokio::join!(jobs, orphans);
}

/// Removes the tracking finalizer from a pod (a merge patch pinned to its resourceVersion).
async fn release(pods: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let rest: Vec<&String> = pod.finalizers().iter().filter(|f| *f != TRACKING_FINALIZER).collect();
    let patch = json!({ "metadata": { "finalizers": rest, "resourceVersion": pod.resource_version() } });
    ok_if_gone(pods.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await).map(|_| ())
}

/// Frees pods whose Job is gone of the tracking finalizer (Job pods carry the controller-uid
/// label; the shared pod informer delivers every pod once).
async fn release_orphans(client: kube::Client, pods: Informer<Pod>, shutdown: CancellationToken) {
    let applied = pods.subscribe().filter_map(|change| {
        let pod = match change {
            InformerChange::Apply(p, _) | InformerChange::InitApply(p, _) => Some(p),
            _ => None,
        };
        futures::future::ready(pod.filter(|p| p.labels().contains_key(CONTROLLER_UID)))
    });
    let work = applied.for_each(|pod| {
        let client = client.clone();
        async move {
            let Some(owner) = pod.owner_references().iter().find(|r| r.controller == Some(true) && r.kind == "Job").cloned() else {
                return;
            };
            if !is_tracked(&pod) {
                return;
            }
            let ns = pod.namespace().unwrap_or_default();
            match Api::<Job>::namespaced(client.clone(), &ns).get_opt(&owner.name).await {
                Ok(Some(job)) if job.uid().as_deref() == Some(owner.uid.as_str()) => {}
                Ok(_) => {
                    if let Err(e) = release(&Api::namespaced(client, &ns), &pod).await {
                        tracing::debug!(pod = %pod.name_any(), error = %e, "could not release an orphaned job pod");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "could not look up a pod's job"),
            }
        }
    });
    tokio::select! {
        _ = work => {}
        _ = shutdown.cancelled() => {}
    }
}

/// Adds the controller-uid / job-name selector and template labels when the API did not.
async fn ensure_selector(jobs: &Api<Job>, job: Arc<Job>) -> Result<Arc<Job>, Error> {
    let spec = job.spec.clone().unwrap_or_default();
    if spec.manual_selector == Some(true) {
        return Ok(job);
    }
    let uid = job.uid().unwrap_or_default();
    let name = job.name_any();
    let selected = spec.selector.as_ref().and_then(|s| s.match_labels.as_ref()).is_some_and(|l| l.get(CONTROLLER_UID) == Some(&uid));
    let template_labels = spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    let labelled = template_labels.get(CONTROLLER_UID) == Some(&uid) && template_labels.get(JOB_NAME) == Some(&name);
    if selected && labelled {
        return Ok(job);
    }
    let mut labels = BTreeMap::from([(CONTROLLER_UID.to_string(), uid.clone()), (JOB_NAME.to_string(), name.clone())]);
    labels.extend(LEGACY_LABELS.iter().map(|l| l.to_string()).zip([uid.clone(), name]));
    let patch = json!({ "spec": {
        "selector": { "matchLabels": { CONTROLLER_UID: uid } },
        "template": { "metadata": { "labels": labels } },
    }});
    Ok(Arc::new(jobs.patch(&job.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?))
}

async fn reconcile(job: Arc<Job>, client: Arc<kube::Client>) -> Result<Action, Error> {
    let ns = job.namespace().ok_or(Error::NoNamespace)?;
    let jobs: Api<Job> = Api::namespaced((*client).clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced((*client).clone(), &ns);
    let uid = job.uid().unwrap_or_default();
    let owned = |p: &Pod| p.owner_references().iter().any(|r| r.controller == Some(true) && r.uid == uid);
    let pods: Vec<Pod> =
        pods_api.list(&ListParams::default().labels(&format!("{CONTROLLER_UID}={uid}"))).await?.items.into_iter().filter(owned).collect();

    if job.metadata.deletion_timestamp.is_some() {
        for pod in pods.iter().filter(|p| is_tracked(p)) {
            release(&pods_api, pod).await?;
        }
        return Ok(Action::await_change());
    }
    let job = ensure_selector(&jobs, job).await?;
    let spec = job.spec.clone().unwrap_or_default();
    let rules = accounting::Spec::of(&spec);
    let mut status = job.status.clone().unwrap_or_default();

    // Finished pods: record them, release their finalizers, then count them.
    let mut job = (*job).clone();
    if accounting::record_finished(&mut status, &pods, &rules) {
        job.status = Some(status.clone());
        job = jobs.replace_status(&job.name_any(), &PostParams::default(), &job).await?;
    }
    let mut released = Vec::new();
    for pod in accounting::releasable(&status, &pods, &rules) {
        release(&pods_api, pod).await?;
        released.push(pod.uid().unwrap_or_default());
    }
    let still_tracked = |u: &str| !released.iter().any(|r| r == u) && pods.iter().any(|p| p.uid().as_deref() == Some(u) && is_tracked(p));
    accounting::fold_uncounted(&mut status, still_tracked, rules.indexed);

    let now = OffsetDateTime::now_utc();
    let plan = accounting::decide(&rules, &mut status, &pods, now);
    for name in &plan.delete {
        ok_if_gone(pods_api.delete(name, &DeleteParams::default()).await)?;
    }
    for index in &plan.create {
        pods_api.create(&PostParams::default(), &pod_for(&job, *index)).await?;
    }
    if plan.create.len() + plan.delete.len() > 0 {
        tracing::info!(job = %job.name_any(), created = plan.create.len(), deleted = plan.delete.len(), "job pods");
    }
    if job.status.as_ref() != Some(&status) {
        job.status = Some(status.clone());
        job = jobs.replace_status(&job.name_any(), &PostParams::default(), &job).await?;
    }
    let ttl = expire_after_ttl(&jobs, &job, now).await?;
    Ok(match plan.requeue.into_iter().chain(ttl).min() {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// Deletes a finished Job whose ttlSecondsAfterFinished has passed; else says when it will.
async fn expire_after_ttl(jobs: &Api<Job>, job: &Job, now: OffsetDateTime) -> Result<Option<Duration>, Error> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else { return Ok(None) };
    let Some(how) = finished_condition(job) else { return Ok(None) };
    let status = job.status.clone().unwrap_or_default();
    let conditions = status.conditions.unwrap_or_default();
    let finished_at = match how {
        FinishedAs::Complete => {
            status.completion_time.or_else(|| true_condition(&conditions, "Complete").and_then(|c| c.last_transition_time.clone()))
        }
        FinishedAs::Failed => true_condition(&conditions, "Failed").and_then(|c| c.last_transition_time.clone()),
    };
    let expires = crate::k8s::time::shift(finished_at.map_or(now, |t| from_k8s(&t.0)), i64::from(ttl));
    if expires > now {
        return Ok(Some(Duration::try_from(expires - now).unwrap_or_default()));
    }
    tracing::info!(job = %job.name_any(), "deleting a finished job after its ttlSecondsAfterFinished");
    let preconditions = Preconditions { uid: job.uid(), resource_version: None };
    ok_if_gone(jobs.delete(&job.name_any(), &DeleteParams::background().preconditions(preconditions)).await)?;
    Ok(None)
}

/// A new pod for a Job (with its completion index for Indexed Jobs).
pub fn pod_for(job: &Job, index: Option<i32>) -> Pod {
    let name = job.name_any();
    let template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(CONTROLLER_UID.into(), job.uid().unwrap_or_default());
    labels.insert(JOB_NAME.into(), name.clone());
    let mut annotations = meta.annotations.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    if let Some(i) = index {
        labels.insert(COMPLETION_INDEX.into(), i.to_string());
        annotations.insert(COMPLETION_INDEX.into(), i.to_string());
        spec.hostname.get_or_insert_with(|| format!("{name}-{i}"));
        let index_env = EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                }),
                ..Default::default()
            }),
        };
        for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
            let env = c.env.get_or_insert_with(Vec::new);
            if !env.iter().any(|e| e.name == index_env.name) {
                env.push(index_env.clone());
            }
        }
    }
    let owner = job.controller_owner_ref(&()).map(|mut r| {
        r.block_owner_deletion = Some(true);
        r
    });
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(match index {
                Some(i) => format!("{name}-{i}-"),
                None => format!("{name}-"),
            }),
            namespace: job.namespace(),
            labels: Some(labels),
            annotations: Some(annotations).filter(|a| !a.is_empty()),
            owner_references: owner.map(|o| vec![o]),
            finalizers: Some(vec![TRACKING_FINALIZER.into()]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexed_pods_carry_their_index_hostname_and_env() {
        let job: Job = serde_json::from_value(json!({
            "metadata": { "name": "work", "namespace": "ns", "uid": "u1" },
            "spec": { "completionMode": "Indexed", "completions": 3, "template": { "metadata": { "labels": { "app": "x" } },
                "spec": { "containers": [{ "name": "c", "image": "busybox" }], "restartPolicy": "Never" } } }
        }))
        .unwrap();
        let pod = pod_for(&job, Some(2));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("work-2-"));
        let labels = pod.metadata.labels.unwrap();
        assert_eq!((labels["app"].as_str(), labels[CONTROLLER_UID].as_str(), labels[JOB_NAME].as_str()), ("x", "u1", "work"));
        assert_eq!(pod.metadata.annotations.unwrap()[COMPLETION_INDEX], "2");
        assert_eq!(pod.metadata.finalizers.unwrap(), [TRACKING_FINALIZER]);
        let owner = &pod.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("work-2"));
        let env = spec.containers[0].env.clone().unwrap();
        assert_eq!(env[0].name, "JOB_COMPLETION_INDEX");
        assert!(pod_for(&job, None).spec.unwrap().hostname.is_none());
    }
}
