//! The raft-replicated store: openraft 0.9 (storage v2) with its log and state machine on sled,
//! peer RPC over HTTP/2, membership changes, write forwarding and linearizable reads.
//!
//! [`RaftStore`] implements [`crate::store::Store`]; a single server is a one-voter cluster.

pub mod backup;
mod log_store;
mod network;
mod node;
mod proposer;
mod service;
mod snapshot_file;
mod state_machine;

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

impl Command {
    /// About its encoded size (see [`TxnRequest::size`]).
    fn size(&self) -> u64 {
        match self {
            Command::Txns(txns) => txns.iter().map(TxnRequest::size).sum(),
            Command::Compact(_) => 16,
        }
    }
}

/// How many of the leading items with sizes `sizes` fit together within `cap` bytes: at least
/// one (an item larger than `cap` goes alone), then as many as stay within it.
fn prefix_within(sizes: impl Iterator<Item = u64>, cap: u64) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for size in sizes {
        bytes += size;
        if n > 0 && bytes > cap {
            break;
        }
        n += 1;
    }
    n
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;

#[cfg(test)]
mod tests {
    use super::prefix_within;

    #[test]
    fn prefixes_stay_within_their_cap() {
        let mib = 1 << 20;
        assert_eq!(prefix_within([3 * mib; 10].into_iter(), 8 * mib), 2, "two 3 MiB items fit in 8 MiB, three do not");
        assert_eq!(prefix_within([100; 512].into_iter(), 8 * mib), 512, "small items are not split");
        assert_eq!(prefix_within([30 * mib, 1].into_iter(), 8 * mib), 1, "an item larger than the cap goes alone");
        assert_eq!(prefix_within(std::iter::empty(), 8 * mib), 0);
    }
}
