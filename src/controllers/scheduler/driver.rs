//! The scheduling loop: the one task that owns the cache and the queue. It applies watch
//! updates and binding outcomes as they come, and between them schedules one pod at a time,
//! handing writes to the binder and the event recorder so it never waits on the API.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::watcher::Event;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::binder::{BindError, BindOutcome, Binder};
use super::cache::{Cache, NodeChange};
use super::events::{Record, Recorder};
use super::framework::{Algorithm, Decision};
use super::informers::Update;
use super::pod_info::PodInfo;
use super::queue::SchedulingQueue;

/// The name pods use to ask for this scheduler.
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// Longest idle wait, so unschedulable timeouts are noticed.
const IDLE_TICK: Duration = Duration::from_secs(1);

pub struct Driver {
    cache: Cache,
    queue: SchedulingQueue,
    algorithm: Algorithm,
    binder: Binder,
    events: Recorder,
    /// Keys seen since the pod / node watch (re)started listing; `None` when not listing.
    pod_relist: Option<HashSet<String>>,
    node_relist: Option<HashSet<String>>,
    pods_synced: bool,
    nodes_synced: bool,
}

fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or_default(), pod.metadata.name.as_deref().unwrap_or_default())
}

/// Pods that have finished hold no resources (kube-scheduler's informer skips them).
fn terminated(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

impl Driver {
    pub fn new(binder: Binder, events: Recorder, algorithm: Algorithm) -> Self {
        Self {
            cache: Cache::default(),
            queue: SchedulingQueue::default(),
            algorithm,
            binder,
            events,
            pod_relist: None,
            node_relist: None,
            pods_synced: false,
            nodes_synced: false,
        }
    }

    pub async fn run(
        mut self,
        mut updates: mpsc::Receiver<Update>,
        mut outcomes: mpsc::UnboundedReceiver<BindOutcome>,
        shutdown: CancellationToken,
    ) {
        loop {
            while let Ok(u) = updates.try_recv() {
                self.apply(u);
            }
            while let Ok(o) = outcomes.try_recv() {
                self.finish_binding(o);
            }
            if shutdown.is_cancelled() {
                return;
            }
            let now = Instant::now();
            if self.pods_synced && self.nodes_synced {
                if let Some(pod) = self.queue.pop(now) {
                    self.schedule(pod).await;
                    continue;
                }
            }
            let wake = self.queue.next_backoff_expiry().map_or(now + IDLE_TICK, |t| t.min(now + IDLE_TICK));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                u = updates.recv() => match u {
                    Some(u) => self.apply(u),
                    None => return,
                },
                Some(o) = outcomes.recv() => self.finish_binding(o),
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    async fn schedule(&mut self, pod: super::queue::QueuedPod) {
        match self.algorithm.schedule(&pod.info, &self.cache) {
            Decision::Node(node) => {
                self.cache.assume(pod.info.clone(), &node);
                self.binder.bind(pod, node).await;
            }
            Decision::Unschedulable(message) => {
                tracing::debug!(pod = %pod.info.key, "unschedulable: {message}");
                self.events.record(Record {
                    pod: pod.info.clone(),
                    warning: true,
                    reason: "FailedScheduling",
                    action: "Scheduling",
                    message: message.clone(),
                });
                self.binder.mark_unschedulable(&pod.info, &message).await;
                self.queue.requeue_unschedulable(pod, Instant::now());
            }
        }
    }

    fn finish_binding(&mut self, outcome: BindOutcome) {
        let BindOutcome { pod, node, result } = outcome;
        match result {
            Ok(()) => self.events.record(Record {
                message: format!("Successfully assigned {} to {node}", pod.info.key),
                pod: pod.info,
                warning: false,
                reason: "Scheduled",
                action: "Binding",
            }),
            Err(e) => {
                self.cache.forget(&pod.info.key);
                let gone_or_bound = matches!(&e, BindError::Api(kube::Error::Api(s)) if s.code == 404 || s.code == 409);
                if gone_or_bound {
                    tracing::debug!(pod = %pod.info.key, "binding skipped: {e}");
                } else {
                    tracing::warn!(pod = %pod.info.key, %node, "binding failed, retrying after backoff: {e}");
                    self.queue.requeue_backoff(pod, Instant::now());
                }
            }
        }
    }

    fn apply(&mut self, update: Update) {
        match update {
            Update::Pod(Event::Init) => self.pod_relist = Some(HashSet::new()),
            Update::Pod(Event::InitApply(pod)) => {
                if let Some(seen) = &mut self.pod_relist {
                    seen.insert(pod_key(&pod));
                }
                self.pod_changed(pod);
            }
            Update::Pod(Event::InitDone) => {
                if let Some(seen) = self.pod_relist.take() {
                    self.drop_pods_not_in(&seen);
                }
                self.pods_synced = true;
            }
            Update::Pod(Event::Apply(pod)) => self.pod_changed(pod),
            Update::Pod(Event::Delete(pod)) => self.pod_gone(&pod_key(&pod)),
            Update::Node(Event::Init) => self.node_relist = Some(HashSet::new()),
            Update::Node(Event::InitApply(node)) => {
                if let Some(seen) = &mut self.node_relist {
                    seen.insert(node.metadata.name.clone().unwrap_or_default());
                }
                self.node_changed(node);
            }
            Update::Node(Event::InitDone) => {
                if let Some(seen) = self.node_relist.take() {
                    let gone: Vec<String> =
                        self.cache.nodes().iter().filter(|n| n.node.is_some() && !seen.contains(&n.name)).map(|n| n.name.clone()).collect();
                    for name in gone {
                        self.cache.remove_node(&name);
                    }
                }
                self.nodes_synced = true;
            }
            Update::Node(Event::Apply(node)) => self.node_changed(node),
            Update::Node(Event::Delete(node)) => self.cache.remove_node(node.metadata.name.as_deref().unwrap_or_default()),
            Update::Volumes => self.queue.move_all_unschedulable(Instant::now()),
        }
    }

    fn node_changed(&mut self, node: Arc<Node>) {
        if self.cache.upsert_node(node) == NodeChange::Relevant {
            self.queue.move_all_unschedulable(Instant::now());
        }
    }

    fn pod_changed(&mut self, pod: Arc<Pod>) {
        if terminated(&pod) {
            self.pod_gone(&pod_key(&pod));
            return;
        }
        let spec = pod.spec.as_ref();
        match spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()) {
            Some(node) => {
                let info = Arc::new(PodInfo::new(pod));
                self.queue.delete(&info.key);
                self.cache.add_bound_pod(info, &node);
            }
            None => {
                let key = pod_key(&pod);
                if self.cache.is_assumed(&key) {
                    return; // Binding in flight; this is an older view of the pod.
                }
                let ours = spec.and_then(|s| s.scheduler_name.as_deref()).is_none_or(|n| n.is_empty() || n == SCHEDULER_NAME);
                if pod.metadata.deletion_timestamp.is_some() || !ours {
                    self.queue.delete(&key);
                    return;
                }
                self.queue.add(Arc::new(PodInfo::new(pod)), Instant::now());
            }
        }
    }

    fn pod_gone(&mut self, key: &str) {
        self.queue.delete(key);
        if self.cache.remove_pod(key) {
            self.queue.move_all_unschedulable(Instant::now());
        }
    }

    fn drop_pods_not_in(&mut self, seen: &HashSet<String>) {
        let cached: Vec<String> = self
            .cache
            .nodes()
            .iter()
            .flat_map(|n| &n.pods)
            .map(|p| p.key.clone())
            .filter(|k| !seen.contains(k) && !self.cache.is_assumed(k))
            .collect();
        for key in cached {
            self.pod_gone(&key);
        }
        self.queue.retain(|key| seen.contains(key));
    }
}
