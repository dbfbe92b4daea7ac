//! The raft-replicated store: openraft 0.9 (storage v2) with its log and state machine on sled,
//! peer RPC over HTTP/2, membership changes, write forwarding and linearizable reads.
//!
//! [`RaftStore`] implements [`crate::store::Store`]; a single server is a one-voter cluster.

mod log_store;
mod network;
mod node;
mod proposer;
mod service;
mod state_machine;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::store::{Revision, StoreError, TxnRequest, TxnResponse};

pub use node::{RaftSettings, RaftStore};
pub use service::router;

/// A replicated command: what the raft log carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// Transactions batched by the proposer; applied in order, atomically as a group.
    Txns(Vec<TxnRequest>),
    Compact(Revision),
}

/// The state machine's answer to a [`Command`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CommandOutput {
    /// One result per transaction of [`Command::Txns`].
    Txns(Vec<Result<TxnResponse, StoreError>>),
    Compacted,
    /// Raft's own entries (leader blank, membership) produce nothing.
    Nothing,
}

pub type CommandResult = Result<CommandOutput, StoreError>;

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
