//! The kubelet's streaming endpoints: `/exec/{ns}/{pod}/{container}?command=…&stdin=…&stdout=…
//! &stderr=…&tty=…`, `/attach/{ns}/{pod}/{container}?…` and `/portForward/{ns}/{pod}`
//! (`?ports=` for WebSocket clients). Each upgrades to a WebSocket (exec and attach with the
//! `channel.k8s.io` protocols up to v5; port-forward with `v4.channel.k8s.io` or tunneled
//! SPDY) or to SPDY/3.1 (`Upgrade: SPDY/3.1`, `X-Stream-Protocol-Version`), and runs the
//! session on the container runtime.

mod channel;
mod port_forward;
mod session;
mod spdy;
mod spdy_command;
mod websocket;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use hyper_util::rt::TokioIo;

use super::api_state::KubeletApi;
use super::layout::{LABEL_ATTEMPT, LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE};
use crate::node::runtime::{ContainerInfo, ContainerRuntime, ContainerState, Result as RuntimeResult, StreamRequest, StreamSession};
use channel::Version;
use session::Kind;
use spdy::conn::Connection;

/// What an exec or attach request asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Options {
    /// From the query (`command` repeated; booleans as `true` or `1`, as kubectl and the API
    /// server send them).
    fn from_query(query: &[(String, String)]) -> Self {
        let flag = |name: &str| query.iter().any(|(k, v)| k == name && matches!(v.as_str(), "true" | "1"));
        Options {
            command: query.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect(),
            stdin: flag("stdin"),
            stdout: flag("stdout"),
            stderr: flag("stderr"),
            tty: flag("tty"),
        }
    }

    fn streams(&self) -> StreamRequest {
        StreamRequest { stdin: self.stdin, stdout: self.stdout, stderr: self.stderr && !self.tty, tty: self.tty }
    }
}

fn bad_request(message: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, message.into()).into_response()
}

/// The running containers of pod `ns/pod` (named `container`, if given), newest attempt first.
pub async fn running_containers(runtime: &dyn ContainerRuntime, ns: &str, pod: &str, container: Option<&str>) -> Vec<ContainerInfo> {
    let Ok(all) = runtime.list_containers().await else { return vec![] };
    let mut found: Vec<ContainerInfo> = all
        .into_iter()
        .filter(|c| {
            let l = |k: &str| c.labels.get(k).map(String::as_str);
            l(LABEL_POD_NAMESPACE) == Some(ns)
                && l(LABEL_POD_NAME) == Some(pod)
                && container.is_none_or(|name| l(LABEL_CONTAINER_NAME) == Some(name))
                && matches!(c.state, ContainerState::Running { .. })
        })
        .collect();
    let attempt = |c: &ContainerInfo| c.labels.get(LABEL_ATTEMPT).and_then(|a| a.parse::<u32>().ok()).unwrap_or(0);
    found.sort_by_key(|c| std::cmp::Reverse(attempt(c)));
    found
}

async fn running_container(api: &KubeletApi, ns: &str, pod: &str, container: &str) -> Result<ContainerInfo, Response> {
    let found = running_containers(api.runtime.as_ref(), ns, pod, Some(container)).await.into_iter().next();
    found.ok_or_else(|| (StatusCode::NOT_FOUND, format!("container {container:?} in pod {pod:?} is not running")).into_response())
}

pub async fn exec(
    State(api): State<Arc<KubeletApi>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    request: Request,
) -> Response {
    let opts = Options::from_query(&query);
    if opts.command.is_empty() {
        return bad_request("you must specify at least one command for the container");
    }
    let id = match running_container(&api, &ns, &pod, &container).await {
        Ok(c) => c.id,
        Err(response) => return response,
    };
    tracing::info!(%ns, %pod, %container, command = ?opts.command, tty = opts.tty, "exec");
    let (runtime, cmd, streams) = (api.runtime.clone(), opts.command.clone(), opts.streams());
    upgrade_command(api, request, opts, Kind::Exec, Box::pin(async move { runtime.exec_stream(&id, &cmd, streams).await })).await
}

pub async fn attach(
    State(api): State<Arc<KubeletApi>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    request: Request,
) -> Response {
    let opts = Options::from_query(&query);
    let id = match running_container(&api, &ns, &pod, &container).await {
        Ok(c) => c.id,
        Err(response) => return response,
    };
    tracing::info!(%ns, %pod, %container, tty = opts.tty, "attach");
    let (runtime, streams) = (api.runtime.clone(), opts.streams());
    upgrade_command(api, request, opts, Kind::Attach, Box::pin(async move { runtime.attach(&id, streams).await })).await
}

/// Upgrades an exec or attach request and serves it; `start` opens the runtime session.
async fn upgrade_command(
    api: Arc<KubeletApi>,
    mut request: Request,
    opts: Options,
    kind: Kind,
    start: BoxFuture<'static, RuntimeResult<StreamSession>>,
) -> Response {
    if !(opts.stdin || opts.stdout || opts.stderr) {
        return bad_request("you must specify at least one of stdin, stdout, stderr");
    }
    if spdy::is_upgrade(request.headers()) {
        let Some(name) = spdy::negotiate(request.headers(), channel::SPDY_PROTOCOLS) else {
            return bad_request(format!("no common stream protocol; this kubelet speaks {}", channel::SPDY_PROTOCOLS.join(", ")));
        };
        let version = Version::from_name(name).expect("served protocols have versions");
        return upgrade_spdy(&api, &mut request, name, move |conn| spdy_command::serve_command(conn, version, opts, kind, start));
    }
    let (mut parts, _) = request.into_parts();
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws.protocols(channel::WEBSOCKET_PROTOCOLS.iter().copied()),
        Err(e) => return e.into_response(),
    };
    let version = ws.selected_protocol().and_then(|p| p.to_str().ok()).and_then(Version::from_name).unwrap_or(Version::V1);
    upgrade_websocket(api, ws, move |socket| websocket::serve_command(socket, version, opts, kind, start))
}

/// Answers a WebSocket upgrade and serves the socket with `serve`, as a task of the kubelet.
fn upgrade_websocket<F>(api: Arc<KubeletApi>, ws: WebSocketUpgrade, serve: impl FnOnce(WebSocket) -> F + Send + 'static) -> Response
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    ws.on_upgrade(move |socket| async move {
        let _ = api.tasks.spawn(serve(socket)).await;
    })
}

/// Answers a SPDY upgrade with `protocol` and serves the connection with `serve`, as a task of
/// the kubelet.
fn upgrade_spdy<F>(
    api: &KubeletApi,
    request: &mut Request,
    protocol: &'static str,
    serve: impl FnOnce(Connection) -> F + Send + 'static,
) -> Response
where
    F: std::future::Future<Output = ()> + Send,
{
    let upgrade = hyper::upgrade::on(request);
    api.tasks.spawn(async move {
        match upgrade.await {
            Ok(io) => serve(Connection::serve(TokioIo::new(io))).await,
            Err(e) => tracing::debug!(error = %e, "SPDY upgrade failed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", spdy::UPGRADE)
        .header(spdy::PROTOCOL_HEADER, protocol)
        .body(axum::body::Body::empty())
        .expect("a valid response")
}

/// The network namespace of a running pod's containers.
async fn pod_netns(api: &KubeletApi, ns: &str, pod: &str) -> Result<Option<PathBuf>, Response> {
    let found = running_containers(api.runtime.as_ref(), ns, pod, None).await.into_iter().next();
    found.map(|c| c.netns).ok_or_else(|| (StatusCode::NOT_FOUND, format!("pod {ns}/{pod} has no running container")).into_response())
}

/// A WebSocket port-forward without usable `ports` (a 400 answer).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum PortsError {
    #[error("invalid port {0:?}")]
    Invalid(String),
    #[error("query parameter \"ports\" is required")]
    Missing,
}

/// The ports of a WebSocket port-forward: `?ports=80,443` (or repeated).
fn ports(query: &[(String, String)]) -> Result<Vec<u16>, PortsError> {
    let values = query.iter().filter(|(k, _)| k == "ports").flat_map(|(_, v)| v.split(','));
    let ports: Vec<u16> = values
        .map(|p| p.trim().parse().ok().filter(|p| *p != 0).ok_or_else(|| PortsError::Invalid(p.to_string())))
        .collect::<Result<_, _>>()?;
    if ports.is_empty() {
        return Err(PortsError::Missing);
    }
    Ok(ports)
}

pub async fn port_forward(
    State(api): State<Arc<KubeletApi>>,
    Path((ns, pod)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    mut request: Request,
) -> Response {
    let netns = match pod_netns(&api, &ns, &pod).await {
        Ok(n) => n,
        Err(response) => return response,
    };
    tracing::info!(%ns, %pod, "port-forward");
    if spdy::is_upgrade(request.headers()) {
        if spdy::negotiate(request.headers(), &[port_forward::SPDY_PROTOCOL]).is_none() {
            return bad_request(format!("port-forward speaks {}", port_forward::SPDY_PROTOCOL));
        }
        return upgrade_spdy(&api, &mut request, port_forward::SPDY_PROTOCOL, move |conn| port_forward::serve_spdy(conn, netns));
    }
    let (mut parts, _) = request.into_parts();
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws.protocols([port_forward::TUNNEL_PROTOCOL, "v4.channel.k8s.io"]),
        Err(e) => return e.into_response(),
    };
    if ws.selected_protocol().is_some_and(|p| p == port_forward::TUNNEL_PROTOCOL) {
        return upgrade_websocket(api, ws, move |socket| port_forward::serve_spdy(Connection::serve(websocket::into_bytes(socket)), netns));
    }
    match ports(&query) {
        Ok(ports) => upgrade_websocket(api, ws, move |socket| port_forward::serve_websocket(socket, ports, netns)),
        Err(e) => bad_request(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn options_come_from_the_query() {
        let opts = Options::from_query(&q(&[
            ("command", "sh"),
            ("command", "-c"),
            ("command", "exit 3"),
            ("stdin", "true"),
            ("stdout", "1"),
            ("tty", "false"),
        ]));
        assert_eq!(
            opts,
            Options { command: vec!["sh".into(), "-c".into(), "exit 3".into()], stdin: true, stdout: true, stderr: false, tty: false }
        );
        let tty = Options { stderr: true, tty: true, ..opts };
        assert_eq!(tty.streams(), StreamRequest { stdin: true, stdout: true, stderr: false, tty: true });
    }

    #[test]
    fn forwarded_ports_are_listed_in_the_query() {
        assert_eq!(ports(&q(&[("ports", "80,443"), ("ports", "8080")])), Ok(vec![80, 443, 8080]));
        assert!(ports(&q(&[("ports", "http")])).is_err());
        assert!(ports(&q(&[])).is_err());
    }
}
