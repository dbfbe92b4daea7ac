//! Writes the scheduler's decisions back through the API without holding up the scheduling
//! loop: bindings (`pods/<name>/binding`, after the pod's volumes, see `prebind`) and PodScheduled=False conditions run as tasks,
//! at most `IN_FLIGHT` at once, and report back over a channel.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::task::TaskTracker;

use super::pod_info::PodInfo;
use super::queue::QueuedPod;

/// API writes the binder keeps in flight.
pub const IN_FLIGHT: usize = 64;

/// Why a binding failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Volumes(#[from] super::prebind::PreBindError),
}

/// How a binding ended.
#[derive(Debug)]
pub struct BindOutcome {
    pub pod: QueuedPod,
    pub node: String,
    pub result: Result<(), BindError>,
}

pub struct Binder {
    client: kube::Client,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    done: mpsc::UnboundedSender<BindOutcome>,
}

impl Binder {
    pub fn new(client: kube::Client, tracker: TaskTracker, done: mpsc::UnboundedSender<BindOutcome>) -> Self {
        Self { client, permits: Arc::new(Semaphore::new(IN_FLIGHT)), tracker, done }
    }

    fn pods(&self, pod: &PodInfo) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &pod.namespace)
    }

    /// Binds `pod` to `node` in the background; waits only for a free slot.
    pub async fn bind(&self, pod: QueuedPod, node: String) {
        let Ok(permit) = self.permits.clone().acquire_owned().await else { return };
        let api = self.pods(&pod.info);
        let done = self.done.clone();
        let client = self.client.clone();
        self.tracker.spawn(async move {
            let binding = binding(&pod.info, &node);
            let result = match super::prebind::prebind(&client, &pod.info.pod, &node).await {
                Ok(()) => api
                    .create_subresource::<_, serde_json::Value>("binding", pod.info.name(), &PostParams::default(), &binding)
                    .await
                    .map(drop)
                    .map_err(BindError::from),
                Err(e) => Err(e.into()),
            };
            drop(permit);
            let _ = done.send(BindOutcome { pod, node, result });
        });
    }

    /// Sets the pod's PodScheduled condition to False/Unschedulable with `message`, unless it
    /// says that already.
    pub async fn mark_unschedulable(&self, pod: &Arc<PodInfo>, message: &str) {
        let current =
            pod.pod.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        if current
            .is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable") && c.message.as_deref() == Some(message))
        {
            return;
        }
        let Ok(permit) = self.permits.clone().acquire_owned().await else { return };
        let api = self.pods(pod);
        let condition = PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some(message.to_string()),
            last_transition_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
            ..Default::default()
        };
        let (name, key) = (pod.name().to_string(), pod.key.clone());
        self.tracker.spawn(async move {
            let patch = Patch::Strategic(json!({ "status": { "conditions": [condition] } }));
            if let Err(e) = api.patch_status(&name, &PatchParams::default(), &patch).await {
                tracing::debug!(pod = %key, "setting PodScheduled=False failed: {e}");
            }
            drop(permit);
        });
    }
}

/// The Binding object that assigns `pod` to `node`.
pub fn binding(pod: &PodInfo, node: &str) -> Binding {
    Binding {
        metadata: ObjectMeta {
            name: Some(pod.name().to_string()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()).filter(|u| !u.is_empty()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..Default::default()
        },
    }
}
