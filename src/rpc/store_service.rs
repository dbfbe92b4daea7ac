//! `/store/*`: the store's RPC surface, serving any [`Store`] to remote clients (benchmarks,
//! tests, tools). Store errors travel inside a 200 reply as `Result`; HTTP errors mean the
//! request itself was unreadable.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use futures::StreamExt;

use super::codec::{bincode_handler, frame, reply, request_body};
use crate::store::{Event, Revision, Store, StoreError};

type Shared = Arc<dyn Store>;

pub fn router(store: Shared) -> Router {
    Router::new()
        .route("/store/range", post(range))
        .route("/store/txn", post(txn))
        .route("/store/compact", post(compact))
        .route("/store/revision", post(revision))
        .route("/store/watch", post(watch))
        .layer(axum::extract::DefaultBodyLimit::max(super::MAX_BODY_BYTES))
        .with_state(store)
}

bincode_handler!(range, Shared, crate::store::RangeRequest, |s, req| s.range(req).await);
bincode_handler!(txn, Shared, crate::store::TxnRequest, |s, req| s.txn(req).await);
bincode_handler!(compact, Shared, Revision, |s, rev| s.compact(rev).await);

async fn revision(State(s): State<Shared>) -> Response {
    reply(&s.current_revision().await)
}

/// Streams frames of `Result<Vec<Event>, StoreError>`; the first frame is an empty batch
/// confirming the watch started (or its error).
async fn watch(State(s): State<Shared>, raw: Bytes) -> Response {
    let req = match request_body(&raw) {
        Ok(req) => req,
        Err(r) => return r,
    };
    let started: Result<Vec<Event>, StoreError>;
    let stream = match s.watch(req).await {
        Ok(stream) => {
            started = Ok(Vec::new());
            Some(stream)
        }
        Err(e) => {
            started = Err(e);
            None
        }
    };
    let head = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(frame(&started)) });
    let tail = futures::stream::iter(stream).flatten().map(|batch| Ok(frame(&batch)));
    Response::new(Body::from_stream(head.chain(tail)))
}
