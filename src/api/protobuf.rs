//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), as kubectl's typed
//! commands (`kubectl create configmap|secret|namespace|serviceaccount|service|role|rolebinding|
//! clusterrole|clusterrolebinding`, `kubectl auth can-i`; workloads in `protobuf_workloads`) send them: the `k8s\0`
//! envelope around a `runtime.Unknown`, decoded with k8s-pb and turned into the JSON the rest
//! of the API works on.

use base64::Engine;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::{json, Map, Value};

use super::registry::Resource;
use super::status::ApiError;

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

pub(super) fn set(obj: &mut Map<String, Value>, key: &str, value: Value) {
    // Protobuf has no "unset" for strings and collections: empty means absent.
    let empty = value.is_null()
        || value.as_str().is_some_and(str::is_empty)
        || value.as_object().is_some_and(Map::is_empty)
        || value.as_array().is_some_and(Vec::is_empty);
    if !empty {
        obj.insert(key.into(), value);
    }
}

pub(super) fn object_meta(m: Option<meta::ObjectMeta>) -> Value {
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

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(super) fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("the protobuf body could not be decoded: {e}"))
}

/// Decodes a protobuf body for `resource` into its JSON form.
pub fn decode(resource: &Resource, body: &[u8]) -> Result<Value, ApiError> {
    let inner = body.strip_prefix(MAGIC).ok_or_else(|| bad("missing the k8s envelope"))?;
    let unknown = Unknown::decode(inner).map_err(bad)?;
    let kind = unknown.type_meta.as_ref().and_then(|t| t.kind.clone()).unwrap_or_default();
    if kind != resource.kind {
        return Err(ApiError::bad_request(format!("the body is a {kind:?}, the URL names {:?}", resource.plural)));
    }
    let raw = unknown.raw.unwrap_or_default();
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!(resource.api_version()));
    obj.insert("kind".into(), json!(resource.kind));
    match resource.plural {
        "configmaps" => {
            let cm = core::ConfigMap::decode(raw.as_slice()).map_err(bad)?;
            obj.insert("metadata".into(), object_meta(cm.metadata));
            set(&mut obj, "data", json!(cm.data));
            let binary: Map<String, Value> = cm.binary_data.iter().map(|(k, v)| (k.clone(), json!(b64(v)))).collect();
            set(&mut obj, "binaryData", Value::Object(binary));
            set(&mut obj, "immutable", json!(cm.immutable));
        }
        "secrets" => {
            let s = core::Secret::decode(raw.as_slice()).map_err(bad)?;
            obj.insert("metadata".into(), object_meta(s.metadata));
            let data: Map<String, Value> = s.data.iter().map(|(k, v)| (k.clone(), json!(b64(v)))).collect();
            set(&mut obj, "data", Value::Object(data));
            set(&mut obj, "stringData", json!(s.string_data));
            set(&mut obj, "type", json!(s.r#type));
            set(&mut obj, "immutable", json!(s.immutable));
        }
        "namespaces" => {
            let ns = core::Namespace::decode(raw.as_slice()).map_err(bad)?;
            obj.insert("metadata".into(), object_meta(ns.metadata));
            set(&mut obj, "spec", json!({ "finalizers": ns.spec.map(|s| s.finalizers).unwrap_or_default() }));
        }
        "serviceaccounts" => {
            let sa = core::ServiceAccount::decode(raw.as_slice()).map_err(bad)?;
            obj.insert("metadata".into(), object_meta(sa.metadata));
            let secrets: Vec<Value> = sa.secrets.into_iter().map(|r| json!({ "name": r.name, "namespace": r.namespace })).collect();
            set(&mut obj, "secrets", json!(secrets));
            let pulls: Vec<Value> = sa.image_pull_secrets.into_iter().map(|r| json!({ "name": r.name })).collect();
            set(&mut obj, "imagePullSecrets", json!(pulls));
            set(&mut obj, "automountServiceAccountToken", json!(sa.automount_service_account_token));
        }
        "services" => {
            let svc = core::Service::decode(raw.as_slice()).map_err(bad)?;
            obj.insert("metadata".into(), object_meta(svc.metadata));
            let spec = svc.spec.unwrap_or_default();
            let ports: Vec<Value> = spec
                .ports
                .into_iter()
                .map(|p| {
                    let mut port = Map::new();
                    set(&mut port, "name", json!(p.name));
                    set(&mut port, "protocol", json!(p.protocol));
                    set(&mut port, "port", json!(p.port));
                    let target = p.target_port.map(|t| if t.r#type == Some(1) { json!(t.str_val) } else { json!(t.int_val) });
                    set(&mut port, "targetPort", target.unwrap_or(Value::Null));
                    set(&mut port, "nodePort", json!(p.node_port.filter(|n| *n != 0)));
                    Value::Object(port)
                })
                .collect();
            let mut out = Map::new();
            set(&mut out, "type", json!(spec.r#type));
            set(&mut out, "ports", json!(ports));
            set(&mut out, "selector", json!(spec.selector));
            set(&mut out, "clusterIP", json!(spec.cluster_ip));
            set(&mut out, "externalName", json!(spec.external_name));
            set(&mut out, "externalIPs", json!(spec.external_ips));
            set(&mut out, "sessionAffinity", json!(spec.session_affinity));
            obj.insert("spec".into(), Value::Object(out));
        }
        "roles" | "clusterroles" => {
            let (metadata, rules) = if resource.plural == "roles" {
                let r = rbac::Role::decode(raw.as_slice()).map_err(bad)?;
                (r.metadata, r.rules)
            } else {
                let r = rbac::ClusterRole::decode(raw.as_slice()).map_err(bad)?;
                (r.metadata, r.rules)
            };
            obj.insert("metadata".into(), object_meta(metadata));
            let rules: Vec<Value> = rules
                .into_iter()
                .map(|r| {
                    let mut rule = Map::new();
                    set(&mut rule, "verbs", json!(r.verbs));
                    set(&mut rule, "apiGroups", json!(r.api_groups));
                    set(&mut rule, "resources", json!(r.resources));
                    set(&mut rule, "resourceNames", json!(r.resource_names));
                    set(&mut rule, "nonResourceURLs", json!(r.non_resource_ur_ls));
                    Value::Object(rule)
                })
                .collect();
            obj.insert("rules".into(), json!(rules));
        }
        "rolebindings" | "clusterrolebindings" => {
            let (metadata, subjects, role_ref) = if resource.plural == "rolebindings" {
                let b = rbac::RoleBinding::decode(raw.as_slice()).map_err(bad)?;
                (b.metadata, b.subjects, b.role_ref)
            } else {
                let b = rbac::ClusterRoleBinding::decode(raw.as_slice()).map_err(bad)?;
                (b.metadata, b.subjects, b.role_ref)
            };
            obj.insert("metadata".into(), object_meta(metadata));
            let subjects: Vec<Value> = subjects
                .into_iter()
                .map(|x| {
                    let mut subject = Map::new();
                    for (k, v) in [("kind", x.kind), ("apiGroup", x.api_group), ("name", x.name), ("namespace", x.namespace)] {
                        set(&mut subject, k, json!(v));
                    }
                    Value::Object(subject)
                })
                .collect();
            set(&mut obj, "subjects", json!(subjects));
            let r = role_ref.unwrap_or_default();
            obj.insert("roleRef".into(), json!({ "apiGroup": r.api_group, "kind": r.kind, "name": r.name }));
        }
        "selfsubjectaccessreviews" => {
            let review = k8s_pb::api::authorization::v1::SelfSubjectAccessReview::decode(raw.as_slice()).map_err(bad)?;
            let spec = review.spec.unwrap_or_default();
            let mut out = Map::new();
            if let Some(a) = spec.resource_attributes {
                let mut attrs = Map::new();
                for (k, v) in [
                    ("namespace", a.namespace),
                    ("verb", a.verb),
                    ("group", a.group),
                    ("version", a.version),
                    ("resource", a.resource),
                    ("subresource", a.subresource),
                    ("name", a.name),
                ] {
                    set(&mut attrs, k, json!(v));
                }
                out.insert("resourceAttributes".into(), Value::Object(attrs));
            }
            if let Some(a) = spec.non_resource_attributes {
                out.insert("nonResourceAttributes".into(), json!({ "path": a.path, "verb": a.verb }));
            }
            obj.insert("metadata".into(), object_meta(review.metadata));
            obj.insert("spec".into(), Value::Object(out));
        }
        plural => match super::protobuf_workloads::decode(plural, &raw, &mut obj) {
            Some(result) => result?,
            None => return Err(ApiError::unsupported_media_type(CONTENT_TYPE)),
        },
    }
    Ok(Value::Object(obj))
}

/// Decodes a protobuf TokenRequest (`kubectl create token`) into its JSON form.
pub fn decode_token_request(body: &[u8]) -> Result<Value, ApiError> {
    let inner = body.strip_prefix(MAGIC).ok_or_else(|| bad("missing the k8s envelope"))?;
    let unknown = Unknown::decode(inner).map_err(bad)?;
    let request = k8s_pb::api::authentication::v1::TokenRequest::decode(unknown.raw.unwrap_or_default().as_slice()).map_err(bad)?;
    let spec = request.spec.unwrap_or_default();
    Ok(json!({ "spec": { "audiences": spec.audiences, "expirationSeconds": spec.expiration_seconds } }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_pb::apimachinery::pkg::runtime::TypeMeta;

    fn envelope(kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(TypeMeta { api_version: Some("v1".into()), kind: Some(kind.into()) }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        [MAGIC.to_vec(), unknown.encode_to_vec()].concat()
    }

    #[test]
    fn configmaps_and_secrets_decode_to_json() {
        let registry = |p| super::super::registry::lookup("", "v1", p).unwrap();
        let cm = core::ConfigMap {
            metadata: Some(meta::ObjectMeta { name: Some("c".into()), ..Default::default() }),
            data: [("k".to_string(), "v".to_string())].into(),
            ..Default::default()
        };
        let json = decode(registry("configmaps"), &envelope("ConfigMap", cm.encode_to_vec())).unwrap();
        assert_eq!(json, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}));
        let secret = core::Secret { data: [("p".to_string(), b"pw".to_vec())].into(), r#type: Some("Opaque".into()), ..Default::default() };
        let json = decode(registry("secrets"), &envelope("Secret", secret.encode_to_vec())).unwrap();
        assert_eq!(json["data"]["p"], "cHc=");
        assert!(decode(registry("secrets"), &envelope("ConfigMap", vec![])).is_err(), "kind must match the URL");
        assert!(decode(registry("secrets"), b"not protobuf").is_err());
    }
}
