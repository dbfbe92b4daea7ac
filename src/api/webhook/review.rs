//! The AdmissionReview wire format (`admission.k8s.io/v1`, or `v1beta1` for webhooks that
//! speak only that): the request orch sends, the response it accepts (checked as
//! kube-apiserver's `VerifyAdmissionResponse` checks it) and the Status a denial becomes
//! (kube's `ToStatusErr`: `admission webhook "NAME" denied the request: MESSAGE`, 400 unless
//! the webhook says otherwise).

use axum::http::StatusCode;
use base64::Engine;
use serde_json::{json, Value};

use crate::api::status::ApiError;

/// What a webhook is asked about.
pub struct Request<'a> {
    pub uid: &'a str,
    /// `group`, `version`, `kind` of the object sent.
    pub kind: Value,
    /// `group`, `version`, `resource`.
    pub resource: Value,
    pub subresource: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
    pub operation: &'a str,
    pub user_info: Value,
    pub object: Option<&'a Value>,
    pub old_object: Option<&'a Value>,
    pub dry_run: bool,
    pub options: Value,
}

/// The AdmissionReview body of `request` in `version`.
pub fn body(version: &str, request: &Request<'_>) -> Value {
    let mut r = json!({
        "uid": request.uid,
        "kind": request.kind,
        "resource": request.resource,
        "requestKind": request.kind,
        "requestResource": request.resource,
        "operation": request.operation,
        "userInfo": request.user_info,
        "object": request.object,
        "oldObject": request.old_object,
        "dryRun": request.dry_run,
        "options": request.options,
    });
    for (field, value) in [
        ("subResource", request.subresource),
        ("requestSubResource", request.subresource),
        ("name", request.name),
        ("namespace", request.namespace),
    ] {
        if !value.is_empty() {
            r[field] = json!(value);
        }
    }
    json!({ "apiVersion": format!("admission.k8s.io/{version}"), "kind": "AdmissionReview", "request": r })
}

/// A webhook's answer.
#[derive(Debug)]
pub struct Verdict {
    pub allowed: bool,
    /// `response.status` (explains a denial).
    pub status: Value,
    /// A JSON patch (mutating webhooks only).
    pub patch: Option<Vec<u8>>,
    pub warnings: Vec<String>,
}

/// Reads a webhook's response to the review `uid` sent in `version`; the error is why the
/// response is not one (kube: `received invalid webhook response: ...`).
pub fn parse(bytes: &[u8], uid: &str, version: &str, mutating: bool) -> Result<Verdict, String> {
    let review: Value = serde_json::from_slice(bytes).map_err(|e| format!("the response is not JSON: {e}"))?;
    let response = review.get("response").filter(|r| r.is_object()).ok_or("webhook response was absent")?;
    let got_uid = response["uid"].as_str().unwrap_or_default();
    if got_uid != uid {
        return Err(format!("expected response.uid={uid:?}, got {got_uid:?}"));
    }
    let (api_version, kind) = (review["apiVersion"].as_str().unwrap_or_default(), review["kind"].as_str().unwrap_or_default());
    if (api_version, kind) != (format!("admission.k8s.io/{version}").as_str(), "AdmissionReview") {
        return Err(format!(
            "expected webhook response of admission.k8s.io/{version}, Kind=AdmissionReview, got {api_version}, Kind={kind}"
        ));
    }
    let patch = response["patch"].as_str().filter(|p| !p.is_empty());
    let patch_type = response["patchType"].as_str().filter(|p| !p.is_empty());
    // Validating webhooks' patches are ignored, as kube-apiserver ignores them.
    let patch = match (mutating, patch, patch_type) {
        (false, _, _) | (true, None, None) => None,
        (true, Some(_), None) => return Err("webhook returned response.patch but not response.patchType".into()),
        (true, None, Some(_)) => return Err("webhook returned response.patchType but not response.patch".into()),
        (true, Some(_), Some(t)) if t != "JSONPatch" => return Err(format!("webhook returned invalid response.patchType of {t:?}")),
        (true, Some(p), Some(_)) => {
            Some(base64::engine::general_purpose::STANDARD.decode(p).map_err(|e| format!("response.patch is not base64: {e}"))?)
        }
    };
    Ok(Verdict {
        allowed: response["allowed"] == true,
        status: response["status"].clone(),
        patch,
        warnings: response["warnings"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect(),
    })
}

/// The error a denial by `hook` answers the request with.
pub fn denied(hook: &str, status: &Value) -> ApiError {
    let denied_by = format!("admission webhook {hook:?} denied the request");
    let text = |field: &str| status[field].as_str().filter(|s| !s.is_empty());
    let message = match (text("message"), text("reason")) {
        (Some(m), _) => format!("{denied_by}: {m}"),
        (None, Some(r)) => format!("{denied_by}: {r}"),
        _ => format!("{denied_by} without explanation"),
    };
    let code = status["code"].as_u64().and_then(|c| u16::try_from(c).ok()).and_then(|c| StatusCode::from_u16(c).ok());
    ApiError {
        code: code.filter(|c| c.as_u16() >= 400).unwrap_or(StatusCode::BAD_REQUEST),
        reason: known_reason(text("reason").unwrap_or_default()),
        message,
        details: status.get("details").filter(|d| d.is_object()).cloned(),
    }
}

/// A webhook's `status.reason` when it is one of Kubernetes' reasons (others are dropped).
fn known_reason(reason: &str) -> &'static str {
    const REASONS: [&str; 18] = [
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "Gone",
        "Invalid",
        "ServerTimeout",
        "Timeout",
        "TooManyRequests",
        "BadRequest",
        "MethodNotAllowed",
        "NotAcceptable",
        "RequestEntityTooLarge",
        "UnsupportedMediaType",
        "InternalError",
        "Expired",
        "ServiceUnavailable",
    ];
    REASONS.into_iter().find(|r| *r == reason).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(body: Value) -> Vec<u8> {
        let mut review = json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview" });
        review["response"] = body;
        serde_json::to_vec(&review).unwrap()
    }

    #[test]
    fn requests_carry_kubes_fields() {
        let obj = json!({ "metadata": { "name": "a" } });
        let request = Request {
            uid: "u",
            kind: json!({ "group": "", "version": "v1", "kind": "ConfigMap" }),
            resource: json!({ "group": "", "version": "v1", "resource": "configmaps" }),
            subresource: "",
            name: "a",
            namespace: "default",
            operation: "CREATE",
            user_info: json!({ "username": "admin" }),
            object: Some(&obj),
            old_object: None,
            dry_run: false,
            options: json!({ "kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1" }),
        };
        let review = body("v1", &request);
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
        let r = &review["request"];
        assert_eq!(
            (&r["uid"], &r["operation"], &r["namespace"], &r["name"]),
            (&json!("u"), &json!("CREATE"), &json!("default"), &json!("a"))
        );
        assert_eq!(r["requestKind"], r["kind"]);
        assert_eq!((&r["object"], &r["oldObject"], &r["dryRun"]), (&obj, &Value::Null, &json!(false)));
        assert!(r.get("subResource").is_none());
    }

    #[test]
    fn responses_are_checked_as_kube_checks_them() {
        let ok = parse(&response(json!({ "uid": "u", "allowed": true, "warnings": ["careful"] })), "u", "v1", false).unwrap();
        assert!(ok.allowed && ok.patch.is_none());
        assert_eq!(ok.warnings, ["careful"]);
        let err = parse(&response(json!({ "uid": "x", "allowed": true })), "u", "v1", false).unwrap_err();
        assert_eq!(err, "expected response.uid=\"u\", got \"x\"");
        assert_eq!(parse(b"{}", "u", "v1", false).unwrap_err(), "webhook response was absent");
        let err = parse(&response(json!({ "uid": "u", "allowed": true })), "u", "v1beta1", false).unwrap_err();
        assert!(err.starts_with("expected webhook response of admission.k8s.io/v1beta1, Kind=AdmissionReview"), "{err}");
        let patch = base64::engine::general_purpose::STANDARD.encode(br#"[{"op":"add","path":"/data","value":{}}]"#);
        let err = parse(&response(json!({ "uid": "u", "allowed": true, "patch": patch })), "u", "v1", true).unwrap_err();
        assert_eq!(err, "webhook returned response.patch but not response.patchType");
        let with_type = response(json!({ "uid": "u", "allowed": true, "patch": patch, "patchType": "JSONPatch" }));
        assert!(parse(&with_type, "u", "v1", true).unwrap().patch.is_some());
        assert!(parse(&with_type, "u", "v1", false).unwrap().patch.is_none(), "validating webhooks' patches are ignored");
    }

    #[test]
    fn denials_become_kubes_status() {
        let e = denied("deny.example.com", &json!({ "message": "no blue ConfigMaps", "code": 403, "reason": "Forbidden" }));
        assert_eq!((e.code.as_u16(), e.reason), (403, "Forbidden"));
        assert_eq!(e.message, "admission webhook \"deny.example.com\" denied the request: no blue ConfigMaps");
        let e = denied("deny.example.com", &json!({ "code": 200, "reason": "NoBlue" }));
        assert_eq!((e.code.as_u16(), e.reason), (400, ""));
        assert_eq!(e.message, "admission webhook \"deny.example.com\" denied the request: NoBlue");
        let e = denied("deny.example.com", &Value::Null);
        assert_eq!(e.message, "admission webhook \"deny.example.com\" denied the request without explanation");
    }
}
