//! autoscaling/v2 defaults (kube's `SetDefaults_HorizontalPodAutoscaler`): minReplicas 1, a CPU
//! utilization target of 80 % when no metric is given, and the missing fields of a given
//! `behavior` filled from the default scale-up and scale-down rules.

use serde_json::{json, Value};

/// The CPU utilization target of an HPA that names no metric (kube's `DefaultCPUUtilization`).
pub const DEFAULT_CPU_UTILIZATION: i64 = 80;

/// Defaults an autoscaling/v2 HorizontalPodAutoscaler in place.
pub fn apply_defaults(hpa: &mut Value) {
    let spec = &mut hpa["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    if spec.get("minReplicas").is_none_or(Value::is_null) {
        spec["minReplicas"] = json!(1);
    }
    if spec["metrics"].as_array().is_none_or(Vec::is_empty) {
        spec["metrics"] = json!([cpu_utilization(DEFAULT_CPU_UTILIZATION)]);
    }
    // As kube: only a behavior that is given gets its missing rules and fields filled.
    if let Some(behavior) = spec.get_mut("behavior").filter(|b| b.is_object()) {
        behavior["scaleUp"] = scale_up_rules(&behavior["scaleUp"]);
        behavior["scaleDown"] = scale_down_rules(&behavior["scaleDown"]);
    }
}

/// A Resource metric on CPU at `percent` of the pods' requests.
pub fn cpu_utilization(percent: i64) -> Value {
    json!({ "type": "Resource", "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": percent } } })
}

/// `rules` with kube's scale-up defaults filled in (`GenerateHPAScaleUpRules`): no
/// stabilization, at most 4 pods or 100 % per 15 s, whichever is more.
pub fn scale_up_rules(rules: &Value) -> Value {
    filled(rules, 0, json!([{ "type": "Pods", "value": 4, "periodSeconds": 15 }, { "type": "Percent", "value": 100, "periodSeconds": 15 }]))
}

/// `rules` with kube's scale-down defaults filled in (`GenerateHPAScaleDownRules`): a 300 s
/// stabilization window, at most 100 % per 15 s.
pub fn scale_down_rules(rules: &Value) -> Value {
    filled(rules, 300, json!([{ "type": "Percent", "value": 100, "periodSeconds": 15 }]))
}

fn filled(rules: &Value, window: i64, policies: Value) -> Value {
    let mut out = if rules.is_object() { rules.clone() } else { json!({}) };
    if out.get("stabilizationWindowSeconds").is_none_or(Value::is_null) {
        out["stabilizationWindowSeconds"] = json!(window);
    }
    if out.get("selectPolicy").is_none_or(Value::is_null) {
        out["selectPolicy"] = json!("Max");
    }
    if out.get("policies").is_none_or(Value::is_null) {
        out["policies"] = policies;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hpa_without_metrics_targets_80_percent_cpu_from_one_replica() {
        let mut hpa = json!({ "spec": { "maxReplicas": 5 } });
        apply_defaults(&mut hpa);
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(hpa["spec"]["metrics"], json!([cpu_utilization(80)]));
        assert!(hpa["spec"].get("behavior").is_none(), "kube leaves an absent behavior absent");
    }

    #[test]
    fn a_partial_behavior_is_completed_from_the_defaults() {
        let mut hpa = json!({ "spec": { "maxReplicas": 5, "behavior": { "scaleDown": { "stabilizationWindowSeconds": 60 } } } });
        apply_defaults(&mut hpa);
        let behavior = &hpa["spec"]["behavior"];
        assert_eq!(behavior["scaleUp"], scale_up_rules(&Value::Null));
        assert_eq!(behavior["scaleUp"]["policies"][0], json!({ "type": "Pods", "value": 4, "periodSeconds": 15 }));
        assert_eq!(
            behavior["scaleDown"],
            json!({ "stabilizationWindowSeconds": 60, "selectPolicy": "Max",
                    "policies": [{ "type": "Percent", "value": 100, "periodSeconds": 15 }] })
        );
    }
}
