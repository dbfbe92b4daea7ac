//! The raft state machine: applies committed [`Command`]s to the MVCC engine, publishes their
//! events to the watch hub, and builds and installs snapshots (see `snapshot_file`).
//!
//! Contract: the applied log id and membership are written in the same sled batch as the
//! change they record, so after a crash the engine is at a consistent applied point and openraft
//! re-applies the (durable) log after it. Applied state is not flushed here: the log is the
//! durable record. Snapshot install is made atomic by a marker file: a crash part-way through
//! loading is repaired at the next open by loading the saved snapshot again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use tokio::fs::File;

use super::snapshot_file::{self, Meta};
use super::{Command, CommandOutput, CommandResult, NodeId, TypeConfig};
use crate::pki::write_durably;
use crate::store::mvcc::MvccEngine;
use crate::store::{DurableDb, StoreError, WatchHub};

pub(super) const APPLIED: &str = "raft_applied";
pub(super) const MEMBERSHIP: &str = "raft_membership";
/// The current snapshot.
pub(super) const SNAPSHOT_FILE: &str = "snapshot.v2";
/// The snapshot as earlier releases wrote it (converted at open).
const OLD_SNAPSHOT_FILE: &str = "snapshot.bin";
/// Where a snapshot from the leader is received before it is installed.
const RECEIVING_FILE: &str = "snapshot.receiving";
const INSTALLING_MARKER: &str = "snapshot.installing";

type Membership = StoredMembership<NodeId, BasicNode>;

fn sm_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

fn snap_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, AnyError::error(e.to_string())).into()
}

pub struct StateMachine {
    engine: Arc<MvccEngine>,
    hub: Arc<WatchHub>,
    db: Arc<DurableDb>,
    dir: PathBuf,
}

impl StateMachine {
    /// Opens the state machine over `engine`, finishing a snapshot install a crash interrupted.
    pub fn open(db: Arc<DurableDb>, engine: Arc<MvccEngine>, hub: Arc<WatchHub>, dir: &Path) -> Result<Self, StoreError> {
        let sm = Self { engine, hub, db, dir: dir.to_path_buf() };
        snapshot_file::upgrade(&dir.join(OLD_SNAPSHOT_FILE), &dir.join(SNAPSHOT_FILE))
            .map_err(|e| StoreError::Storage(format!("converting the snapshot of an earlier release: {e}")))?;
        if dir.join(INSTALLING_MARKER).exists() {
            tracing::warn!("finishing a snapshot install interrupted by a crash");
            sm.load().map_err(|e| StoreError::Storage(e.to_string()))?;
        }
        Ok(sm)
    }

    /// The current snapshot file, opened, with its meta; `None` when there is none yet.
    fn open_snapshot(&self) -> std::io::Result<Option<snapshot_file::Reader<std::fs::File>>> {
        match std::fs::File::open(self.dir.join(SNAPSHOT_FILE)) {
            Ok(f) => Ok(Some(snapshot_file::Reader::new(f)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces the engine's content with the current snapshot file's, streaming it.
    fn load(&self) -> Result<(), StorageError<NodeId>> {
        let mut reader = self.open_snapshot().map_err(snap_err)?.ok_or_else(|| snap_err("install marker without a snapshot"))?;
        let meta = reader.meta.clone();
        self.engine.load(reader.by_ref().map(|e| e.map_err(|e| StoreError::Storage(e.to_string())))).map_err(sm_err)?;
        self.engine
            .put_meta(vec![MvccEngine::meta_entry(APPLIED, &meta.last_log_id), MvccEngine::meta_entry(MEMBERSHIP, &meta.last_membership)])
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

pub struct SnapshotBuilder {
    /// The engine's content, or why it could not be read.
    entries: Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError>,
    applied: Option<LogId<NodeId>>,
    membership: Membership,
    dir: PathBuf,
}

/// Opens the snapshot file at `path` for openraft to send.
async fn open_for_sending(path: &Path) -> Result<Box<File>, StorageError<NodeId>> {
    Ok(Box::new(File::open(path).await.map_err(snap_err)?))
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let entries = std::mem::replace(&mut self.entries, Ok(Vec::new())).map_err(snap_err)?;
        let snapshot_id = match &self.applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, rand::random::<u32>()),
            None => format!("empty-{}", rand::random::<u32>()),
        };
        let meta = SnapshotMeta { last_log_id: self.applied, last_membership: self.membership.clone(), snapshot_id };
        let path = self.dir.join(SNAPSHOT_FILE);
        let (write_meta, write_path, count) = (meta.clone(), path.clone(), entries.len());
        tokio::task::spawn_blocking(move || snapshot_file::write(&write_path, &write_meta, &entries))
            .await
            .map_err(snap_err)?
            .map_err(snap_err)?;
        tracing::info!(snapshot = %meta.snapshot_id, entries = count, "built raft snapshot");
        Ok(Snapshot { meta, snapshot: open_for_sending(&path).await? })
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

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<File>, StorageError<NodeId>> {
        let path = self.dir.join(RECEIVING_FILE);
        let file = tokio::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).mode(0o600).open(&path).await;
        Ok(Box::new(file.map_err(snap_err)?))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<File>) -> Result<(), StorageError<NodeId>> {
        tracing::info!(snapshot = %meta.snapshot_id, "installing raft snapshot from the leader");
        snapshot.sync_all().await.map_err(snap_err)?;
        drop(snapshot);
        let received =
            snapshot_file::Reader::new(std::fs::File::open(self.dir.join(RECEIVING_FILE)).map_err(snap_err)?).map_err(snap_err)?;
        if received.meta != *meta {
            return Err(snap_err(format!("received snapshot describes itself as {:?}, not {meta:?}", received.meta)));
        }
        std::fs::rename(self.dir.join(RECEIVING_FILE), self.dir.join(SNAPSHOT_FILE)).map_err(snap_err)?;
        write_durably(&self.dir.join(INSTALLING_MARKER), b"").map_err(snap_err)?;
        self.load()
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let Some(reader) = self.open_snapshot().map_err(snap_err)? else { return Ok(None) };
        Ok(Some(Snapshot { meta: reader.meta, snapshot: open_for_sending(&self.dir.join(SNAPSHOT_FILE)).await? }))
    }
}
