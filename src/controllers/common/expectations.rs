//! Controller expectations (kube-controller-manager's `UIDTrackingControllerExpectations`):
//! after creating or deleting pods a controller records what it expects to see, and skips
//! syncing an owner until its pod cache has observed those changes (or the record is older
//! than five minutes), so a lagging cache never causes over-creation or over-deletion.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// After this long a record is ignored, in case an event was lost.
pub const TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Record {
    adds: i64,
    deletes: HashSet<String>,
    at: Instant,
}

/// Expectations of every owner, keyed by `namespace/name`.
#[derive(Debug, Default)]
pub struct Expectations {
    records: Mutex<HashMap<String, Record>>,
}

impl Expectations {
    /// Whether the owner may sync: nothing pending, or the record timed out.
    pub fn satisfied(&self, key: &str) -> bool {
        self.satisfied_at(key, Instant::now())
    }

    fn satisfied_at(&self, key: &str, now: Instant) -> bool {
        let records = self.records.lock();
        records.get(key).is_none_or(|r| (r.adds <= 0 && r.deletes.is_empty()) || now.duration_since(r.at) > TIMEOUT)
    }

    /// Records that `count` pods are about to be created (replacing any older record).
    pub fn expect_creations(&self, key: &str, count: usize) {
        self.set(key, count as i64, HashSet::new());
    }

    /// Records that these pods (by name) are about to be deleted (replacing any older record).
    pub fn expect_deletions(&self, key: &str, pods: impl IntoIterator<Item = String>) {
        self.set(key, 0, pods.into_iter().collect());
    }

    fn set(&self, key: &str, adds: i64, deletes: HashSet<String>) {
        let mut records = self.records.lock();
        records.insert(key.to_string(), Record { adds, deletes, at: Instant::now() });
    }

    /// A creation was observed (or will never happen because the request failed).
    pub fn creation_observed(&self, key: &str) {
        let mut records = self.records.lock();
        if let Some(r) = records.get_mut(key) {
            r.adds -= 1;
        }
    }

    /// The deletion of `pod` was observed (or will never happen because the request failed).
    pub fn deletion_observed(&self, key: &str, pod: &str) {
        let mut records = self.records.lock();
        if let Some(r) = records.get_mut(key) {
            r.deletes.remove(pod);
        }
    }

    /// Drops the owner's record (the owner is gone).
    pub fn forget(&self, key: &str) {
        self.records.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_block_until_all_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs"), "no record");
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
        e.creation_observed("ns/other");
        assert!(e.satisfied("ns/other"), "observations of unknown owners are no-ops");
    }

    #[test]
    fn deletions_are_tracked_by_pod() {
        let e = Expectations::default();
        e.expect_deletions("ns/rs", ["a".to_string(), "b".to_string()]);
        e.deletion_observed("ns/rs", "a");
        e.deletion_observed("ns/rs", "a");
        assert!(!e.satisfied("ns/rs"), "the same pod twice does not count double");
        e.deletion_observed("ns/rs", "b");
        assert!(e.satisfied("ns/rs"));
    }

    #[test]
    fn records_time_out_and_can_be_forgotten() {
        let e = Expectations::default();
        e.expect_creations("ns/rs", 1);
        assert!(e.satisfied_at("ns/rs", Instant::now() + TIMEOUT + Duration::from_secs(1)));
        e.forget("ns/rs");
        assert!(e.satisfied("ns/rs"));
    }
}
