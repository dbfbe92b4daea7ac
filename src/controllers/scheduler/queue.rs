//! The scheduling queue: active (highest priority first, then arrival order), backoff
//! (exponential 1 s → 10 s per pod) and unschedulable (until the cluster changes, or at most
//! `UNSCHEDULABLE_TIMEOUT`). Owned by the scheduling loop; time is passed in, never read.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pod_info::PodInfo;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The longest a pod waits as unschedulable before it is tried again regardless.
pub const UNSCHEDULABLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A pod handed out by `pop`, to be returned with `requeue_*` unless it was scheduled.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    pub info: Arc<PodInfo>,
    /// Failed scheduling attempts so far.
    pub attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
}

struct Entry {
    pod: QueuedPod,
    place: Place,
    /// Arrival order; also tells live heap entries from stale ones.
    seq: u64,
    backoff_until: Instant,
}

#[derive(Default)]
pub struct SchedulingQueue {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<(i32, Reverse<u64>, String)>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    /// In the order pods were parked, so the timeout scan stops at the first recent one.
    unschedulable: VecDeque<(Instant, u64, String)>,
    next_seq: u64,
}

/// kube-scheduler's per-pod backoff: 1 s doubled per failed attempt, at most 10 s.
pub fn backoff_for(attempts: u32) -> Duration {
    let mut d = INITIAL_BACKOFF;
    for _ in 1..attempts {
        if d >= MAX_BACKOFF / 2 {
            return MAX_BACKOFF;
        }
        d *= 2;
    }
    d
}

impl SchedulingQueue {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn place(&mut self, key: String, mut entry: Entry, place: Place, now: Instant) {
        self.next_seq += 1;
        entry.seq = self.next_seq;
        entry.place = place;
        match place {
            Place::Active => self.active.push((entry.pod.info.priority, Reverse(entry.seq), key.clone())),
            Place::Backoff => self.backoff.push(Reverse((entry.backoff_until, entry.seq, key.clone()))),
            Place::Unschedulable => self.unschedulable.push_back((now, entry.seq, key.clone())),
        }
        self.entries.insert(key, entry);
    }

    /// A new pending pod, or a newer version of a queued one. An unschedulable pod whose spec
    /// or labels changed is tried again.
    pub fn add(&mut self, info: Arc<PodInfo>, now: Instant) {
        let key = info.key.clone();
        match self.entries.get_mut(&key) {
            Some(e) => {
                let changed = e.pod.info.pod.spec != info.pod.spec || e.pod.info.pod.metadata.labels != info.pod.metadata.labels;
                let was_active = e.place == Place::Active && e.pod.info.priority == info.priority;
                e.pod.info = info;
                if e.place == Place::Unschedulable && changed {
                    let entry = self.entries.remove(&key).expect("present");
                    let place = if entry.backoff_until > now { Place::Backoff } else { Place::Active };
                    self.place(key, entry, place, now);
                } else if e.place == Place::Active && !was_active {
                    let entry = self.entries.remove(&key).expect("present");
                    self.place(key, entry, Place::Active, now);
                }
            }
            None => {
                let entry = Entry { pod: QueuedPod { info, attempts: 0 }, place: Place::Active, seq: 0, backoff_until: now };
                self.place(key, entry, Place::Active, now);
            }
        }
    }

    pub fn delete(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Keeps only the pods whose key passes `keep` (after a re-list).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.entries.retain(|k, _| keep(k));
    }

    /// The next pod to schedule, after moving pods whose backoff or unschedulable wait is over.
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPod> {
        self.flush(now);
        while let Some((_, Reverse(seq), key)) = self.active.pop() {
            if self.entries.get(&key).is_some_and(|e| e.seq == seq && e.place == Place::Active) {
                return self.entries.remove(&key).map(|e| e.pod);
            }
        }
        None
    }

    /// Moves backed-off pods whose time has come to active, and pods unschedulable for longer
    /// than `UNSCHEDULABLE_TIMEOUT` on.
    pub fn flush(&mut self, now: Instant) {
        while let Some(Reverse((until, seq, key))) = self.backoff.peek().cloned() {
            if until > now {
                break;
            }
            self.backoff.pop();
            if self.entries.get(&key).is_some_and(|e| e.seq == seq && e.place == Place::Backoff) {
                let entry = self.entries.remove(&key).expect("present");
                self.place(key, entry, Place::Active, now);
            }
        }
        while self.unschedulable.front().is_some_and(|(since, _, _)| now.duration_since(*since) >= UNSCHEDULABLE_TIMEOUT) {
            if let Some((_, seq, key)) = self.unschedulable.pop_front() {
                self.reactivate(key, seq, now);
            }
        }
    }

    /// Moves a parked pod (if `seq` is still its live entry) to backoff or active.
    fn reactivate(&mut self, key: String, seq: u64, now: Instant) {
        if !self.entries.get(&key).is_some_and(|e| e.seq == seq && e.place == Place::Unschedulable) {
            return;
        }
        let Some(entry) = self.entries.remove(&key) else { return };
        let place = if entry.backoff_until > now { Place::Backoff } else { Place::Active };
        self.place(key, entry, place, now);
    }

    /// The cluster changed in a way that may let unschedulable pods fit: try them again
    /// (after their backoff).
    pub fn move_all_unschedulable(&mut self, now: Instant) {
        for (_, seq, key) in std::mem::take(&mut self.unschedulable) {
            self.reactivate(key, seq, now);
        }
    }

    /// The pod fit no node: park it until the cluster changes.
    pub fn requeue_unschedulable(&mut self, pod: QueuedPod, now: Instant) {
        self.requeue(pod, Place::Unschedulable, now);
    }

    /// Scheduling or binding failed for another reason: retry after the pod's backoff.
    pub fn requeue_backoff(&mut self, pod: QueuedPod, now: Instant) {
        self.requeue(pod, Place::Backoff, now);
    }

    fn requeue(&mut self, mut pod: QueuedPod, place: Place, now: Instant) {
        if self.entries.contains_key(&pod.info.key) {
            return; // A newer version arrived meanwhile and is queued already.
        }
        pod.attempts += 1;
        let backoff_until = now + backoff_for(pod.attempts);
        let key = pod.info.key.clone();
        self.place(key, Entry { pod, place, seq: 0, backoff_until }, place, now);
    }

    /// When the earliest backoff ends (the loop sleeps until then when nothing is active).
    pub fn next_backoff_expiry(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((until, _, _))| *until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn info(name: &str, priority: i32) -> Arc<PodInfo> {
        let p: Pod = serde_json::from_value(
            json!({ "metadata": { "name": name, "namespace": "d" }, "spec": { "priority": priority, "containers": [] } }),
        )
        .unwrap();
        Arc::new(PodInfo::new(Arc::new(p)))
    }

    fn names(q: &mut SchedulingQueue, now: Instant) -> Vec<String> {
        std::iter::from_fn(|| q.pop(now)).map(|p| p.info.name().to_string()).collect()
    }

    #[test]
    fn priority_then_arrival() {
        let now = Instant::now();
        let mut q = SchedulingQueue::default();
        q.add(info("a", 0), now);
        q.add(info("b", 10), now);
        q.add(info("c", 0), now);
        q.add(info("d", 10), now);
        assert_eq!(names(&mut q, now), ["b", "d", "a", "c"]);
        assert!(q.is_empty());
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        let secs: Vec<u64> = (1..=6).map(|a| backoff_for(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
        let now = Instant::now();
        let mut q = SchedulingQueue::default();
        q.add(info("a", 0), now);
        let p = q.pop(now).unwrap();
        q.requeue_backoff(p, now);
        assert!(q.pop(now + Duration::from_millis(900)).is_none());
        assert_eq!(q.next_backoff_expiry(), Some(now + Duration::from_secs(1)));
        let p = q.pop(now + Duration::from_secs(1)).unwrap();
        assert_eq!(p.attempts, 1);
        q.requeue_backoff(p, now + Duration::from_secs(1));
        assert!(q.pop(now + Duration::from_millis(2900)).is_none());
        assert!(q.pop(now + Duration::from_secs(3)).is_some());
    }

    #[test]
    fn unschedulable_waits_for_a_cluster_change_or_the_timeout() {
        let now = Instant::now();
        let mut q = SchedulingQueue::default();
        q.add(info("a", 0), now);
        let p = q.pop(now).unwrap();
        q.requeue_unschedulable(p, now);
        let later = now + Duration::from_secs(5);
        assert!(q.pop(later).is_none(), "parked");
        q.move_all_unschedulable(later);
        assert_eq!(names(&mut q, later), ["a"]);

        q.add(info("b", 0), now);
        let p = q.pop(now).unwrap();
        q.requeue_unschedulable(p, now);
        assert!(q.pop(now + Duration::from_secs(59)).is_none());
        assert_eq!(names(&mut q, now + UNSCHEDULABLE_TIMEOUT), ["b"]);
    }

    #[test]
    fn cluster_change_during_backoff_goes_through_backoff() {
        let now = Instant::now();
        let mut q = SchedulingQueue::default();
        q.add(info("a", 0), now);
        let p = q.pop(now).unwrap();
        q.requeue_unschedulable(p, now);
        q.move_all_unschedulable(now + Duration::from_millis(100));
        assert!(q.pop(now + Duration::from_millis(200)).is_none(), "still backing off");
        assert!(q.pop(now + Duration::from_secs(1)).is_some());
    }

    #[test]
    fn updates_and_deletes() {
        let now = Instant::now();
        let mut q = SchedulingQueue::default();
        q.add(info("a", 0), now);
        q.add(info("b", 0), now);
        q.add(info("a", 100), now);
        q.delete("d/b");
        assert_eq!(q.len(), 1);
        let p = q.pop(now).unwrap();
        assert_eq!(p.info.priority, 100);
        assert!(q.pop(now).is_none(), "no stale heap entries come out");
        q.requeue_unschedulable(p, now);
        // A changed spec brings an unschedulable pod back (after its backoff).
        q.add(info("a", 5), now + Duration::from_secs(2));
        assert_eq!(q.len(), 1);
        assert_eq!(names(&mut q, now + Duration::from_secs(2)), ["a"]);
    }
}
