//! The Kubernetes REST API: discovery and OpenAPI, create, get, list (selectors,
//! limit/continue), watch (from a watch cache), update, patch, apply and delete of the
//! registry's resources and CRDs, subresources and Table output, with Kubernetes Status
//! errors. Callers authenticate with x509 client certificates or bearer tokens and are
//! authorised by RBAC (`system:masters` may do everything) and the node authorizer.

mod admission;
mod apply;
mod authz;
pub mod bootstrap_tokens;
mod client;
mod conversion;
mod crd;
mod default_storage_class;
mod discovery;
pub mod encryption;
mod fields;
pub mod hpa;
mod inflight;
mod limit_ranger;
mod limits;
mod metrics;
mod mirror;
mod namespace_policies;
pub mod node_addresses;
pub mod node_authz;
pub mod node_password;
mod node_proxy;
mod objects;
mod openapi;
pub mod panics;
mod params;
mod patch;
mod pod_security;
mod protobuf;
mod quantities;
mod quota;
mod ranges;
mod raw_json;
mod rbac;
mod registry;
mod selector;
mod services;
mod status;
mod strategy;
mod subresources;
mod table;
mod tokens;
mod volume_validation;
mod watch;
mod watch_cache;
mod webhook;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Extension, Json, Router};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::pki::Peer;
use crate::tasks::Tasks;
pub use client::in_process_client;
pub use inflight::limit as limit_in_flight;
pub use objects::check_name;
use objects::{Scope, SharedStore};
use openapi::{FieldValidation, OpenApi};
use registry::Resource;
use selector::LabelSelector;
pub use services::ServiceNetwork;
pub use status::ApiError;
pub use tokens::TokenKeys;
pub use watch::MinRequestTimeout;

/// Largest request body accepted, as kube-apiserver (3 MiB).
const MAX_BODY: usize = 3 << 20;

/// What every API handler shares.
#[derive(Clone)]
struct ApiState {
    store: SharedStore,
    openapi: &'static OpenApi,
    net: ServiceNetwork,
    rbac: Arc<rbac::Rbac>,
    /// The Node authorizer's graph of what pods bound to each node refer to.
    graph: Arc<node_authz::graph::Graph>,
    tokens: TokenKeys,
    watch_caches: Arc<watch_cache::WatchCaches>,
    crds: Arc<crd::Crds>,
    /// Namespaces' ResourceQuotas and LimitRanges, for admission.
    policies: Arc<namespace_policies::NamespacePolicies>,
    /// TLS (with this server's client certificate) for the proxy to kubelets.
    kubelet_tls: Option<Arc<rustls::ClientConfig>>,
    webhooks: Arc<webhook::Webhooks>,
    /// `metrics.k8s.io` (none when metrics-server is disabled).
    metrics: Option<Arc<metrics::MetricsApi>>,
}

impl ApiState {
    /// The resources served besides the built-in ones: custom resources, and the metrics API's.
    fn extra_resources(&self) -> Vec<&'static Resource> {
        let mut all = self.crds.all();
        if self.metrics.is_some() {
            all.extend(metrics::RESOURCES.iter());
        }
        all
    }
}

/// The API served from `store`; Services get addresses and node ports from `net`;
/// ServiceAccount tokens are signed and checked with `tokens`; pod streams reach kubelets
/// with `kubelet_tls` (none: they are answered 503); `metrics_api` serves `metrics.k8s.io`
/// from the kubelets' figures. Its followers of the store run in `tasks`.
pub fn router(
    store: SharedStore,
    net: ServiceNetwork,
    tokens: TokenKeys,
    kubelet_tls: Option<Arc<rustls::ClientConfig>>,
    metrics_api: bool,
    tasks: Tasks,
) -> Router {
    let rbac = rbac::Rbac::start(store.clone(), &tasks);
    let graph = Arc::new(node_authz::graph::Graph::default());
    mirror::follow(store.clone(), &[node_authz::graph::PODS.into(), node_authz::graph::CLAIMS.into()], &graph, &tasks);
    let crds = Arc::new(crd::Crds::default());
    tasks.spawn(crds.clone().follow(store.clone()));
    let policies = namespace_policies::NamespacePolicies::start(store.clone(), &tasks);
    let webhooks = webhook::Webhooks::start(store.clone(), Arc::new(webhook::Https), &tasks);
    let watch_caches = Arc::new(watch_cache::WatchCaches::new(tasks));
    let metrics = metrics_api.then(|| Arc::new(metrics::MetricsApi::new(kubelet_tls.clone())));
    let state = ApiState {
        store,
        openapi: OpenApi::shared(),
        net,
        rbac,
        graph,
        tokens,
        watch_caches,
        crds,
        policies,
        kubelet_tls,
        webhooks,
        metrics,
    };
    Router::new()
        .route("/api", any(handle))
        .route("/api/{*rest}", any(handle))
        .route("/apis", any(handle))
        .route("/apis/{*rest}", any(handle))
        .route("/openapi/v3", get(openapi_root))
        .route("/openapi/v3/{*gv}", get(openapi_document))
        .with_state(state)
}

async fn openapi_root(State(state): State<ApiState>, Extension(peer): Extension<Peer>, uri: Uri) -> Response {
    match non_resource_access(&state, &peer, uri.path()) {
        Ok(()) => Json(state.openapi.root(&state.crds.all())).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Authorises a GET of `path` outside the resource API (discovery, OpenAPI) by
/// `nonResourceURLs` rules (`system:discovery` grants them to every authenticated caller).
fn non_resource_access(state: &ApiState, peer: &Peer, path: &str) -> Result<(), ApiError> {
    let identity = peer.0.as_ref().ok_or_else(ApiError::unauthorized)?;
    if state.rbac.allowed_path(identity, "get", path) {
        return Ok(());
    }
    Err(ApiError::forbidden_message(&format!("forbidden: User \"{}\" cannot get path \"{path}\"", identity.user)))
}

async fn openapi_document(
    State(state): State<ApiState>,
    Extension(peer): Extension<Peer>,
    axum::extract::Path(gv): axum::extract::Path<String>,
    uri: Uri,
) -> Response {
    if let Err(e) = non_resource_access(&state, &peer, uri.path()) {
        return e.into_response();
    }
    match state.openapi.document(&gv, &state.crds.all()) {
        Some(doc) => ([(header::CONTENT_TYPE, "application/json")], doc).into_response(),
        None => ApiError::not_found("", "", &gv).into_response(),
    }
}

/// Creates the system namespaces that do not exist yet, the default RBAC roles and
/// bindings (reconciling those already there) and the built-in CRDs.
pub async fn ensure_system_namespaces(store: &dyn crate::store::Store) -> Result<(), ApiError> {
    let namespaces = registry::lookup("", "v1", "namespaces").expect("namespaces are built in");
    let scope = Scope::new(namespaces, None, ServiceNetwork::default());
    for name in crate::k8s::names::SYSTEM_NAMESPACES {
        match objects::create(store, &scope, json!({ "metadata": { "name": name } }), Some("orch-server")).await {
            Ok(_) => tracing::info!(namespace = name, "created system namespace"),
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(e),
        }
    }
    // After the namespaces: joining nodes need kube-system first.
    rbac::bootstrap::ensure(store).await?;
    crd::builtin::ensure(store).await
}

/// What a request path addresses.
struct Target<'a> {
    group: &'a str,
    version: &'a str,
    namespace: Option<&'a str>,
    plural: Option<&'a str>,
    name: Option<&'a str>,
    subresource: Option<&'a str>,
}

fn parse_path(path: &str) -> Option<Target<'_>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, plural, name, subresource) = match rest {
        [] => (None, None, None, None),
        [plural] => (None, Some(*plural), None, None),
        // A namespace's own subresources, not a resource inside the namespace.
        ["namespaces", name, sub @ ("status" | "finalize")] => (None, Some("namespaces"), Some(*name), Some(*sub)),
        ["namespaces", ns, plural] => (Some(*ns), Some(*plural), None, None),
        ["namespaces", ns, plural, name] => (Some(*ns), Some(*plural), Some(*name), None),
        ["namespaces", ns, plural, name, sub] => (Some(*ns), Some(*plural), Some(*name), Some(*sub)),
        [plural, name] => (None, Some(*plural), Some(*name), None),
        [plural, name, sub] => (None, Some(*plural), Some(*name), Some(*sub)),
        // `nodes/<name>/proxy/<path on the kubelet>`
        [plural, name, "proxy", ..] => (None, Some(*plural), Some(*name), Some("proxy")),
        _ => return None,
    };
    Some(Target { group, version, namespace, plural, name, subresource })
}

fn verb(method: &Method, named: bool, watch: bool) -> &'static str {
    match (method.as_str(), named, watch) {
        ("GET", _, true) => "watch",
        ("GET", true, _) => "get",
        ("GET", false, _) => "list",
        ("POST", _, _) => "create",
        ("PUT", _, _) => "update",
        ("DELETE", true, _) => "delete",
        ("DELETE", false, _) => "deletecollection",
        ("PATCH", _, _) => "patch",
        _ => "unknown",
    }
}

/// Reads a request body as JSON, YAML or (for the kinds kubectl sends it for) protobuf.
async fn read_object(resource: &Resource, headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let is_protobuf = content_type.starts_with(protobuf::CONTENT_TYPE);
    if !content_type.is_empty() && !content_type.starts_with("application/json") && !content_type.contains("yaml") && !is_protobuf {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    let bytes = read_body(body).await?;
    if is_protobuf {
        return protobuf::decode(resource, &bytes);
    }
    if content_type.contains("yaml") {
        limits::yaml(&bytes).map_err(|e| ApiError::bad_request(format!("the body is not valid YAML: {e}")))
    } else {
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
    }
}

/// DeleteOptions from the body (if any) and the `propagationPolicy` query parameter.
/// A list's (or collection delete's) `labelSelector` and `fieldSelector`.
fn selection(resource: &Resource, query: &HashMap<String, String>) -> Result<objects::Selection, ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(format!("unable to parse labelSelector: {e}")))?;
    let fields =
        fields::FieldSelector::parse(resource, query.get("fieldSelector").map_or("", String::as_str)).map_err(ApiError::bad_request)?;
    Ok(objects::Selection { labels, fields })
}

async fn delete_options(query: &HashMap<String, String>, body: Body) -> Result<objects::DeleteOptions, ApiError> {
    let raw = read_body(body).await?;
    let doc: Value = if raw.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&raw).map_err(|e| ApiError::bad_request(format!("the DeleteOptions body is not valid JSON: {e}")))?
    };
    let text = |v: &Value| v.as_str().map(str::to_string);
    Ok(objects::DeleteOptions {
        propagation_policy: query.get("propagationPolicy").cloned().or_else(|| text(&doc["propagationPolicy"])),
        precondition_uid: text(&doc["preconditions"]["uid"]),
        precondition_resource_version: text(&doc["preconditions"]["resourceVersion"]),
        grace_period_seconds: params::grace_period(query, &doc)?,
        dry_run: query.get("dryRun").is_some_and(|d| d == "All") || doc["dryRun"].as_array().is_some_and(|d| d.iter().any(|v| v == "All")),
    })
}

/// Reads a whole request body, refusing more than [`MAX_BODY`] with 413.
async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    let bytes = http_body_util::Limited::new(body, MAX_BODY).collect().await.map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            ApiError {
                code: StatusCode::PAYLOAD_TOO_LARGE,
                reason: "RequestEntityTooLarge",
                message: "Request entity too large: limit is 3145728".into(),
                details: None,
            }
        } else {
            ApiError::bad_request(format!("reading the request body: {e}"))
        }
    })?;
    Ok(bytes.to_bytes())
}

async fn handle(
    State(state): State<ApiState>,
    Extension(peer): Extension<Peer>,
    Query(query): Query<HashMap<String, String>>,
    mut request: axum::extract::Request,
) -> Response {
    // Exec, attach and port-forward upgrade the connection; the proxy to the kubelet needs it.
    let upgrade = request.headers().contains_key(header::UPGRADE).then(|| hyper::upgrade::on(&mut request));
    let (parts, body) = request.into_parts();
    let min_request_timeout = parts.extensions.get::<MinRequestTimeout>().copied().unwrap_or_default();
    let incoming = Incoming { method: parts.method, uri: parts.uri, query, headers: parts.headers, upgrade, min_request_timeout };
    panics::recover(async move {
        match serve(state, peer, incoming, body).await {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
        }
    })
    .await
}

/// A request as `serve` takes it.
struct Incoming {
    method: Method,
    uri: Uri,
    query: HashMap<String, String>,
    headers: HeaderMap,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
    min_request_timeout: MinRequestTimeout,
}

/// An aggregated discovery document with kube's media type and an `ETag`; a client that
/// already holds it (`If-None-Match`) gets 304.
fn aggregated_discovery(headers: &HeaderMap, document: &Value) -> Response {
    let body = serde_json::to_vec(document).expect("a JSON value always serialises");
    let etag = format!("\"{}\"", openapi::hash(&body));
    let vary = [(header::VARY, "Accept"), (header::ETAG, etag.as_str())];
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, vary).into_response();
    }
    (vary, [(header::CONTENT_TYPE, discovery::AGGREGATED)], body).into_response()
}

async fn serve(state: ApiState, peer: Peer, incoming: Incoming, body: Body) -> Result<Response, ApiError> {
    let Incoming { method, uri, query, mut headers, upgrade, min_request_timeout } = incoming;
    let store = state.store.clone();
    let identity = match peer.0 {
        Some(identity) => identity,
        None => bearer_identity(&state, &headers).await.ok_or_else(ApiError::unauthorized)?,
    };
    let path = uri.path();
    let discovery = match parse_path(path) {
        None => matches!(path.trim_end_matches('/'), "/api" | "/apis"),
        Some(target) => target.plural.is_none(),
    };
    if discovery {
        non_resource_access(&state, &Peer(Some(identity.clone())), path)?;
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    match path.trim_end_matches('/') {
        root @ ("/api" | "/apis") if discovery::wants_aggregated(accept) => {
            let document = discovery::aggregated(root == "/api", &state.extra_resources());
            return Ok(aggregated_discovery(&headers, &document));
        }
        "/api" => return Ok(Json(discovery::core_versions()).into_response()),
        "/apis" => return Ok(Json(discovery::groups(&state.extra_resources())).into_response()),
        _ => {}
    }
    let target = parse_path(path).ok_or_else(|| ApiError::not_found("", "", path))?;
    let Some(plural) = target.plural else {
        return discovery::resources(target.group, target.version, &state.extra_resources())
            .map(|d| Json(d).into_response())
            .ok_or_else(|| ApiError::not_found("", "", path));
    };
    if let (metrics::GROUP, Some(api)) = (target.group, &state.metrics) {
        return serve_metrics(&state, api, &identity, &target, plural, &method, &query).await;
    }
    let resource = registry::lookup(target.group, target.version, plural)
        .or_else(|| state.crds.lookup(target.group, target.version, plural))
        .ok_or_else(|| ApiError::not_found(target.group, plural, target.name.unwrap_or("")))?;
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = verb(&method, target.name.is_some(), watching);
    check_scope(resource, &target, verb)?;
    if !resource.stored() {
        // A review: answered about the caller, never stored.
        if verb != "create" {
            return Err(ApiError::method_not_allowed());
        }
        let review = read_object(resource, &headers, body).await?;
        return Ok(
            (StatusCode::CREATED, Json(authz::self_subject_access_review(&state.rbac, &state.graph, &identity, review))).into_response()
        );
    }
    let rbac_resource = match target.subresource {
        Some(sub) if resource.subresources.contains(&sub) => format!("{}/{sub}", resource.plural),
        Some(sub) => return Err(ApiError::not_found(resource.group, &format!("{}/{sub}", resource.plural), target.name.unwrap_or(""))),
        None => resource.plural.to_string(),
    };
    let verb = match target.subresource {
        // Streams that write into a container need create, even over a WebSocket GET.
        Some("exec" | "attach" | "portforward") => "create",
        Some(_) if method == Method::GET => "get",
        _ => verb,
    };
    // A list or watch of one name (`fieldSelector=metadata.name=x`) is authorised for that name.
    let selected = query
        .get("fieldSelector")
        .filter(|_| matches!(verb, "list" | "watch"))
        .and_then(|raw| fields::FieldSelector::parse(resource, raw).ok()?.equals("metadata.name").map(str::to_string));
    let attributes = rbac::Attributes {
        verb,
        group: resource.group,
        resource: &rbac_resource,
        namespace: target.namespace,
        name: target.name.or(selected.as_deref()),
    };
    let decision = authz::authorize(&state.rbac, &state.graph, &identity, &attributes)?;
    let warnings = Arc::new(Mutex::new(Vec::<String>::new()));
    let pod_security_target = (resource, target.namespace, target.name, target.subresource);
    let pod_security = pod_security::Admission::load(state.store.as_ref(), state.net, pod_security_target, verb, warnings.clone()).await?;
    let mut scope = Scope::new(resource, target.namespace, state.net);
    scope.subresource = target.subresource;
    scope.pod_security = pod_security.as_ref();
    scope.policies = Some(&state.policies);
    let node_request = authz::NodeRequest { decision: &decision, identity: &identity, attributes: &attributes, scope: &scope };
    let (owner, body) = authz::node_restriction(&state, node_request, &mut headers, body).await?;
    let not_owned = |node: &str| authz::not_owned(node, &attributes);
    let rbac_write = resource.group == rbac::GROUP && !matches!(verb, "get" | "list" | "watch" | "delete");
    scope.dry_run = query.get("dryRun").is_some_and(|d| d == "All");
    // Webhooks see writes of objects and their status; other subresources carry other kinds.
    let writes = !matches!(verb, "get" | "list" | "watch") && matches!(target.subresource, None | Some("status" | "finalize"));
    let webhooks = writes
        .then(|| {
            state.webhooks.admission(resource, || webhook::Context {
                store: state.store.clone(),
                user: identity.clone(),
                warnings: warnings.clone(),
                field_manager: query.get("fieldManager").cloned(),
            })
        })
        .flatten();
    scope.webhooks = webhooks.as_ref();
    let as_table = table::wanted(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or(""));
    let validation = FieldValidation::parse(query.get("fieldValidation").map(String::as_str)).map_err(ApiError::bad_request)?;
    let check = {
        let (openapi, warnings) = (state.openapi, warnings.clone());
        let owner = owner.clone();
        let not_owned = &not_owned;
        let (rbac, identity, namespace) = (state.rbac.clone(), identity.clone(), target.namespace);
        move |obj: &mut Value| -> Result<(), ApiError> {
            if let Some(node) = owner.as_deref().filter(|node| !node_authz::owns(node, resource.plural, obj)) {
                return Err(not_owned(node));
            }
            if rbac_write {
                rbac::escalation::check(&rbac, &identity, resource.plural, namespace, obj)?;
            }
            let unknown = objects::prune(resource, obj);
            ranges::integers(&openapi, resource, obj)?;
            quantities::canonicalise(&openapi, resource, obj)?;
            match validation {
                FieldValidation::Strict if !unknown.is_empty() => {
                    let fields: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
                    Err(ApiError::bad_request(format!(
                        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
                        fields.join(", "),
                        kind = resource.kind,
                        version = resource.version
                    )))
                }
                FieldValidation::Warn => {
                    warnings.lock().extend(unknown.into_iter().map(|f| format!("unknown field \"{f}\"")));
                    Ok(())
                }
                _ => Ok(()),
            }
        }
    };
    let caches = state.watch_caches.clone();
    let defines_resources = (resource.group, resource.plural) == ("apiextensions.k8s.io", "customresourcedefinitions");
    if defines_resources && verb == "delete" && target.subresource.is_none() {
        // Like kube-apiserver's customresourcecleanup finalizer: the custom objects go first.
        state.crds.delete_objects(&state.store, target.name.unwrap_or_default()).await?;
    }
    let response = match (target.subresource, target.name) {
        (Some("log" | "exec" | "attach" | "portforward" | "proxy"), Some(name)) => {
            if target.subresource == Some("log") {
                params::log_options(&query, name)?;
            }
            let forward =
                node_proxy::Forward { method, path: uri.path(), query: &query, raw_query: uri.query(), headers: &headers, upgrade };
            node_proxy::forward(state.store.as_ref(), state.kubelet_tls.as_ref(), &scope, name, forward, body).await?
        }
        (Some(_), Some(name)) => {
            let request = subresources::Request { name, method, headers: &headers, manager: field_manager(&query, &headers) };
            subresources::serve(&state, scope, request, body, &check).await?
        }
        _ => {
            let request = Request { verb, name: target.name, watching, as_table, query: &query, headers: &headers, min_request_timeout };
            dispatch(&store, &caches, resource, scope, request, body, &check).await?
        }
    };
    if defines_resources && !matches!(verb, "get" | "list" | "watch") {
        state.crds.reload_all(&state.store).await?;
    }
    let warnings = std::mem::take(&mut *warnings.lock());
    Ok(with_warnings(response, &warnings))
}

/// A read of `metrics.k8s.io`, authorised like any resource (get or list of `nodes` or `pods`
/// in the group).
async fn serve_metrics(
    state: &ApiState,
    api: &metrics::MetricsApi,
    identity: &crate::pki::Identity,
    target: &Target<'_>,
    plural: &str,
    method: &Method,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let resource = metrics::RESOURCES.iter().find(|r| r.version == target.version && r.plural == plural);
    let resource = resource.ok_or_else(|| ApiError::not_found(target.group, plural, target.name.unwrap_or("")))?;
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = verb(method, target.name.is_some(), watching);
    if target.subresource.is_some() || (!resource.namespaced && target.namespace.is_some()) {
        return Err(no_route());
    }
    if !resource.verbs.contains(&verb) {
        return Err(ApiError::method_not_allowed());
    }
    let attributes = rbac::Attributes { verb, group: resource.group, resource: plural, namespace: target.namespace, name: target.name };
    authz::authorize(&state.rbac, &state.graph, identity, &attributes)?;
    let request = metrics::Query { plural, namespace: target.namespace, name: target.name, query };
    Ok(Json(api.serve(state.store.as_ref(), state.net, request).await?).into_response())
}

/// kube-apiserver registers cluster-scoped resources only outside `namespaces/{ns}/`, and
/// namespaced ones outside it only for list and watch (all namespaces): any other path is no
/// route at all (404, or 405 for a create), answered before any authorisation.
fn check_scope(resource: &Resource, target: &Target<'_>, verb: &str) -> Result<(), ApiError> {
    match (resource.namespaced, target.namespace) {
        (false, Some(_)) => Err(no_route()),
        (true, None) if resource.stored() && target.name.is_some() => Err(no_route()),
        (true, None) if resource.stored() && !matches!(verb, "list" | "watch") => Err(ApiError::method_not_allowed()),
        _ => Ok(()),
    }
}

/// kube-apiserver's answer to a path it has no route for.
fn no_route() -> ApiError {
    ApiError {
        code: StatusCode::NOT_FOUND,
        reason: "NotFound",
        message: "the server could not find the requested resource".into(),
        details: Some(json!({})),
    }
}

pub(super) fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The ServiceAccount a valid `Authorization: Bearer` token stands for, if it still exists.
async fn bearer_identity(state: &ApiState, headers: &HeaderMap) -> Option<crate::pki::Identity> {
    let token = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")?;
    let claims = state.tokens.verify(token.trim(), unix_now())?;
    let accounts = registry::lookup("", "v1", "serviceaccounts")?;
    let scope = Scope::new(accounts, Some(&claims.namespace), state.net);
    let account = objects::get(state.store.as_ref(), &scope, &claims.name).await.ok()?;
    (account["metadata"]["uid"] == claims.uid.as_str()).then(|| claims.identity())
}

/// The field manager of a non-apply write: `?fieldManager=`, else the client's name from its
/// User-Agent, as kube-apiserver does.
fn field_manager(query: &HashMap<String, String>, headers: &HeaderMap) -> String {
    if let Some(m) = query.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.clone();
    }
    let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown");
    agent.split('/').next().unwrap_or("unknown").chars().take(128).collect()
}

/// Adds a `Warning: 299 - "..."` header per warning, as kube-apiserver does.
fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(value) = header::HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

/// A request on a resource itself (not a subresource).
struct Request<'a> {
    verb: &'a str,
    name: Option<&'a str>,
    watching: bool,
    as_table: bool,
    query: &'a HashMap<String, String>,
    headers: &'a HeaderMap,
    min_request_timeout: MinRequestTimeout,
}

async fn dispatch(
    store: &SharedStore,
    caches: &Arc<watch_cache::WatchCaches>,
    resource: &'static Resource,
    scope: Scope<'_>,
    request: Request<'_>,
    body: Body,
    check: objects::Check<'_>,
) -> Result<Response, ApiError> {
    let Request { verb, name, watching, as_table, query, headers, min_request_timeout } = request;
    let store_ref = store.as_ref();
    let manager = field_manager(query, headers);
    match (verb, name) {
        ("get", Some(name)) => {
            params::ReadOptions::parse(query, false)?;
            let obj = objects::get(store_ref, &scope, name).await?;
            if as_table {
                let rv = obj["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string();
                return Ok(Json(table::render(resource, &[obj], &rv, None)).into_response());
            }
            Ok(Json(obj).into_response())
        }
        ("list" | "watch", None) => {
            let selector = selection(resource, query)?;
            let read = params::ReadOptions::parse(query, watching)?;
            if watching {
                let options = watch::WatchOptions {
                    from: read.resource_version,
                    timeout: min_request_timeout.watch_timeout(read.timeout),
                    shape: if as_table { watch::Shape::Table(resource) } else { watch::Shape::Object },
                    bookmarks: query.get("allowWatchBookmarks").is_some_and(|b| b == "true"),
                };
                return watch::watch(store.clone(), caches.clone(), scope, selector, options).await;
            }
            let page = objects::list(store_ref, &scope, &selector, read.limit, query.get("continue").map(String::as_str)).await?;
            if as_table {
                return Ok(
                    Json(table::render(resource, &page.items, &page.revision.to_string(), page.continue_token.as_deref())).into_response()
                );
            }
            let mut meta = json!({ "resourceVersion": page.revision.to_string() });
            if let Some(token) = page.continue_token {
                meta["continue"] = json!(token);
            }
            Ok(Json(json!({ "kind": format!("{}List", resource.kind), "apiVersion": resource.api_version(), "metadata": meta, "items": page.items })).into_response())
        }
        ("create", None) => {
            let mut obj = read_object(resource, headers, body).await?;
            check(&mut obj)?;
            let obj = objects::create(store_ref, &scope, obj, Some(&manager)).await?;
            Ok((StatusCode::CREATED, obj).into_response())
        }
        ("patch", Some(name)) => {
            let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            if content_type.starts_with("application/apply-patch+yaml") {
                let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
                    return Err(ApiError::invalid(
                        resource.group,
                        resource.kind,
                        name,
                        "fieldManager",
                        "Required value: is required for apply patch",
                    ));
                };
                let raw = read_body(body).await?;
                let config: Value =
                    limits::yaml(&raw).map_err(|e| ApiError::bad_request(format!("the applied configuration is not valid YAML: {e}")))?;
                let force = query.get("force").is_some_and(|f| f == "true");
                let (obj, created) = objects::apply_config(store_ref, &scope, name, config, manager, force, check).await?;
                let code = if created { StatusCode::CREATED } else { StatusCode::OK };
                return Ok((code, obj).into_response());
            }
            let kind = patch::PatchType::from_content_type(content_type).ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
            let raw = read_body(body).await?;
            Ok(objects::patch(store_ref, &scope, name, kind, &raw, &manager, check).await?.into_response())
        }
        ("update", Some(name)) => {
            let obj = read_object(resource, headers, body).await?;
            Ok(objects::update(store_ref, &scope, name, obj, &manager, check).await?.into_response())
        }
        ("delete", Some(name)) => {
            let options = delete_options(query, body).await?;
            match objects::delete(store_ref, &scope, name, &options).await? {
                objects::Deleted::Gone(obj) if !resource.returns_deleted_object() => {
                    Ok(status::deleted(name, resource.group, resource.plural, obj["metadata"]["uid"].as_str().unwrap_or_default()))
                }
                objects::Deleted::Gone(obj) | objects::Deleted::Terminating(obj) => Ok(Json(obj).into_response()),
            }
        }
        ("deletecollection", None) if resource.verbs.contains(&"deletecollection") => {
            let options = delete_options(query, body).await?;
            let page = objects::delete_collection(store_ref, &scope, &selection(resource, query)?, &options).await?;
            let meta = json!({ "resourceVersion": page.revision.to_string() });
            Ok(Json(json!({ "kind": format!("{}List", resource.kind), "apiVersion": resource.api_version(), "metadata": meta, "items": page.items })).into_response())
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_targets() {
        let t = parse_path("/api/v1/namespaces/default/configmaps/a").unwrap();
        assert_eq!((t.group, t.version, t.namespace, t.plural, t.name), ("", "v1", Some("default"), Some("configmaps"), Some("a")));
        let t = parse_path("/api/v1/namespaces/kube-system").unwrap();
        assert_eq!((t.namespace, t.plural, t.name), (None, Some("namespaces"), Some("kube-system")));
        let t = parse_path("/apis/coordination.k8s.io/v1/leases").unwrap();
        assert_eq!((t.group, t.plural, t.name), ("coordination.k8s.io", Some("leases"), None));
        let t = parse_path("/api/v1/namespaces/gone/finalize").unwrap();
        assert_eq!((t.namespace, t.plural, t.name, t.subresource), (None, Some("namespaces"), Some("gone"), Some("finalize")));
        assert!(parse_path("/api/v1/a/b/c/d/e").is_none());
    }
}
