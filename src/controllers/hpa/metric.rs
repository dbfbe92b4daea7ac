//! One metric of an HPA: its replica proposal and current value, or why it has none (the
//! ScalingActive reason kube gives, and its error). Resource and ContainerResource metrics
//! are computed from the metrics API; orch serves no custom or external metrics API, so
//! Pods, Object and External metrics fail as kube's do without one.

use k8s_openapi::api::autoscaling::v2::{ContainerResourceMetricStatus, MetricTarget};
use k8s_openapi::api::autoscaling::v2::{MetricSpec, MetricStatus, MetricValueStatus, ResourceMetricStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;

use super::metrics_source::{usages, MetricsSource};
use super::replicas::{propose, Inputs, Target};

/// A metric's replica proposal.
pub struct Proposed {
    pub replicas: i32,
    /// How events and conditions name the metric (`cpu resource utilization (percentage of request)`).
    pub name: String,
    pub status: MetricStatus,
}

/// Why a metric has no proposal.
pub struct Failed {
    /// The ScalingActive reason (and the Warning event's).
    pub reason: &'static str,
    /// The error the condition and the event carry.
    pub error: String,
    /// The error as the sync reports it.
    pub wrapped: String,
}

/// What a metric is computed against.
pub struct Scope<'a> {
    pub namespace: &'a str,
    pub selector: &'a str,
    pub pods: &'a [Pod],
    pub current: i32,
    pub now: Timestamp,
}

pub async fn compute(source: &dyn MetricsSource, scope: &Scope<'_>, spec: &MetricSpec) -> Result<Proposed, Failed> {
    match spec.type_.as_str() {
        "Resource" => {
            let Some(r) = spec.resource.as_ref() else { return Err(missing_source("resource")) };
            let (replicas, name, current) = resource(source, scope, &r.name, None, &r.target).await.map_err(|error| Failed {
                reason: "FailedGetResourceMetric",
                wrapped: format!("failed to get {} resource metric value: {error}", r.name),
                error,
            })?;
            let status = ResourceMetricStatus { name: r.name.clone(), current };
            Ok(Proposed {
                replicas,
                name,
                status: MetricStatus { type_: spec.type_.clone(), resource: Some(status), ..Default::default() },
            })
        }
        "ContainerResource" => {
            let Some(r) = spec.container_resource.as_ref() else { return Err(missing_source("containerResource")) };
            let (replicas, name, current) =
                resource(source, scope, &r.name, Some(&r.container), &r.target).await.map_err(|error| Failed {
                    reason: "FailedGetContainerResourceMetric",
                    wrapped: format!("failed to get {} container metric value: {error}", r.name),
                    error,
                })?;
            let status = ContainerResourceMetricStatus { name: r.name.clone(), container: r.container.clone(), current };
            let status = MetricStatus { type_: spec.type_.clone(), container_resource: Some(status), ..Default::default() };
            Ok(Proposed { replicas, name, status })
        }
        "Pods" | "Object" | "External" => Err(unsupported(spec)),
        other => {
            let error = format!("unknown metric source type \"{other}\"");
            Err(Failed { reason: "InvalidMetricSourceType", wrapped: error.clone(), error })
        }
    }
}

/// A metric from a custom or external metrics API, which orch does not serve.
fn unsupported(spec: &MetricSpec) -> Failed {
    let (reason, source, api, name) = match spec.type_.as_str() {
        "Pods" => ("FailedGetPodsMetric", "pods", "custom", spec.pods.as_ref().map(|p| &p.metric.name)),
        "Object" => ("FailedGetObjectMetric", "object", "custom", spec.object.as_ref().map(|o| &o.metric.name)),
        _ => ("FailedGetExternalMetric", "external", "external", spec.external.as_ref().map(|e| &e.metric.name)),
    };
    let name = name.map_or("", String::as_str);
    let error = format!("unable to get metric {name}: unable to fetch metrics from {api} metrics API: orch serves no {api} metrics API");
    Failed { reason, wrapped: format!("failed to get {source} metric value: {error}"), error }
}

fn missing_source(field: &str) -> Failed {
    let error = format!("invalid metric source: {field} is not set");
    Failed { reason: "InvalidMetricSourceType", wrapped: error.clone(), error }
}

/// kube's `computeStatusForResourceMetricGeneric`: the proposal, the metric's name in events
/// and its current value.
async fn resource(
    source: &dyn MetricsSource,
    scope: &Scope<'_>,
    resource: &str,
    container: Option<&str>,
    target: &MetricTarget,
) -> Result<(i32, String, MetricValueStatus), String> {
    let (target, failure) = match (&target.average_value, target.average_utilization) {
        (Some(value), _) => {
            let milli = crate::k8s::quantity::milli_value(value).ok_or_else(|| format!("invalid target value {:?}", value.0))?;
            (Target::AverageValue(milli), "usage")
        }
        (None, Some(percent)) => (Target::Utilization(i64::from(percent)), "utilization"),
        (None, None) => {
            return Err(
                "invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".into()
            )
        }
    };
    let fetched = match source.pod_metrics(scope.namespace, scope.selector).await {
        Ok(items) if items.is_empty() => Err("no metrics returned from resource metrics API".to_string()),
        other => other,
    };
    let items = fetched.map_err(|e| format!("failed to get {resource} {failure}: unable to get metrics for resource {resource}: {e}"))?;
    let inputs = Inputs { current: scope.current, target, resource, container, pods: scope.pods, now: scope.now };
    let proposal = propose(&inputs, usages(&items, resource, container)).map_err(|e| format!("failed to get {resource} {failure}: {e}"))?;
    let average = crate::k8s::quantity::canonical(&format!("{}m", proposal.average_milli)).map(Quantity);
    let name = match (target, container) {
        (Target::AverageValue(_), _) => format!("{resource} resource"),
        (_, Some(_)) => format!("{resource} container resource utilization (percentage of request)"),
        (_, None) => format!("{resource} resource utilization (percentage of request)"),
    };
    let current = MetricValueStatus { average_utilization: proposal.utilization.map(|u| u as i32), average_value: average, value: None };
    Ok((proposal.replicas, name, current))
}
