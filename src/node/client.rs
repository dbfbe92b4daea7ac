//! The agent's connection to the API: a `kube::Client` over HTTPS (HTTP/2, so a node's watch
//! and its writes share one TLS connection) that trusts only the cluster CA and presents the
//! node's own `system:node:<name>` client certificate.

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::middleware::BaseUriLayer;
use tower::ServiceBuilder;

use super::NodeError;
use crate::join::AgentCredentials;

/// A client of the API server at `server` (e.g. `https://10.0.0.1:6443`) acting as the node
/// whose certificate `creds` holds.
pub fn node_client(server: &str, creds: &AgentCredentials) -> Result<kube::Client, NodeError> {
    let base: http::Uri = server.trim_end_matches('/').parse().map_err(|e| NodeError::Flag(format!("--join {server:?}: {e}")))?;
    let tls = crate::pki::client_config(&creds.ca, Some(&creds.client))?;
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http2().wrap_connector(http);
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .http2_only(true)
        .http2_keep_alive_interval(Duration::from_secs(15))
        .http2_keep_alive_while_idle(true)
        .build::<_, kube::client::Body>(connector);
    let service = ServiceBuilder::new().layer(BaseUriLayer::new(base)).service(hyper);
    Ok(kube::Client::new(service, "default"))
}
