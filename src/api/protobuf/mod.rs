//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), as kubectl's typed
//! commands send them: the `k8s\0` envelope around a `runtime.Unknown`, decoded with k8s-pb and
//! turned into the JSON the rest of the API works on. The kinds live in [`core`] (`kubectl
//! create configmap|secret|namespace|serviceaccount|service|role|rolebinding|…`, `kubectl auth
//! can-i`), [`workloads`] (`kubectl create deployment|job|cronjob`) and [`autoscaling`]
//! (`kubectl autoscale`); [`meta`] holds what they share. Bodies are at most the API's 3 MiB and prost refuses messages nested more than
//! 100 levels deep (its recursion limit, kept on), so no body can exhaust the stack.

mod autoscaling;
mod core;
mod meta;
mod workloads;

use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::{json, Map, Value};

use self::meta::bad;
use super::registry::Resource;
use super::status::ApiError;

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

/// The `runtime.Unknown` inside a body's `k8s\0` envelope.
fn envelope(body: &[u8]) -> Result<Unknown, ApiError> {
    let inner = body.strip_prefix(MAGIC).ok_or_else(|| bad("missing the k8s envelope"))?;
    Unknown::decode(inner).map_err(bad)
}

/// Decodes a protobuf body for `resource` into its JSON form.
pub fn decode(resource: &Resource, body: &[u8]) -> Result<Value, ApiError> {
    let unknown = envelope(body)?;
    let kind = unknown.type_meta.as_ref().and_then(|t| t.kind.clone()).unwrap_or_default();
    if kind != resource.kind {
        return Err(ApiError::bad_request(format!("the body is a {kind:?}, the URL names {:?}", resource.plural)));
    }
    let raw = unknown.raw.unwrap_or_default();
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!(resource.api_version()));
    obj.insert("kind".into(), json!(resource.kind));
    let plural = resource.plural;
    let decoded = core::decode(plural, &raw, &mut obj)
        .or_else(|| workloads::decode(plural, &raw, &mut obj))
        .or_else(|| autoscaling::decode(plural, resource.version, &raw, &mut obj));
    match decoded {
        Some(result) => result?,
        None => return Err(ApiError::unsupported_media_type(CONTENT_TYPE)),
    }
    Ok(Value::Object(obj))
}

/// Decodes a protobuf TokenRequest (`kubectl create token`) into its JSON form.
pub fn decode_token_request(body: &[u8]) -> Result<Value, ApiError> {
    let unknown = envelope(body)?;
    let request = k8s_pb::api::authentication::v1::TokenRequest::decode(unknown.raw.unwrap_or_default().as_slice()).map_err(bad)?;
    let spec = request.spec.unwrap_or_default();
    Ok(json!({ "spec": { "audiences": spec.audiences, "expirationSeconds": spec.expiration_seconds } }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
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
        let registry = |p| crate::api::registry::lookup("", "v1", p).unwrap();
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

    #[test]
    fn deeply_nested_bodies_are_refused_not_recursed_into() {
        let registry = |p| crate::api::registry::lookup("", "v1", p).unwrap();
        // A million nested groups of an unknown field (tag 99, wire type 3: start group).
        let groups = [0x9b_u8, 0x06].repeat(1 << 20);
        let e = decode(registry("configmaps"), &envelope("ConfigMap", groups)).unwrap_err();
        assert_eq!(e.code.as_u16(), 400, "{}", e.message);
    }
}
