//! The raft state machine: applies committed [`Command`]s to the MVCC engine, publishes their
//! events to the watch hub, and builds and installs snapshots.
//!
//! Contract: the applied log id and membership are written in the same sled batch as the
//! change they record, so after a crash the engine is at a consistent applied point and openraft
//! re-applies the (durable) log after it. Applied state is not flushed here: the log is the
//! durable record. Snapshot install is made atomic by a marker file: a crash part-way through
//! loading is repaired at the next open by loading the saved snapshot again.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::{Command, CommandOutput, CommandResult, NodeId, TypeConfig};
use crate::store::mvcc::MvccEngine;
use crate::store::{StoreError, WatchHub};

const APPLIED: &str = "raft_applied";
const MEMBERSHIP: &str = "raft_membership";
const SNAPSHOT_FILE: &str = "snapshot.bin";
const INSTALLING_MARKER: &str = "snapshot.installing";

type Membership = StoredMembership<NodeId, BasicNode>;

/// What a snapshot file holds: the snapshot's metadata and every entry of the engine's tree.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

fn sm_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

fn snap_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, AnyError::error(e.to_string())).into()
}

pub struct StateMachine {
    engine: Arc<MvccEngine>,
    hub: Arc<WatchHub>,
    db: sled::Db,
    dir: PathBuf,
}

impl StateMachine {
    /// Opens the state machine over `engine`, finishing a snapshot install a crash interrupted.
    pub fn open(db: sled::Db, engine: Arc<MvccEngine>, hub: Arc<WatchHub>, dir: &Path) -> Result<Self, StoreError> {
        let sm = Self { engine, hub, db, dir: dir.to_path_buf() };
        if dir.join(INSTALLING_MARKER).exists() {
            tracing::warn!("finishing a snapshot install interrupted by a crash");
            let file = sm
                .read_snapshot_file()
                .map_err(|e| StoreError::Storage(e.to_string()))?
                .ok_or_else(|| StoreError::Corrupt("install marker without snapshot".into()))?;
            sm.load(&file).map_err(|e| StoreError::Storage(e.to_string()))?;
        }
        Ok(sm)
    }

    fn read_snapshot_file(&self) -> Result<Option<SnapshotFile>, StorageError<NodeId>> {
        match std::fs::read(self.dir.join(SNAPSHOT_FILE)) {
            Ok(raw) => Ok(Some(bincode::deserialize(&raw).map_err(snap_err)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(snap_err(e)),
        }
    }

    fn load(&self, file: &SnapshotFile) -> Result<(), StorageError<NodeId>> {
        let entries: Vec<(Vec<u8>, Vec<u8>)> = bincode::deserialize(&file.data).map_err(snap_err)?;
        self.engine.load(entries).map_err(sm_err)?;
        self.engine
            .put_meta(vec![
                MvccEngine::meta_entry(APPLIED, &file.meta.last_log_id),
                MvccEngine::meta_entry(MEMBERSHIP, &file.meta.last_membership),
            ])
            .map_err(sm_err)?;
        self.db.flush().map_err(sm_err)?;
        std::fs::remove_file(self.dir.join(INSTALLING_MARKER))
            .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
            .map_err(snap_err)?;
        self.hub.reset(self.engine.revision());
        Ok(())
    }

    fn apply_command(&self, cmd: &Command, applied: (Vec<u8>, Vec<u8>)) -> Result<CommandResult, StorageError<NodeId>> {
        match cmd {
            Command::Txns(reqs) => {
                let results = self.engine.apply_txns(reqs, vec![applied]).map_err(sm_err)?;
                let responses = results
                    .into_iter()
                    .map(|r| {
                        r.map(|a| {
                            self.hub.publish(a.response.revision, a.events);
                            a.response
                        })
                    })
                    .collect();
                Ok(Ok(CommandOutput::Txns(responses)))
            }
            Command::Compact(rev) => match self.engine.compact(*rev, vec![applied.clone()]) {
                Ok(()) => Ok(Ok(CommandOutput::Compacted)),
                Err(e @ (StoreError::Storage(_) | StoreError::Corrupt(_))) => Err(sm_err(e)),
                Err(e) => {
                    // A refused compaction is still applied: record that, deterministically.
                    self.engine.put_meta(vec![applied]).map_err(sm_err)?;
                    Ok(Err(e))
                }
            },
        }
    }
}

/// Writes `bytes` to `path` durably: temp file, fsync, rename.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    // A snapshot holds every Secret: owner-only.
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

pub struct SnapshotBuilder {
    /// The engine's content, or why it could not be read.
    entries: Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError>,
    applied: Option<LogId<NodeId>>,
    membership: Membership,
    dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let entries = self.entries.as_ref().map_err(snap_err)?;
        let data = bincode::serialize(entries).map_err(snap_err)?;
        let snapshot_id = match &self.applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, rand::random::<u32>()),
            None => format!("empty-{}", rand::random::<u32>()),
        };
        let meta = SnapshotMeta { last_log_id: self.applied, last_membership: self.membership.clone(), snapshot_id };
        let file = SnapshotFile { meta: meta.clone(), data };
        let raw = bincode::serialize(&file).map_err(snap_err)?;
        let path = self.dir.join(SNAPSHOT_FILE);
        tokio::task::spawn_blocking(move || write_durably(&path, &raw)).await.map_err(snap_err)?.map_err(snap_err)?;
        tracing::info!(snapshot = %meta.snapshot_id, bytes = file.data.len(), "built raft snapshot");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(file.data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        let applied = self.engine.meta::<Option<LogId<NodeId>>>(APPLIED).map_err(sm_err)?.flatten();
        let membership = self.engine.meta::<Membership>(MEMBERSHIP).map_err(sm_err)?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            let applied = MvccEngine::meta_entry(APPLIED, &Some(entry.log_id));
            match entry.payload {
                EntryPayload::Blank => {
                    self.engine.put_meta(vec![applied]).map_err(sm_err)?;
                    out.push(Ok(CommandOutput::Nothing));
                }
                EntryPayload::Normal(cmd) => out.push(self.apply_command(&cmd, applied)?),
                EntryPayload::Membership(m) => {
                    let stored = StoredMembership::new(Some(entry.log_id), m);
                    self.engine.put_meta(vec![applied, MvccEngine::meta_entry(MEMBERSHIP, &stored)]).map_err(sm_err)?;
                    out.push(Ok(CommandOutput::Nothing));
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Dumped here, in the state machine's own task, so the copy is consistent with
        // `applied`; serialising and writing it happens off this task.
        let state = self.applied_state().await;
        let entries = self.engine.dump();
        let (applied, membership, entries) = match state {
            Ok((applied, membership)) => (applied, membership, entries),
            Err(e) => (None, Membership::default(), Err(StoreError::Storage(e.to_string()))),
        };
        SnapshotBuilder { entries, applied, membership, dir: self.dir.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        tracing::info!(snapshot = %meta.snapshot_id, "installing raft snapshot from the leader");
        let file = SnapshotFile { meta: meta.clone(), data: snapshot.into_inner() };
        let raw = bincode::serialize(&file).map_err(snap_err)?;
        write_durably(&self.dir.join(SNAPSHOT_FILE), &raw).map_err(snap_err)?;
        write_durably(&self.dir.join(INSTALLING_MARKER), b"").map_err(snap_err)?;
        self.load(&file)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.read_snapshot_file()?.map(|f| Snapshot { meta: f.meta, snapshot: Box::new(Cursor::new(f.data)) }))
    }
}
