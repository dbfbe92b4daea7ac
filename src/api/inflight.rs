//! kube-apiserver's max-in-flight filter: at most `--max-requests-inflight` read-only and
//! `--max-mutating-requests-inflight` mutating API requests at once (0: no limit); beyond
//! that a 429 `TooManyRequests` Status with `Retry-After: 1`. Long-running requests (watches,
//! exec, attach, log, port-forward, proxy) and `system:masters` are never limited, as in
//! kube-apiserver. A request holds its slot until its response is sent.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use serde_json::json;
use tokio::sync::Semaphore;

use super::status::ApiError;
use crate::pki::{Peer, MASTERS_GROUP};

/// The two limits of the filter.
#[derive(Clone)]
struct Limits {
    read_only: Option<Arc<Semaphore>>,
    mutating: Option<Arc<Semaphore>>,
}

/// `router` behind the filter: `read_only` and `mutating` requests at once (0: unlimited).
pub fn limit(router: Router, read_only: usize, mutating: usize) -> Router {
    let slots = |n: usize| (n > 0).then(|| Arc::new(Semaphore::new(n)));
    let limits = Limits { read_only: slots(read_only), mutating: slots(mutating) };
    router.layer(axum::middleware::from_fn_with_state(limits, filter))
}

async fn filter(State(limits): State<Limits>, peer: Option<Extension<Peer>>, req: Request, next: Next) -> Response {
    let privileged = peer.is_some_and(|Extension(p)| p.0.is_some_and(|id| id.in_group(MASTERS_GROUP)));
    if privileged || long_running(req.uri().path(), req.uri().query().unwrap_or("")) {
        return next.run(req).await;
    }
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let Some(slots) = (if mutating { &limits.mutating } else { &limits.read_only }) else {
        return next.run(req).await;
    };
    match slots.clone().try_acquire_owned() {
        Ok(permit) => crate::rpc::limits::hold_until_sent(next.run(req).await, permit),
        Err(_) => too_many_requests(),
    }
}

/// kube-apiserver's answer when its in-flight limit is reached.
fn too_many_requests() -> Response {
    let mut error = ApiError::too_many_requests("Too many requests, please try again later.");
    error.details = Some(json!({ "retryAfterSeconds": 1 }));
    let mut response = error.into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// kube-apiserver's long-running check: the `watch` and `proxy` verbs (`?watch=true`,
/// `/watch/…` and `/proxy/…` paths) and the attach, exec, log, portforward and proxy
/// subresources.
fn long_running(path: &str, query: &str) -> bool {
    if query.split('&').any(|kv| matches!(kv, "watch=true" | "watch=1")) {
        return true;
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segs.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return false,
    };
    let subresource = match rest {
        ["watch" | "proxy", ..] => return true,
        ["namespaces", _, _plural, _name, sub, ..] => sub,
        ["namespaces", ..] => return false,
        [_plural, _name, sub, ..] => sub,
        _ => return false,
    };
    matches!(*subresource, "attach" | "exec" | "log" | "portforward" | "proxy")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_running_requests_are_kube_apiservers() {
        for (path, query) in [
            ("/api/v1/pods", "watch=true"),
            ("/api/v1/namespaces/d/pods", "labelSelector=a&watch=1"),
            ("/api/v1/watch/namespaces/d/pods", ""),
            ("/api/v1/namespaces/d/pods/p/log", "follow=true"),
            ("/api/v1/namespaces/d/pods/p/log", ""),
            ("/api/v1/namespaces/d/pods/p/exec", "command=sh"),
            ("/api/v1/namespaces/d/pods/p/attach", ""),
            ("/api/v1/namespaces/d/pods/p/portforward", ""),
            ("/api/v1/nodes/n/proxy/metrics", ""),
        ] {
            assert!(long_running(path, query), "{path}?{query}");
        }
        for (path, query) in [
            ("/api/v1/pods", ""),
            ("/api/v1/namespaces/log", ""),
            ("/api/v1/namespaces/d/configmaps/log", ""),
            ("/api/v1/namespaces/d/pods/p/status", ""),
            ("/apis/apps/v1/namespaces/d/deployments/x/scale", "watch=false"),
            ("/version", ""),
        ] {
            assert!(!long_running(path, query), "{path}?{query}");
        }
    }
}
