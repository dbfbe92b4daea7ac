//! Taint-based eviction: pods on a node with NoExecute taints are deleted when they do not
//! tolerate one of them, or once their `tolerationSeconds` for it (counted from the taint's
//! timeAdded) have passed; pods tolerating every such taint without a limit stay.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Preconditions};
use kube::ResourceExt;
use tokio_util::sync::CancellationToken;

use super::Context;

const TICK: Duration = Duration::from_millis(500);

/// Whether `toleration` tolerates `taint` (Kubernetes' matching rules).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect_ok = toleration.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
    let key = toleration.key.as_deref().unwrap_or("");
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => effect_ok && (key.is_empty() || key == taint.key),
        "Equal" => effect_ok && key == taint.key && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// When a pod with `tolerations` must leave a node with `taints`: `now` for a NoExecute taint
/// it does not tolerate; else the earliest taint timeAdded (or `now`) plus the smallest
/// matching tolerationSeconds; `None` if it may stay for good.
pub fn eviction_time(taints: &[Taint], tolerations: &[Toleration], now: Timestamp) -> Option<Timestamp> {
    let mut due: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        let at = if matching.is_empty() {
            now
        } else {
            // As in Kubernetes: limits win over unlimited tolerations of the same taint.
            let Some(seconds) = matching.iter().filter_map(|t| t.toleration_seconds).min() else { continue };
            let seconds = seconds.max(0);
            let added = taint.time_added.as_ref().map(|t| t.0).unwrap_or(now);
            added.checked_add(SignedDuration::from_secs(seconds)).unwrap_or(now)
        };
        due = Some(due.map_or(at, |d| d.min(at)));
    }
    due
}

/// Runs taint-based eviction until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let Some(nodes) = ctx.informers.get::<Node>().ready(&shutdown).await else { return };
    let Some(pods) = ctx.informers.get::<Pod>().ready(&shutdown).await else { return };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let tainted: HashMap<String, Vec<Taint>> = nodes
            .state()
            .iter()
            .filter_map(|n| {
                let taints = n.spec.as_ref()?.taints.clone()?;
                taints.iter().any(|t| t.effect == "NoExecute").then(|| (n.name_any(), taints))
            })
            .collect();
        if tainted.is_empty() {
            continue;
        }
        let now = Timestamp::now();
        for pod in pods.state() {
            let Some(taints) = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).and_then(|n| tainted.get(n)) else { continue };
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
            if eviction_time(taints, &tolerations, now).is_some_and(|at| at <= now) {
                evict(&ctx.client, &pod).await;
            }
        }
    }
}

async fn evict(client: &kube::Client, pod: &Pod) {
    let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    let params = DeleteParams { preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }), ..DeleteParams::default() };
    match Api::<Pod>::namespaced(client.clone(), &namespace).delete(&name, &params).await {
        Ok(_) => {
            tracing::info!(%namespace, pod = %name, node = ?pod.spec.as_ref().and_then(|s| s.node_name.as_deref()), "evicted the pod from its NoExecute-tainted node")
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => tracing::warn!(%namespace, pod = %name, error = %e, "cannot evict the pod; retrying"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn taint(key: &str, effect: &str, added: Option<Timestamp>) -> Taint {
        Taint { key: key.into(), value: None, effect: effect.into(), time_added: added.map(Time) }
    }

    fn tolerations(v: serde_json::Value) -> Vec<Toleration> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn toleration_matching() {
        let t = taint("node.kubernetes.io/unreachable", "NoExecute", None);
        let m = |v| tolerates(&serde_json::from_value(v).unwrap(), &t);
        assert!(m(json!({ "operator": "Exists" })), "an empty key with Exists tolerates everything");
        assert!(m(json!({ "key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute" })));
        assert!(!m(json!({ "key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule" })));
        assert!(m(json!({ "key": "node.kubernetes.io/unreachable", "value": "" })));
        assert!(!m(json!({ "key": "node.kubernetes.io/unreachable", "value": "x" })));
        assert!(!m(json!({ "key": "other", "operator": "Exists" })));
    }

    #[test]
    fn eviction_timing() {
        let now = Timestamp::now();
        let added = now - SignedDuration::from_secs(10);
        let taints = [taint("node.kubernetes.io/unreachable", "NoExecute", Some(added)), taint("soft", "NoSchedule", None)];
        assert_eq!(eviction_time(&taints, &[], now), Some(now), "not tolerated: evict now");
        let limited = tolerations(json!([
            { "key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 },
            { "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 2 },
        ]));
        assert_eq!(eviction_time(&taints, &limited, now), Some(added + SignedDuration::from_secs(2)), "the smallest matching limit counts");
        let forever = tolerations(json!([{ "operator": "Exists" }]));
        assert_eq!(eviction_time(&taints, &forever, now), None);
        let both = tolerations(json!([{ "operator": "Exists" }, { "operator": "Exists", "tolerationSeconds": 5 }]));
        assert_eq!(eviction_time(&taints, &both, now), Some(added + SignedDuration::from_secs(5)));
        assert_eq!(eviction_time(&[taint("soft", "NoSchedule", None)], &[], now), None, "only NoExecute evicts");
        let two = [taint("a", "NoExecute", Some(added)), taint("b", "NoExecute", Some(added))];
        let only_a = tolerations(json!([{ "key": "a", "operator": "Exists", "tolerationSeconds": 60 }]));
        assert_eq!(eviction_time(&two, &only_a, now), Some(now), "an untolerated taint wins");
    }
}
