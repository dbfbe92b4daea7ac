//! Structural schemas of CustomResourceDefinitions (openAPIV3Schema): pruning of unknown
//! fields, defaulting, and validation of types, required fields, enums, bounds and lengths
//! with kube-apiserver's field paths and wording.

use serde_json::{Map, Value};

use crate::api::status::FieldError;

/// Removes fields the schema does not declare (unless it preserves unknown fields) and
/// returns their paths.
pub fn prune(schema: &Value, value: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    prune_at(schema, value, "", &mut unknown);
    unknown
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn prune_at(schema: &Value, value: &mut Value, path: &str, unknown: &mut Vec<String>) {
    if schema["x-kubernetes-preserve-unknown-fields"] == true && schema.get("properties").is_none() {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let mut drop = Vec::new();
            for (k, v) in map.iter_mut() {
                // apiVersion, kind and metadata of the root are the API server's business.
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                match (props.and_then(|p| p.get(k)), additional) {
                    (Some(sub), _) => prune_at(sub, v, &join(path, k), unknown),
                    (None, Some(sub)) => prune_at(sub, v, &join(path, k), unknown),
                    (None, None) if schema["x-kubernetes-preserve-unknown-fields"] == true => {}
                    (None, None) => drop.push(k.clone()),
                }
            }
            for k in drop {
                unknown.push(join(path, &k));
                map.remove(&k);
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    prune_at(sub, v, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

/// Fills in `default`s of absent fields, recursively.
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                for (k, sub) in props {
                    if !map.contains_key(k) {
                        if let Some(d) = sub.get("default") {
                            map.insert(k.clone(), d.clone());
                        }
                    }
                    if let Some(v) = map.get_mut(k) {
                        apply_defaults(sub, v);
                    }
                }
            }
            if let Some(sub) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for v in map.values_mut() {
                    apply_defaults(sub, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                items.iter_mut().for_each(|v| apply_defaults(sub, v));
            }
        }
        _ => {}
    }
}

/// Validates `value` against `schema`; errors carry field paths as kube-apiserver writes them.
pub fn validate(schema: &Value, value: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    validate_at(schema, value, "", &mut errors);
    errors
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(expected: &str, v: &Value, schema: &Value) -> bool {
    if schema["x-kubernetes-int-or-string"] == true {
        return matches!(type_name(v), "integer" | "string");
    }
    match expected {
        "number" => matches!(type_name(v), "integer" | "number"),
        other => type_name(v) == other,
    }
}

fn validate_at(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let shown = if path.is_empty() { "<root>" } else { path };
    if value.is_null() {
        if schema["nullable"] != true && schema.get("type").is_some() && !path.is_empty() {
            errors.push(FieldError::invalid(
                shown,
                value,
                &format!("{shown} in body must be of type {}: \"null\"", schema["type"].as_str().unwrap_or("")),
            ));
        }
        return;
    }
    if let Some(expected) = schema["type"].as_str() {
        if !type_ok(expected, value, schema) {
            errors.push(FieldError::invalid(
                shown,
                value,
                &format!("{shown} in body must be of type {expected}: \"{}\"", type_name(value)),
            ));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            errors.push(FieldError::not_supported_values(shown, value, &list));
        }
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema["minimum"].as_f64().filter(|m| n < *m) {
            errors.push(FieldError::invalid(shown, value, &format!("{shown} in body should be greater than or equal to {min}")));
        }
        if let Some(max) = schema["maximum"].as_f64().filter(|m| n > *m) {
            errors.push(FieldError::invalid(shown, value, &format!("{shown} in body should be less than or equal to {max}")));
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema["minLength"].as_u64().filter(|m| len < *m) {
            errors.push(FieldError::invalid(shown, value, &format!("{shown} in body should be at least {min} chars long")));
        }
        if let Some(max) = schema["maxLength"].as_u64().filter(|m| len > *m) {
            errors.push(FieldError::too_long(shown, max));
        }
    }
    match value {
        Value::Object(map) => validate_object(schema, map, path, errors),
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(min) = schema["minItems"].as_u64().filter(|m| n < *m) {
                errors.push(FieldError::invalid(shown, value, &format!("{shown} in body should have at least {min} items")));
            }
            if let Some(max) = schema["maxItems"].as_u64().filter(|m| n > *m) {
                errors.push(FieldError::too_many(shown, n, max));
            }
            if let Some(sub) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    validate_at(sub, v, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

fn validate_object(schema: &Value, map: &Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) {
    for r in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if !map.contains_key(r) {
            errors.push(FieldError::required(&join(path, r)));
        }
    }
    let props = schema["properties"].as_object();
    for (k, v) in map {
        if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(sub) = props.and_then(|p| p.get(k)) {
            validate_at(sub, v, &join(path, k), errors);
        } else if let Some(sub) = schema.get("additionalProperties").filter(|a| a.is_object()) {
            validate_at(sub, v, &join(path, k), errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({ "type": "object", "properties": {
            "spec": { "type": "object", "required": ["size"], "properties": {
                "size": { "type": "integer", "minimum": 1, "maximum": 10 },
                "mode": { "type": "string", "enum": ["fast", "safe"], "default": "safe" },
                "tags": { "type": "array", "items": { "type": "string" } },
                "extra": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
            } },
            "status": { "type": "object", "properties": { "ready": { "type": "boolean" } } },
        } })
    }

    #[test]
    fn unknown_fields_are_pruned_except_where_preserved() {
        let mut v = json!({ "apiVersion": "x/v1", "kind": "K", "metadata": { "name": "a" },
            "spec": { "size": 1, "bogus": true, "extra": { "anything": 1 } }, "top": 1 });
        let mut unknown = prune(&schema(), &mut v);
        unknown.sort();
        assert_eq!(unknown, ["spec.bogus", "top"]);
        assert_eq!(v["spec"]["extra"]["anything"], 1);
    }

    #[test]
    fn defaults_fill_absent_fields() {
        let mut v = json!({ "spec": { "size": 2 } });
        apply_defaults(&schema(), &mut v);
        assert_eq!(v["spec"]["mode"], "safe");
    }

    #[test]
    fn validation_reports_field_paths() {
        let errs = validate(&schema(), &json!({ "spec": { "size": "big", "mode": "slow", "tags": [1] } }));
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["spec.mode", "spec.size", "spec.tags[0]"]);
        assert!(errs[1].message.contains("spec.size in body must be of type integer: \"string\""), "{}", errs[1].message);
        let errs = validate(&schema(), &json!({ "spec": { "size": 11 } }));
        assert_eq!(errs.len(), 1);
        assert_eq!(validate(&schema(), &json!({ "spec": {} }))[0].field, "spec.size");
    }
}
