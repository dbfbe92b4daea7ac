//! Numbers in objects, checked as kube-apiserver checks them before anything computes with
//! them: an integer field holds an integer of its Go type (else the decoder's 400), and the
//! durations, deadlines and counts its validation bounds stay in range (422 with its words). A
//! stored object's numbers therefore always decode into the typed clients of controllers and
//! kubelets, and every duration they compute is one `k8s::time` can saturate.

use serde_json::{json, Value};

use super::openapi::OpenApi;
use super::registry::Resource;
use super::status::{ApiError, FieldError};

/// Refuses a value that is not an integer of its field's type (int32 or int64) wherever the
/// resource's OpenAPI schema asks for an integer, found without recursion.
pub fn integers(openapi: &OpenApi, r: &Resource, obj: &Value) -> Result<(), ApiError> {
    let Some(root) = openapi.schema_of(r) else { return Ok(()) };
    let mut todo = vec![(root, obj, String::new())];
    while let Some((schema, value, path)) = todo.pop() {
        let schema = openapi.resolve(schema);
        let join = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
        match value {
            Value::Object(map) => {
                let props = schema.get("properties").and_then(Value::as_object);
                let extra = schema.get("additionalProperties").filter(|s| s.is_object());
                for (k, v) in map {
                    if let Some(sub) = props.and_then(|p| p.get(k)).or(extra) {
                        todo.push((sub, v, join(k)));
                    }
                }
            }
            Value::Array(items) => {
                if let Some(sub) = schema.get("items") {
                    todo.extend(items.iter().map(|v| (sub, v, path.clone())));
                }
            }
            Value::Null => {}
            _ if schema.get("type").and_then(Value::as_str) == Some("integer") => {
                let int32 = schema.get("format").and_then(Value::as_str) == Some("int32");
                let fits = value.as_i64().is_some_and(|n| !int32 || i32::try_from(n).is_ok());
                if !fits {
                    return Err(ApiError::bad_request(format!(
                        "{kind} in version \"{version}\" cannot be handled as a {kind}: json: cannot unmarshal {} into Go struct field {kind}.{path} of type {}",
                        super::params::go_json_type(value),
                        if int32 { "int32" } else { "int64" },
                        kind = r.kind,
                        version = r.version,
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The range checks of kube-apiserver's validation for built-in kinds, added to `errs`.
pub fn validate(r: &Resource, obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = &obj["spec"];
    match (r.group, r.kind) {
        ("", "Pod") => pod_spec(spec, "spec", errs),
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") | ("", "ReplicationController") => {
            at_least(spec, "spec", &["minReadySeconds", "revisionHistoryLimit"], 0, errs);
            if r.kind == "Deployment" {
                at_least(spec, "spec", &["progressDeadlineSeconds"], 0, errs);
                if let (Some(deadline), Some(min_ready)) = (spec["progressDeadlineSeconds"].as_i64(), spec["minReadySeconds"].as_i64()) {
                    if deadline <= min_ready {
                        errs.push(FieldError::invalid(
                            "spec.progressDeadlineSeconds",
                            &json!(deadline),
                            "must be greater than minReadySeconds",
                        ));
                    }
                }
            }
            pod_spec(&spec["template"]["spec"], "spec.template.spec", errs);
        }
        ("batch", "Job") => job_spec(spec, "spec", errs),
        ("batch", "CronJob") => {
            at_least(spec, "spec", &["startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"], 0, errs);
            job_spec(&spec["jobTemplate"]["spec"], "spec.jobTemplate.spec", errs);
        }
        _ => {}
    }
}

/// A TokenRequest's `expirationSeconds`, as kube-apiserver bounds it (and a projected
/// ServiceAccount token's).
pub fn token_expiration(seconds: &Value, field: &str, errs: &mut Vec<FieldError>) {
    let Some(n) = seconds.as_i64() else { return };
    if n < 600 {
        errs.push(FieldError::invalid(field, seconds, "may not specify a duration less than 10 minutes"));
    } else if n > 1 << 32 {
        errs.push(FieldError::invalid(field, seconds, "may not specify a duration larger than 2^32 seconds"));
    }
}

fn job_spec(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    at_least(spec, path, &["activeDeadlineSeconds", "parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"], 0, errs);
    pod_spec(&spec["template"]["spec"], &format!("{path}.template.spec"), errs);
}

fn pod_spec(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(n) = spec["activeDeadlineSeconds"].as_i64() {
        if !(1..=i64::from(i32::MAX)).contains(&n) {
            errs.push(FieldError::invalid(
                &format!("{path}.activeDeadlineSeconds"),
                &json!(n),
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    for list in ["initContainers", "containers"] {
        for (i, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            let at = format!("{path}.{list}[{i}]");
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                let fields = ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"];
                at_least(&c[probe], &format!("{at}.{probe}"), &fields, 0, errs);
                at_least(&c[probe], &format!("{at}.{probe}"), &["terminationGracePeriodSeconds"], 1, errs);
            }
            for hook in ["preStop", "postStart"] {
                at_least(&c["lifecycle"][hook]["sleep"], &format!("{at}.lifecycle.{hook}.sleep"), &["seconds"], 0, errs);
            }
        }
    }
    for (i, v) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
        for (j, source) in v["projected"]["sources"].as_array().into_iter().flatten().enumerate() {
            let token = &source["serviceAccountToken"]["expirationSeconds"];
            let field = format!("{path}.volumes[{i}].projected.sources[{j}].serviceAccountToken.expirationSeconds");
            token_expiration(token, &field, errs);
        }
    }
}

/// Each of `fields` of `obj` that is set is at least `min` (kube's "must be greater than or
/// equal to 0" / "must be greater than 0").
fn at_least(obj: &Value, path: &str, fields: &[&str], min: i64, errs: &mut Vec<FieldError>) {
    for field in fields {
        if let Some(n) = obj[field].as_i64().filter(|n| *n < min) {
            let why = if min == 0 { "must be greater than or equal to 0" } else { "must be greater than 0" };
            errs.push(FieldError::invalid(&format!("{path}.{field}"), &json!(n), why));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(group: &str, plural: &str) -> &'static Resource {
        super::super::registry::lookup(group, "v1", plural).unwrap()
    }

    #[test]
    fn integers_must_fit_their_go_type() {
        let openapi = OpenApi::shared();
        let pods = lookup("", "pods");
        let pod = |probe: Value| json!({ "spec": { "containers": [{ "name": "c", "livenessProbe": probe }], "terminationGracePeriodSeconds": i64::MAX } });
        assert!(integers(openapi, pods, &pod(json!({ "periodSeconds": 10 }))).is_ok());
        for bad in [json!(1i64 << 31), json!(-(1i64 << 31) - 1), json!(1.5), json!(1e300), json!(u64::MAX), json!("10")] {
            let e = integers(openapi, pods, &pod(json!({ "periodSeconds": bad }))).unwrap_err();
            assert_eq!(e.code.as_u16(), 400);
            assert!(e.message.contains("spec.containers.livenessProbe.periodSeconds of type int32"), "{}", e.message);
        }
        let e = integers(openapi, pods, &json!({ "spec": { "terminationGracePeriodSeconds": u64::MAX } })).unwrap_err();
        assert!(e.message.contains("of type int64"), "{}", e.message);
        let deployments = lookup("apps", "deployments");
        assert!(integers(&openapi, deployments, &json!({ "spec": { "replicas": 1e10 } })).is_err());
        assert!(integers(
            &openapi,
            deployments,
            &json!({ "spec": { "replicas": 3, "strategy": { "rollingUpdate": { "maxSurge": "25%" } } } })
        )
        .is_ok());
    }

    #[test]
    fn durations_and_counts_are_range_checked_as_kube_does() {
        let check = |group: &str, plural: &str, obj: Value| {
            let mut errs = Vec::new();
            validate(lookup(group, plural), &obj, &mut errs);
            errs.into_iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>()
        };
        assert_eq!(
            check("", "pods", json!({ "spec": { "activeDeadlineSeconds": 0 } })),
            ["spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"]
        );
        let token = json!({ "spec": { "volumes": [{ "projected": { "sources": [{ "serviceAccountToken": { "expirationSeconds": i64::MAX } }] } }] } });
        assert!(check("", "pods", token)[0].ends_with("may not specify a duration larger than 2^32 seconds"));
        let job = json!({ "spec": { "activeDeadlineSeconds": -1, "ttlSecondsAfterFinished": -5, "template": { "spec": {} } } });
        assert_eq!(check("batch", "jobs", job).len(), 2);
        assert!(check("batch", "jobs", json!({ "spec": { "activeDeadlineSeconds": i64::MAX } })).is_empty(), "kube takes any int64");
        let cron = json!({ "spec": { "startingDeadlineSeconds": -1, "jobTemplate": { "spec": { "backoffLimit": -1 } } } });
        assert_eq!(
            check("batch", "cronjobs", cron),
            [
                "spec.startingDeadlineSeconds: Invalid value: -1: must be greater than or equal to 0",
                "spec.jobTemplate.spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0"
            ]
        );
        let deployment = json!({ "spec": { "minReadySeconds": 10, "progressDeadlineSeconds": 10 } });
        assert_eq!(
            check("apps", "deployments", deployment),
            ["spec.progressDeadlineSeconds: Invalid value: 10: must be greater than minReadySeconds"]
        );
        let probe = json!({ "spec": { "containers": [{ "readinessProbe": { "periodSeconds": -1 } }] } });
        assert_eq!(
            check("", "pods", probe),
            ["spec.containers[0].readinessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0"]
        );
    }
}
