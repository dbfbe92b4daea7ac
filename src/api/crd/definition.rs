//! What a CustomResourceDefinition defines beyond a built-in resource: the schema, printer
//! columns and scale paths of a served version, the status the API server gives a new CRD and
//! the problems that make one unservable. A leaf of the API: the registry, admission and
//! tables use it, and it uses none of them.

use serde_json::{json, Value};

/// What a custom resource has beyond a built-in one.
#[derive(Debug)]
pub struct Custom {
    /// The version's openAPIV3Schema (structural).
    pub schema: Value,
    /// additionalPrinterColumns: (name, type, format, description, priority, jsonPath).
    pub columns: Vec<PrinterColumn>,
    /// The scale subresource's paths, if it has one.
    pub scale: Option<ScalePaths>,
}

#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    pub kind: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

#[derive(Debug, Clone)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// What the API server writes into a new CRD's status: its names accepted, established, and
/// the storage version recorded.
pub fn initial_status(crd: &Value) -> Value {
    let now = crate::k8s::time::now_rfc3339();
    let storage: Vec<Value> =
        crd["spec"]["versions"].as_array().into_iter().flatten().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect();
    let condition = |kind: &str, reason: &str, message: &str| json!({ "type": kind, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message });
    json!({
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": crd["spec"]["names"],
        "storedVersions": storage,
    })
}

/// Problems of a CRD that make it unservable, as (field, message).
pub fn problems(crd: &Value) -> Vec<(String, String)> {
    let spec = &crd["spec"];
    let mut out = Vec::new();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    for field in ["group", "names.plural", "names.kind"] {
        let v = field.split('.').fold(spec, |v, k| &v[k]);
        if v.as_str().is_none_or(str::is_empty) {
            out.push((format!("spec.{field}"), "Required value".into()));
        }
    }
    let expected = format!("{}.{}", text(&spec["names"]["plural"]), text(&spec["group"]));
    if crd["metadata"]["name"] != expected.as_str() {
        out.push((
            "metadata.name".into(),
            format!("Invalid value: {}: must be spec.names.plural+\".\"+spec.group", crd["metadata"]["name"]),
        ));
    }
    if !matches!(spec["scope"].as_str(), Some("Namespaced" | "Cluster")) {
        out.push(("spec.scope".into(), "Unsupported value: supported values: \"Cluster\", \"Namespaced\"".into()));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.iter().filter(|v| v["storage"] == true).count() != 1 {
        out.push(("spec.versions".into(), "Invalid value: must have exactly one version marked as storage version".into()));
    }
    for (i, v) in versions.iter().enumerate() {
        if v["schema"]["openAPIV3Schema"].get("type").is_none() {
            out.push((format!("spec.versions[{i}].schema.openAPIV3Schema.type"), "Required value: must not be empty at the root".into()));
        }
    }
    out
}

/// Reads a value by a kubectl-style JSONPath as printer columns use them: `.a.b`, `.a[0].b`,
/// and `.a[?(@.type=="Ready")].status` filters.
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    let mut rest = path.trim().trim_start_matches('{').trim_end_matches('}').trim_start_matches('.');
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inner = &after[..end];
            cur = if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (field, value) = filter.split_once("==")?;
                let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
                cur.as_array()?.iter().find(|item| item[field.trim()].as_str() == Some(value))?
            } else {
                cur.get(inner.parse::<usize>().ok()?)?
            };
            rest = after[end + 1..].trim_start_matches('.');
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            cur = cur.get(&rest[..end])?;
            rest = rest[end..].trim_start_matches('.');
        }
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_read_fields_indexes_and_filters() {
        let obj = json!({ "spec": { "size": 3 }, "status": { "conditions": [{ "type": "A", "status": "False" }, { "type": "Ready", "status": "True" }] } });
        assert_eq!(json_path(&obj, ".spec.size"), Some(&json!(3)));
        assert_eq!(json_path(&obj, ".status.conditions[0].type"), Some(&json!("A")));
        assert_eq!(json_path(&obj, ".status.conditions[?(@.type==\"Ready\")].status"), Some(&json!("True")));
        assert_eq!(json_path(&obj, ".spec.missing"), None);
    }
}
