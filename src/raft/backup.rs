//! Copies of the store for backups, and the way back from them: a consistent copy is the raft
//! snapshot, built on demand in the state machine's own task (so it matches one applied point);
//! [`seed`] makes a fresh replica directory hold a copy's data as the first state of a new
//! one-voter cluster (`orch server --cluster-reset`).

use std::path::Path;
use std::time::Duration;

use super::node::RaftStore;
use super::state_machine::{APPLIED, MEMBERSHIP};
use super::NodeId;
use crate::store::mvcc::MvccEngine;
use crate::store::{DurableDb, Revision, StoreConfig, StoreError};

/// A copy (a raft snapshot file) being read: its header, then its entries.
pub use super::snapshot_file::Reader as CopyReader;

impl RaftStore {
    /// A raft snapshot taken now (covering every write applied before the call), opened for
    /// reading. Building it also lets raft trim its log, as a scheduled snapshot would.
    pub async fn consistent_copy(&self, timeout: Duration) -> Result<std::fs::File, StoreError> {
        let down = |e: &dyn std::fmt::Display| StoreError::Unavailable(format!("raft: {e}"));
        let mut metrics = self.raft().metrics();
        let applied = metrics.borrow().last_applied.map(|id| id.index);
        self.raft().trigger().snapshot().await.map_err(|e| down(&e))?;
        let covered = |m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>| m.snapshot.map(|id| id.index) >= applied;
        tokio::time::timeout(timeout, metrics.wait_for(covered))
            .await
            .map_err(|_| StoreError::Unavailable(format!("no snapshot was built within {timeout:?}")))?
            .map_err(|e| down(&e))?;
        std::fs::File::open(self.snapshot_path()).map_err(|e| StoreError::Storage(format!("opening the snapshot: {e}")))
    }
}

/// Creates the replica directory `dir` (which must not exist) holding `entries` of a copy, with
/// no raft state: a server started on it bootstraps a new one-voter cluster with a new node id
/// and continues from the copy's revision. Returns that revision.
pub fn seed(
    dir: &Path,
    config: &StoreConfig,
    entries: impl Iterator<Item = std::io::Result<(Vec<u8>, Vec<u8>)>>,
) -> Result<Revision, StoreError> {
    if dir.exists() {
        return Err(StoreError::Storage(format!("{} exists already", dir.display())));
    }
    crate::pki::private_dir(dir).map_err(|e| StoreError::Storage(format!("{}: {e}", dir.display())))?;
    let db = DurableDb::open(&dir.join("db"), config)?;
    let engine = MvccEngine::open(db.db().open_tree("kv")?)?;
    engine.load(entries.map(|e| e.map_err(|e| StoreError::Storage(format!("reading the copy: {e}")))))?;
    // The old cluster's applied point and members mean nothing to the new one.
    let none: Option<openraft::LogId<NodeId>> = None;
    let nobody = openraft::StoredMembership::<NodeId, openraft::BasicNode>::default();
    engine.put_meta(vec![MvccEngine::meta_entry(APPLIED, &none), MvccEngine::meta_entry(MEMBERSHIP, &nobody)])?;
    db.flush()?;
    Ok(engine.revision())
}
