//! The client half of peer RPC: how this node's raft reaches the others (`/raft/*` over
//! HTTP/2 with mutual TLS).

use openraft::error::{InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, EntryPayload};
use serde::{de::DeserializeOwned, Serialize};

use super::{NodeId, TypeConfig};
use crate::rpc::{HttpClient, RpcError};

/// Most bytes of entries in one AppendEntries request (openraft caps only their number): a
/// quarter of the body limit ([`crate::rpc::MAX_BODY_BYTES`]); a single larger entry (at most
/// about [`crate::store::MAX_TXN_BYTES`], see `proposer`) goes alone. A longer request is
/// refused with [`PayloadTooLarge`], on which openraft retries with as many entries as fit.
const MAX_APPEND_BYTES: u64 = 16 << 20;

/// About the encoded size of an entry's payload.
fn entry_size(payload: &EntryPayload<TypeConfig>) -> u64 {
    match payload {
        EntryPayload::Normal(cmd) => 64 + cmd.size(),
        _ => 64,
    }
}

#[derive(Clone)]
pub struct Network {
    http: HttpClient,
}

impl Network {
    /// Peers are reached through `http`, whose certificate identifies this server.
    pub fn new(http: HttpClient) -> Self {
        Self { http }
    }
}

pub struct PeerConnection {
    http: HttpClient,
    target: NodeId,
    base: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerConnection { http: self.http.clone(), target, base: node.addr.trim_end_matches('/').to_string() }
    }
}

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let url = format!("{}{path}", self.base);
        let reply: Result<Resp, RaftError<NodeId, E>> = self.http.call(&url, req, option.hard_ttl()).await.map_err(|e| match e {
            RpcError::Unreachable { .. } | RpcError::Timeout(_) => RPCError::Unreachable(Unreachable::new(&e)),
            _ => RPCError::Network(NetworkError::new(&e)),
        })?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let fit = super::prefix_within(rpc.entries.iter().map(|e| entry_size(&e.payload)), MAX_APPEND_BYTES);
        if fit < rpc.entries.len() {
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(fit as u64)));
        }
        self.call("/raft/append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>> {
        self.call("/raft/snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("/raft/vote", &rpc, &option).await
    }
}
