//! Automatic compaction, as kube-apiserver does it: every interval, compact up to the revision
//! seen at the previous tick, so history never grows without bound under churn while watchers
//! keep at least one interval of history to resume from.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Revision, Store, StoreError};

/// Runs until `cancel` fires. `should_run` lets only one replica (the raft leader) compact.
pub async fn run(store: Arc<dyn Store>, interval: Duration, should_run: impl Fn() -> bool + Send, cancel: CancellationToken) {
    let mut previous: Option<Revision> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if !should_run() {
            previous = None;
            continue;
        }
        if let Some(rev) = previous.filter(|r| *r > 0) {
            match store.compact(rev).await {
                Ok(()) => tracing::debug!(revision = rev, "compacted store history"),
                Err(StoreError::Compacted { .. }) => {}
                Err(e) => tracing::warn!(revision = rev, error = %e, "automatic compaction failed"),
            }
        }
        previous = store.current_revision().await.ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{KeyRange, LocalStore, RangeRequest, StoreConfig, TxnRequest};

    #[tokio::test]
    async fn churn_is_compacted_away_and_old_reads_fail() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalStore::open(dir.path(), &StoreConfig::default()).unwrap());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(store.clone(), Duration::from_millis(50), || true, cancel.clone()));
        let first = store.txn(TxnRequest::put("/churn/0", "0")).await.unwrap().revision;
        for i in 0..2000 {
            store.txn(TxnRequest::put(format!("/churn/{}", i % 10), i.to_string())).await.unwrap();
        }
        let last = store.current_revision().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
        task.await.unwrap();
        let old = store.range(RangeRequest { range: KeyRange::prefix("/churn/"), revision: first, ..Default::default() }).await;
        assert!(matches!(old, Err(StoreError::Compacted { .. })), "history before the last compaction is gone: {old:?}");
        let now = store.range(RangeRequest { range: KeyRange::prefix("/churn/"), revision: last, ..Default::default() }).await.unwrap();
        assert_eq!(now.kvs.len(), 10, "current state survives compaction");
        assert!(store.history_len() <= 20, "at most the live versions remain, found {}", store.history_len());
    }
}
