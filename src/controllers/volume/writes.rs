//! The PersistentVolume controller's writes, in kube's order for a binding: the volume's
//! claimRef, the volume's phase, the claim's volumeName and annotations, the claim's status.
//! Every step is skipped when already done, so a binding interrupted half-way is finished by
//! the next sync; spec writes carry the resourceVersion they were computed from, so two syncs
//! never bind one volume twice.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::{json, Value};

use super::matching::bound_to;
use super::{BIND_COMPLETED, BOUND_BY_CONTROLLER};

/// Applies a merge patch to a volume (`status`: to its status).
pub async fn patch_volume(client: &kube::Client, pv: &PersistentVolume, status: bool, patch: Value) -> Result<(), kube::Error> {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    if status {
        api.patch_status(&pv.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.map(drop)
    } else {
        api.patch(&pv.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.map(drop)
    }
}

/// Applies a merge patch to a claim (`status`: to its status).
pub async fn patch_claim(client: &kube::Client, claim: &PersistentVolumeClaim, status: bool, patch: Value) -> Result<(), kube::Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &claim.namespace().unwrap_or_default());
    if status {
        api.patch_status(&claim.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.map(drop)
    } else {
        api.patch(&claim.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.map(drop)
    }
}

/// The phase a volume's or claim's status holds.
pub fn phase(status_phase: Option<&String>) -> &str {
    status_phase.map_or("", String::as_str)
}

/// Sets a volume's phase (and message) unless it has it already.
pub async fn volume_phase(client: &kube::Client, pv: &PersistentVolume, to: &str, message: Option<&str>) -> Result<(), kube::Error> {
    let status = pv.status.as_ref();
    if phase(status.and_then(|s| s.phase.as_ref())) == to && status.and_then(|s| s.message.as_deref()) == message {
        return Ok(());
    }
    tracing::info!(volume = %pv.name_any(), phase = to, "persistent volume phase");
    patch_volume(client, pv, true, json!({ "status": { "phase": to, "message": message } })).await
}

/// Binds `pv` and `claim` to each other, finishing whatever steps are missing.
pub async fn bind(client: &kube::Client, pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> Result<(), kube::Error> {
    let (pv_name, claim_name) = (pv.name_any(), claim.name_any());
    let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    if claim_ref.and_then(|r| r.uid.as_deref()) != claim.uid().as_deref() {
        let mut meta = json!({ "resourceVersion": pv.resource_version() });
        if !bound_to(pv, claim) {
            meta["annotations"] = json!({ BOUND_BY_CONTROLLER: "yes" });
        }
        let reference = json!({ "apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": claim.namespace(),
            "name": claim_name, "uid": claim.uid(), "resourceVersion": claim.resource_version() });
        patch_volume(client, pv, false, json!({ "metadata": meta, "spec": { "claimRef": reference } })).await?;
    }
    volume_phase(client, pv, "Bound", None).await?;
    let volume_name = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).filter(|n| !n.is_empty());
    let completed = claim.annotations().get(BIND_COMPLETED).is_some_and(|v| v == "yes");
    if volume_name != Some(pv_name.as_str()) || !completed {
        let mut annotations = json!({ BIND_COMPLETED: "yes" });
        if volume_name.is_none() {
            annotations[BOUND_BY_CONTROLLER] = json!("yes");
        }
        let meta = json!({ "resourceVersion": claim.resource_version(), "annotations": annotations });
        patch_claim(client, claim, false, json!({ "metadata": meta, "spec": { "volumeName": pv_name } })).await?;
    }
    let pv_spec = pv.spec.as_ref();
    let status = json!({ "phase": "Bound", "accessModes": pv_spec.and_then(|s| s.access_modes.clone()),
        "capacity": pv_spec.and_then(|s| s.capacity.clone()) });
    let current = claim.status.as_ref().map(|s| json!({ "phase": s.phase, "accessModes": s.access_modes, "capacity": s.capacity }));
    if current.as_ref() != Some(&status) {
        tracing::info!(claim = %claim_name, namespace = %claim.namespace().unwrap_or_default(), volume = %pv_name, "bound");
        patch_claim(client, claim, true, json!({ "status": status })).await?;
    }
    Ok(())
}
