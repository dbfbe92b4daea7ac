//! One HPA sync, as kube's `reconcileAutoscaler`: read the target's scale, compute every
//! metric's proposal, normalize it (stabilization, policies, min/max), resize the target and
//! report status, conditions and Events.

use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, HorizontalPodAutoscalerStatus, MetricStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use super::behavior::{self, Bounds};
use super::metric::{self, Proposed};
use super::{conditions, scale, Ctx};
use crate::controllers::common::events;
use crate::controllers::common::Error;

/// The component HPA Events come from.
const COMPONENT: &str = "horizontal-pod-autoscaler";

/// What the metrics said: the highest proposal (and its metric's name) and each metric's
/// current value.
struct Metrics {
    proposal: Option<(i32, String)>,
    statuses: Vec<MetricStatus>,
}

pub async fn sync(ctx: &Ctx, hpa: &HorizontalPodAutoscaler, now: Timestamp) -> Result<(), Error> {
    let ns = hpa.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", hpa.name_any());
    let before = hpa.status.clone().unwrap_or_default();
    let mut status = before.clone();
    let conds = status.conditions.get_or_insert_with(Vec::new);
    let spec = hpa.spec.clone().unwrap_or_default();
    let path = scale::path(&ns, &spec.scale_target_ref);
    let read = match &path {
        Ok(path) => scale::get(&ctx.client, path).await,
        Err(e) => Err(e.clone()),
    };
    let (path, target) = match path.and_then(|p| read.map(|s| (p, s))) {
        Ok(found) => found,
        Err(e) => {
            warn(ctx, hpa, "FailedGetScale", &e).await;
            let message = format!("the HPA controller was unable to get the target's current scale: {e}");
            conditions::set(conds, "AbleToScale", false, "FailedGetScale", message, now);
            return write_status(ctx, hpa, &before, status).await;
        }
    };
    conditions::set(
        conds,
        "AbleToScale",
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale".into(),
        now,
    );
    let current = target.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let min = spec.min_replicas.unwrap_or(1);
    let behavior = spec.behavior.as_ref().map(behavior::defaulted);
    let rules = behavior.as_ref().map(|(up, down)| (up, down));
    ctx.histories.lock().entry(key.clone()).or_default().start(current, now);
    let mut metric_statuses = status.current_metrics.clone().unwrap_or_default();
    let (desired, reason) = if current == 0 && min != 0 {
        let message = "scaling is disabled since the replica count of the target is zero".to_string();
        conditions::set(conds, "ScalingActive", false, "ScalingDisabled", message, now);
        (0, String::new())
    } else if current > spec.max_replicas {
        (spec.max_replicas, "Current number of replicas above Spec.MaxReplicas".to_string())
    } else if current < min {
        (min, "Current number of replicas below Spec.MinReplicas".to_string())
    } else {
        let selector = target.status.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
        let computed = compute(ctx, hpa, &spec.metrics.clone().unwrap_or_default(), &selector, current, conds, now).await;
        let (proposal, statuses) = match computed {
            Ok(Metrics { proposal: Some(p), statuses }) => (p, statuses),
            Ok(Metrics { proposal: None, statuses }) | Err(statuses) => {
                status.current_replicas = Some(current);
                status.current_metrics = Some(statuses);
                return write_status(ctx, hpa, &before, status).await;
            }
        };
        metric_statuses = statuses;
        let (proposed, metric_name) = proposal;
        let reason = match proposed.cmp(&current) {
            std::cmp::Ordering::Greater => format!("{metric_name} above target"),
            std::cmp::Ordering::Less => "All metrics below target".to_string(),
            std::cmp::Ordering::Equal => String::new(),
        };
        let bounds = Bounds { current, min, max: spec.max_replicas, rules };
        let normalized = ctx.histories.lock().entry(key.clone()).or_default().normalize(&bounds, proposed, now);
        let able = &normalized.able_to_scale;
        conditions::set(conds, "AbleToScale", able.status, able.reason, able.message.into(), now);
        let limited = &normalized.scaling_limited;
        conditions::set(conds, "ScalingLimited", limited.status, limited.reason, limited.message.into(), now);
        (normalized.replicas, reason)
    };
    let rescale = desired != current;
    if rescale {
        if let Err(e) = scale::update(&ctx.client, &path, target, desired).await {
            warn(ctx, hpa, "FailedRescale", &format!("New size: {desired}; reason: {reason}; error: {e}")).await;
            let message = format!("the HPA controller was unable to update the target scale: {e}");
            conditions::set(conds, "AbleToScale", false, "FailedUpdateScale", message, now);
            status.current_replicas = Some(current);
            status.current_metrics = Some(metric_statuses);
            return write_status(ctx, hpa, &before, status).await;
        }
        let message = format!("the HPA controller was able to update the target scale to {desired}");
        conditions::set(conds, "AbleToScale", true, "SucceededRescale", message, now);
        tracing::info!(hpa = %key, from = current, to = desired, %reason, "rescaled");
        events::record(&ctx.client, hpa, COMPONENT, false, "SuccessfulRescale", &format!("New size: {desired}; reason: {reason}")).await;
        ctx.histories.lock().entry(key).or_default().record_scale(rules, current, desired, now);
        status.last_scale_time = Some(Time(now));
    }
    status.current_replicas = Some(current);
    status.desired_replicas = if rescale { desired } else { current };
    status.current_metrics = Some(metric_statuses);
    write_status(ctx, hpa, &before, status).await
}

/// kube's `computeReplicasForMetrics`: the highest proposal of the metrics that have one; no
/// proposal (and the first failure's ScalingActive condition) when all failed, or some failed
/// and the rest would scale down. `Err`: the target's selector is unusable.
async fn compute(
    ctx: &Ctx,
    hpa: &HorizontalPodAutoscaler,
    specs: &[k8s_openapi::api::autoscaling::v2::MetricSpec],
    selector: &str,
    current: i32,
    conds: &mut Vec<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerCondition>,
    now: Timestamp,
) -> Result<Metrics, Vec<MetricStatus>> {
    let ns = hpa.namespace().unwrap_or_default();
    if selector.is_empty() {
        warn(ctx, hpa, "SelectorRequired", "selector is required").await;
        let message = "the HPA target's scale is missing a selector".to_string();
        conditions::set(conds, "ScalingActive", false, "InvalidSelector", message, now);
        return Err(Vec::new());
    }
    let pods = match Api::<Pod>::namespaced(ctx.client.clone(), &ns).list(&ListParams::default().labels(selector)).await {
        Ok(list) => list.items,
        Err(e) => {
            let message = format!("couldn't convert selector into a corresponding internal selector object: {e}");
            warn(ctx, hpa, "InvalidSelector", &message).await;
            conditions::set(conds, "ScalingActive", false, "InvalidSelector", message, now);
            return Err(Vec::new());
        }
    };
    let scope = metric::Scope { namespace: &ns, selector, pods: &pods, current, now };
    let mut statuses = Vec::with_capacity(specs.len());
    let mut best: Option<(i32, String)> = None;
    let mut failures = Vec::new();
    for spec in specs {
        match metric::compute(ctx.metrics.as_ref(), &scope, spec).await {
            Ok(Proposed { replicas, name, status }) => {
                statuses.push(status);
                if best.as_ref().is_none_or(|(b, _)| replicas > *b) {
                    best = Some((replicas, name));
                }
            }
            Err(failed) => {
                warn(ctx, hpa, failed.reason, &failed.error).await;
                statuses.push(MetricStatus { type_: String::new(), ..Default::default() });
                failures.push(failed);
            }
        }
    }
    let scaling_down = best.as_ref().is_some_and(|(b, _)| *b < current);
    if let Some(first) = failures.first().filter(|_| failures.len() >= specs.len() || scaling_down) {
        let message = format!("the HPA was unable to compute the replica count: {}", first.error);
        conditions::set(conds, "ScalingActive", false, first.reason, message, now);
        let error = format!("invalid metrics ({} invalid out of {}), first error is: {}", failures.len(), specs.len(), first.wrapped);
        warn(ctx, hpa, "FailedComputeMetricsReplicas", &error).await;
        return Ok(Metrics { proposal: None, statuses });
    }
    if let Some((_, name)) = &best {
        let message = format!("the HPA was able to successfully calculate a replica count from {name}");
        conditions::set(conds, "ScalingActive", true, "ValidMetricFound", message, now);
    }
    Ok(Metrics { proposal: best, statuses })
}

async fn warn(ctx: &Ctx, hpa: &HorizontalPodAutoscaler, reason: &str, message: &str) {
    events::record(&ctx.client, hpa, COMPONENT, true, reason, message).await;
}

/// Writes `status` through the status subresource when it differs from `before`.
async fn write_status(
    ctx: &Ctx,
    hpa: &HorizontalPodAutoscaler,
    before: &HorizontalPodAutoscalerStatus,
    mut status: HorizontalPodAutoscalerStatus,
) -> Result<(), Error> {
    status.observed_generation = hpa.metadata.generation;
    if &status == before {
        return Ok(());
    }
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), &hpa.namespace().unwrap_or_default());
    api.patch_status(&hpa.name_any(), &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await?;
    Ok(())
}
