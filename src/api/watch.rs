//! `?watch=true`: newline-delimited JSON watch events (ADDED / MODIFIED / DELETED / ERROR)
//! from the store's watch, with synthetic ADDED events for the current state when the client
//! gives no resourceVersion, and a 410 ERROR event when the requested one is compacted.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use futures::StreamExt;
use serde_json::{json, Value};

use super::objects::{self, Scope, SharedStore};
use super::registry::Resource;
use super::status::ApiError;
use super::table;
use crate::store::{EventKind, KeyRange, Revision, StoreError, WatchRequest};

fn line(kind: &str, object: &Value) -> bytes::Bytes {
    let mut out = serde_json::to_vec(&json!({ "type": kind, "object": object })).expect("serialisable");
    out.push(b'\n');
    out.into()
}

/// Starts a watch stream response. `from` is the client's resourceVersion (0 or absent: send
/// the current objects as ADDED first).
/// How the events' objects are shaped.
#[derive(Clone, Copy)]
pub enum Shape {
    Object,
    /// A one-row Table per event (`kubectl get -w`).
    Table(&'static Resource),
}

impl Shape {
    fn apply(self, obj: Value) -> Value {
        match self {
            Shape::Object => obj,
            Shape::Table(resource) => {
                let rv = obj["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string();
                table::render(resource, &[obj], &rv, None)
            }
        }
    }
}

pub async fn watch(
    store: SharedStore,
    scope: Scope<'_>,
    selector: objects::Selection,
    from: Revision,
    timeout: Option<Duration>,
    shape: Shape,
) -> Result<Response, ApiError> {
    let mut initial = Vec::new();
    let start = if from > 0 {
        from + 1
    } else {
        let page = objects::list(store.as_ref(), &scope, &selector, 0, None).await?;
        initial = page.items.into_iter().map(|o| line("ADDED", &shape.apply(o))).collect();
        page.revision + 1
    };
    let range = KeyRange::prefix(scope.resource.key_prefix(scope.namespace));
    let events = match store.watch(WatchRequest { range, start_revision: start }).await {
        Ok(w) => w,
        Err(e @ StoreError::Compacted { .. }) => {
            let status = ApiError::gone(format!("too old resource version: {from} ({e})")).to_status();
            let body = Body::from(line("ERROR", &status));
            return Ok(json_stream(body));
        }
        Err(e) => return Err(e.into()),
    };
    let selector_live = selector.clone();
    let live = events.flat_map(move |batch| {
        let lines: Vec<Result<bytes::Bytes, std::io::Error>> = match batch {
            Ok(events) => events
                .into_iter()
                .filter_map(|ev| {
                    let (kind, kv) = match ev.kind {
                        EventKind::Put if ev.prev_kv.is_none() => ("ADDED", &ev.kv),
                        EventKind::Put => ("MODIFIED", &ev.kv),
                        EventKind::Delete => ("DELETED", ev.prev_kv.as_ref()?),
                    };
                    let mut obj = objects::decode(kv).ok()?;
                    if ev.kind == EventKind::Delete {
                        obj["metadata"]["resourceVersion"] = json!(ev.kv.mod_revision.to_string());
                    }
                    selector_live.matches(&obj).then(|| Ok(line(kind, &shape.apply(obj))))
                })
                .collect(),
            Err(e) => vec![Ok(line("ERROR", &ApiError::from(e).to_status()))],
        };
        futures::stream::iter(lines)
    });
    let stream = futures::stream::iter(initial.into_iter().map(Ok)).chain(live);
    let body = match timeout {
        Some(t) => Body::from_stream(stream.take_until(tokio::time::sleep(t))),
        None => Body::from_stream(stream),
    };
    Ok(json_stream(body))
}

fn json_stream(body: Body) -> Response {
    Response::builder()
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(body)
        .expect("valid response")
}
