//! Automatic compaction, as kube-apiserver does it: every interval, compact up to the revision
//! seen at the previous tick, so history never grows without bound under churn while watchers
//! keep at least one interval of history to resume from.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Revision, Store, StoreError};

/// Runs until `cancel` fires. `should_run` lets only one replica (the raft leader) compact.
pub async fn run(
    store: Arc<dyn Store>,
    interval: Duration,
    should_run: impl Fn() -> bool + Send,
    cancel: CancellationToken,
) {
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
