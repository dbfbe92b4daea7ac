//! Subresources: `status` (only status changes), `scale` (an autoscaling/v1 Scale view of
//! spec.replicas), `pods/binding` (the scheduler's assignment), `pods/eviction` (a deletion
//! that honours PodDisruptionBudgets), `namespaces/finalize` and `serviceaccounts/token`.

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::objects::{self, Check, Scope};
use super::registry::Resource;
use super::status::ApiError;
use super::{patch, read_body, read_object, ApiState};
use crate::k8s::time::now_rfc3339;

/// One subresource request, already authorised.
pub struct Request<'a> {
    pub name: &'a str,
    pub method: Method,
    pub headers: &'a HeaderMap,
    pub manager: String,
}

pub async fn serve(state: &ApiState, scope: Scope<'_>, req: Request<'_>, body: Body, check: Check<'_>) -> Result<Response, ApiError> {
    let store = state.store.as_ref();
    let r = scope.resource;
    let sub = scope.subresource.unwrap_or_default();
    let name = req.name;
    match (sub, req.method.as_str()) {
        ("status", "GET") => Ok(Json(objects::get(store, &scope, name).await?).into_response()),
        ("status", "PUT") | ("finalize", "PUT") => {
            let obj = read_object(r, req.headers, body).await?;
            let finalizers = obj["spec"]["finalizers"].clone();
            if sub == "finalize" {
                // Only spec.finalizers change; the rest of the body is ignored.
                let done = objects::modify(store, &scope, name, &req.manager, check, &|before| {
                    let mut next = before.clone();
                    next["spec"]["finalizers"] = finalizers.clone();
                    Ok(next)
                })
                .await?;
                return Ok(done.into_response());
            }
            Ok(objects::update(store, &scope, name, obj, &req.manager, check).await?.into_response())
        }
        ("status", "PATCH") => {
            let kind = patch_type(req.headers)?;
            let raw = read_body(body).await?;
            Ok(objects::patch(store, &scope, name, kind, &raw, &req.manager, check).await?.into_response())
        }
        ("scale", "GET") => Ok(Json(scale_of(r, &objects::get(store, &scope, name).await?)).into_response()),
        ("scale", "PUT" | "PATCH") => {
            let wanted = match req.method.as_str() {
                "PUT" => Wanted::Replace(read_object(r, req.headers, body).await?),
                _ => Wanted::Patch(patch_type(req.headers)?, read_body(body).await?),
            };
            let done = objects::modify(store, &scope, name, &req.manager, check, &|before| {
                let mut scale = scale_of(r, before);
                match &wanted {
                    Wanted::Replace(body) => scale = body.clone(),
                    Wanted::Patch(kind, raw) => patch::apply(&mut scale, *kind, raw, Default::default())?,
                }
                let replicas = scale["spec"]["replicas"].as_i64().filter(|n| *n >= 0).ok_or_else(|| {
                    ApiError::invalid("autoscaling", "Scale", name, "spec.replicas", "Invalid value: must be greater than or equal to 0")
                })?;
                let mut next = before.clone();
                set_path(&mut next, replicas_paths(r).0, json!(replicas));
                if let Some(rv) = scale["metadata"]["resourceVersion"].as_str().filter(|rv| !rv.is_empty()) {
                    next["metadata"]["resourceVersion"] = json!(rv);
                }
                Ok(next)
            })
            .await?;
            Ok(Json(scale_of(r, &done.object)).into_response())
        }
        ("binding", "POST") => {
            let binding = read_object(r, req.headers, body).await?;
            bind(state, &scope, name, &binding, &req.manager).await
        }
        ("eviction", "POST") => {
            let eviction = read_object(r, req.headers, body).await?;
            evict(state, &scope, name, &eviction).await
        }
        ("token", "POST") => token_request(state, &scope, name, req.headers, body).await,
        _ => Err(ApiError::method_not_allowed()),
    }
}

enum Wanted {
    Replace(Value),
    Patch(patch::PatchType, bytes::Bytes),
}

fn patch_type(headers: &HeaderMap) -> Result<patch::PatchType, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    patch::PatchType::from_content_type(content_type).ok_or_else(|| ApiError::unsupported_media_type(content_type))
}

/// Where a resource keeps its desired and observed replica counts (a custom resource's
/// scale subresource names them).
fn replicas_paths(r: &Resource) -> (&str, &str) {
    match r.custom.and_then(|c| c.scale.as_ref()) {
        Some(paths) => (paths.spec_replicas.as_str(), paths.status_replicas.as_str()),
        None => (".spec.replicas", ".status.replicas"),
    }
}

/// Sets a dotted path (`.spec.replicas`), creating objects on the way.
fn set_path(obj: &mut Value, path: &str, value: Value) {
    let mut cur = obj;
    for key in path.trim_start_matches('.').split('.') {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = &mut cur[key];
    }
    *cur = value;
}

/// The autoscaling/v1 Scale of a replicated workload.
fn scale_of(r: &Resource, obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let (spec_path, status_path) = replicas_paths(r);
    let read = |path: &str| super::crd::definition::json_path(obj, path).and_then(Value::as_i64).unwrap_or(0);
    let selector = if let Some(paths) = r.custom.and_then(|c| c.scale.as_ref()) {
        paths
            .label_selector
            .as_deref()
            .and_then(|p| super::crd::definition::json_path(obj, p))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    } else if r.kind == "ReplicationController" {
        let labels: Vec<String> = obj["spec"]["selector"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        labels.join(",")
    } else {
        super::selector::LabelSelector::from_json(&obj["spec"]["selector"]).map(|s| s.to_query()).unwrap_or_default()
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": { "replicas": read(spec_path) },
        "status": { "replicas": read(status_path), "selector": selector },
    })
}

fn success() -> Response {
    (StatusCode::CREATED, Json(json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 })))
        .into_response()
}

/// Assigns a pod to a node, once: sets spec.nodeName and the PodScheduled condition.
async fn bind(state: &ApiState, scope: &Scope<'_>, name: &str, binding: &Value, manager: &str) -> Result<Response, ApiError> {
    let node = binding["target"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ApiError::invalid("", "Binding", name, "target.name", "Required value"))?;
    let no_check = |_: &mut Value| Ok(());
    objects::modify(state.store.as_ref(), scope, name, manager, &no_check, &|before| {
        if let Some(current) = before["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            return Err(ApiError::conflict_message(
                "",
                "pods/binding",
                name,
                &format!("pod {name} is already assigned to node {current:?}"),
            ));
        }
        if before["metadata"].get("deletionTimestamp").is_some_and(|t| !t.is_null()) {
            return Err(ApiError::conflict_message(
                "",
                "pods/binding",
                name,
                &format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        let mut next = before.clone();
        next["spec"]["nodeName"] = json!(node);
        for (k, v) in binding["metadata"]["annotations"].as_object().into_iter().flatten() {
            next["metadata"]["annotations"][k] = v.clone();
        }
        let conditions = next["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let mut conditions: Vec<Value> = conditions.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
        conditions.push(json!({ "type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_rfc3339() }));
        next["status"]["conditions"] = json!(conditions);
        Ok(next)
    })
    .await?;
    Ok(success())
}

/// Deletes a pod unless a PodDisruptionBudget covering it allows no disruption (429).
async fn evict(state: &ApiState, scope: &Scope<'_>, name: &str, eviction: &Value) -> Result<Response, ApiError> {
    let store = state.store.as_ref();
    let pod = objects::get(store, scope, name).await?;
    let terminal = matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
    if !terminal && pod["metadata"].get("deletionTimestamp").is_none_or(Value::is_null) {
        let budgets = super::registry::lookup("policy", "v1", "poddisruptionbudgets").expect("PDBs are built in");
        let pdb_scope = Scope::new(budgets, scope.namespace, scope.net);
        let all = objects::list(store, &pdb_scope, &objects::Selection::default(), 0, None).await?;
        let covering: Vec<Value> = all
            .items
            .into_iter()
            .filter(|pdb| {
                let selector = super::selector::LabelSelector::from_json(&pdb["spec"]["selector"]).unwrap_or_default();
                !selector.is_empty() && selector.matches(&pod["metadata"]["labels"])
            })
            .collect();
        if covering.len() > 1 {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        if let Some(pdb) = covering.first() {
            // Spend one allowed disruption first (optimistically), so concurrent evictions
            // cannot overdraw the budget.
            let status_scope = Scope { subresource: Some("status"), ..Scope::new(budgets, scope.namespace, scope.net) };
            let pdb_name = pdb["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let no_check = |_: &mut Value| Ok(());
            objects::modify(store, &status_scope, &pdb_name, "orch-eviction", &no_check, &|current| {
                let allowed = current["status"]["disruptionsAllowed"].as_i64().unwrap_or(0);
                if allowed <= 0 {
                    return Err(ApiError::too_many_requests(&format!(
                        "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {pdb_name} needs {} healthy pods and has {} currently",
                        current["status"]["desiredHealthy"].as_i64().unwrap_or(0),
                        current["status"]["currentHealthy"].as_i64().unwrap_or(0),
                    )));
                }
                let mut next = current.clone();
                next["status"]["disruptionsAllowed"] = json!(allowed - 1);
                next["status"]["disruptedPods"][name] = json!(now_rfc3339());
                Ok(next)
            })
            .await?;
        }
    }
    let options = &eviction["deleteOptions"];
    let delete = objects::DeleteOptions {
        propagation_policy: options["propagationPolicy"].as_str().map(str::to_string),
        precondition_uid: options["preconditions"]["uid"].as_str().map(str::to_string),
        precondition_resource_version: options["preconditions"]["resourceVersion"].as_str().map(str::to_string),
        grace_period_seconds: super::params::grace_period(&Default::default(), options)?,
        ..Default::default()
    };
    objects::delete(store, &Scope::new(scope.resource, scope.namespace, scope.net), name, &delete).await?;
    Ok(success())
}

/// A TokenRequest body (JSON or protobuf; empty: no options).
pub fn parse_token_request(headers: &HeaderMap, raw: &[u8]) -> Result<Value, ApiError> {
    let is_protobuf =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|c| c.starts_with(super::protobuf::CONTENT_TYPE));
    if is_protobuf {
        super::protobuf::decode_token_request(raw)
    } else if raw.iter().all(u8::is_ascii_whitespace) {
        Ok(json!({}))
    } else {
        serde_json::from_slice(raw).map_err(|e| ApiError::bad_request(format!("the TokenRequest is not valid JSON: {e}")))
    }
}

/// `POST .../serviceaccounts/<name>/token`: issues a token for an existing ServiceAccount.
async fn token_request(state: &ApiState, scope: &Scope<'_>, name: &str, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let account = objects::get(state.store.as_ref(), scope, name).await?;
    let request = parse_token_request(headers, &read_body(body).await?)?;
    let mut errs = Vec::new();
    super::ranges::token_expiration(&request["spec"]["expirationSeconds"], "spec.expirationSeconds", &mut errs);
    if !errs.is_empty() {
        return Err(ApiError::invalid_fields("authentication.k8s.io", "TokenRequest", name, errs));
    }
    let audiences: Vec<String> =
        request["spec"]["audiences"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(str::to_string)).collect();
    let namespace = scope.namespace.unwrap_or_default();
    let uid = account["metadata"]["uid"].as_str().unwrap_or_default();
    let (token, exp) =
        state.tokens.issue(namespace, name, uid, &audiences, request["spec"]["expirationSeconds"].as_i64(), super::unix_now());
    let expires = time::OffsetDateTime::from_unix_timestamp(exp)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default();
    let spec = json!({ "audiences": if audiences.is_empty() { vec![super::tokens::ISSUER.to_string()] } else { audiences }, "expirationSeconds": exp - super::unix_now() });
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": { "name": name, "namespace": namespace, "creationTimestamp": null },
            "spec": spec,
            "status": { "token": token, "expirationTimestamp": expires },
        })),
    )
        .into_response())
}
