//! kube-scheduler's VolumeBinding PreBind: before a pod is bound, each of its claims that waits
//! for its first consumer is given the chosen node (`volume.kubernetes.io/selected-node`, which
//! the PersistentVolume controller binds or provisions it for), and the binding waits until
//! every claim is bound (up to kube's bind timeout), so a pod never reaches its node before
//! its volumes.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::plugins::volume_binding::claim_names;
use crate::controllers::volume::SELECTED_NODE;

/// kube-scheduler's default `bindTimeoutSeconds`.
const BIND_TIMEOUT: Duration = Duration::from_secs(600);
/// How often the claims are looked at while waiting.
const POLL: Duration = Duration::from_millis(500);

/// Why volumes could not be bound for a pod (the pod is retried after a back-off).
#[derive(Debug, thiserror::Error)]
#[error("binding volumes: {0}")]
pub struct PreBindError(String);

fn bound(claim: &PersistentVolumeClaim) -> bool {
    claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).is_some_and(|v| !v.is_empty())
}

/// Selects `node` for the pod's unbound claims and waits until all of them are bound.
pub async fn prebind(client: &kube::Client, pod: &Pod, node: &str) -> Result<(), PreBindError> {
    let names: Vec<&str> = claim_names(pod).collect();
    if names.is_empty() {
        return Ok(());
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), pod.metadata.namespace.as_deref().unwrap_or_default());
    let deadline = tokio::time::Instant::now() + BIND_TIMEOUT;
    loop {
        let mut unbound = 0;
        for name in &names {
            let claim = api.get(name).await.map_err(|e| PreBindError(e.to_string()))?;
            if bound(&claim) {
                continue;
            }
            unbound += 1;
            let selected = claim.metadata.annotations.as_ref().and_then(|a| a.get(SELECTED_NODE));
            if selected.map(String::as_str) != Some(node) {
                let patch = json!({ "metadata": { "annotations": { SELECTED_NODE: node } } });
                api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.map_err(|e| PreBindError(e.to_string()))?;
            }
        }
        if unbound == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(PreBindError("timed out waiting for the condition".into()));
        }
        tokio::time::sleep(POLL).await;
    }
}
