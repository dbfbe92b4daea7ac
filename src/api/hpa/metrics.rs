//! autoscaling/v1's metric shapes (kept in its `autoscaling.alpha.kubernetes.io/metrics` and
//! `…/current-metrics` annotations, v2beta1 style: `targetAverageUtilization`, `metricName`, …)
//! converted to and from autoscaling/v2's `metrics` and `currentMetrics` entries.

use serde_json::{json, Map, Value};

/// Copies the members of `from` named in `pairs` (source name, destination name) that are set.
fn copy(from: &Value, pairs: &[(&str, &str)], to: &mut Map<String, Value>) {
    for (src, dst) in pairs {
        if let Some(v) = from.get(*src).filter(|v| !v.is_null()) {
            to.insert((*dst).to_string(), v.clone());
        }
    }
}

fn object(map: Map<String, Value>) -> Value {
    Value::Object(map)
}

/// `{name, selector}` of a v2 MetricIdentifier from v1's `metricName` and selector field.
fn identifier(v1: &Value, selector: &str) -> Value {
    let mut id = Map::new();
    copy(v1, &[("metricName", "name"), (selector, "selector")], &mut id);
    object(id)
}

/// A v1 metric spec as a v2 one.
pub fn spec_to_v2(v1: &Value) -> Value {
    let kind = v1["type"].as_str().unwrap_or_default();
    let mut out = json!({ "type": kind });
    match kind {
        "Resource" | "ContainerResource" => {
            let field = if kind == "Resource" { "resource" } else { "containerResource" };
            let source = &v1[field];
            let utilization = !source["targetAverageUtilization"].is_null();
            let mut target = Map::new();
            target.insert("type".into(), json!(if utilization { "Utilization" } else { "AverageValue" }));
            copy(source, &[("targetAverageUtilization", "averageUtilization"), ("targetAverageValue", "averageValue")], &mut target);
            let mut resource = Map::new();
            copy(source, &[("name", "name"), ("container", "container")], &mut resource);
            resource.insert("target".into(), object(target));
            out[field] = object(resource);
        }
        "Pods" => {
            let source = &v1["pods"];
            let mut target = Map::new();
            target.insert("type".into(), json!("AverageValue"));
            copy(source, &[("targetAverageValue", "averageValue")], &mut target);
            out["pods"] = json!({ "metric": identifier(source, "selector"), "target": object(target) });
        }
        "Object" => {
            let source = &v1["object"];
            let mut target = Map::new();
            target.insert("type".into(), json!(if source["averageValue"].is_null() { "Value" } else { "AverageValue" }));
            copy(source, &[("targetValue", "value"), ("averageValue", "averageValue")], &mut target);
            out["object"] =
                json!({ "describedObject": source["target"], "metric": identifier(source, "selector"), "target": object(target) });
        }
        "External" => {
            let source = &v1["external"];
            let mut target = Map::new();
            target.insert("type".into(), json!(if source["targetValue"].is_null() { "AverageValue" } else { "Value" }));
            copy(source, &[("targetValue", "value"), ("targetAverageValue", "averageValue")], &mut target);
            out["external"] = json!({ "metric": identifier(source, "metricSelector"), "target": object(target) });
        }
        _ => {}
    }
    out
}

/// A v2 metric spec as a v1 one.
pub fn spec_to_v1(v2: &Value) -> Value {
    let kind = v2["type"].as_str().unwrap_or_default();
    let mut out = json!({ "type": kind });
    match kind {
        "Resource" | "ContainerResource" => {
            let field = if kind == "Resource" { "resource" } else { "containerResource" };
            let source = &v2[field];
            let mut resource = Map::new();
            copy(source, &[("name", "name"), ("container", "container")], &mut resource);
            copy(
                &source["target"],
                &[("averageUtilization", "targetAverageUtilization"), ("averageValue", "targetAverageValue")],
                &mut resource,
            );
            out[field] = object(resource);
        }
        "Pods" => {
            let source = &v2["pods"];
            let mut pods = Map::new();
            copy(&source["metric"], &[("name", "metricName"), ("selector", "selector")], &mut pods);
            copy(&source["target"], &[("averageValue", "targetAverageValue")], &mut pods);
            out["pods"] = object(pods);
        }
        "Object" => {
            let source = &v2["object"];
            let mut obj = Map::new();
            copy(source, &[("describedObject", "target")], &mut obj);
            copy(&source["metric"], &[("name", "metricName"), ("selector", "selector")], &mut obj);
            copy(&source["target"], &[("value", "targetValue"), ("averageValue", "averageValue")], &mut obj);
            out["object"] = object(obj);
        }
        "External" => {
            let source = &v2["external"];
            let mut external = Map::new();
            copy(&source["metric"], &[("name", "metricName"), ("selector", "metricSelector")], &mut external);
            copy(&source["target"], &[("value", "targetValue"), ("averageValue", "targetAverageValue")], &mut external);
            out["external"] = object(external);
        }
        _ => {}
    }
    out
}

/// The `(v1 field, v2 field)` of the current values of a metric status's source.
const CURRENT: &[(&str, &str)] = &[
    ("currentAverageUtilization", "averageUtilization"),
    ("currentAverageValue", "averageValue"),
    ("currentValue", "value"),
    ("averageValue", "averageValue"),
];

/// The field of a metric source of type `kind` (`Resource` → `resource`, …).
fn source_field(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        "Pods" => "pods",
        "Object" => "object",
        "External" => "external",
        _ => return None,
    })
}

/// A v1 metric status as a v2 one.
pub fn status_to_v2(v1: &Value) -> Value {
    let kind = v1["type"].as_str().unwrap_or_default();
    let mut out = json!({ "type": kind });
    let Some(field) = source_field(kind) else { return out };
    let source = &v1[field];
    let mut current = Map::new();
    let pairs: &[(&str, &str)] = if kind == "Object" { &[("currentValue", "value"), ("averageValue", "averageValue")] } else { CURRENT };
    copy(source, pairs, &mut current);
    let mut status = Map::new();
    match kind {
        "Resource" | "ContainerResource" => copy(source, &[("name", "name"), ("container", "container")], &mut status),
        "Object" => {
            copy(source, &[("target", "describedObject")], &mut status);
            status.insert("metric".into(), identifier(source, "selector"));
        }
        "Pods" => {
            status.insert("metric".into(), identifier(source, "selector"));
        }
        _ => {
            status.insert("metric".into(), identifier(source, "metricSelector"));
        }
    }
    status.insert("current".into(), object(current));
    out[field] = object(status);
    out
}

/// A v2 metric status as a v1 one.
pub fn status_to_v1(v2: &Value) -> Value {
    let kind = v2["type"].as_str().unwrap_or_default();
    let mut out = json!({ "type": kind });
    let Some(field) = source_field(kind) else { return out };
    let source = &v2[field];
    let mut status = Map::new();
    let current = &source["current"];
    match kind {
        "Resource" | "ContainerResource" => {
            copy(source, &[("name", "name"), ("container", "container")], &mut status);
            copy(current, &[("averageUtilization", "currentAverageUtilization"), ("averageValue", "currentAverageValue")], &mut status);
            // v1's currentAverageValue is not optional.
            status.entry("currentAverageValue").or_insert(json!("0"));
        }
        "Pods" => {
            copy(&source["metric"], &[("name", "metricName"), ("selector", "selector")], &mut status);
            copy(current, &[("averageValue", "currentAverageValue")], &mut status);
        }
        "Object" => {
            copy(source, &[("describedObject", "target")], &mut status);
            copy(&source["metric"], &[("name", "metricName"), ("selector", "selector")], &mut status);
            copy(current, &[("value", "currentValue"), ("averageValue", "averageValue")], &mut status);
        }
        _ => {
            copy(&source["metric"], &[("name", "metricName"), ("selector", "metricSelector")], &mut status);
            copy(current, &[("value", "currentValue"), ("averageValue", "currentAverageValue")], &mut status);
        }
    }
    out[field] = object(status);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_source_round_trips_through_v1() {
        for v2 in [
            json!({ "type": "Resource", "resource": { "name": "memory", "target": { "type": "AverageValue", "averageValue": "100Mi" } } }),
            json!({ "type": "ContainerResource", "containerResource": { "name": "cpu", "container": "app",
                    "target": { "type": "Utilization", "averageUtilization": 60 } } }),
            json!({ "type": "Pods", "pods": { "metric": { "name": "qps" }, "target": { "type": "AverageValue", "averageValue": "10" } } }),
            json!({ "type": "Object", "object": { "describedObject": { "kind": "Ingress", "name": "main", "apiVersion": "networking.k8s.io/v1" },
                    "metric": { "name": "hits" }, "target": { "type": "Value", "value": "2k" } } }),
            json!({ "type": "External", "external": { "metric": { "name": "queue", "selector": { "matchLabels": { "q": "a" } } },
                    "target": { "type": "AverageValue", "averageValue": "30" } } }),
        ] {
            assert_eq!(spec_to_v2(&spec_to_v1(&v2)), v2, "{v2}");
        }
    }

    #[test]
    fn statuses_round_trip_through_v1() {
        for v2 in [
            json!({ "type": "Resource", "resource": { "name": "cpu", "current": { "averageUtilization": 12, "averageValue": "12m" } } }),
            json!({ "type": "Pods", "pods": { "metric": { "name": "qps" }, "current": { "averageValue": "4" } } }),
            json!({ "type": "External", "external": { "metric": { "name": "queue" }, "current": { "value": "7" } } }),
        ] {
            assert_eq!(status_to_v2(&status_to_v1(&v2)), v2, "{v2}");
        }
    }

    #[test]
    fn v1_resource_targets_read_as_kube_writes_them() {
        let v1 = json!({ "type": "Resource", "resource": { "name": "memory", "targetAverageValue": "1Gi" } });
        assert_eq!(spec_to_v2(&v1)["resource"]["target"], json!({ "type": "AverageValue", "averageValue": "1Gi" }));
    }
}
