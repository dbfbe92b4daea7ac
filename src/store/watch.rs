//! The watch hub: a bounded in-memory ring of recent events (at most `--watch-history` events
//! and [`RING_BYTES`] of keys and values) plus a revision signal. Watchers keep their own
//! cursor and read from the ring, or from the engine's on-disk history when they have fallen
//! behind the ring, so a slow watcher never blocks writers, never misses an event and never
//! holds memory of its own beyond one batch.

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
/// Most bytes of keys and values the ring keeps (large objects written in a burst must not
/// pin `--watch-history` copies of themselves in memory).
pub const RING_BYTES: usize = 32 << 20;

struct Ring {
    events: VecDeque<Event>,
    /// Bytes of keys and values in `events`.
    bytes: usize,
    /// Every event with revision >= `start` (and <= the published revision) is in `events`.
    start: Revision,
}

impl Ring {
    /// Drops the oldest revision's events (all of them, so that the ring holds every event of
    /// each revision from `start` on).
    fn evict_oldest(&mut self) {
        if let Some(evicted) = self.events.front().map(|e| e.kv.mod_revision) {
            while self.events.front().is_some_and(|e| e.kv.mod_revision == evicted) {
                let gone = self.events.pop_front().expect("just checked");
                self.bytes -= event_bytes(&gone);
            }
            self.start = evicted + 1;
        }
    }
}

/// The memory an event holds: its keys and values.
fn event_bytes(e: &Event) -> usize {
    e.kv.key.len() + e.kv.value.len() + e.prev_kv.as_ref().map_or(0, |p| p.key.len() + p.value.len())
}

pub struct WatchHub {
    ring: RwLock<Ring>,
    capacity: usize,
    max_bytes: usize,
    /// The highest revision whose events are published.
    published: watch::Sender<Revision>,
}

impl WatchHub {
    /// A hub whose history starts after `revision`, keeping up to `capacity` events and
    /// [`RING_BYTES`] in memory.
    pub fn new(revision: Revision, capacity: usize) -> Arc<Self> {
        Self::with_limits(revision, capacity, RING_BYTES)
    }

    /// A hub keeping up to `capacity` events and `max_bytes` of keys and values in memory.
    pub fn with_limits(revision: Revision, capacity: usize, max_bytes: usize) -> Arc<Self> {
        let (published, _) = watch::channel(revision);
        Arc::new(Self {
            ring: RwLock::new(Ring { events: VecDeque::with_capacity(capacity.min(4096)), bytes: 0, start: revision + 1 }),
            capacity: capacity.max(1),
            max_bytes,
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
            let incoming: usize = events.iter().map(event_bytes).sum();
            while !ring.events.is_empty() && (ring.events.len() + events.len() > self.capacity || ring.bytes + incoming > self.max_bytes) {
                ring.evict_oldest();
            }
            if events.len() > self.capacity || incoming > self.max_bytes {
                // One revision larger than the ring: watchers read it from disk.
                ring.start = revision + 1;
            } else {
                ring.bytes += incoming;
                ring.events.extend(events);
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
        ring.bytes = 0;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::types::{EventKind, KeyValue};

    fn put(rev: Revision, key: &str, size: usize) -> Event {
        let kv = KeyValue { key: key.as_bytes().to_vec(), value: vec![b'x'; size], create_revision: rev, mod_revision: rev, version: 1 };
        Event { kind: EventKind::Put, kv, prev_kv: None }
    }

    fn state(hub: &WatchHub) -> (usize, usize, Revision) {
        let ring = hub.ring.read();
        (ring.events.len(), ring.bytes, ring.start)
    }

    #[test]
    fn the_ring_is_bounded_in_events_and_in_bytes() {
        let hub = WatchHub::with_limits(0, 4, 1000);
        for rev in 1..=6 {
            hub.publish(rev, vec![put(rev, "k", 99)]);
        }
        assert_eq!(state(&hub), (4, 400, 3), "four events at most");
        hub.publish(7, vec![put(7, "a", 299), put(7, "b", 299)]);
        assert_eq!(state(&hub), (4, 800, 5), "whole revisions go first");
        hub.publish(8, vec![put(8, "k", 499)]);
        assert_eq!(state(&hub), (1, 500, 8), "bytes bound the ring: 5, 6 and 7 make room for 8");
        hub.publish(9, vec![put(9, "huge", 5000)]);
        assert_eq!(state(&hub), (0, 0, 10), "a revision larger than the ring is left on disk");
        hub.publish(10, vec![put(10, "k", 9)]);
        assert_eq!(state(&hub), (1, 10, 10));
        assert_eq!(hub.published(), 10);
    }
}
