//! Warning events the kubelet posts about a pod (FailedMount, FailedCreatePodSandBox, image
//! pull failures, failed probes), each posted once per distinct reason and message so a worker
//! that keeps retrying does not flood the API.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

use super::layout::PodRef;

const COMPONENT: &str = "kubelet";

/// The events of one pod.
pub struct PodEvents {
    client: kube::Client,
    pod: PodRef,
    posted: HashSet<(String, String)>,
}

impl PodEvents {
    pub fn new(client: kube::Client, pod: PodRef) -> Self {
        Self { client, pod, posted: HashSet::new() }
    }

    /// Posts a Warning event, unless this one was posted already.
    pub async fn warn(&mut self, reason: &str, message: &str) {
        if !self.posted.insert((reason.to_string(), message.to_string())) {
            return;
        }
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.pod.namespace);
        if let Err(e) = api.create(&PostParams::default(), &self.event(reason, message)).await {
            tracing::debug!(pod = %self.pod.name, %reason, error = %e, "cannot post a pod event");
        }
    }

    fn event(&self, reason: &str, message: &str) -> Event {
        let now = Time(Timestamp::now());
        let nanos = now.0.as_nanosecond();
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{nanos:x}", self.pod.name)),
                namespace: Some(self.pod.namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(self.pod.name.clone()),
                namespace: Some(self.pod.namespace.clone()),
                uid: Some(self.pod.uid.clone()),
                ..Default::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some("Warning".into()),
            source: Some(EventSource { component: Some(COMPONENT.into()), host: None }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some(COMPONENT.into()),
            ..Default::default()
        }
    }
}
