//! The API's path to node agents: `pods/log`, `pods/exec`, `pods/attach`, `pods/portforward`
//! and `nodes/proxy` are forwarded to the node's kubelet port (its InternalIP and
//! `status.daemonEndpoints.kubeletEndpoint.Port`, 10250 by default) over TLS verified against
//! the cluster CA, authenticated with the API's kubelet client certificate (an identity of its
//! own, with no rights on the API or the server-internal routes). The kubelet must present the
//! serving certificate of that very node (`system:node:<name>`), so a Node whose reported
//! address or port points elsewhere (another node, a server's port) is not followed; a
//! `nodes/proxy` path may not climb out with dot segments (plain or percent-encoded) nor name
//! the server-internal `/raft` and `/store` routes. Upgraded connections (exec, attach and
//! port-forward over SPDY or WebSocket) are spliced through.
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
        let prefix = format!("/nodes/{name}/proxy");
        let rest = request.path.find(&prefix).map(|at| &request.path[at + prefix.len()..]).unwrap_or_default();
        (name.to_string(), proxy_path(rest)?)
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
    let target = Kubelet { node: &node, ip, port };
    send(tls, &target, request.method, &format!("{path}{query}"), request.headers, request.upgrade, body).await
}

/// GETs `path` from the kubelet of the Node object `node` (the API's own reads, such as
/// `metrics.k8s.io` gathering `/stats/summary`), refusing any answer but 200.
pub async fn kubelet_get(tls: &Arc<rustls::ClientConfig>, node: &Value, path: &str) -> Result<bytes::Bytes, ApiError> {
    let name = node["metadata"]["name"].as_str().unwrap_or_default();
    let (ip, port) =
        kubelet_address(node).ok_or_else(|| ApiError::service_unavailable(format!("node {name:?} has no InternalIP address")))?;
    let target = Kubelet { node: name, ip, port };
    let response = send(tls, &target, Method::GET, path, &HeaderMap::new(), None, Body::empty()).await?;
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .map_err(|e| ApiError::service_unavailable(format!("reading {path} from node {name:?}: {e}")))?
        .to_bytes();
    if status != StatusCode::OK {
        return Err(ApiError::service_unavailable(format!("node {name:?} answered {path} with {status}")));
    }
    Ok(body)
}

/// Server-internal routes a node proxy path may never name, even on a kubelet.
const INTERNAL_PREFIXES: [&str; 2] = ["raft", "store"];

/// The kubelet path of a `nodes/proxy` request (`rest` follows `.../proxy`): refused when a
/// segment is a dot segment or hides a separator once percent-decoded, or when it names a
/// server-internal route.
fn proxy_path(rest: &str) -> Result<String, ApiError> {
    if rest.is_empty() {
        return Ok("/".into());
    }
    let refuse = || ApiError::bad_request(format!("invalid node proxy path {rest:?}"));
    let tail = rest.strip_prefix('/').ok_or_else(refuse)?;
    let segments: Vec<Vec<u8>> = tail.split('/').map(percent_decode).collect();
    let escapes = |s: &Vec<u8>| s == b"." || s == b".." || s.iter().any(|b| matches!(b, b'/' | b'\\' | 0));
    if segments.iter().any(escapes) {
        return Err(refuse());
    }
    let first = segments.iter().find(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).to_ascii_lowercase());
    if first.is_some_and(|f| INTERNAL_PREFIXES.contains(&f.as_str())) {
        return Err(ApiError::forbidden_message(&format!("the node proxy does not reach {rest:?}")));
    }
    Ok(rest.to_string())
}

/// The bytes of a percent-encoded path segment (a malformed escape stays as it is).
fn percent_decode(segment: &str) -> Vec<u8> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
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

/// Where a request goes: the kubelet of `node`, at `ip:port`.
struct Kubelet<'a> {
    node: &'a str,
    ip: IpAddr,
    port: u16,
}

/// Whether the verified serving certificate of a TLS connection is the one of `node`.
fn presents_node(stream: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>, node: &str) -> bool {
    let identity = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| crate::pki::Identity::from_der(c));
    identity.is_some_and(|id| id.user == format!("system:node:{node}"))
}

async fn send(
    tls: &Arc<rustls::ClientConfig>,
    target: &Kubelet<'_>,
    method: Method,
    path_and_query: &str,
    headers: &HeaderMap,
    upgrade: Option<OnUpgrade>,
    body: Body,
) -> Result<Response, ApiError> {
    let (ip, port) = (target.ip, target.port);
    let unreachable = |e: &dyn std::fmt::Display| ApiError::service_unavailable(format!("error dialing the kubelet at {ip}:{port}: {e}"));
    let tcp = tokio::net::TcpStream::connect((ip, port)).await.map_err(|e| unreachable(&e))?;
    let mut config = (**tls).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = connector.connect(rustls::pki_types::ServerName::IpAddress(ip.into()), tcp).await.map_err(|e| unreachable(&e))?;
    if !presents_node(&stream, target.node) {
        tracing::warn!(node = target.node, %ip, port, "a kubelet address answered with another identity's certificate");
        return Err(unreachable(&format_args!("its certificate is not the one of node {:?}", target.node)));
    }
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
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn proxy_paths_cannot_climb_out_or_reach_the_server_routes() {
        assert_eq!(proxy_path("").unwrap(), "/");
        assert_eq!(proxy_path("/healthz").unwrap(), "/healthz");
        assert_eq!(proxy_path("/containerLogs/ns/p/c").unwrap(), "/containerLogs/ns/p/c");
        for bad in ["/../raft", "/x/%2e%2E/y", "/..%2fraft", "/a%5c..", "/raft/status", "//store/range", "/RAFT", "nodes"] {
            assert!(proxy_path(bad).is_err(), "{bad:?} must be refused");
        }
    }

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
