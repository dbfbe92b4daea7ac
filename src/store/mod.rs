//! The revisioned, etcd-like key-value store every part of orch keeps its state in.
//!
//! [`Store`] is the contract; [`LocalStore`] implements it on one sled database, and
//! `crate::raft::RaftStore` implements it replicated over raft. Both run [`conformance`].

pub mod compactor;
pub mod conformance;
mod durable;
mod error;
mod keys;
mod local;
pub mod mvcc;
mod types;
mod watch;

use async_trait::async_trait;
use futures::stream::BoxStream;

#[cfg(test)]
pub(crate) use durable::RecordingFs;
pub use durable::{DurableDb, RealFs, SyncFs};
pub use error::StoreError;
pub use local::LocalStore;
pub use types::*;
pub use watch::WatchHub;

/// A stream of event batches; each batch holds whole revisions, in revision order.
pub type WatchStream = BoxStream<'static, Result<Vec<Event>, StoreError>>;

/// A revisioned key-value store with etcd's semantics.
///
/// Correctness contract, which every implementation must keep (checked by [`conformance`]):
///
/// 1. **Revisions.** One global revision counter. Every transaction that writes at least one
///    key (a put, or a delete of an existing key) increments it by exactly one, and all its
///    changes carry that revision as `mod_revision`. Revisions never go backwards, also across
///    restarts and crashes. A transaction that writes nothing leaves the revision unchanged.
/// 2. **Durability.** When `txn` or `compact` returns `Ok`, the change is durable (flushed to
///    disk; with raft, on a quorum) and visible to every later `range` on the same store.
/// 3. **Atomicity.** A transaction's compares are evaluated and its branch applied atomically;
///    no reader or watcher observes part of a transaction.
/// 4. **Key bookkeeping.** `create_revision` is the revision of the put that created the key
///    since it last did not exist; `version` counts puts since then (1 after creation).
///    An absent key compares as create/mod revision 0 and version 0.
/// 5. **Range.** Results are in ascending key order. `revision = 0` reads the current state;
///    a past revision reads the state as of that revision, or fails with
///    [`StoreError::Compacted`] below the compacted revision and
///    [`StoreError::FutureRevision`] above the current one.
/// 6. **Watch.** A watch delivers every event in its range with revision `>= start_revision`
///    (or after the current revision when `start_revision` is 0), exactly once, in revision
///    order, each with the previous key-value; it fails with [`StoreError::Compacted`] when
///    `start_revision` is not above the compacted revision. A slow watcher never blocks writes.
/// 7. **Compaction.** `compact(r)` keeps, for every key, the newest version at or below `r` and
///    everything newer; it fails with `Compacted` for `r` at or below the last compaction and
///    with `FutureRevision` above the current revision.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError>;
    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, StoreError>;
    async fn watch(&self, req: WatchRequest) -> Result<WatchStream, StoreError>;
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;
    /// The current revision, as a linearizable read.
    async fn current_revision(&self) -> Result<Revision, StoreError>;
}

/// Largest transaction the store accepts (its encoded size): 32 MiB, ten times the API's
/// largest object and half the RPC body limit (`crate::rpc::MAX_BODY_BYTES`), so that every
/// accepted transaction fits in one request and one raft entry.
pub const MAX_TXN_BYTES: u64 = 32 << 20;

/// Tunables shared by the store implementations.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// sled's page cache, in bytes. Small machines want this small.
    pub cache_capacity: u64,
    /// How many recent events the watch hub keeps in memory.
    pub watch_history: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { cache_capacity: 32 << 20, watch_history: 10_000 }
    }
}
