//! Pod events from the scheduler (`Scheduled`, `FailedScheduling`) as core/v1 Events. Recording
//! never blocks scheduling: records go through a bounded channel (dropped when it is full) to
//! one writer task, which aggregates repeats of the same event into a count.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::pod_info::PodInfo;

pub const COMPONENT: &str = "default-scheduler";
const CHANNEL: usize = 8192;
/// Event writes in flight at once.
const WRITERS: usize = 16;
/// Remembered (event → name, count) entries before the aggregation memory starts afresh.
const AGGREGATION_MEMORY: usize = 4096;

/// One event about a pod.
#[derive(Debug, Clone)]
pub struct Record {
    pub pod: Arc<PodInfo>,
    pub warning: bool,
    pub reason: &'static str,
    pub action: &'static str,
    pub message: String,
}

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Record>,
}

impl Recorder {
    /// Starts the writer task (on `tracker`) until `shutdown`.
    pub fn start(client: kube::Client, tracker: &TaskTracker, shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL);
        tracker.spawn(write_events(client, rx, tracker.clone(), shutdown));
        Self { tx }
    }

    pub fn record(&self, record: Record) {
        if self.tx.try_send(record).is_err() {
            tracing::debug!("scheduler event dropped: the event writer is behind");
        }
    }
}

/// What makes two events "the same" for aggregation.
type Key = (String, &'static str, String);

async fn write_events(client: kube::Client, mut rx: mpsc::Receiver<Record>, tracker: TaskTracker, shutdown: CancellationToken) {
    let mut seen: HashMap<Key, (String, i32)> = HashMap::new();
    let permits = Arc::new(Semaphore::new(WRITERS));
    loop {
        let record = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = rx.recv() => match r { Some(r) => r, None => return },
        };
        if seen.len() >= AGGREGATION_MEMORY {
            seen.clear();
        }
        let key = (record.pod.uid.clone(), record.reason, record.message.clone());
        let (name, count) = match seen.get_mut(&key) {
            Some((name, count)) => {
                *count += 1;
                (name.clone(), *count)
            }
            None => {
                let name = format!("{}.{:x}", record.pod.name(), now_nanos());
                seen.insert(key, (name.clone(), 1));
                (name, 1)
            }
        };
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let api: Api<Event> = Api::namespaced(client.clone(), &record.pod.namespace);
        tracker.spawn(async move {
            let result = if count == 1 {
                api.create(&PostParams::default(), &event(&record, &name)).await.map(drop)
            } else {
                let patch = json!({ "count": count, "lastTimestamp": Time(timestamp_now()) });
                api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await.map(drop)
            };
            if let Err(e) = result {
                tracing::debug!(pod = %record.pod.key, reason = record.reason, "writing scheduler event failed: {e}");
            }
            drop(permit);
        });
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

fn timestamp_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

/// The core/v1 Event for a record.
pub fn event(record: &Record, name: &str) -> Event {
    let pod = &record.pod;
    let now = timestamp_now();
    Event {
        metadata: ObjectMeta { name: Some(name.to_string()), namespace: Some(pod.namespace.clone()), ..Default::default() },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod.name().to_string()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()),
            resource_version: pod.pod.metadata.resource_version.clone(),
            ..Default::default()
        },
        reason: Some(record.reason.into()),
        message: Some(record.message.clone()),
        type_: Some(if record.warning { "Warning" } else { "Normal" }.into()),
        source: Some(EventSource { component: Some(COMPONENT.into()), host: None }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        action: Some(record.action.into()),
        reporting_component: Some(COMPONENT.into()),
        reporting_instance: Some(COMPONENT.into()),
        ..Default::default()
    }
}
