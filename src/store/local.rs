//! [`LocalStore`]: the store on one sled database, without replication. One writer task applies
//! transactions in arrival order and group-commits them: a batch of transactions shares one
//! durable flush (see [`DurableDb`]), and none is acknowledged (or shown to watchers) before it.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::mvcc::MvccEngine;
use super::watch::WatchHub;
use super::*;

/// Most writes that share one flush.
const MAX_GROUP: usize = 512;

enum Write {
    Txn(TxnRequest, oneshot::Sender<Result<TxnResponse, StoreError>>),
    Compact(Revision, oneshot::Sender<Result<(), StoreError>>),
}

pub struct LocalStore {
    engine: Arc<MvccEngine>,
    hub: Arc<WatchHub>,
    writes: mpsc::Sender<Write>,
}

impl LocalStore {
    /// Opens the store in `dir` (created if missing). Must be called inside a tokio runtime.
    pub fn open(dir: &Path, config: &StoreConfig) -> Result<Self, StoreError> {
        Self::open_on(DurableDb::open(dir, config)?, config)
    }

    /// The store on an opened database. Must be called inside a tokio runtime.
    pub fn open_on(db: Arc<DurableDb>, config: &StoreConfig) -> Result<Self, StoreError> {
        let engine = Arc::new(MvccEngine::open(db.db().open_tree("kv")?)?);
        let hub = WatchHub::new(engine.revision(), config.watch_history);
        let (writes, rx) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(writer(db, engine.clone(), hub.clone(), rx));
        Ok(Self { engine, hub, writes })
    }

    /// How many key versions the store retains (live and historical), for tests and metrics.
    pub fn history_len(&self) -> usize {
        self.engine.history_len()
    }

    async fn submit<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Write) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writes.send(make(tx)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// The single writer: applies a group of writes, flushes once, then acknowledges and publishes.
async fn writer(db: Arc<DurableDb>, engine: Arc<MvccEngine>, hub: Arc<WatchHub>, mut rx: mpsc::Receiver<Write>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
        let mut acks: Vec<Box<dyn FnOnce(Option<StoreError>) + Send>> = Vec::with_capacity(group.len());
        let mut published = Vec::new();
        for write in group.drain(..) {
            match write {
                Write::Txn(req, tx) => match engine.apply_txn(&req, Vec::new()) {
                    Ok(applied) => {
                        published.push((applied.response.revision, applied.events));
                        let resp = applied.response;
                        acks.push(Box::new(move |err| {
                            let _ = tx.send(err.map_or(Ok(resp), Err));
                        }));
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                },
                Write::Compact(rev, tx) => match engine.compact(rev, Vec::new()) {
                    Ok(()) => acks.push(Box::new(move |err| {
                        let _ = tx.send(err.map_or(Ok(()), Err));
                    })),
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                },
            }
        }
        let flushed = db.flush_async().await.err();
        if flushed.is_none() {
            for (rev, events) in published {
                hub.publish(rev, events);
            }
        }
        for ack in acks {
            ack(flushed.clone());
        }
    }
}

#[async_trait]
impl Store for LocalStore {
    async fn range(&self, mut req: RangeRequest) -> Result<RangeResponse, StoreError> {
        // Serve only what is flushed: the newest acknowledged revision, not writes in flight.
        let published = self.hub.published();
        if req.revision > published {
            return Err(StoreError::FutureRevision { requested: req.revision, current: published });
        }
        if req.revision == 0 {
            req.revision = published;
        }
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.range(&req)).await.map_err(|_| StoreError::Closed)?
    }

    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, StoreError> {
        MvccEngine::validate(&req)?;
        self.submit(|tx| Write::Txn(req, tx)).await
    }

    async fn watch(&self, req: WatchRequest) -> Result<WatchStream, StoreError> {
        self.hub.watch(self.engine.clone(), req)
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.submit(|tx| Write::Compact(revision, tx)).await
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.hub.published())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_passes_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(LocalStore::open(dir.path(), &StoreConfig::default()).unwrap());
        crate::store::conformance::run(store, "/conformance").await;
    }

    #[tokio::test]
    async fn writes_are_acknowledged_after_the_log_file_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(RecordingFs::default());
        let db = DurableDb::open_with(dir.path(), &StoreConfig::default(), fs.clone()).unwrap();
        let store = Arc::new(LocalStore::open_on(db, &StoreConfig::default()).unwrap());
        fs.take();
        store.txn(TxnRequest::put("/a", "1")).await.unwrap();
        let calls = fs.take();
        assert!(
            calls.last().is_some_and(|c| c.starts_with("file ") && c.ends_with("/db")),
            "the ack waits for the log file's sync: {calls:?}"
        );
        // Concurrent writers share syncs (group commit).
        let writes: Vec<_> = (0..64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.txn(TxnRequest::put(format!("/g/{i}"), "v")).await.unwrap() })
            })
            .collect();
        for w in writes {
            w.await.unwrap();
        }
        let syncs = fs.take().len();
        assert!((1..64).contains(&syncs), "64 concurrent writes share syncs, made {syncs}");
    }

    #[tokio::test]
    async fn reopened_store_keeps_revision_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let rev = {
            let store = LocalStore::open(dir.path(), &StoreConfig::default()).unwrap();
            store.txn(TxnRequest::put("/a", "1")).await.unwrap();
            store.txn(TxnRequest::put("/a", "2")).await.unwrap().revision
        };
        // The writer task holds the db until it notices the closed channel: retry until it has.
        let mut attempts = 0;
        let store = loop {
            match LocalStore::open(dir.path(), &StoreConfig::default()) {
                Ok(store) => break store,
                Err(e) if attempts < 100 => {
                    attempts += 1;
                    tracing::debug!(error = %e, "store still held; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(e) => panic!("the store was not released within a second: {e}"),
            }
        };
        assert_eq!(store.current_revision().await.unwrap(), rev);
        let got = store.range(RangeRequest { range: KeyRange::single("/a"), ..Default::default() }).await.unwrap();
        assert_eq!(got.kvs[0].value, b"2");
    }

    #[tokio::test]
    async fn small_watch_ring_falls_back_to_disk_history() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig { watch_history: 8, ..Default::default() };
        let store = LocalStore::open(dir.path(), &config).unwrap();
        let first = store.txn(TxnRequest::put("/w/0", "0")).await.unwrap().revision;
        for i in 1..100 {
            store.txn(TxnRequest::put(format!("/w/{}", i % 7), i.to_string())).await.unwrap();
        }
        let mut w = store.watch(WatchRequest { range: KeyRange::prefix("/w/"), start_revision: first }).await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < 100 {
            use futures::StreamExt;
            seen.extend(w.next().await.unwrap().unwrap());
        }
        let revs: Vec<_> = seen.iter().map(|e| e.kv.mod_revision).collect();
        assert_eq!(revs, (first..first + 100).collect::<Vec<_>>());
    }
}
