//! The node's connection to the API: a `kube::Client` over HTTPS (HTTP/2, so a node's watches
//! and its writes share one TLS connection per server) that trusts only the cluster CA,
//! presents the node's own `system:node:<name>` client certificate, and sends each request to
//! the API server in use of the node's [`ApiServers`], failing over between them.

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::servers::failover::Failover;
use super::servers::upkeep::Upkeep;
use super::servers::ApiServers;
use super::NodeError;
use crate::join::AgentCredentials;

/// How often an idle connection is pinged, and how long an answer may take: a server that
/// died without closing its connections is left within their sum.
const KEEP_ALIVE: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(10));

/// A client of the API servers `servers` acting as the node whose certificate `creds` holds,
/// and the upkeep of `servers` (learning and probing them) to run beside it.
pub fn node_client(servers: &ApiServers, creds: &AgentCredentials) -> Result<(kube::Client, Upkeep), NodeError> {
    let tls = crate::pki::client_config(&creds.ca, Some(&creds.client))?;
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http2().wrap_connector(http);
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .http2_only(true)
        .http2_keep_alive_interval(KEEP_ALIVE.0)
        .http2_keep_alive_timeout(KEEP_ALIVE.1)
        .http2_keep_alive_while_idle(true)
        .build::<_, kube::client::Body>(connector);
    let client = kube::Client::new(Failover::new(servers.clone(), hyper.clone()), "default");
    Ok((client.clone(), Upkeep { servers: servers.clone(), client, http: hyper }))
}
