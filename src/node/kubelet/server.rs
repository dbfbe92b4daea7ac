//! The kubelet API (port 10250): HTTPS with the node's serving certificate, open only to client
//! certificates of API servers (`system:orch-kubelet-clients`, which the API's node proxy presents) and
//! cluster admins (`system:masters`). It serves `/containerLogs/{ns}/{pod}/{container}` from
//! the CRI log files (a followed log carries on into the new file when it is rotated), and
//! exec, attach and port-forward (see `streaming`), the node's resource figures
//! (`/stats/summary`, `/metrics/resource`, see `node::stats`), and removes released local-path
//! volumes' directories (see `local_path`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get};
use axum::{Extension, Router};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::api_state::KubeletApi;
use super::layout::LABEL_ATTEMPT;
use super::logs::{self, LogOptions};
use super::streaming;
use crate::node::runtime::ContainerRuntime;
use crate::pki::{Peer, KUBELET_CLIENTS_GROUP, MASTERS_GROUP};

/// How often a followed log is read for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// The log file now at `path` when it is no longer `file` (the log was rotated).
async fn rotated_to(file: &tokio::fs::File, path: &std::path::Path) -> Option<tokio::fs::File> {
    use std::os::unix::fs::MetadataExt;
    let (open, now) = (file.metadata().await.ok()?, tokio::fs::metadata(path).await.ok()?);
    if open.ino() == now.ino() && open.dev() == now.dev() {
        return None;
    }
    tokio::fs::File::open(path).await.ok()
}

pub fn router(state: Arc<KubeletApi>) -> Router {
    Router::new()
        .route("/containerLogs/{namespace}/{pod}/{container}", get(container_logs))
        .route("/exec/{namespace}/{pod}/{container}", any(streaming::exec))
        .route("/attach/{namespace}/{pod}/{container}", any(streaming::attach))
        .route("/portForward/{namespace}/{pod}", any(streaming::port_forward))
        .route("/healthz", get(|| async { "ok" }))
        .route(crate::k8s::local_path::KUBELET_REMOVE_ROUTE, delete(super::local_path::handle))
        .route_layer(axum::middleware::from_fn(plain_segments))
        .merge(crate::node::stats::router(state.stats.clone()))
        .layer(axum::middleware::from_fn(require_api_server))
        .with_state(state)
}

/// Admits API servers and cluster admins only; others are refused with the kubelet's wording
/// for the subresource the path maps to (`stats`, `metrics`, else `proxy`).
pub async fn require_api_server(Extension(peer): Extension<Peer>, req: Request, next: Next) -> Response {
    match &peer.0 {
        Some(id) if id.in_group(KUBELET_CLIENTS_GROUP) || id.in_group(MASTERS_GROUP) => next.run(req).await,
        Some(id) => {
            let path = req.uri().path();
            let subresource = ["stats", "metrics"].into_iter().find(|s| path.trim_start_matches('/').split('/').next() == Some(s));
            let subresource = subresource.unwrap_or("proxy");
            (StatusCode::FORBIDDEN, format!("Forbidden (user={}, verb=get, resource=nodes, subresource={subresource})", id.user))
                .into_response()
        }
        None => (StatusCode::UNAUTHORIZED, "Unauthorized").into_response(),
    }
}

/// Namespace, pod and container names are DNS names: a path segment that is anything else
/// (encoded, `.`/`..`, another character) never reaches a handler that turns names into paths.
async fn plain_segments(req: Request, next: Next) -> Response {
    let plain = |s: &str| !s.is_empty() && s != "." && s != ".." && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    match req.uri().path().split('/').skip(2).find(|s| !plain(s)) {
        None => next.run(req).await,
        Some(bad) => (StatusCode::BAD_REQUEST, format!("invalid path segment {bad:?}")).into_response(),
    }
}

/// Whether the run of `container` that writes the log file with `attempt` still runs.
async fn still_running(runtime: &dyn ContainerRuntime, ns: &str, pod: &str, container: &str, attempt: &str) -> bool {
    let running = streaming::running_containers(runtime, ns, pod, Some(container)).await;
    running.iter().any(|c| c.labels.get(LABEL_ATTEMPT).map(String::as_str) == Some(attempt))
}

async fn container_logs(
    State(api): State<Arc<KubeletApi>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let opts = match LogOptions::from_query(&query, time::OffsetDateTime::now_utc()) {
        Ok(o) => o,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let mut runs = logs::files(&api.logs_dir, &namespace, &pod, &container);
    if opts.previous {
        runs.pop();
    }
    let Some(path) = runs.pop() else {
        let what = if opts.previous { "previous terminated container" } else { "container" };
        return (StatusCode::NOT_FOUND, format!("{what} {container:?} in pod {pod:?} not found")).into_response();
    };
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => return (StatusCode::NOT_FOUND, format!("{}: {e}", path.display())).into_response(),
    };
    let mut content = Vec::new();
    if let Err(e) = file.read_to_end(&mut content).await {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    let mut pending = None;
    let lines = logs::select(logs::parse(&content, &mut pending), &opts);
    let mut sent = 0;
    let first = logs::limit(logs::render(&lines, opts.timestamps), &mut sent, opts.limit_bytes);
    if !opts.follow || opts.previous {
        return ([("content-type", "text/plain")], first).into_response();
    }
    let attempt = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    let runtime = api.runtime.clone();
    api.tasks.spawn(async move {
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        let mut offset = content.len() as u64;
        let mut idle = Duration::ZERO;
        loop {
            if opts.limit_bytes.is_some_and(|max| sent >= max) {
                return;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
            let mut chunk = Vec::new();
            if file.seek(std::io::SeekFrom::Start(offset)).await.is_ok() && file.read_to_end(&mut chunk).await.is_ok() && !chunk.is_empty()
            {
                offset += chunk.len() as u64;
                idle = Duration::ZERO;
                let lines = logs::parse(&chunk, &mut pending);
                let out = logs::limit(logs::render(&lines, opts.timestamps), &mut sent, opts.limit_bytes);
                if !out.is_empty() && tx.send(Ok(out)).await.is_err() {
                    return;
                }
                continue;
            }
            if let Some(current) = rotated_to(&file, &path).await {
                (file, offset) = (current, 0);
                continue;
            }
            idle += FOLLOW_POLL;
            if tx.is_closed() {
                return;
            }
            if idle >= Duration::from_secs(1) {
                idle = Duration::ZERO;
                if !still_running(runtime.as_ref(), &namespace, &pod, &container, &attempt).await {
                    return;
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    ([("content-type", "text/plain")], Body::from_stream(stream)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn only_plain_names_reach_the_handlers() {
        let app = Router::new()
            .route("/containerLogs/{namespace}/{pod}/{container}", get(|| async { "handled" }))
            .route_layer(axum::middleware::from_fn(plain_segments));
        for (path, code) in [
            ("/containerLogs/ns/web-1/app", 200),
            ("/containerLogs/ns/web-1/..%2F..%2Fetc", 400),
            ("/containerLogs/ns/web-1/%2e%2e", 400),
            ("/containerLogs/ns/../app", 400),
            ("/containerLogs/ns/a%20b/app", 400),
        ] {
            let req = axum::http::Request::get(path).body(Body::empty()).unwrap();
            assert_eq!(app.clone().oneshot(req).await.unwrap().status().as_u16(), code, "{path}");
        }
    }
}
