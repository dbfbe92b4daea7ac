//! The joining side: fetch the cluster CA without trusting anyone yet and check it against the
//! hash in the token; then a server (`orch server --join`) presents the token to receive the
//! CA's key (every server signs its own certificates), and an agent presents it with its node
//! name and password to receive a node client certificate.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use super::wire::{self, AgentCredentials, NodeJoin, ServerBootstrap, ServingRequest};
use crate::pki::{self, JoinToken, PemPair};
use crate::rpc::{HttpClient, RpcError};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("cannot reach {url}: {source}")]
    Unreachable { url: String, source: RpcError },
    #[error("the server at {url} presents CA {got}, but the token expects {expected}: wrong server, or a token from another cluster")]
    CaMismatch { url: String, expected: String, got: String },
    #[error("the server at {url} refused the token (wrong token?)")]
    WrongToken { url: String },
    #[error("{0}")]
    NameTaken(String),
    #[error("unexpected answer from {url}: HTTP {status}: {body}")]
    Unexpected { url: String, status: u16, body: String },
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
}

async fn fetch(http: &HttpClient, req: http::Request<Full<Bytes>>) -> Result<(http::StatusCode, Bytes), JoinError> {
    let url = req.uri().to_string();
    http.fetch(req, TIMEOUT).await.map_err(|source| JoinError::Unreachable { url, source })
}

/// Fetches the CA from `/cacerts` without trusting it yet and checks it against the token.
async fn verified_ca(seed: &str, token: &JoinToken) -> Result<String, JoinError> {
    let url = format!("{seed}{}", wire::CACERTS_PATH);
    let insecure = HttpClient::new(pki::insecure_client_config());
    let (status, body) = fetch(&insecure, http::Request::get(&url).body(Full::default()).expect("valid request")).await?;
    if !status.is_success() {
        return Err(JoinError::Unexpected { url, status: status.as_u16(), body: String::from_utf8_lossy(&body).into() });
    }
    let ca_pem = String::from_utf8_lossy(&body).into_owned();
    if !token.matches_ca(&ca_pem) {
        return Err(JoinError::CaMismatch { url, expected: token.ca_hash.clone().unwrap_or_default(), got: pki::ca_hash(&ca_pem) });
    }
    if token.ca_hash.is_none() {
        tracing::warn!("the token has no CA hash (K10...), so the server's CA is trusted on first use");
    }
    Ok(ca_pem)
}

/// The agent side of joining: verifies the server against the token, then asks for a node
/// client certificate for `name`, proving the machine with its node `password`.
pub async fn join_as_agent(server: &str, token: &JoinToken, name: &str, password: &str) -> Result<AgentCredentials, JoinError> {
    let server = server.trim_end_matches('/');
    let ca_pem = verified_ca(server, token).await?;
    let verified = HttpClient::new(pki::client_config(&ca_pem, None)?);
    let url = format!("{server}{}", wire::NODE_BOOTSTRAP_PATH);
    let body = serde_json::to_string(&NodeJoin { name: name.into(), password: password.into() }).expect("serialisable");
    let req = http::Request::post(&url)
        .header(http::header::AUTHORIZATION, wire::basic_auth(token))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("valid request");
    let (status, body) = fetch(&verified, req).await?;
    match status.as_u16() {
        200 => serde_json::from_slice(&body).map_err(|e| JoinError::Unexpected { url, status: 200, body: e.to_string() }),
        401 => Err(JoinError::WrongToken { url }),
        403 => Err(JoinError::NameTaken(String::from_utf8_lossy(&body).into_owned())),
        s => Err(JoinError::Unexpected { url, status: s, body: String::from_utf8_lossy(&body).into() }),
    }
}

/// Fetches and verifies the cluster CA from the server at `seed`, returning it with its key (and
/// the cluster's encryption configuration, if any).
pub async fn fetch_cluster_ca(seed: &str, token: &JoinToken) -> Result<ServerBootstrap, JoinError> {
    let seed = seed.trim_end_matches('/');
    let ca_pem = verified_ca(seed, token).await?;
    let verified = HttpClient::new(pki::client_config(&ca_pem, None)?);
    let url = format!("{seed}{}", wire::SERVER_BOOTSTRAP_PATH);
    let server = JoinToken { user: "server".into(), ..token.clone() };
    let req = http::Request::post(&url)
        .header(http::header::AUTHORIZATION, wire::basic_auth(&server))
        .body(Full::default())
        .expect("valid request");
    let (status, body) = fetch(&verified, req).await?;
    match status.as_u16() {
        200 => {}
        401 => return Err(JoinError::WrongToken { url }),
        s => return Err(JoinError::Unexpected { url, status: s, body: String::from_utf8_lossy(&body).into() }),
    }
    let boot: ServerBootstrap =
        serde_json::from_slice(&body).map_err(|e| JoinError::Unexpected { url: url.clone(), status: 200, body: e.to_string() })?;
    if boot.ca.cert != ca_pem {
        return Err(JoinError::CaMismatch { url, expected: pki::ca_hash(&ca_pem), got: pki::ca_hash(&boot.ca.cert) });
    }
    Ok(boot)
}

/// Asks the server at `server` to sign a serving certificate for this node's kubelet port
/// covering `ips`, authenticating with the node's client certificate.
pub async fn request_serving_cert(server: &str, creds: &AgentCredentials, ips: &[std::net::IpAddr]) -> Result<PemPair, JoinError> {
    let url = format!("{}{}", server.trim_end_matches('/'), wire::NODE_SERVING_CERT_PATH);
    let client = HttpClient::new(pki::client_config(&creds.ca, Some(&creds.client))?);
    let body = serde_json::to_string(&ServingRequest { ips: ips.to_vec(), dns_names: Vec::new() }).expect("serialisable");
    let req = http::Request::post(&url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("valid request");
    let (status, body) = fetch(&client, req).await?;
    match status.as_u16() {
        200 => serde_json::from_slice(&body).map_err(|e| JoinError::Unexpected { url, status: 200, body: e.to_string() }),
        s => Err(JoinError::Unexpected { url, status: s, body: String::from_utf8_lossy(&body).into() }),
    }
}
