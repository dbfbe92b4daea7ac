//! A pod's QoS class (BestEffort, Burstable, Guaranteed) by Kubernetes' rules: the API sets it
//! in `status.qosClass` on create, nodes report it back.

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

/// The QoS class of a pod spec given as JSON.
pub fn class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"].iter().flat_map(|l| spec[*l].as_array().into_iter().flatten()).collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let (req, lim) = (&c["resources"]["requests"], &c["resources"]["limits"]);
        for res in ["cpu", "memory"] {
            let (r, l) = (req.get(res).filter(|v| !v.is_null()), lim.get(res).filter(|v| !v.is_null()));
            any |= r.is_some() || l.is_some();
            // Requests default to limits; Guaranteed needs both resources limited and equal.
            if l.is_none() || r.is_some_and(|r| Some(r) != l) {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// The QoS class of a typed pod: the one the API recorded, else computed from its spec.
pub fn of_pod(pod: &Pod) -> &'static str {
    match pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
        Some("Guaranteed") => "Guaranteed",
        Some("Burstable") => "Burstable",
        Some("BestEffort") => "BestEffort",
        _ => class(&serde_json::to_value(&pod.spec).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classes() {
        let spec = |res: Value| json!({ "containers": [{ "name": "c", "resources": res }] });
        assert_eq!(class(&spec(json!({}))), "BestEffort");
        assert_eq!(class(&spec(json!({ "requests": { "cpu": "100m" } }))), "Burstable");
        assert_eq!(class(&spec(json!({ "limits": { "cpu": "1", "memory": "1Gi" } }))), "Guaranteed");
        assert_eq!(class(&spec(json!({ "limits": { "cpu": "1", "memory": "1Gi" }, "requests": { "cpu": "500m" } }))), "Burstable");
    }

    #[test]
    fn a_recorded_class_wins() {
        let mut pod: Pod = serde_json::from_value(json!({ "spec": { "containers": [{ "name": "c" }] } })).unwrap();
        assert_eq!(of_pod(&pod), "BestEffort");
        pod.status = Some(serde_json::from_value(json!({ "qosClass": "Guaranteed" })).unwrap());
        assert_eq!(of_pod(&pod), "Guaranteed");
    }
}
