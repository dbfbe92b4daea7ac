//! autoscaling/v1 ↔ autoscaling/v2 HorizontalPodAutoscalers, as kube's autoscaling/v1
//! conversion: v1's `targetCPUUtilizationPercentage` is v2's CPU Utilization metric; what v1
//! cannot say (other metrics, their current values, conditions, behavior) travels in
//! `autoscaling.alpha.kubernetes.io/*` annotations so that a v1 round trip loses nothing.

use serde_json::{json, Map, Value};

use super::defaults::cpu_utilization;
use super::metrics;

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
const ROUND_TRIP: [&str; 4] = [METRICS, CURRENT_METRICS, CONDITIONS, BEHAVIOR];

/// Whether a v2 metric is the one v1's `targetCPUUtilizationPercentage` stands for.
fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource" && metric["resource"]["name"] == "cpu" && metric["resource"]["target"]["averageUtilization"].is_i64()
}

/// Removes the round-trip annotations, returning what they held (`None`: absent).
fn take_annotations(obj: &mut Value) -> Map<String, Value> {
    let mut taken = Map::new();
    if let Some(annotations) = obj["metadata"].get_mut("annotations").and_then(Value::as_object_mut) {
        for key in ROUND_TRIP {
            if let Some(v) = annotations.remove(key) {
                taken.insert(key.to_string(), v);
            }
        }
        if annotations.is_empty() {
            obj["metadata"].as_object_mut().map(|m| m.remove("annotations"));
        }
    }
    taken
}

fn annotate(obj: &mut Value, key: &str, value: &Value) {
    let text = serde_json::to_string(value).expect("a JSON value always serialises");
    if !obj["metadata"]["annotations"].is_object() {
        obj["metadata"]["annotations"] = json!({});
    }
    obj["metadata"]["annotations"][key] = json!(text);
}

/// A JSON list from a round-trip annotation; kube ignores one that does not parse.
fn parsed_list(annotations: &Map<String, Value>, key: &str) -> Option<Vec<Value>> {
    serde_json::from_str(annotations.get(key)?.as_str()?).ok()
}

/// kube marshals the behavior annotation from its internal Go type, whose fields carry no
/// JSON names: `ScaleUp`, `StabilizationWindowSeconds`, …
fn go_field_names(value: &Value, upper: bool) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let mut chars = k.chars();
                    let first = chars.next().map(|c| if upper { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() });
                    (first.into_iter().chain(chars).collect(), go_field_names(v, upper))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| go_field_names(v, upper)).collect()),
        other => other.clone(),
    }
}

/// An autoscaling/v2 HorizontalPodAutoscaler as autoscaling/v1.
pub fn to_v1(v2: &Value) -> Value {
    let mut out = v2.clone();
    out["apiVersion"] = json!("autoscaling/v1");
    take_annotations(&mut out);
    let spec = &v2["spec"];
    let all_metrics: Vec<Value> = spec["metrics"].as_array().cloned().unwrap_or_default();
    let mut v1_spec = json!({ "scaleTargetRef": spec["scaleTargetRef"], "maxReplicas": spec["maxReplicas"] });
    if !spec["minReplicas"].is_null() {
        v1_spec["minReplicas"] = spec["minReplicas"].clone();
    }
    if let Some(cpu) = all_metrics.iter().find(|m| is_cpu_utilization(m)) {
        v1_spec["targetCPUUtilizationPercentage"] = cpu["resource"]["target"]["averageUtilization"].clone();
    }
    let others: Vec<Value> = all_metrics.iter().filter(|m| !is_cpu_utilization(m)).map(metrics::spec_to_v1).collect();
    if !others.is_empty() {
        annotate(&mut out, METRICS, &json!(others));
    }
    let status = &v2["status"];
    let current: Vec<Value> = status["currentMetrics"].as_array().cloned().unwrap_or_default();
    if !current.is_empty() {
        annotate(&mut out, CURRENT_METRICS, &json!(current.iter().map(metrics::status_to_v1).collect::<Vec<_>>()));
    }
    if spec["behavior"].is_object() {
        annotate(&mut out, BEHAVIOR, &go_field_names(&spec["behavior"], true));
    }
    if let Some(conditions) = status["conditions"].as_array().filter(|c| !c.is_empty()) {
        annotate(&mut out, CONDITIONS, &json!(conditions));
    }
    out["spec"] = v1_spec;
    if status.is_object() {
        let mut v1_status = json!({
            "currentReplicas": status["currentReplicas"].as_i64().unwrap_or(0),
            "desiredReplicas": status["desiredReplicas"].as_i64().unwrap_or(0),
        });
        for field in ["observedGeneration", "lastScaleTime"] {
            if !status[field].is_null() {
                v1_status[field] = status[field].clone();
            }
        }
        let cpu = current.iter().find(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu");
        if let Some(percent) = cpu.map(|m| &m["resource"]["current"]["averageUtilization"]).filter(|p| !p.is_null()) {
            v1_status["currentCPUUtilizationPercentage"] = percent.clone();
        }
        out["status"] = v1_status;
    }
    out
}

/// An autoscaling/v1 HorizontalPodAutoscaler as autoscaling/v2 (not yet defaulted).
pub fn to_v2(v1: &Value) -> Value {
    let mut out = v1.clone();
    out["apiVersion"] = json!("autoscaling/v2");
    let annotations = take_annotations(&mut out);
    let spec = &v1["spec"];
    let mut v2_spec = json!({ "scaleTargetRef": spec["scaleTargetRef"], "maxReplicas": spec["maxReplicas"] });
    if !spec["minReplicas"].is_null() {
        v2_spec["minReplicas"] = spec["minReplicas"].clone();
    }
    let mut all_metrics: Vec<Value> = parsed_list(&annotations, METRICS).unwrap_or_default().iter().map(metrics::spec_to_v2).collect();
    if let Some(percent) = spec["targetCPUUtilizationPercentage"].as_i64() {
        all_metrics.push(cpu_utilization(percent));
    }
    if !all_metrics.is_empty() {
        v2_spec["metrics"] = json!(all_metrics);
    }
    let behavior = annotations.get(BEHAVIOR).and_then(Value::as_str).and_then(|b| serde_json::from_str::<Value>(b).ok());
    if let Some(behavior) = behavior.filter(Value::is_object) {
        v2_spec["behavior"] = go_field_names(&behavior, false);
    }
    out["spec"] = v2_spec;
    let status = &v1["status"];
    if status.is_object() {
        let mut v2_status = json!({
            "currentReplicas": status["currentReplicas"].as_i64().unwrap_or(0),
            "desiredReplicas": status["desiredReplicas"].as_i64().unwrap_or(0),
        });
        for field in ["observedGeneration", "lastScaleTime"] {
            if !status[field].is_null() {
                v2_status[field] = status[field].clone();
            }
        }
        let current = match parsed_list(&annotations, CURRENT_METRICS) {
            Some(list) => list.iter().map(metrics::status_to_v2).collect(),
            None => status["currentCPUUtilizationPercentage"]
                .as_i64()
                .map(|p| vec![json!({ "type": "Resource", "resource": { "name": "cpu", "current": { "averageUtilization": p } } })])
                .unwrap_or_default(),
        };
        if !current.is_empty() {
            v2_status["currentMetrics"] = json!(current);
        }
        if let Some(conditions) = parsed_list(&annotations, CONDITIONS).filter(|c| !c.is_empty()) {
            v2_status["conditions"] = json!(conditions);
        }
        out["status"] = v2_status;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_hpa() -> Value {
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": { "name": "web", "namespace": "default", "annotations": { "team": "a" } },
            "spec": {
                "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "web" },
                "minReplicas": 1, "maxReplicas": 5,
                "metrics": [
                    cpu_utilization(50),
                    { "type": "Resource", "resource": { "name": "memory", "target": { "type": "AverageValue", "averageValue": "100Mi" } } },
                ],
                "behavior": { "scaleDown": { "stabilizationWindowSeconds": 60, "selectPolicy": "Min",
                                             "policies": [{ "type": "Pods", "value": 1, "periodSeconds": 30 }] } },
            },
            "status": {
                "currentReplicas": 2, "desiredReplicas": 3, "lastScaleTime": "2026-01-01T00:00:00Z",
                "currentMetrics": [{ "type": "Resource", "resource": { "name": "cpu", "current": { "averageUtilization": 12, "averageValue": "12m" } } }],
                "conditions": [{ "type": "AbleToScale", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z",
                                 "reason": "ReadyForNewScale", "message": "recommended size matches current size" }],
            },
        })
    }

    #[test]
    fn v1_shows_the_cpu_target_and_keeps_the_rest_in_annotations() {
        let v1 = to_v1(&v2_hpa());
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
        assert!(v1["spec"].get("metrics").is_none());
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 12);
        let annotations = &v1["metadata"]["annotations"];
        assert_eq!(annotations["team"], "a");
        let others: Value = serde_json::from_str(annotations[METRICS].as_str().unwrap()).unwrap();
        assert_eq!(others, json!([{ "type": "Resource", "resource": { "name": "memory", "targetAverageValue": "100Mi" } }]));
        let behavior: Value = serde_json::from_str(annotations[BEHAVIOR].as_str().unwrap()).unwrap();
        assert_eq!(behavior["ScaleDown"]["StabilizationWindowSeconds"], 60);
        assert!(annotations[CONDITIONS].as_str().unwrap().contains("ReadyForNewScale"));
    }

    #[test]
    fn a_v1_round_trip_gives_back_the_v2_object() {
        let back = to_v2(&to_v1(&v2_hpa()));
        let mut expected = v2_hpa();
        // The memory metric came back from the annotation, before the CPU target, as in kube.
        let metrics = expected["spec"]["metrics"].as_array_mut().unwrap();
        metrics.rotate_left(1);
        assert_eq!(back, expected);
    }

    #[test]
    fn a_plain_v1_object_reads_as_a_cpu_metric() {
        let v1 = json!({ "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": { "name": "a" },
            "spec": { "scaleTargetRef": { "kind": "Deployment", "name": "web" }, "maxReplicas": 3, "targetCPUUtilizationPercentage": 70 } });
        let v2 = to_v2(&v1);
        assert_eq!(v2["spec"]["metrics"], json!([cpu_utilization(70)]));
        assert!(v2.get("status").is_none());
        assert!(v2["metadata"].get("annotations").is_none());
        assert_eq!(to_v1(&v2), v1);
    }
}
