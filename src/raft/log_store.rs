//! The raft log on sled, with group commit.
//!
//! Contract (openraft storage v2): `append` returns once the entries are written to sled's
//! memory; their `LogFlushed` callback fires only after a flush made them durable (a
//! [`DurableDb::flush`]: fdatasync, not just sled's `sync_file_range`). One flusher task serves
//! every pending callback with a single flush, so concurrent writes share fsyncs instead of
//! paying one each. The vote, and a truncation, are durable before `save_vote` and `truncate`
//! return.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use tokio::sync::mpsc;

use super::{NodeId, TypeConfig};
use crate::store::DurableDb;

const ENTRY: u8 = b'e';
const VOTE: &[u8] = b"mvote";
const COMMITTED: &[u8] = b"mcommitted";
const PURGED: &[u8] = b"mpurged";

fn entry_key(index: u64) -> [u8; 9] {
    let mut k = [ENTRY; 9];
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

fn vote_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_vote(AnyError::new(&e)).into()
}

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DurableDb>,
    tree: sled::Tree,
    flusher: mpsc::UnboundedSender<LogFlushed<TypeConfig>>,
}

impl LogStore {
    /// Opens the log in `db` and starts its flusher task (needs a tokio runtime).
    pub fn open(db: Arc<DurableDb>) -> Result<Self, sled::Error> {
        let tree = db.db().open_tree("raft-log")?;
        let (flusher, rx) = mpsc::unbounded_channel();
        tokio::spawn(flush_loop(db.clone(), rx));
        Ok(Self { db, tree, flusher })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError<NodeId>> {
        match self.tree.get(key).map_err(read_err)? {
            Some(raw) => Ok(Some(bincode::deserialize(&raw).map_err(read_err)?)),
            None => Ok(None),
        }
    }
}

/// Waits for callbacks, then flushes once for all that are queued and completes them.
async fn flush_loop(db: Arc<DurableDb>, mut rx: mpsc::UnboundedReceiver<LogFlushed<TypeConfig>>) {
    let mut pending = Vec::new();
    while rx.recv_many(&mut pending, 4096).await > 0 {
        let result = db.flush_async().await.map_err(std::io::Error::other);
        for cb in pending.drain(..) {
            cb.log_io_completed(result.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string())));
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(i) => entry_key(*i),
            Bound::Excluded(i) => entry_key(*i + 1),
            Bound::Unbounded => entry_key(0),
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(entry_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(entry_key(*i)),
            Bound::Unbounded => Bound::Excluded([ENTRY + 1; 9]),
        };
        self.tree
            .range((Bound::Included(start), end))
            .map(|item| {
                let (_, v) = item.map_err(read_err)?;
                bincode::deserialize(&v).map_err(read_err)
            })
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.get_meta(PURGED)?;
        let last = match self.tree.range(entry_key(0)..[ENTRY + 1; 9]).next_back() {
            Some(item) => {
                let (_, v) = item.map_err(read_err)?;
                let entry: Entry<TypeConfig> = bincode::deserialize(&v).map_err(read_err)?;
                Some(entry.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.tree.insert(VOTE, bincode::serialize(vote).map_err(vote_err)?).map_err(vote_err)?;
        self.db.flush_async().await.map_err(vote_err)?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.get_meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        self.tree.insert(COMMITTED, bincode::serialize(&committed).map_err(write_err)?).map_err(write_err)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            batch.insert(&entry_key(entry.log_id.index), bincode::serialize(&entry).map_err(write_err)?);
        }
        self.tree.apply_batch(batch).map_err(write_err)?;
        self.flusher.send(callback).map_err(|_| write_err(std::io::Error::other("log flusher stopped")))?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut batch = sled::Batch::default();
        for item in self.tree.range(entry_key(log_id.index)..[ENTRY + 1; 9]) {
            batch.remove(item.map_err(read_err)?.0);
        }
        self.tree.apply_batch(batch).map_err(write_err)?;
        self.db.flush_async().await.map_err(write_err)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut batch = sled::Batch::default();
        batch.insert(PURGED, bincode::serialize(&log_id).map_err(write_err)?);
        for item in self.tree.range(entry_key(0)..=entry_key(log_id.index)) {
            batch.remove(item.map_err(read_err)?.0);
        }
        self.tree.apply_batch(batch).map_err(write_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RecordingFs, StoreConfig};

    #[tokio::test]
    async fn a_vote_is_synced_before_save_vote_returns() {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(RecordingFs::default());
        let db = DurableDb::open_with(&dir.path().join("db"), &StoreConfig::default(), fs.clone()).unwrap();
        let mut log = LogStore::open(db).unwrap();
        fs.take();
        log.save_vote(&Vote::new(3, 7)).await.unwrap();
        assert_eq!(fs.take().last().map(String::as_str), Some("file db/db"), "the log file is synced after the vote is written");
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 7)));
    }
}
