//! A pooled HTTPS (HTTP/2) client for node-to-node calls with bincode bodies and per-call
//! timeouts. Its TLS configuration decides whom it trusts and which certificate it presents.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::{de::DeserializeOwned, Serialize};

use super::codec::{decode, encode};

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("call to {0} timed out")]
    Timeout(String),
    #[error("undecodable reply: {0}")]
    Decode(String),
}

#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpClient {
    /// A client speaking HTTP/2 over TLS configured by `tls` (see `crate::pki`).
    pub fn new(tls: rustls::ClientConfig) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(2)));
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http2().wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .http2_only(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .build(connector);
        Self { inner }
    }

    /// Sends `req` to `url` and returns the response with its body, within `timeout`.
    pub async fn send(
        &self,
        req: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<http::Response<hyper::body::Incoming>, RpcError> {
        let url = req.uri().to_string();
        let fut = self.inner.request(req);
        match tokio::time::timeout(timeout, fut).await {
            Err(_) => Err(RpcError::Timeout(url)),
            Ok(Err(e)) => Err(RpcError::Unreachable { url, reason: error_chain(&e) }),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// Sends `req` and returns the status and whole body, within `timeout`.
    pub async fn fetch(&self, req: http::Request<Full<Bytes>>, timeout: Duration) -> Result<(http::StatusCode, Bytes), RpcError> {
        let url = req.uri().to_string();
        let resp = self.send(req, timeout).await?;
        let status = resp.status();
        match tokio::time::timeout(timeout, resp.into_body().collect()).await {
            Err(_) => Err(RpcError::Timeout(url)),
            Ok(Err(e)) => Err(RpcError::Unreachable { url, reason: e.to_string() }),
            Ok(Ok(b)) => Ok((status, b.to_bytes())),
        }
    }

    /// POSTs a bincode body and decodes a bincode reply.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(&self, url: &str, body: &Req, timeout: Duration) -> Result<Resp, RpcError> {
        let req = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .body(Full::new(encode(body)))
            .map_err(|e| RpcError::Unreachable { url: url.into(), reason: e.to_string() })?;
        let (status, bytes) = self.fetch(req, timeout).await?;
        if !status.is_success() {
            return Err(RpcError::Status { url: url.into(), status: status.as_u16(), body: String::from_utf8_lossy(&bytes).into_owned() });
        }
        decode(&bytes)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
