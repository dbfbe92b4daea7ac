//! What the protobuf decoders share: ObjectMeta, label selectors, int-or-string values, and
//! the rule that protobuf's empty values mean "absent".

use base64::Engine;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Map, Value};

use crate::api::status::ApiError;

pub fn set(obj: &mut Map<String, Value>, key: &str, value: Value) {
    // Protobuf has no "unset" for strings and collections: empty means absent.
    let empty = value.is_null()
        || value.as_str().is_some_and(str::is_empty)
        || value.as_object().is_some_and(Map::is_empty)
        || value.as_array().is_some_and(Vec::is_empty);
    if !empty {
        obj.insert(key.into(), value);
    }
}

pub fn object_meta(m: Option<meta::ObjectMeta>) -> Value {
    let m = m.unwrap_or_default();
    let mut out = Map::new();
    set(&mut out, "name", json!(m.name));
    set(&mut out, "generateName", json!(m.generate_name));
    set(&mut out, "namespace", json!(m.namespace));
    set(&mut out, "resourceVersion", json!(m.resource_version));
    set(&mut out, "labels", json!(m.labels));
    set(&mut out, "annotations", json!(m.annotations));
    set(&mut out, "finalizers", json!(m.finalizers));
    let owners: Vec<Value> = m
        .owner_references
        .into_iter()
        .map(|o| {
            let mut r = Map::new();
            set(&mut r, "apiVersion", json!(o.api_version));
            set(&mut r, "kind", json!(o.kind));
            set(&mut r, "name", json!(o.name));
            set(&mut r, "uid", json!(o.uid));
            set(&mut r, "controller", json!(o.controller));
            set(&mut r, "blockOwnerDeletion", json!(o.block_owner_deletion));
            Value::Object(r)
        })
        .collect();
    set(&mut out, "ownerReferences", json!(owners));
    Value::Object(out)
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("the protobuf body could not be decoded: {e}"))
}

pub fn int_or_string(v: Option<IntOrString>) -> Value {
    match v {
        Some(v) if v.r#type == Some(1) => json!(v.str_val),
        Some(v) => json!(v.int_val),
        None => Value::Null,
    }
}

pub fn label_selector(s: Option<meta::LabelSelector>) -> Value {
    let Some(s) = s else { return Value::Null };
    let mut out = Map::new();
    set(&mut out, "matchLabels", json!(s.match_labels));
    let expressions: Vec<Value> =
        s.match_expressions.into_iter().map(|e| json!({ "key": e.key, "operator": e.operator, "values": e.values })).collect();
    set(&mut out, "matchExpressions", json!(expressions));
    Value::Object(out)
}
