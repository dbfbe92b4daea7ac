//! Quantities in built-in objects, stored in kube-apiserver's canonical form (`cpu: 2` →
//! `"2"`, `1000m` → `"1"`, `0.5Gi` → `"512Mi"`): kube decodes every Quantity field into its
//! fixed-point type and writes it back canonical, so clients compare and print what it would.
//! A malformed quantity is the decoder's 400.

use serde_json::Value;

use super::openapi::OpenApi;
use super::registry::Resource;
use super::status::ApiError;
use crate::k8s::quantity::canonical;

const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// Rewrites every Quantity of `obj` (found through the resource's OpenAPI schema) canonical.
pub fn canonicalise(openapi: &OpenApi, r: &Resource, obj: &mut Value) -> Result<(), ApiError> {
    let Some(root) = openapi.schema_of(r) else { return Ok(()) };
    walk(openapi, root, obj).map_err(|()| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            kind = r.kind,
            version = r.version,
        ))
    })
}

fn is_quantity(schema: &Value) -> bool {
    let reference = |s: &Value| s.get("$ref").and_then(Value::as_str).is_some_and(|r| r.ends_with(QUANTITY));
    reference(schema) || schema.get("allOf").and_then(Value::as_array).is_some_and(|all| all.iter().any(reference))
}

/// Depth follows the object's, which the body decoders bound (128 levels).
fn walk(openapi: &OpenApi, schema: &Value, value: &mut Value) -> Result<(), ()> {
    if is_quantity(schema) {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Ok(()),
        };
        *value = Value::String(canonical(&text).ok_or(())?);
        return Ok(());
    }
    let schema = openapi.resolve(schema);
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|s| s.is_object());
            for (k, v) in map.iter_mut() {
                if let Some(sub) = props.and_then(|p| p.get(k)).or(extra) {
                    walk(openapi, sub, v)?;
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                items.iter_mut().try_for_each(|v| walk(openapi, sub, v))?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_and_quota_quantities_come_out_canonical() {
        let openapi = OpenApi::shared();
        let pods = super::super::registry::lookup("", "v1", "pods").unwrap();
        let mut pod = json!({ "spec": {
            "containers": [{ "name": "c", "resources": { "limits": { "cpu": 2, "memory": "0.5Gi" }, "requests": { "cpu": "1000m" } } }],
            "overhead": { "cpu": 0.25 },
            "volumes": [{ "name": "v", "emptyDir": { "sizeLimit": "1000Mi" } }]
        } });
        canonicalise(openapi, pods, &mut pod).unwrap();
        assert_eq!(
            pod["spec"]["containers"][0]["resources"],
            json!({ "limits": { "cpu": "2", "memory": "512Mi" }, "requests": { "cpu": "1" } })
        );
        assert_eq!(pod["spec"]["overhead"]["cpu"], "250m");
        assert_eq!(pod["spec"]["volumes"][0]["emptyDir"]["sizeLimit"], "1000Mi");
        let quotas = super::super::registry::lookup("", "v1", "resourcequotas").unwrap();
        let mut quota = json!({ "spec": { "hard": { "pods": 10, "requests.memory": "1024Mi" } } });
        canonicalise(openapi, quotas, &mut quota).unwrap();
        assert_eq!(quota["spec"]["hard"], json!({ "pods": "10", "requests.memory": "1Gi" }));
        let mut bad = json!({ "spec": { "hard": { "pods": "ten" } } });
        assert_eq!(canonicalise(openapi, quotas, &mut bad).unwrap_err().code, 400);
    }
}
