//! Protobuf bodies of HorizontalPodAutoscalers (`kubectl autoscale` sends one): autoscaling/v2
//! with every metric source and the behavior, and autoscaling/v1, turned into JSON.

use k8s_pb::api::autoscaling::{v1, v2};
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use prost::Message;
use serde_json::{json, Map, Value};

use super::meta::{bad, label_selector, object_meta, set};
use crate::api::status::ApiError;

/// Decodes the protobuf `raw` of an HPA of `version` into `obj` (which already has apiVersion
/// and kind); `None` for other resources.
pub fn decode(plural: &str, version: &str, raw: &[u8], obj: &mut Map<String, Value>) -> Option<Result<(), ApiError>> {
    if plural != "horizontalpodautoscalers" {
        return None;
    }
    let result = if version == "v1" {
        v1::HorizontalPodAutoscaler::decode(raw).map(|h| {
            obj.insert("metadata".into(), object_meta(h.metadata));
            let spec = h.spec.unwrap_or_default();
            let mut out = Map::new();
            set(&mut out, "scaleTargetRef", target_ref_v1(spec.scale_target_ref));
            set(&mut out, "minReplicas", json!(spec.min_replicas));
            set(&mut out, "maxReplicas", json!(spec.max_replicas));
            set(&mut out, "targetCPUUtilizationPercentage", json!(spec.target_cpu_utilization_percentage));
            obj.insert("spec".into(), Value::Object(out));
        })
    } else {
        v2::HorizontalPodAutoscaler::decode(raw).map(|h| {
            obj.insert("metadata".into(), object_meta(h.metadata));
            let spec = h.spec.unwrap_or_default();
            let mut out = Map::new();
            set(&mut out, "scaleTargetRef", target_ref(spec.scale_target_ref));
            set(&mut out, "minReplicas", json!(spec.min_replicas));
            set(&mut out, "maxReplicas", json!(spec.max_replicas));
            set(&mut out, "metrics", Value::Array(spec.metrics.into_iter().map(metric).collect()));
            if let Some(b) = spec.behavior {
                let mut behavior = Map::new();
                set(&mut behavior, "scaleUp", b.scale_up.map_or(Value::Null, rules));
                set(&mut behavior, "scaleDown", b.scale_down.map_or(Value::Null, rules));
                out.insert("behavior".into(), Value::Object(behavior));
            }
            obj.insert("spec".into(), Value::Object(out));
        })
    };
    Some(result.map_err(bad))
}

fn target_ref(r: Option<v2::CrossVersionObjectReference>) -> Value {
    let r = r.unwrap_or_default();
    let mut out = Map::new();
    set(&mut out, "apiVersion", json!(r.api_version));
    set(&mut out, "kind", json!(r.kind));
    set(&mut out, "name", json!(r.name));
    Value::Object(out)
}

fn target_ref_v1(r: Option<v1::CrossVersionObjectReference>) -> Value {
    let r = r.unwrap_or_default();
    target_ref(Some(v2::CrossVersionObjectReference { api_version: r.api_version, kind: r.kind, name: r.name }))
}

fn quantity(q: Option<Quantity>) -> Value {
    json!(q.and_then(|q| q.string))
}

fn metric_target(t: Option<v2::MetricTarget>) -> Value {
    let t = t.unwrap_or_default();
    let mut out = Map::new();
    set(&mut out, "type", json!(t.r#type));
    set(&mut out, "value", quantity(t.value));
    set(&mut out, "averageValue", quantity(t.average_value));
    set(&mut out, "averageUtilization", json!(t.average_utilization));
    Value::Object(out)
}

fn identifier(m: Option<v2::MetricIdentifier>) -> Value {
    let m = m.unwrap_or_default();
    let mut out = Map::new();
    set(&mut out, "name", json!(m.name));
    set(&mut out, "selector", label_selector(m.selector));
    Value::Object(out)
}

fn metric(m: v2::MetricSpec) -> Value {
    let mut out = Map::new();
    set(&mut out, "type", json!(m.r#type));
    if let Some(r) = m.resource {
        out.insert("resource".into(), json!({ "name": r.name, "target": metric_target(r.target) }));
    }
    if let Some(r) = m.container_resource {
        out.insert("containerResource".into(), json!({ "name": r.name, "container": r.container, "target": metric_target(r.target) }));
    }
    if let Some(p) = m.pods {
        out.insert("pods".into(), json!({ "metric": identifier(p.metric), "target": metric_target(p.target) }));
    }
    if let Some(o) = m.object {
        out.insert(
            "object".into(),
            json!({ "describedObject": target_ref(o.described_object), "metric": identifier(o.metric), "target": metric_target(o.target) }),
        );
    }
    if let Some(e) = m.external {
        out.insert("external".into(), json!({ "metric": identifier(e.metric), "target": metric_target(e.target) }));
    }
    Value::Object(out)
}

fn rules(r: v2::HpaScalingRules) -> Value {
    let mut out = Map::new();
    set(&mut out, "stabilizationWindowSeconds", json!(r.stabilization_window_seconds));
    set(&mut out, "selectPolicy", json!(r.select_policy));
    let policies: Vec<Value> =
        r.policies.into_iter().map(|p| json!({ "type": p.r#type, "value": p.value, "periodSeconds": p.period_seconds })).collect();
    set(&mut out, "policies", json!(policies));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_autoscale_bodies_decode() {
        let hpa = v2::HorizontalPodAutoscaler {
            metadata: Some(Default::default()),
            spec: Some(v2::HorizontalPodAutoscalerSpec {
                scale_target_ref: Some(v2::CrossVersionObjectReference {
                    api_version: Some("apps/v1".into()),
                    kind: Some("Deployment".into()),
                    name: Some("web".into()),
                }),
                min_replicas: Some(1),
                max_replicas: Some(5),
                metrics: vec![v2::MetricSpec {
                    r#type: Some("Resource".into()),
                    resource: Some(v2::ResourceMetricSource {
                        name: Some("cpu".into()),
                        target: Some(v2::MetricTarget {
                            r#type: Some("Utilization".into()),
                            average_utilization: Some(50),
                            ..Default::default()
                        }),
                    }),
                    ..Default::default()
                }],
                behavior: None,
            }),
            status: None,
        };
        let mut obj = Map::new();
        decode("horizontalpodautoscalers", "v2", &hpa.encode_to_vec(), &mut obj).unwrap().unwrap();
        assert_eq!(
            obj["spec"],
            json!({ "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "web" }, "minReplicas": 1, "maxReplicas": 5,
                    "metrics": [{ "type": "Resource", "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 50 } } }] })
        );
    }
}
