//! The disruption controller: keeps each PodDisruptionBudget's status — expectedPods,
//! currentHealthy (ready pods), desiredHealthy from minAvailable / maxUnavailable (numbers or
//! percentages; percentages and maxUnavailable scale with the replicas of the pods' controllers,
//! as Kubernetes does), disruptionsAllowed and the DisruptionAllowed condition — which the API's
//! pods/eviction consults.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::common::{backoff, ok_if_gone};
use super::Context;
use crate::k8s::time as kube_time;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let controller = Controller::new(Api::<PodDisruptionBudget>::all(client.clone()), watcher::Config::default());
    let budgets = controller.store();
    // A pod concerns the budgets of its namespace (reconcile selects precisely).
    let of_namespace = move |pod: Arc<Pod>| {
        let ns = pod.namespace();
        budgets.state().into_iter().filter(|b| b.namespace() == ns).map(|b| ObjectRef::from_obj(&*b)).collect::<Vec<_>>()
    };
    let controller = controller
        .watches_shared_stream(ctx.informers.get::<Pod>().touched(), of_namespace)
        .graceful_shutdown_on(shutdown.cancelled_owned());
    backoff::run(controller, reconcile, ctx).await;
}

/// An int-or-percentage of `total`, percentages rounded up (as the disruption controller does).
fn scaled(value: &IntOrString, total: i32) -> Result<i32, String> {
    super::common::intstr::scaled(Some(value), IntOrString::Int(0), total, true).map_err(|e| e.to_string())
}

/// Whether the budget is relative to the controllers' replicas rather than the pod count.
fn needs_scale(spec: &PodDisruptionBudgetSpec) -> bool {
    spec.max_unavailable.is_some() || matches!(spec.min_available, Some(IntOrString::String(_)))
}

/// (expectedPods, desiredHealthy) from the spec, the number of matching pods and, when
/// `needs_scale`, the controllers' total replicas.
pub fn budget(spec: &PodDisruptionBudgetSpec, pods: i32, scale: Option<i32>) -> Result<(i32, i32), String> {
    let expected = scale.unwrap_or(pods);
    let desired = match (&spec.max_unavailable, &spec.min_available) {
        (Some(max), _) => expected - scaled(max, expected)?,
        (None, Some(min @ IntOrString::String(_))) => scaled(min, expected)?,
        (None, Some(IntOrString::Int(min))) => *min,
        (None, None) => expected,
    };
    Ok((expected, desired.max(0)))
}

fn is_healthy(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && super::common::pods::is_ready(pod)
}

/// The total replicas of the controllers of `pods` (a Deployment for its ReplicaSets).
async fn controllers_scale(client: &kube::Client, ns: &str, pods: &[Pod]) -> Result<i32, String> {
    let mut seen = BTreeMap::new();
    for pod in pods {
        let owner = pod
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
            .ok_or_else(|| format!("found no controller ref for pod {:?}", pod.name_any()))?;
        if seen.contains_key(&owner.uid) {
            continue;
        }
        let err = |e: kube::Error| format!("could not read {} {:?}: {e}", owner.kind, owner.name);
        let replicas = match owner.kind.as_str() {
            "ReplicaSet" => {
                let rs = Api::<ReplicaSet>::namespaced(client.clone(), ns).get(&owner.name).await.map_err(err)?;
                match rs.owner_references().iter().find(|o| o.controller == Some(true) && o.kind == "Deployment") {
                    Some(d) => {
                        let deployment = Api::<Deployment>::namespaced(client.clone(), ns).get(&d.name).await.map_err(err)?;
                        deployment.spec.and_then(|s| s.replicas)
                    }
                    None => rs.spec.and_then(|s| s.replicas),
                }
            }
            "StatefulSet" => {
                Api::<StatefulSet>::namespaced(client.clone(), ns).get(&owner.name).await.map_err(err)?.spec.and_then(|s| s.replicas)
            }
            "ReplicationController" => Api::<ReplicationController>::namespaced(client.clone(), ns)
                .get(&owner.name)
                .await
                .map_err(err)?
                .spec
                .and_then(|s| s.replicas),
            "Deployment" => {
                Api::<Deployment>::namespaced(client.clone(), ns).get(&owner.name).await.map_err(err)?.spec.and_then(|s| s.replicas)
            }
            other => return Err(format!("found no controllers for pod {:?} (owned by a {other}, which has no scale)", pod.name_any())),
        };
        seen.insert(owner.uid.clone(), replicas.unwrap_or(1));
    }
    Ok(seen.values().sum())
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = pdb.namespace().unwrap_or_default();
    let spec = pdb.spec.clone().unwrap_or_default();
    // A missing selector matches nothing; an empty one every pod of the namespace (policy/v1).
    let pods: Vec<Pod> = match spec.selector.clone().map(Selector::try_from) {
        None => Vec::new(),
        Some(Err(e)) => return write_status(&ctx, &pdb, Err(format!("invalid selector: {e}"))).await,
        Some(Ok(selector)) => {
            let all = Api::<Pod>::namespaced(ctx.client.clone(), &ns).list(&ListParams::default()).await?.items;
            all.into_iter().filter(|p| selector.matches(p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()))).collect()
        }
    };
    let scale = if needs_scale(&spec) && !pods.is_empty() { Some(controllers_scale(&ctx.client, &ns, &pods).await) } else { None };
    let outcome = match scale.transpose() {
        Ok(scale) => budget(&spec, pods.len() as i32, scale).map(|(expected, desired)| {
            let healthy = pods.iter().filter(|p| is_healthy(p)).count() as i32;
            (expected, desired, healthy)
        }),
        Err(e) => Err(e),
    };
    write_status(&ctx, &pdb, outcome).await
}

/// Writes the status for an outcome of (expected, desired, healthy) or an error.
async fn write_status(ctx: &Context, pdb: &PodDisruptionBudget, outcome: Result<(i32, i32, i32), String>) -> Result<Action, Error> {
    let old = pdb.status.clone().unwrap_or_default();
    let (expected, desired, healthy, allowed, (status, reason, message)) = match &outcome {
        Ok((expected, desired, healthy)) => {
            let allowed = if *expected > 0 { (healthy - desired).max(0) } else { 0 };
            let why = if allowed > 0 { ("True", "SufficientPods", String::new()) } else { ("False", "InsufficientPods", String::new()) };
            (*expected, *desired, *healthy, allowed, why)
        }
        Err(e) => (old.expected_pods, old.desired_healthy, old.current_healthy, 0, ("False", "SyncFailed", e.clone())),
    };
    let previous = old.conditions.clone().unwrap_or_default().into_iter().find(|c| c.type_ == "DisruptionAllowed");
    let since = previous.filter(|c| c.status == status).map_or_else(kube_time::now, |c| c.last_transition_time);
    let condition = Condition {
        type_: "DisruptionAllowed".into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: since,
        observed_generation: pdb.metadata.generation,
    };
    let status = PodDisruptionBudgetStatus {
        observed_generation: pdb.metadata.generation,
        expected_pods: expected,
        desired_healthy: desired,
        current_healthy: healthy,
        disruptions_allowed: allowed,
        conditions: Some(vec![condition]),
        disrupted_pods: old.disrupted_pods,
    };
    if pdb.status.as_ref() != Some(&status) {
        let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &pdb.namespace().unwrap_or_default());
        let patch = Patch::Merge(json!({ "status": status }));
        ok_if_gone(api.patch_status(&pdb.name_any(), &PatchParams::default(), &patch).await)?;
    }
    Ok(if outcome.is_err() { Action::requeue(Duration::from_secs(30)) } else { Action::await_change() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudgetSpec {
        PodDisruptionBudgetSpec { min_available: min, max_unavailable: max, ..Default::default() }
    }

    #[test]
    fn min_available_as_a_number_counts_pods() {
        let s = spec(Some(IntOrString::Int(2)), None);
        assert!(!needs_scale(&s));
        assert_eq!(budget(&s, 3, None), Ok((3, 2)));
    }

    #[test]
    fn percentages_and_max_unavailable_scale_with_replicas_rounding_up() {
        let s = spec(Some(IntOrString::String("50%".into())), None);
        assert!(needs_scale(&s));
        assert_eq!(budget(&s, 2, Some(5)), Ok((5, 3)));
        let s = spec(None, Some(IntOrString::String("25%".into())));
        assert_eq!(budget(&s, 4, Some(5)), Ok((5, 3)), "25% of 5 rounds up to 2 unavailable");
        let s = spec(None, Some(IntOrString::Int(1)));
        assert_eq!(budget(&s, 3, Some(3)), Ok((3, 2)));
        let s = spec(None, Some(IntOrString::Int(5)));
        assert_eq!(budget(&s, 3, Some(3)), Ok((3, 0)), "never below zero");
        assert!(budget(&spec(None, Some(IntOrString::String("lots".into()))), 3, Some(3)).is_err());
    }
}
