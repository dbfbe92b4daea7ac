//! Kubernetes `Status` errors, written exactly the way kube-apiserver writes them, and the one
//! place where store errors become HTTP answers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
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

    pub fn forbidden(user: &str, verb: &str, group: &str, plural: &str, namespace: Option<&str>) -> Self {
        let scope = match namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "{} is forbidden: User \"{user}\" cannot {verb} resource \"{plural}\" in API group \"{group}\" {scope}",
                qualified(group, plural)
            ),
        )
        .with_details(group, plural, "")
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
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
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
        (self.code, Json(self.to_status())).into_response()
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
