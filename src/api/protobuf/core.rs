//! Protobuf bodies of the core and RBAC kinds kubectl's typed commands send: ConfigMap,
//! Secret, Namespace, ServiceAccount, Service, (Cluster)Role, (Cluster)RoleBinding and
//! SelfSubjectAccessReview, turned into JSON.

use k8s_pb::api::core::v1 as core;
use k8s_pb::api::rbac::v1 as rbac;
use prost::Message;
use serde_json::{json, Map, Value};

use super::meta::{b64, bad, int_or_string, object_meta, set};
use crate::api::status::ApiError;

/// Decodes the protobuf `raw` of one of these kinds into `obj` (which already has apiVersion
/// and kind); `None` for other kinds.
pub fn decode(plural: &str, raw: &[u8], obj: &mut Map<String, Value>) -> Option<Result<(), ApiError>> {
    Some(match plural {
        "configmaps" => config_map(raw, obj),
        "secrets" => secret(raw, obj),
        "namespaces" => namespace(raw, obj),
        "serviceaccounts" => service_account(raw, obj),
        "services" => service(raw, obj),
        "roles" | "clusterroles" => role(plural == "roles", raw, obj),
        "rolebindings" | "clusterrolebindings" => role_binding(plural == "rolebindings", raw, obj),
        "selfsubjectaccessreviews" => self_subject_access_review(raw, obj),
        _ => return None,
    })
}

fn config_map(raw: &[u8], obj: &mut Map<String, Value>) -> Result<(), ApiError> {
    let cm = core::ConfigMap::decode(raw).map_err(bad)?;
    obj.insert("metadata".into(), object_meta(cm.metadata));
    set(obj, "data", json!(cm.data));
    let binary: Map<String, Value> = cm.binary_data.iter().map(|(k, v)| (k.clone(), json!(b64(v)))).collect();
    set(obj, "binaryData", Value::Object(binary));
    set(obj, "immutable", json!(cm.immutable));
    Ok(())
}

fn secret(raw: &[u8], obj: &mut Map<String, Value>) -> Result<(), ApiError> {
    let s = core::Secret::decode(raw).map_err(bad)?;
    obj.insert("metadata".into(), object_meta(s.metadata));
    let data: Map<String, Value> = s.data.iter().map(|(k, v)| (k.clone(), json!(b64(v)))).collect();
    set(obj, "data", Value::Object(data));
    set(obj, "stringData", json!(s.string_data));
    set(obj, "type", json!(s.r#type));
    set(obj, "immutable", json!(s.immutable));
    Ok(())
}

fn namespace(raw: &[u8], obj: &mut Map<String, Value>) -> Result<(), ApiError> {
    let ns = core::Namespace::decode(raw).map_err(bad)?;
    obj.insert("metadata".into(), object_meta(ns.metadata));
    set(obj, "spec", json!({ "finalizers": ns.spec.map(|s| s.finalizers).unwrap_or_default() }));
    Ok(())
}

fn service_account(raw: &[u8], obj: &mut Map<String, Value>) -> Result<(), ApiError> {
    let sa = core::ServiceAccount::decode(raw).map_err(bad)?;
    obj.insert("metadata".into(), object_meta(sa.metadata));
    let secrets: Vec<Value> = sa.secrets.into_iter().map(|r| json!({ "name": r.name, "namespace": r.namespace })).collect();
    set(obj, "secrets", json!(secrets));
    let pulls: Vec<Value> = sa.image_pull_secrets.into_iter().map(|r| json!({ "name": r.name })).collect();
    set(obj, "imagePullSecrets", json!(pulls));
    set(obj, "automountServiceAccountToken", json!(sa.automount_service_account_token));
    Ok(())
}

fn service(raw: &[u8], obj: &mut Map<String, Value>) -> Result<(), ApiError> {
    let svc = core::Service::decode(raw).map_err(bad)?;
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
            set(&mut port, "targetPort", int_or_string(p.target_port));
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
    Ok(())
}

fn role(namespaced: bool, raw: &[u8], obj: &mut Map<String, Value>) -> Result<(), ApiError> {
    let (metadata, rules) = if namespaced {
        let r = rbac::Role::decode(raw).map_err(bad)?;
        (r.metadata, r.rules)
    } else {
        let r = rbac::ClusterRole::decode(raw).map_err(bad)?;
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
    Ok(())
}

fn role_binding(namespaced: bool, raw: &[u8], obj: &mut Map<String, Value>) -> Result<(), ApiError> {
    let (metadata, subjects, role_ref) = if namespaced {
        let b = rbac::RoleBinding::decode(raw).map_err(bad)?;
        (b.metadata, b.subjects, b.role_ref)
    } else {
        let b = rbac::ClusterRoleBinding::decode(raw).map_err(bad)?;
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
    set(obj, "subjects", json!(subjects));
    let r = role_ref.unwrap_or_default();
    obj.insert("roleRef".into(), json!({ "apiGroup": r.api_group, "kind": r.kind, "name": r.name }));
    Ok(())
}

fn self_subject_access_review(raw: &[u8], obj: &mut Map<String, Value>) -> Result<(), ApiError> {
    let review = k8s_pb::api::authorization::v1::SelfSubjectAccessReview::decode(raw).map_err(bad)?;
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
    Ok(())
}
