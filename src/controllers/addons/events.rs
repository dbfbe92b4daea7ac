//! Events about an Addon (core/v1, in kube-system, so `kubectl get events -n kube-system`
//! and `kubectl describe addon` show them), as k3s's deploy controller records them.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, PostParams};

use super::addon::Addon;

const COMPONENT: &str = "deploy";

/// Whether an event reports progress or a problem.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Normal,
    Warning,
}

/// Records an event of `kind` on `addon`; a failure to record is only logged.
pub async fn record(client: &kube::Client, addon: &Addon, kind: Kind, reason: &str, message: &str) {
    let namespace = crate::k8s::names::KUBE_SYSTEM;
    let now = k8s_openapi::jiff::Timestamp::now();
    let event = Event {
        metadata: ObjectMeta { generate_name: Some(format!("{}.", addon.name)), namespace: Some(namespace.into()), ..Default::default() },
        involved_object: ObjectReference {
            api_version: Some("k3s.cattle.io/v1".into()),
            kind: Some("Addon".into()),
            name: Some(addon.name.clone()),
            namespace: Some(namespace.into()),
            uid: addon.uid.clone(),
            ..Default::default()
        },
        type_: Some(format!("{kind:?}")),
        reason: Some(reason.into()),
        message: Some(message.into()),
        source: Some(EventSource { component: Some(COMPONENT.into()), host: None }),
        reporting_component: Some(COMPONENT.into()),
        reporting_instance: Some(addon.server.clone()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        count: Some(1),
        ..Default::default()
    };
    if let Err(e) = Api::<Event>::namespaced(client.clone(), namespace).create(&PostParams::default(), &event).await {
        tracing::warn!(addon = %addon.name, error = %e, "cannot record an event");
    }
}
