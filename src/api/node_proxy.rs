//! The API's path to node agents: `pods/log`, `pods/exec`, `pods/attach`, `pods/portforward`
//! and `nodes/proxy` are forwarded to the node's kubelet port (its InternalIP and
//! `status.daemonEndpoints.kubeletEndpoint.Port`, 10250 by default) over TLS verified against
//! the cluster CA, authenticated with this server's own client certificate. Upgraded
//! connections (exec, attach and port-forward over SPDY or WebSocket) are spliced through.
//! A pod stream's container must be one of the pod's, and every path segment sent to the
//! kubelet is percent-encoded, so no name can add segments or `..` to the kubelet's path.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::objects::{self, Scope};
use super::registry;
use super::status::ApiError;

/// The kubelet port when a Node does not say.
const KUBELET_PORT: u16 = 10250;

/// What the proxy needs from the request.
pub struct Forward<'a> {
    pub method: Method,
    pub path: &'a str,
    pub query: &'a HashMap<String, String>,
    pub raw_query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub upgrade: Option<OnUpgrade>,
}

/// Forwards a pod stream or node proxy request to the kubelet of the node concerned.
pub async fn forward(
    store: &dyn crate::store::Store,
    tls: Option<&Arc<rustls::ClientConfig>>,
    scope: &Scope<'_>,
    name: &str,
    request: Forward<'_>,
    body: Body,
) -> Result<Response, ApiError> {
    let tls = tls.ok_or_else(|| ApiError::service_unavailable("this API server has no kubelet client credentials"))?;
    let sub = scope.subresource.unwrap_or_default();
    let (node, path) = if scope.resource.plural == "nodes" {
        let rest = request.path.split_once("/proxy").map(|(_, rest)| rest).unwrap_or_default();
        (name.to_string(), if rest.is_empty() { "/".to_string() } else { rest.to_string() })
    } else {
        let pod = objects::get(store, scope, name).await?;
        let node = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()).map(str::to_string);
        let node = node.ok_or_else(|| ApiError::bad_request(format!("pod {name} does not have a host assigned")))?;
        let (ns, pod_name) = (segment(scope.namespace.unwrap_or_default()), segment(name));
        let path = match sub {
            "portforward" => format!("/portForward/{ns}/{pod_name}"),
            "log" => format!("/containerLogs/{ns}/{pod_name}/{}", segment(&container(&pod, name, request.query)?)),
            _ => format!("/{sub}/{ns}/{pod_name}/{}", segment(&container(&pod, name, request.query)?)),
        };
        (node, path)
    };
    let nodes = registry::lookup("", "v1", "nodes").expect("nodes are built in");
    let node_obj = objects::get(store, &Scope::new(nodes, None, scope.net), &node).await?;
    let (ip, port) =
        kubelet_address(&node_obj).ok_or_else(|| ApiError::service_unavailable(format!("node {node:?} has no InternalIP address")))?;
    let query = request.raw_query.map(|q| format!("?{q}")).unwrap_or_default();
    send(tls, ip, port, request.method, &format!("{path}{query}"), request.headers, request.upgrade, body).await
}

/// One path segment, percent-encoded but for RFC 3986's unreserved characters.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The container a pod stream is about: `?container=` (one of the pod's, as kube-apiserver
/// checks), else the pod's only container.
fn container(pod: &Value, name: &str, query: &HashMap<String, String>) -> Result<String, ApiError> {
    if let Some(c) = query.get("container").filter(|c| !c.is_empty()) {
        let known = ["initContainers", "containers", "ephemeralContainers"]
            .iter()
            .flat_map(|l| pod["spec"][*l].as_array().into_iter().flatten())
            .any(|k| k["name"] == c.as_str());
        if !known {
            return Err(ApiError::bad_request(format!("container {c} is not valid for pod {name}")));
        }
        return Ok(c.clone());
    }
    let names: Vec<&str> = pod["spec"]["containers"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
    match names.as_slice() {
        [only] => Ok(only.to_string()),
        _ => Err(ApiError::bad_request(format!("a container name must be specified for pod {name}, choose one of: [{}]", names.join(" ")))),
    }
}

fn kubelet_address(node: &Value) -> Option<(IpAddr, u16)> {
    let addresses = node["status"]["addresses"].as_array()?;
    let ip = ["InternalIP", "ExternalIP"]
        .iter()
        .find_map(|kind| addresses.iter().find(|a| a["type"] == *kind).and_then(|a| a["address"].as_str()?.parse().ok()))?;
    let port =
        node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64().and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0);
    Some((ip, port.unwrap_or(KUBELET_PORT)))
}

/// Headers that belong to one hop only and are not forwarded (upgrade headers are, for
/// upgrade requests).
fn hop_by_hop(name: &str, upgrading: bool) -> bool {
    matches!(name, "host" | "authorization" | "keep-alive" | "proxy-connection" | "te" | "trailer" | "transfer-encoding")
        || (!upgrading && matches!(name, "connection" | "upgrade"))
}

#[allow(clippy::too_many_arguments)]
async fn send(
    tls: &Arc<rustls::ClientConfig>,
    ip: IpAddr,
    port: u16,
    method: Method,
    path_and_query: &str,
    headers: &HeaderMap,
    upgrade: Option<OnUpgrade>,
    body: Body,
) -> Result<Response, ApiError> {
    let unreachable = |e: &dyn std::fmt::Display| ApiError::service_unavailable(format!("error dialing the kubelet at {ip}:{port}: {e}"));
    let tcp = tokio::net::TcpStream::connect((ip, port)).await.map_err(|e| unreachable(&e))?;
    let mut config = (**tls).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = connector.connect(rustls::pki_types::ServerName::IpAddress(ip.into()), tcp).await.map_err(|e| unreachable(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "kubelet connection ended");
        }
    });
    let upgrading = upgrade.is_some();
    let mut builder = Request::builder().method(method).uri(path_and_query).header("host", format!("{ip}:{port}"));
    for (k, v) in headers {
        if !hop_by_hop(k.as_str(), upgrading) {
            builder = builder.header(k, v);
        }
    }
    let request = builder.body(body).map_err(|e| ApiError::bad_request(format!("cannot forward the request: {e}")))?;
    let mut response = sender.send_request(request).await.map_err(|e| unreachable(&e))?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client) = upgrade else { return Err(ApiError::bad_request("the kubelet switched protocols on a plain request")) };
        let backend = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            match (client.await, backend.await) {
                (Ok(client), Ok(backend)) => {
                    let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(backend)).await;
                }
                (c, b) => tracing::debug!(client = c.is_ok(), kubelet = b.is_ok(), "an upgraded stream could not be spliced"),
            }
        });
        let mut out = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (k, v) in response.headers() {
            out = out.header(k, v);
        }
        return Ok(out.body(Body::empty()).expect("valid response"));
    }
    let (parts, incoming) = response.into_parts();
    Ok(Response::from_parts(parts, Body::new(incoming)).into_response())
}

#[cfg(test)]
mod path_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn segments_cannot_add_path() {
        assert_eq!(segment("web-1.x"), "web-1.x");
        assert_eq!(segment("../../etc"), "..%2F..%2Fetc");
        assert_eq!(segment("a b?c#"), "a%20b%3Fc%23");
        let pod = json!({ "spec": { "containers": [{ "name": "app" }], "initContainers": [{ "name": "init" }] } });
        let query = |c: &str| HashMap::from([("container".to_string(), c.to_string())]);
        assert_eq!(container(&pod, "p", &query("init")).unwrap(), "init");
        let err = container(&pod, "p", &query("../../x")).unwrap_err();
        assert_eq!((err.code.as_u16(), err.message.as_str()), (400, "container ../../x is not valid for pod p"));
    }
}
