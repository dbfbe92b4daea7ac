//! What crosses the wire when a machine joins: the endpoints' paths, the request and answer
//! bodies, and the `Authorization: Basic` form of a token.

use base64::Engine;
use http::HeaderMap;

use crate::pki::{JoinToken, PemPair};

/// The cluster CA certificate, served to anyone (the joiner checks it against its token).
pub const CACERTS_PATH: &str = "/cacerts";
/// A joining server presents the server token and receives the CA with its key.
pub const SERVER_BOOTSTRAP_PATH: &str = "/v1-orch/server-bootstrap";
/// A joining agent presents a token, its node name and password and receives a client
/// certificate.
pub const NODE_BOOTSTRAP_PATH: &str = "/v1-orch/node-bootstrap";
/// A joined node presents its client certificate and receives a kubelet serving certificate.
pub const NODE_SERVING_CERT_PATH: &str = "/v1-orch/node-serving-cert";

/// What a joining agent sends to [`NODE_BOOTSTRAP_PATH`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct NodeJoin {
    pub name: String,
    pub password: String,
}

/// What a joined agent receives: the cluster CA and its node client certificate.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AgentCredentials {
    pub ca: String,
    pub client: PemPair,
}

/// What a joining server receives from [`SERVER_BOOTSTRAP_PATH`]: the CA and its key, and the
/// cluster's encryption configuration (its keys) when Secrets are encrypted at rest.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ServerBootstrap {
    pub ca: PemPair,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_config: Option<String>,
}

/// What a node asks its serving certificate for at [`NODE_SERVING_CERT_PATH`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ServingRequest {
    pub ips: Vec<std::net::IpAddr>,
    #[serde(default)]
    pub dns_names: Vec<String>,
}

/// The `Authorization` header value presenting `token` (`Basic base64(user:secret)`).
pub fn basic_auth(token: &JoinToken) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", token.user, token.secret)))
}

/// The `user:secret` pair of an `Authorization: Basic` header.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(value.strip_prefix("Basic ")?.trim()).ok()?;
    let (user, secret) = String::from_utf8(decoded).ok()?.split_once(':').map(|(u, s)| (u.to_string(), s.to_string()))?;
    Some((user, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_round_trips() {
        let token = JoinToken::parse("s3cret").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, basic_auth(&token).parse().unwrap());
        assert_eq!(basic_credentials(&headers), Some(("server".into(), "s3cret".into())));
    }
}
