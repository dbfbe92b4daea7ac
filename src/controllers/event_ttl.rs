//! Event expiry (`--event-ttl`, 1 h by default): kube-apiserver stores each Event under an
//! etcd lease renewed on every write; here a sweep deletes `events` and `events.k8s.io`
//! Events whose last write (creation, the newest managedFields entry, or the event's own
//! last-seen times) is older than the TTL. Events are read a page at a time, never cached.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Preconditions};
use kube::core::{ApiResource, GroupVersionKind};
use kube::ResourceExt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::k8s::time::from_k8s;

/// Events read per list request.
const PAGE: u32 = 500;

/// Runs the sweep until `shutdown`, a few times per TTL (at least every minute).
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let ttl = ctx.settings.event_ttl;
    let mut tick = tokio::time::interval((ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let kinds = [GroupVersionKind::gvk("", "v1", "Event"), GroupVersionKind::gvk("events.k8s.io", "v1", "Event")];
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        for gvk in &kinds {
            let resource = ApiResource::from_gvk_with_plural(gvk, "events");
            if let Err(e) = sweep(&ctx.client, &resource, ttl, OffsetDateTime::now_utc()).await {
                tracing::debug!(group = %gvk.group, error = %e, "cannot expire events yet");
            }
        }
    }
}

/// Deletes the events of `resource` last written more than `ttl` before `now`.
async fn sweep(client: &kube::Client, resource: &ApiResource, ttl: Duration, now: OffsetDateTime) -> Result<(), kube::Error> {
    let all = Api::<DynamicObject>::all_with(client.clone(), resource);
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = all.list(&params).await?;
        for event in &page.items {
            if last_write(event).is_some_and(|t| now - t <= ttl) {
                continue;
            }
            let namespace = event.namespace().unwrap_or_default();
            let delete =
                DeleteParams { preconditions: Some(Preconditions { uid: event.uid(), resource_version: None }), ..Default::default() };
            let namespaced = Api::<DynamicObject>::namespaced_with(client.clone(), &namespace, resource);
            match namespaced.delete(&event.name_any(), &delete).await {
                Ok(_) => tracing::debug!(%namespace, event = %event.name_any(), "expired an event"),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// When the event was last written: the newest of its creation, its managedFields' times and
/// its own last-seen fields (`lastTimestamp`, `eventTime`, `series.lastObservedTime`…).
fn last_write(event: &DynamicObject) -> Option<OffsetDateTime> {
    let meta = &event.metadata;
    let mut times: Vec<OffsetDateTime> = meta.creation_timestamp.iter().map(|t| from_k8s(&t.0)).collect();
    times.extend(meta.managed_fields.iter().flatten().filter_map(|m| m.time.as_ref()).map(|t| from_k8s(&t.0)));
    let data = &event.data;
    for field in [&data["lastTimestamp"], &data["deprecatedLastTimestamp"], &data["eventTime"], &data["series"]["lastObservedTime"]] {
        if let Some(t) = field.as_str().and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok()) {
            times.push(t);
        }
    }
    times.into_iter().max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_last_write_is_the_newest_time_on_the_event() {
        let event: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": { "name": "e", "namespace": "d", "creationTimestamp": "2026-01-01T00:00:00Z",
                "managedFields": [{ "manager": "k", "operation": "Update", "time": "2026-01-01T00:05:00Z" }] },
            "lastTimestamp": "2026-01-01T00:03:00Z",
            "series": { "count": 2, "lastObservedTime": "2026-01-01T00:07:00.000000Z" },
        }))
        .unwrap();
        assert_eq!(last_write(&event), Some(OffsetDateTime::parse("2026-01-01T00:07:00Z", &Rfc3339).unwrap()));
        let bare: DynamicObject =
            serde_json::from_value(json!({ "apiVersion": "v1", "kind": "Event", "metadata": { "name": "e" } })).unwrap();
        assert_eq!(last_write(&bare), None, "an event without times is expired at once");
    }
}
