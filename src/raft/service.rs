//! `/raft/*`: the server half of peer RPC (append, vote, snapshot), leader-only operations that
//! followers forward (write, read-index, join, leave), member removal from any node (remove),
//! and a human-readable status.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::node::RaftStore;
use super::{Command, NodeId};
use crate::rpc::bincode_handler;

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
        .layer(axum::extract::DefaultBodyLimit::max(crate::rpc::MAX_BODY_BYTES))
        .with_state(store)
}

bincode_handler!(append, Shared, openraft::raft::AppendEntriesRequest<super::TypeConfig>, |s, req| s.raft().append_entries(req).await);
bincode_handler!(vote, Shared, openraft::raft::VoteRequest<NodeId>, |s, req| s.raft().vote(req).await);
bincode_handler!(snapshot, Shared, openraft::raft::InstallSnapshotRequest<super::TypeConfig>, |s, req| s
    .raft()
    .install_snapshot(req)
    .await);
bincode_handler!(write, Shared, Command, |s, cmd| s.write_local(cmd).await);
bincode_handler!(read_index, Shared, (), |s, _req| s.read_index_local().await);
bincode_handler!(join, Shared, (NodeId, String), |s, req| s.add_member(req.0, req.1).await);
bincode_handler!(leave, Shared, NodeId, |s, id| s.remove_member(id).await);
bincode_handler!(remove, Shared, NodeId, |s, id| s.remove(id).await);

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
