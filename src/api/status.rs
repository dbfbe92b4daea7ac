//! Kubernetes `Status` errors, written exactly the way kube-apiserver writes them, and the one
//! place where store errors become HTTP answers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::store::StoreError;

/// An API error: HTTP code, Kubernetes reason, message and optional details.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: StatusCode,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into(), details: None }
    }

    fn with_details(mut self, group: &str, kind: &str, name: &str) -> Self {
        let mut d = json!({ "kind": kind });
        if !name.is_empty() {
            d["name"] = json!(name);
        }
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        self.details = Some(d);
        self
    }

    /// `<plural>[.<group>] "<name>" not found`.
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", format!("{} \"{name}\" not found", qualified(group, plural)))
            .with_details(group, plural, name)
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        Self::new(StatusCode::CONFLICT, "AlreadyExists", format!("{} \"{name}\" already exists", qualified(group, plural)))
            .with_details(group, plural, name)
    }

    pub fn conflict(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", qualified(group, plural)),
        )
        .with_details(group, plural, name)
    }

    /// 409 with kube-apiserver's wording: `Operation cannot be fulfilled on <plural> "<name>": <why>`.
    pub fn conflict_message(group: &str, plural: &str, name: &str, why: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{name}\": {why}", qualified(group, plural)),
        )
        .with_details(group, plural, name)
    }

    /// 429, as an eviction blocked by a disruption budget is answered.
    pub fn too_many_requests(message: &str) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message);
        e.details = Some(json!({ "causes": [{ "reason": "DisruptionBudget", "message": message }] }));
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 422: `<Kind> "<name>" is invalid: <field>: <reason>`.
    pub fn invalid(group: &str, kind: &str, name: &str, field: &str, reason: &str) -> Self {
        let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", format!("{kind} \"{name}\" is invalid: {field}: {reason}"))
            .with_details(group, kind, name);
        if let Some(d) = e.details.as_mut() {
            d["causes"] = json!([{ "reason": "FieldValueInvalid", "message": reason, "field": field }]);
        }
        e
    }

    /// 422 with one cause per field error, worded as kube-apiserver words them:
    /// `Deployment.apps "web" is invalid: [spec.replicas: Invalid value: -1: ..., spec.selector: Required value]`.
    pub fn invalid_fields(group: &str, kind: &str, name: &str, errors: Vec<FieldError>) -> Self {
        let texts: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
        let summary = if texts.len() == 1 { texts[0].clone() } else { format!("[{}]", texts.join(", ")) };
        let qualified_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", format!("{qualified_kind} \"{name}\" is invalid: {summary}"))
            .with_details(group, kind, name);
        if let Some(d) = e.details.as_mut() {
            d["causes"] = errors.iter().map(|e| json!({ "reason": e.reason, "message": e.message, "field": e.field })).collect();
        }
        e
    }

    /// 403 for a create in a namespace being deleted.
    pub fn namespace_terminating(namespace: &str) -> Self {
        let mut e = Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("unable to create new content in namespace {namespace} because it is being terminated"),
        );
        e.details = Some(json!({ "name": namespace, "kind": "namespaces", "causes": [{
            "reason": "NamespaceTerminating", "message": format!("namespace {namespace} is being terminated"), "field": "metadata.namespace" }] }));
        e
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }

    /// 403 as kube-apiserver's `NewForbidden`: `<plural>[.<group>] ["<name>" ]is forbidden: <why>`.
    pub fn forbidden(group: &str, plural: &str, name: Option<&str>, why: &str) -> Self {
        let message = match name {
            Some(name) => format!("{} \"{name}\" is forbidden: {why}", qualified(group, plural)),
            None => format!("{} is forbidden: {why}", qualified(group, plural)),
        };
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message).with_details(group, plural, name.unwrap_or(""))
    }

    /// 403 with a message of its own (admission refusals).
    pub fn forbidden_message(message: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", message)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "the server does not allow this method on the requested resource")
    }

    /// 415 for a patch type the resource does not take, listing those it does.
    pub fn unsupported_patch(accepted: &[&str]) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: {}", accepted.join(", ")),
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type:?})"))
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    /// The `Status` object itself (also used inside watch ERROR events).
    pub fn to_status(&self) -> serde_json::Value {
        serde_json::to_value(self.body()).expect("a Status always serialises")
    }

    fn body(&self) -> Status<'_> {
        Status {
            status: "Failure",
            message: &self.message,
            reason: self.reason,
            details: self.details.as_ref().map(Details::from_value),
            code: self.code.as_u16(),
            ..Status::default()
        }
    }
}

/// A `Status` as kube-apiserver serialises it, fields in its order (`serde_json`'s maps would
/// sort them, and clients compare the bytes).
#[derive(Serialize)]
struct Status<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: Empty,
    status: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(skip_serializing_if = "is_zero")]
    code: u16,
}

impl Default for Status<'_> {
    fn default() -> Self {
        Self { kind: "Status", api_version: "v1", metadata: Empty {}, status: "Success", message: "", reason: "", details: None, code: 0 }
    }
}

fn is_zero(code: &u16) -> bool {
    *code == 0
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize, Default)]
struct Details {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<Cause>,
    #[serde(rename = "retryAfterSeconds", skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<i64>,
}

#[derive(Serialize)]
struct Cause {
    #[serde(skip_serializing_if = "String::is_empty")]
    reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    field: String,
}

impl Details {
    fn from_value(d: &serde_json::Value) -> Self {
        let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
        let causes = d["causes"].as_array().map(Vec::as_slice).unwrap_or_default();
        Self {
            name: text(d, "name"),
            group: text(d, "group"),
            kind: text(d, "kind"),
            uid: text(d, "uid"),
            causes: causes
                .iter()
                .map(|c| Cause { reason: text(c, "reason"), message: text(c, "message"), field: text(c, "field") })
                .collect(),
            retry_after_seconds: d["retryAfterSeconds"].as_i64(),
        }
    }
}

/// A JSON response of `status` with the body's bytes as they are.
fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The `Status` `Success` a DELETE answers when the object is gone and its resource does not
/// return deleted objects.
pub fn deleted(name: &str, group: &str, plural: &str, uid: &str) -> Response {
    let details = Details { name: name.into(), group: group.into(), kind: plural.into(), uid: uid.into(), ..Details::default() };
    let body = Status { details: Some(details), ..Status::default() };
    json_response(StatusCode::OK, serde_json::to_vec(&body).expect("a Status always serialises"))
}

fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Compacted { .. } => ApiError::gone(format!("too old resource version: {e}")),
            StoreError::Unavailable(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", e.to_string()),
            StoreError::Transform { .. } => ApiError::internal(format!("Internal error occurred: {e}")),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.reason)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.code, serde_json::to_vec(&self.body()).expect("a Status always serialises"))
    }
}

/// One invalid field of a request: its path, the cause's reason and the message.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub field: String,
    pub reason: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn required(field: &str) -> Self {
        Self { field: field.into(), reason: "FieldValueRequired", message: "Required value".into() }
    }

    pub fn invalid(field: &str, value: &serde_json::Value, detail: &str) -> Self {
        Self { field: field.into(), reason: "FieldValueInvalid", message: format!("Invalid value: {}: {detail}", go_value(value)) }
    }

    pub fn not_supported(field: &str, value: &serde_json::Value, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        Self {
            field: field.into(),
            reason: "FieldValueNotSupported",
            message: format!("Unsupported value: {}: supported values: {}", go_value(value), list.join(", ")),
        }
    }

    /// An enum violation; `supported` are already rendered (JSON) values.
    pub fn not_supported_values(field: &str, value: &serde_json::Value, supported: &[String]) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueNotSupported",
            message: format!("Unsupported value: {}: supported values: {}", go_value(value), supported.join(", ")),
        }
    }

    pub fn too_long(field: &str, max: u64) -> Self {
        Self { field: field.into(), reason: "FieldValueTooLong", message: format!("Too long: may not be more than {max} bytes") }
    }

    pub fn too_many(field: &str, actual: u64, max: u64) -> Self {
        Self { field: field.into(), reason: "FieldValueTooMany", message: format!("Too many: {actual}: must have at most {max} items") }
    }

    pub fn duplicate(field: &str, value: &serde_json::Value) -> Self {
        Self { field: field.into(), reason: "FieldValueDuplicate", message: format!("Duplicate value: {}", go_value(value)) }
    }

    pub fn forbidden(field: &str, detail: &str) -> Self {
        Self { field: field.into(), reason: "FieldValueForbidden", message: format!("Forbidden: {detail}") }
    }
}

/// A value as Go's `%#v`-ish rendering in kube-apiserver's messages: strings quoted, the rest as JSON.
fn go_value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "\"\"".into(),
        serde_json::Value::Object(m) => format!("{{{}}}", m.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn bytes(response: Response) -> String {
        use http_body_util::BodyExt;
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn status_bodies_keep_kube_field_order() {
        let e = ApiError::invalid_fields("apps", "Deployment", "web", vec![FieldError::required("spec.selector")]);
        assert_eq!(
            bytes(e.into_response()).await,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Deployment.apps \"web\" is invalid: spec.selector: Required value","reason":"Invalid","details":{"name":"web","group":"apps","kind":"Deployment","causes":[{"reason":"FieldValueRequired","message":"Required value","field":"spec.selector"}]},"code":422}"#
        );
        assert_eq!(
            bytes(ApiError::not_found("", "configmaps", "a").into_response()).await,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"configmaps \"a\" not found","reason":"NotFound","details":{"name":"a","kind":"configmaps"},"code":404}"#
        );
        assert_eq!(
            bytes(deleted("a", "", "configmaps", "u-1")).await,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":{"name":"a","kind":"configmaps","uid":"u-1"}}"#
        );
    }
}
