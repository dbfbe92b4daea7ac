//! Node lifecycle: watches node heartbeats (the Lease in `kube-node-lease` and the Ready
//! condition's lastHeartbeatTime). A node silent for longer than `--node-monitor-grace-period`
//! gets its conditions set to Unknown ("Kubelet stopped posting node status."). The Ready
//! condition then decides the node's taints: Unknown → `node.kubernetes.io/unreachable`,
//! False → `node.kubernetes.io/not-ready`, each as NoSchedule and NoExecute; True → neither.
//! (Pods are evicted from NoExecute-tainted nodes by `taint_eviction`.)
//!
//! Silence is measured on this server's clock, from when a heartbeat was last seen to
//! change, so clock skew between machines does not matter; after a (re)start every node gets a
//! full grace period.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Context;

pub use crate::k8s::names::{TAINT_NOT_READY as NOT_READY, TAINT_UNREACHABLE as UNREACHABLE};

/// When a node's heartbeats were last seen to change.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    lease: Option<String>,
    heartbeat: Option<String>,
    at: Instant,
}

fn ready_status(node: &Node) -> Option<&str> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready").map(|c| c.status.as_str())
}

/// The node's taints with the ones this controller manages brought in line with its Ready
/// condition; `None` when they already are. Existing taints keep their timeAdded.
pub fn desired_taints(node: &Node, now: Timestamp) -> Option<Vec<Taint>> {
    let current = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let key = match ready_status(node) {
        Some("Unknown") => Some(UNREACHABLE),
        Some("False") => Some(NOT_READY),
        _ => None,
    };
    let mut want: Vec<Taint> =
        current.iter().filter(|t| !(t.key == UNREACHABLE || t.key == NOT_READY) || Some(t.key.as_str()) == key).cloned().collect();
    if let Some(key) = key {
        for effect in ["NoSchedule", "NoExecute"] {
            if !want.iter().any(|t| t.key == key && t.effect == effect) {
                let time_added = (effect == "NoExecute").then(|| Time(now));
                want.push(Taint { key: key.into(), value: None, effect: effect.into(), time_added });
            }
        }
    }
    (want != current).then_some(want)
}

/// The node's conditions, all Unknown (the node stopped reporting); `None` if they already are.
pub fn unknown_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    if !conditions.iter().any(|c| c.type_ == "Ready") {
        conditions.push(NodeCondition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            reason: Some("NodeStatusNeverUpdated".into()),
            message: Some("Kubelet never posted node status.".into()),
            last_transition_time: Some(Time(now)),
            last_heartbeat_time: None,
        });
    }
    let mut changed = false;
    for c in conditions.iter_mut().filter(|c| c.status != "Unknown") {
        c.status = "Unknown".into();
        c.reason = Some("NodeStatusUnknown".into());
        c.message = Some("Kubelet stopped posting node status.".into());
        c.last_transition_time = Some(Time(now));
        changed = true;
    }
    (changed || ready_status(node).is_none()).then_some(conditions)
}

struct Monitor {
    nodes: Api<Node>,
    grace: Duration,
    seen: HashMap<String, Seen>,
}

impl Monitor {
    /// Notes the node's heartbeats; true when it has been silent for longer than the grace
    /// period.
    fn silent(&mut self, node: &Node, lease: Option<&Lease>, now: Instant) -> bool {
        let lease = lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref()).map(|t| t.0.to_string());
        let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
        let heartbeat =
            conditions.and_then(|cs| cs.iter().find(|c| c.type_ == "Ready")?.last_heartbeat_time.as_ref()).map(|t| t.0.to_string());
        let entry =
            self.seen.entry(node.name_any()).or_insert_with(|| Seen { lease: lease.clone(), heartbeat: heartbeat.clone(), at: now });
        if entry.lease != lease || entry.heartbeat != heartbeat {
            *entry = Seen { lease, heartbeat, at: now };
        }
        now.duration_since(entry.at) > self.grace
    }

    async fn check(&mut self, node: &Node, lease: Option<&Lease>) -> Result<(), kube::Error> {
        let name = node.name_any();
        let mut node = node.clone();
        if self.silent(&node, lease, Instant::now()) {
            if let Some(conditions) = unknown_conditions(&node, Timestamp::now()) {
                tracing::warn!(node = %name, grace = ?self.grace, "node stopped posting status; marking it Unknown");
                let patch = json!({ "status": { "conditions": conditions } });
                node = self.nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
            }
        }
        if let Some(taints) = desired_taints(&node, Timestamp::now()) {
            tracing::info!(node = %name, ready = ?ready_status(&node), "updating node condition taints");
            let patch = json!({ "metadata": { "resourceVersion": node.resource_version() }, "spec": { "taints": taints } });
            self.nodes.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        }
        Ok(())
    }
}

/// Runs the node lifecycle controller until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let Some(nodes) = ctx.informers.get::<Node>().ready(&shutdown).await else { return };
    let Some(leases) = ctx.informers.get::<Lease>().ready(&shutdown).await else { return };
    let grace = ctx.settings.node_monitor_grace_period;
    let mut monitor = Monitor { nodes: Api::all(ctx.client.clone()), grace, seen: HashMap::new() };
    let mut tick = tokio::time::interval((grace / 5).clamp(Duration::from_millis(200), Duration::from_secs(5)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let all = nodes.state();
        let by_name: HashMap<String, Arc<Lease>> = leases
            .state()
            .into_iter()
            .filter(|l| l.namespace().as_deref() == Some(crate::k8s::names::NODE_LEASE_NAMESPACE))
            .map(|l| (l.name_any(), l))
            .collect();
        monitor.seen.retain(|name, _| all.iter().any(|n| n.name_any() == *name));
        for node in all {
            if let Err(e) = monitor.check(&node, by_name.get(&node.name_any()).map(Arc::as_ref)).await {
                tracing::debug!(node = %node.name_any(), error = %e, "node check failed; retrying at the next tick");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: Option<&str>, taints: serde_json::Value) -> Node {
        let conditions = ready.map(|s| json!([{ "type": "Ready", "status": s, "lastHeartbeatTime": "2025-01-01T00:00:00Z" }, { "type": "MemoryPressure", "status": "False" }]));
        serde_json::from_value(json!({ "metadata": { "name": "n" }, "spec": { "taints": taints }, "status": { "conditions": conditions } }))
            .unwrap()
    }

    #[test]
    fn taints_follow_readiness() {
        let now = Timestamp::now();
        let unreachable = desired_taints(&node(Some("Unknown"), json!([{ "key": "user", "effect": "NoSchedule" }])), now).unwrap();
        let keys: Vec<_> = unreachable.iter().map(|t| (t.key.as_str(), t.effect.as_str(), t.time_added.is_some())).collect();
        assert_eq!(keys, [("user", "NoSchedule", false), (UNREACHABLE, "NoSchedule", false), (UNREACHABLE, "NoExecute", true)]);
        let back = node(Some("True"), serde_json::to_value(&unreachable).unwrap());
        assert_eq!(desired_taints(&back, now).unwrap().len(), 1, "the user's taint stays");
        let not_ready = node(Some("False"), serde_json::to_value(&unreachable).unwrap());
        let keys: Vec<_> = desired_taints(&not_ready, now).unwrap().into_iter().map(|t| t.key).collect();
        assert_eq!(keys, ["user", NOT_READY, NOT_READY]);
        assert_eq!(desired_taints(&node(Some("True"), json!([])), now), None);
        let tainted = node(Some("Unknown"), serde_json::to_value(&unreachable).unwrap());
        assert_eq!(desired_taints(&tainted, now), None, "already right: no write");
    }

    #[test]
    fn silent_nodes_turn_unknown_once() {
        let now = Timestamp::now();
        let conditions = unknown_conditions(&node(Some("True"), json!([])), now).unwrap();
        assert!(conditions.iter().all(|c| c.status == "Unknown" && c.reason.as_deref() == Some("NodeStatusUnknown")));
        let unknown: Node = serde_json::from_value(json!({ "metadata": { "name": "n" }, "status": { "conditions": conditions } })).unwrap();
        assert!(unknown_conditions(&unknown, now).is_none());
        let never = unknown_conditions(&node(None, json!([])), now).unwrap();
        assert_eq!(never[0].reason.as_deref(), Some("NodeStatusNeverUpdated"));
    }

    #[tokio::test]
    async fn silence_is_measured_from_the_last_change_seen() {
        let client = kube::Client::new(
            tower::service_fn(|_: http::Request<kube::client::Body>| async {
                Err::<http::Response<kube::client::Body>, std::io::Error>(std::io::Error::other("offline"))
            }),
            "default",
        );
        let mut m = Monitor { nodes: Api::all(client), grace: Duration::from_secs(5), seen: HashMap::new() };
        let n = node(Some("True"), json!([]));
        let t0 = Instant::now();
        assert!(!m.silent(&n, None, t0));
        assert!(!m.silent(&n, None, t0 + Duration::from_secs(4)));
        assert!(m.silent(&n, None, t0 + Duration::from_secs(6)));
        let lease: Lease = serde_json::from_value(json!({ "spec": { "renewTime": "2025-01-01T00:00:10.000000Z" } })).unwrap();
        assert!(!m.silent(&n, Some(&lease), t0 + Duration::from_secs(7)), "a renewed lease resets the clock");
        assert!(m.silent(&n, Some(&lease), t0 + Duration::from_secs(13)));
    }
}
