//! `/raft/*`: the server half of peer RPC (append, vote, snapshot), leader-only operations that
//! followers forward (write, read-index, join, leave), member removal from any node (remove),
//! and a human-readable status.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{de::DeserializeOwned, Serialize};

use super::node::RaftStore;
use super::{Command, NodeId};
use crate::rpc::{decode, encode};

type Shared = Arc<RaftStore>;

pub fn router(store: Shared) -> Router {
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .route("/raft/write", post(write))
        .route("/raft/read-index", post(read_index))
        .route("/raft/join", post(join))
        .route("/raft/leave", post(leave))
        .route("/raft/remove", post(remove))
        .route("/raft/status", get(status))
        .with_state(store)
}

fn reply<T: Serialize>(v: &T) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/octet-stream")], encode(v)).into_response()
}

fn body<T: DeserializeOwned>(raw: &Bytes) -> Result<T, Response> {
    decode(raw).map_err(|e| (StatusCode::BAD_REQUEST, format!("unreadable request body: {e}")).into_response())
}

macro_rules! handler {
    ($name:ident, $ty:ty, |$s:ident, $req:ident| $call:expr) => {
        async fn $name(State($s): State<Shared>, raw: Bytes) -> Response {
            match body::<$ty>(&raw) {
                Ok($req) => reply(&$call),
                Err(r) => r,
            }
        }
    };
}

handler!(append, openraft::raft::AppendEntriesRequest<super::TypeConfig>, |s, req| s.raft().append_entries(req).await);
handler!(vote, openraft::raft::VoteRequest<NodeId>, |s, req| s.raft().vote(req).await);
handler!(snapshot, openraft::raft::InstallSnapshotRequest<super::TypeConfig>, |s, req| s.raft().install_snapshot(req).await);
handler!(write, Command, |s, cmd| s.write_local(cmd).await);
handler!(read_index, (), |s, _req| s.read_index_local().await);
handler!(join, (NodeId, String), |s, req| s.add_member(req.0, req.1).await);
handler!(leave, NodeId, |s, id| s.remove_member(id).await);
handler!(remove, NodeId, |s, id| s.remove(id).await);

/// Who this node is and what it believes about the cluster, as JSON.
async fn status(State(s): State<Shared>) -> Json<serde_json::Value> {
    let m = s.raft().metrics().borrow().clone();
    let members: Vec<_> = m
        .membership_config
        .membership()
        .nodes()
        .map(|(id, node)| serde_json::json!({"id": id, "url": node.addr, "voter": m.membership_config.membership().voter_ids().any(|v| v == *id)}))
        .collect();
    Json(serde_json::json!({
        "id": s.id(),
        "state": format!("{:?}", m.state),
        "term": m.current_term,
        "leader": m.current_leader,
        "lastLogIndex": m.last_log_index,
        "lastApplied": m.last_applied.map(|l| l.index),
        "snapshot": m.snapshot.map(|l| l.index),
        "members": members,
    }))
}
