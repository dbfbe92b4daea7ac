//! A subscriber's queue of changes, bounded: past its limit the pending changes are dropped
//! and the subscriber is handed the cache as a fresh full list instead (what a relist after
//! a watch expiry would give it), so a stuck controller cannot hold old object versions
//! without end.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::Change;

/// Changes a subscriber may have pending before it is resynced from the cache.
pub const LIMIT: usize = 65_536;

pub struct Queue<K> {
    pending: Mutex<Pending<K>>,
    wake: Notify,
    limit: usize,
}

struct Pending<K> {
    changes: VecDeque<Change<K>>,
    /// Changes were dropped: the subscriber gets a full list before anything else.
    overflowed: bool,
}

impl<K> Queue<K> {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { pending: Mutex::new(Pending { changes: VecDeque::new(), overflowed: false }), wake: Notify::new(), limit })
    }

    /// Queues `change`; once the queue is full, drops it and everything pending and marks
    /// the queue for a resync.
    pub fn push(&self, change: Change<K>, kind: &str) {
        let mut pending = self.pending.lock();
        if pending.overflowed {
            return;
        }
        if pending.changes.len() >= self.limit {
            tracing::warn!(
                kind,
                pending = pending.changes.len(),
                "a controller fell behind its informer; it will be handed a full list instead"
            );
            pending.changes = VecDeque::new();
            pending.overflowed = true;
        } else {
            pending.changes.push_back(change);
        }
        drop(pending);
        self.wake.notify_one();
    }

    /// The next change, or `Err(())` when the queue overflowed and must be resynced first.
    pub fn pop(&self) -> Option<Result<Change<K>, ()>> {
        let mut pending = self.pending.lock();
        if pending.overflowed {
            return Some(Err(()));
        }
        pending.changes.pop_front().map(Ok)
    }

    /// Replaces whatever is pending with a full list of `objects` (called with the
    /// informer's subscriber lock held, so no change slips between the list and the queue).
    pub fn resync(&self, objects: Vec<Arc<K>>) {
        let mut pending = self.pending.lock();
        pending.changes.clear();
        pending.changes.push_back(Change::Init);
        pending.changes.extend(objects.into_iter().map(|o| Change::InitApply(o, true)));
        pending.changes.push_back(Change::InitDone);
        pending.overflowed = false;
    }

    /// Waits until something was pushed since the last wait.
    pub async fn changed(&self) {
        self.wake.notified().await
    }
}
