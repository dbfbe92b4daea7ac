//! Calling a webhook: its `clientConfig` (a `url`, or a `service` reached at
//! `https://<name>.<namespace>.svc:<port><path>` through the Service's ClusterIP, looked up in
//! the store so the server process needs no cluster DNS), verified against its `caBundle` or,
//! when that is empty, the system's roots, and one HTTPS POST of the review behind the narrow
//! [`Transport`] trait (the real one is [`Https`]).

use std::sync::Arc;

use axum::http::{header, Request};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::api::objects::{self, Scope, SharedStore};
use crate::api::registry;

/// Largest webhook response read (kube-apiserver's request size limit).
const MAX_RESPONSE: usize = 3 << 20;

/// Why a webhook could not be called.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The POST failed: no connection, TLS, HTTP, a timeout.
    #[error("Post \"{url}\": {reason}")]
    Post { url: String, reason: String },
    /// The webhook answered with an error status.
    #[error("the server responded with the status code {code} but did not return more information")]
    Status { code: u16 },
}

/// Where a webhook lives, from its `clientConfig`.
pub struct Endpoint {
    target: Target,
    /// Trusting the `caBundle` (or the system's roots); the error when the bundle is unusable.
    tls: Result<Arc<rustls::ClientConfig>, String>,
}

enum Target {
    Url(String),
    Service { name: String, namespace: String, port: u16, path: String },
}

impl Endpoint {
    pub fn from_json(cc: &Value) -> Option<Self> {
        let target = match (cc["url"].as_str(), cc["service"].as_object()) {
            (Some(url), None) => Target::Url(url.to_string()),
            (None, Some(svc)) => Target::Service {
                name: svc.get("name")?.as_str()?.to_string(),
                namespace: svc.get("namespace")?.as_str()?.to_string(),
                port: svc.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()).unwrap_or(443),
                path: svc.get("path").and_then(Value::as_str).unwrap_or("/").to_string(),
            },
            _ => return None,
        };
        Some(Self { target, tls: tls_config(cc["caBundle"].as_str().unwrap_or_default()).map(Arc::new) })
    }

    /// Where the review goes for a call with `timeout`: the URL kube-apiserver posts to (with
    /// its `?timeout=` parameter) and the address connected to.
    pub async fn resolve(&self, store: &SharedStore, timeout: std::time::Duration) -> Result<Resolved, CallError> {
        let timeout = format!("?timeout={}s", timeout.as_secs());
        let tls = |url: &str| self.tls.clone().map_err(|reason| CallError::Post { url: url.into(), reason });
        match &self.target {
            Target::Url(url) => {
                let url = format!("{url}{timeout}");
                let uri: http::Uri = url.parse().map_err(|e| CallError::Post { url: url.clone(), reason: format!("{e}") })?;
                let host = uri.host().unwrap_or_default().trim_matches(['[', ']']).to_string();
                let port = uri.port_u16().unwrap_or(443);
                let path = uri.path_and_query().map_or("/".into(), |p| p.to_string());
                Ok(Resolved { tls: tls(&url)?, server_name: host.clone(), connect: (host, port), path, url })
            }
            Target::Service { name, namespace, port, path } => {
                let host = format!("{name}.{namespace}.svc");
                let url = format!("https://{host}:{port}{path}{timeout}");
                let services = registry::lookup("", "v1", "services").expect("services are built in");
                let scope = Scope::new(services, Some(namespace), Default::default());
                let service = objects::get(store.as_ref(), &scope, name).await.map_err(|e| {
                    // Worded as kube-apiserver's service lister words it.
                    let reason = if e.reason == "NotFound" { format!("service \"{name}\" not found") } else { e.message };
                    CallError::Post { url: url.clone(), reason }
                })?;
                let ip = service["spec"]["clusterIP"].as_str().filter(|ip| !ip.is_empty() && *ip != "None");
                let ip = ip.ok_or_else(|| CallError::Post { url: url.clone(), reason: format!("service \"{name}\" has no cluster IP") })?;
                Ok(Resolved { tls: tls(&url)?, server_name: host, connect: (ip.to_string(), *port), path: format!("{path}{timeout}"), url })
            }
        }
    }
}

/// The TLS of a webhook call: its `caBundle` (base64 of PEM) as the only root, else the
/// system's roots.
fn tls_config(ca_bundle: &str) -> Result<rustls::ClientConfig, String> {
    if ca_bundle.is_empty() {
        return crate::pki::roots_client_config(crate::pki::system_roots()).map_err(|e| e.to_string());
    }
    let pem = base64::engine::general_purpose::STANDARD.decode(ca_bundle).map_err(|e| format!("caBundle is not base64: {e}"))?;
    let pem = String::from_utf8(pem).map_err(|_| "caBundle is not PEM".to_string())?;
    crate::pki::client_config(&pem, None).map_err(|e| format!("unable to load root certificates: {e}"))
}

/// A webhook call, resolved.
pub struct Resolved {
    /// The URL as kube-apiserver names it in errors.
    pub url: String,
    /// The name the serving certificate must carry.
    pub server_name: String,
    /// The host (name or address) and port connected to.
    pub connect: (String, u16),
    pub path: String,
    pub tls: Arc<rustls::ClientConfig>,
}

/// Sends a review and reads the answer.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// POSTs `body` (JSON) to `to`; the response body on a 2xx answer.
    async fn post(&self, to: &Resolved, body: Vec<u8>) -> Result<Bytes, CallError>;
}

/// HTTPS with rustls over one new connection per call.
pub struct Https;

#[async_trait::async_trait]
impl Transport for Https {
    async fn post(&self, to: &Resolved, body: Vec<u8>) -> Result<Bytes, CallError> {
        let fail = |reason: &dyn std::fmt::Display| CallError::Post { url: to.url.clone(), reason: reason.to_string() };
        let (host, port) = (&to.connect.0, to.connect.1);
        let tcp =
            tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| fail(&format_args!("dial tcp {host}:{port}: {e}")))?;
        let name = rustls::pki_types::ServerName::try_from(to.server_name.clone()).map_err(|e| fail(&e))?;
        let mut config = (*to.tls).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| fail(&format_args!("tls: failed to verify certificate: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| fail(&e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "webhook connection ended");
            }
        });
        let request = Request::post(&to.path)
            .header(header::HOST, format!("{}:{port}", to.server_name))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail(&e))?;
        let response = sender.send_request(request).await.map_err(|e| fail(&e))?;
        let code = response.status();
        let bytes = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE).collect().await.map_err(|e| fail(&e))?.to_bytes();
        if !code.is_success() {
            return Err(CallError::Status { code: code.as_u16() });
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn services_resolve_to_their_cluster_ip_under_their_dns_name() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(crate::store::LocalStore::open(dir.path(), &Default::default()).unwrap());
        let service = json!({ "metadata": { "name": "checker", "namespace": "policy" }, "spec": { "clusterIP": "10.43.0.50" } });
        let key = registry::lookup("", "v1", "services").unwrap().key(Some("policy"), "checker");
        store.txn(crate::store::TxnRequest::put(key, serde_json::to_vec(&service).unwrap())).await.unwrap();
        let endpoint =
            Endpoint::from_json(&json!({ "service": { "name": "checker", "namespace": "policy", "port": 8443, "path": "/v" } })).unwrap();
        let to = endpoint.resolve(&store, std::time::Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            (to.url.as_str(), to.server_name.as_str(), to.path.as_str()),
            ("https://checker.policy.svc:8443/v?timeout=5s", "checker.policy.svc", "/v?timeout=5s")
        );
        assert_eq!(to.connect, ("10.43.0.50".to_string(), 8443));

        let missing = Endpoint::from_json(&json!({ "service": { "name": "gone", "namespace": "policy" } })).unwrap();
        let err = missing.resolve(&store, std::time::Duration::from_secs(10)).await.err().unwrap();
        assert_eq!(err.to_string(), "Post \"https://gone.policy.svc:443/?timeout=10s\": service \"gone\" not found");

        let url = Endpoint::from_json(&json!({ "url": "https://[::1]:9443/hook" })).unwrap();
        let to = url.resolve(&store, std::time::Duration::from_secs(10)).await.unwrap();
        assert_eq!((to.connect.0.as_str(), to.connect.1, to.path.as_str()), ("::1", 9443, "/hook?timeout=10s"));
        let bad_bundle = Endpoint::from_json(&json!({ "url": "https://127.0.0.1/", "caBundle": "!!" })).unwrap();
        assert!(bad_bundle
            .resolve(&store, std::time::Duration::from_secs(1))
            .await
            .err()
            .unwrap()
            .to_string()
            .contains("caBundle is not base64"));
    }
}
