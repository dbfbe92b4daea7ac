//! Core/v1 Events about any object, as kube-controller-manager's event recorder writes them
//! (`kubectl describe` and `kubectl get events` show them). Events of cluster-scoped objects go
//! to `default`, as kube's recorder puts them.

use k8s_openapi::api::core::v1::{Event, EventSource};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, PostParams};
use kube::Resource;

/// Records a `Normal` (or, with `warning`, `Warning`) event on `obj` from `component`; a
/// failure to record is only logged.
pub async fn record<K: Resource<DynamicType = ()>>(
    client: &kube::Client,
    obj: &K,
    component: &str,
    warning: bool,
    reason: &str,
    message: &str,
) {
    let meta = obj.meta();
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    let now = k8s_openapi::jiff::Timestamp::now();
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", meta.name.as_deref().unwrap_or_default())),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        involved_object: obj.object_ref(&()),
        type_: Some(if warning { "Warning" } else { "Normal" }.into()),
        reason: Some(reason.into()),
        message: Some(message.into()),
        source: Some(EventSource { component: Some(component.into()), host: None }),
        reporting_component: Some(component.into()),
        reporting_instance: Some(component.into()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        count: Some(1),
        ..Default::default()
    };
    if let Err(e) = Api::<Event>::namespaced(client.clone(), &namespace).create(&PostParams::default(), &event).await {
        tracing::debug!(%reason, error = %e, "cannot record an event");
    }
}
