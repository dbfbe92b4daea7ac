//! Pod garbage collection of orphans: pods bound to a node that no longer exists are deleted
//! at once (grace period 0: no agent is left to finish them). A node missing from the cache
//! is confirmed with a read before its pods go, so a cache that lags behind a new Node does
//! not delete the pods just bound to it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Preconditions};
use kube::ResourceExt;
use tokio_util::sync::CancellationToken;

use super::Context;

const TICK: Duration = Duration::from_secs(2);

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

/// Runs pod GC until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let node_api = Api::<Node>::all(ctx.client.clone());
    let Some(nodes) = ctx.informers.get::<Node>().ready(&shutdown).await else { return };
    let Some(pods) = ctx.informers.get::<Pod>().ready(&shutdown).await else { return };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let names: HashSet<String> = nodes.state().iter().map(|n| n.name_any()).collect();
        let all = pods.state();
        for (node, pods) in orphans(&all, &names) {
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
}
