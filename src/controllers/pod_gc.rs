//! Pod garbage collection of orphans: pods bound to a node that has been missing for 40 s
//! (kube-controller-manager's quarantine, so pods created for a node that is about to join
//! survive) are deleted with grace period 0: no agent is left to finish them. The absence is
//! confirmed with a read before the pods go, so a lagging cache deletes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Preconditions};
use kube::ResourceExt;
use tokio_util::sync::CancellationToken;

use super::Context;

const TICK: Duration = Duration::from_secs(2);
/// How long a node must be missing before its pods are deleted (kube's `quarantineTime`).
const QUARANTINE: Duration = Duration::from_secs(40);

/// Pods bound to nodes not in `nodes`, by node name.
pub fn orphans<'a>(pods: &'a [Arc<Pod>], nodes: &HashSet<String>) -> BTreeMap<&'a str, Vec<&'a Pod>> {
    let mut out: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for pod in pods {
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty() && !nodes.contains(*n)) {
            out.entry(node).or_default().push(pod);
        }
    }
    out
}

/// When each missing node was first seen missing: updated with the nodes missing now, it
/// answers which of them have been missing for [`QUARANTINE`].
#[derive(Default)]
struct Missing(HashMap<String, Instant>);

impl Missing {
    fn expired<'a>(&mut self, missing_now: impl IntoIterator<Item = &'a str>, now: Instant) -> HashSet<String> {
        let now_missing: HashSet<&str> = missing_now.into_iter().collect();
        self.0.retain(|node, _| now_missing.contains(node.as_str()));
        for node in now_missing {
            self.0.entry(node.to_string()).or_insert(now);
        }
        self.0.iter().filter(|(_, since)| now.duration_since(**since) >= QUARANTINE).map(|(n, _)| n.clone()).collect()
    }
}

/// Runs pod GC until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let node_api = Api::<Node>::all(ctx.client.clone());
    let Some(nodes) = ctx.informers.get::<Node>().ready(&shutdown).await else { return };
    let Some(pods) = ctx.informers.get::<Pod>().ready(&shutdown).await else { return };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut missing = Missing::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let names: HashSet<String> = nodes.state().iter().map(|n| n.name_any()).collect();
        let all = pods.state();
        let orphaned = orphans(&all, &names);
        let expired = missing.expired(orphaned.keys().copied(), Instant::now());
        for (node, pods) in orphaned.into_iter().filter(|(node, _)| expired.contains(*node)) {
            match node_api.get_opt(node).await {
                Ok(None) => {}
                Ok(Some(_)) => continue,
                Err(e) => {
                    tracing::debug!(%node, error = %e, "cannot confirm the node is gone");
                    continue;
                }
            }
            for pod in pods {
                force_delete(&ctx.client, pod, node).await;
            }
        }
    }
}

async fn force_delete(client: &kube::Client, pod: &Pod, node: &str) {
    let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }),
        ..DeleteParams::default().grace_period(0)
    };
    match Api::<Pod>::namespaced(client.clone(), &namespace).delete(&name, &params).await {
        Ok(_) => tracing::info!(%namespace, pod = %name, %node, "deleted a pod whose node is gone"),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => tracing::warn!(%namespace, pod = %name, error = %e, "cannot delete the orphaned pod; retrying"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn orphans_are_pods_on_missing_nodes() {
        let pod = |name: &str, node: Option<&str>| -> Arc<Pod> {
            Arc::new(
                serde_json::from_value(json!({ "metadata": { "name": name }, "spec": { "containers": [], "nodeName": node } })).unwrap(),
            )
        };
        let pods = vec![pod("a", Some("live")), pod("b", Some("gone")), pod("c", None), pod("d", Some("gone"))];
        let found = orphans(&pods, &["live".to_string()].into());
        let names: Vec<_> = found["gone"].iter().map(|p| p.name_any()).collect();
        assert_eq!((found.len(), names), (1, vec!["b".to_string(), "d".to_string()]));
    }

    #[test]
    fn a_node_must_stay_missing_for_the_quarantine() {
        let mut missing = Missing::default();
        let t0 = Instant::now();
        assert!(missing.expired(["gone", "joining"], t0).is_empty());
        assert!(missing.expired(["gone", "joining"], t0 + QUARANTINE / 2).is_empty());
        // "joining" appeared; if it goes again, its quarantine starts over.
        assert!(missing.expired(["gone"], t0 + QUARANTINE / 2 + TICK).is_empty());
        let expired = missing.expired(["gone", "joining"], t0 + QUARANTINE);
        assert_eq!(expired, HashSet::from(["gone".to_string()]));
        assert!(missing.expired(["gone", "joining"], t0 + QUARANTINE * 2).contains("joining"));
    }
}
