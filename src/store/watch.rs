//! The watch hub: a bounded in-memory ring of recent events plus a revision signal. Watchers
//! keep their own cursor and read from the ring, or from the engine's on-disk history when they
//! have fallen behind the ring, so a slow watcher never blocks writers and never misses an event.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::stream::BoxStream;
use parking_lot::RwLock;
use tokio::sync::watch;

use super::error::StoreError;
use super::mvcc::MvccEngine;
use super::types::{Event, KeyRange, Revision, WatchRequest};

/// Most events a watcher receives in one batch.
const MAX_BATCH: usize = 1024;

struct Ring {
    events: VecDeque<Event>,
    /// Every event with revision >= `start` (and <= the published revision) is in `events`.
    start: Revision,
}

pub struct WatchHub {
    ring: RwLock<Ring>,
    capacity: usize,
    /// The highest revision whose events are published.
    published: watch::Sender<Revision>,
}

impl WatchHub {
    /// A hub whose history starts after `revision`, keeping up to `capacity` events in memory.
    pub fn new(revision: Revision, capacity: usize) -> Arc<Self> {
        let (published, _) = watch::channel(revision);
        Arc::new(Self {
            ring: RwLock::new(Ring { events: VecDeque::with_capacity(capacity.min(4096)), start: revision + 1 }),
            capacity: capacity.max(1),
            published,
        })
    }

    pub fn published(&self) -> Revision {
        *self.published.borrow()
    }

    /// Publishes the events of revision `revision` (possibly none, e.g. a failed transaction).
    /// Revisions must be published in increasing order.
    pub fn publish(&self, revision: Revision, events: Vec<Event>) {
        if !events.is_empty() {
            let mut ring = self.ring.write();
            for ev in events {
                if ring.events.len() == self.capacity {
                    // Evict whole revisions so that the ring holds all events of every
                    // revision from `start` on.
                    if let Some(evicted) = ring.events.pop_front().map(|e| e.kv.mod_revision) {
                        while ring.events.front().is_some_and(|e| e.kv.mod_revision == evicted) {
                            ring.events.pop_front();
                        }
                        ring.start = evicted + 1;
                    }
                }
                ring.events.push_back(ev);
            }
        }
        self.published.send_if_modified(|cur| {
            if revision > *cur {
                *cur = revision;
                true
            } else {
                false
            }
        });
    }

    /// Forgets the in-memory history after the engine's content was replaced (snapshot install):
    /// watchers re-read everything after `revision` from disk.
    pub fn reset(&self, revision: Revision) {
        let mut ring = self.ring.write();
        ring.events.clear();
        ring.start = revision + 1;
        drop(ring);
        self.published.send_replace(revision);
    }

    /// Events from `cursor` up to `to` in `range` and the cursor to continue from. Reads the
    /// ring when it covers `cursor`, else the engine's history; stops after about
    /// [`MAX_BATCH`] events, always at a revision boundary.
    fn read(&self, engine: &MvccEngine, cursor: Revision, to: Revision, range: &KeyRange) -> Result<(Vec<Event>, Revision), StoreError> {
        {
            let ring = self.ring.read();
            if cursor >= ring.start {
                let skip = ring.events.partition_point(|e| e.kv.mod_revision < cursor);
                let mut out: Vec<Event> = Vec::new();
                for e in ring.events.iter().skip(skip).take_while(|e| e.kv.mod_revision <= to) {
                    if out.len() >= MAX_BATCH && out.last().is_some_and(|l| l.kv.mod_revision != e.kv.mod_revision) {
                        let next = e.kv.mod_revision;
                        return Ok((out, next));
                    }
                    if range.contains(&e.kv.key) {
                        out.push(e.clone());
                    }
                }
                return Ok((out, to + 1));
            }
        }
        let window_end = to.min(cursor + MAX_BATCH as Revision - 1);
        Ok((engine.events_between(cursor, window_end, range)?, window_end + 1))
    }

    /// Starts a watch. Fails with [`StoreError::Compacted`] when `start_revision` is at or below
    /// the compacted revision.
    pub fn watch(
        self: &Arc<Self>,
        engine: Arc<MvccEngine>,
        req: WatchRequest,
    ) -> Result<BoxStream<'static, Result<Vec<Event>, StoreError>>, StoreError> {
        let mut rx = self.published.subscribe();
        let published = *rx.borrow_and_update();
        let cursor = if req.start_revision <= 0 { published + 1 } else { req.start_revision };
        if cursor <= engine.compacted() {
            return Err(StoreError::Compacted { requested: cursor, compacted: engine.compacted() });
        }
        let hub = self.clone();
        let state = (hub, engine, rx, cursor, req.range);
        Ok(Box::pin(futures::stream::unfold(Some(state), |state| async move {
            let (hub, engine, mut rx, mut cursor, range) = state?;
            loop {
                let to = *rx.borrow_and_update();
                while cursor <= to {
                    match hub.read(&engine, cursor, to, &range) {
                        Ok((events, next)) => {
                            cursor = next;
                            if !events.is_empty() {
                                return Some((Ok(events), Some((hub, engine, rx, cursor, range))));
                            }
                        }
                        Err(e) => return Some((Err(e), None)),
                    }
                }
                if rx.changed().await.is_err() {
                    return Some((Err(StoreError::Closed), None));
                }
            }
        })))
    }
}
