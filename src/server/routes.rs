//! The server's own HTTP surface: public endpoints (`/cacerts`, `/version`, health), the
//! server-bootstrap endpoint joining servers call with the server token (the only way to the
//! CA's key), the node-bootstrap endpoint agents call with the agent token, a bootstrap token
//! or the server token (a `system:node:<name>` certificate, nothing more), the kubelet
//! serving-certificate endpoint (the node's own name and addresses only), and the guard that
//! admits only cluster servers and `system:masters` to the internal `/raft/*` and `/store/*`
//! routes.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use crate::join::wire::{self, basic_credentials, AgentCredentials, NodeJoin, ServerBootstrap, ServingRequest};
use crate::k8s::version;
use crate::pki::{constant_time_eq, JoinToken, Peer, MASTERS_GROUP, SERVERS_GROUP};

/// What the public routes need.
pub struct PublicState {
    /// The cluster CA: served at `/cacerts`, handed to joining servers, signs agents' certificates.
    pub ca: crate::pki::ClusterCa,
    /// The server token: the CA's key to joining servers; also joins agents (as in k3s).
    pub token: JoinToken,
    /// The agent token: joins agents only.
    pub agent_token: JoinToken,
    /// Names and addresses no other node's serving certificate may carry.
    pub control_plane: super::serving_sans::ControlPlane,
    pub store: std::sync::Arc<dyn crate::store::Store>,
    /// The encryption configuration file in force, handed to joining servers with the CA.
    pub encryption_config: Option<std::path::PathBuf>,
}

pub fn public(state: Arc<PublicState>) -> Router {
    let join = Router::new()
        .route(wire::CACERTS_PATH, get(cacerts))
        .route(wire::SERVER_BOOTSTRAP_PATH, post(server_bootstrap))
        .route(wire::NODE_BOOTSTRAP_PATH, post(node_bootstrap))
        .route(wire::NODE_SERVING_CERT_PATH, post(node_serving_cert));
    // Token guessing is slowed down: refused requests cost their address (429 when spent).
    crate::rpc::rate_limit::limit_refused(join)
        .route("/version", get(version_info))
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(ok))
        .with_state(state)
}

/// Wraps internal routes so that only orch servers and cluster admins reach them.
pub fn internal(routes: Router) -> Router {
    routes.layer(axum::middleware::from_fn(require_cluster_member))
}

async fn require_cluster_member(Extension(peer): Extension<Peer>, req: Request, next: Next) -> Response {
    match &peer.0 {
        None => (StatusCode::UNAUTHORIZED, "a client certificate signed by the cluster CA is required").into_response(),
        Some(id) if id.in_group(SERVERS_GROUP) || id.in_group(MASTERS_GROUP) => next.run(req).await,
        Some(id) => (StatusCode::FORBIDDEN, format!("user {:?} may not use the server-internal API", id.user)).into_response(),
    }
}

async fn cacerts(State(s): State<Arc<PublicState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/x-pem-file")], s.ca.pem().cert.clone())
}

async fn ok() -> &'static str {
    "ok"
}

async fn version_info() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "major": version::KUBERNETES_MAJOR,
        "minor": version::KUBERNETES_MINOR,
        "gitVersion": format!("{}+orch", version::KUBERNETES_VERSION),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, crate::host::kube_arch()),
    }))
}

/// Checks `Authorization: Basic base64(server:<secret>)` against the server token.
fn authorised(headers: &HeaderMap, token: &JoinToken) -> bool {
    basic_credentials(headers)
        .is_some_and(|(user, secret)| user == "server" && constant_time_eq(secret.as_bytes(), token.secret.as_bytes()))
}

/// Agents may join with the agent token, the server token or a stored bootstrap token
/// (`<id>.<secret>`) that is valid for authentication; the user name is not significant.
async fn agent_authorised(s: &PublicState, headers: &HeaderMap) -> bool {
    let Some((_, secret)) = basic_credentials(headers) else { return false };
    // Both comparisons always run, so timing does not tell which token was close.
    let agent = constant_time_eq(secret.as_bytes(), s.agent_token.secret.as_bytes());
    let server = constant_time_eq(secret.as_bytes(), s.token.secret.as_bytes());
    agent | server || (crate::pki::is_bootstrap(&secret) && crate::api::bootstrap_tokens::valid(s.store.as_ref(), &secret).await)
}

/// Gives a joining agent holding the token a node client certificate (CN `system:node:<name>`,
/// O `system:nodes`), after checking its node password.
async fn node_bootstrap(State(s): State<Arc<PublicState>>, headers: HeaderMap, Json(join): Json<NodeJoin>) -> Response {
    if !agent_authorised(&s, &headers).await {
        return (StatusCode::UNAUTHORIZED, "invalid token").into_response();
    }
    if crate::api::check_name(&join.name).is_err() || join.password.len() < 8 {
        return (StatusCode::BAD_REQUEST, "the node name must be a DNS-1123 subdomain and the node password at least 8 characters")
            .into_response();
    }
    match crate::api::node_password::check_or_record(s.store.as_ref(), &join.name, &join.password).await {
        Ok(()) => {}
        Err(crate::api::node_password::NodePasswordError::Taken(name)) => {
            return (StatusCode::FORBIDDEN, format!("node name {name:?} is already in use by another machine (node password mismatch)"))
                .into_response();
        }
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
    let spec = crate::pki::CertSpec {
        common_name: format!("system:node:{}", join.name),
        organizations: vec!["system:nodes".into()],
        client_auth: true,
        ..Default::default()
    };
    match s.ca.sign(&spec) {
        Ok(client) => Json(AgentCredentials { ca: s.ca.pem().cert.clone(), client }).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Signs a serving certificate for the kubelet port of the node whose client certificate
/// (`system:node:<name>` in `system:nodes`) authenticates the request, for its own name and
/// addresses only (see `serving_sans`).
async fn node_serving_cert(
    State(s): State<Arc<PublicState>>,
    Extension(peer): Extension<Peer>,
    Json(req): Json<ServingRequest>,
) -> Response {
    let node = peer.0.as_ref().and_then(crate::api::node_authz::node_of).map(str::to_string);
    let Some(node) = node else {
        return (StatusCode::UNAUTHORIZED, "a node client certificate (system:node:<name>) is required").into_response();
    };
    if req.ips.len() > 16 || req.dns_names.len() > 16 {
        return (StatusCode::BAD_REQUEST, "at most 16 addresses and 16 DNS names").into_response();
    }
    let dns_names = match super::serving_sans::check(s.store.as_ref(), &s.control_plane, &node, &req.dns_names, &req.ips).await {
        Ok(names) => names,
        Err(e @ super::serving_sans::Refused::Store(_)) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
        Err(e) => {
            tracing::warn!(%node, error = %e, "refused a kubelet serving certificate");
            return (StatusCode::FORBIDDEN, e.to_string()).into_response();
        }
    };
    let spec = crate::pki::CertSpec {
        common_name: format!("system:node:{node}"),
        organizations: vec!["system:nodes".into()],
        dns_names,
        ips: req.ips,
        server_auth: true,
        ..Default::default()
    };
    match s.ca.sign(&spec) {
        Ok(cert) => Json(cert).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Hands the cluster CA (certificate and key) to a joining server holding the server token.
async fn server_bootstrap(State(s): State<Arc<PublicState>>, headers: HeaderMap) -> Response {
    if !authorised(&headers, &s.token) {
        return (StatusCode::UNAUTHORIZED, "invalid server token").into_response();
    }
    let encryption_config = match &s.encryption_config {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("reading the encryption configuration: {e}")).into_response(),
        },
        None => None,
    };
    Json(ServerBootstrap { ca: s.ca.pem().clone(), encryption_config }).into_response()
}
