//! One volume's sync (kube's `syncVolume`): a volume without a claim is Available; one whose
//! claim is bound to it is Bound; one whose claim is gone is Released and then reclaimed as
//! its policy says — Retain keeps it, Delete removes a local-path volume's directory on its
//! node and then the volume (a volume of another provisioner cannot be deleted here: Failed).

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use serde_json::json;

use super::{local_path, writes, State, BOUND_BY_CONTROLLER, PROVISIONED_BY};
use crate::controllers::common::ok_if_gone;

impl State {
    pub(super) async fn sync_volume(&mut self, pv: &PersistentVolume) -> Result<(), kube::Error> {
        if pv.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Some(claim_ref) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
            return writes::volume_phase(&self.client, pv, "Available", None).await;
        };
        let Some(uid) = claim_ref.uid.as_deref().filter(|u| !u.is_empty()) else {
            // Pre-bound by name: the claim's sync binds it once the claim exists.
            return writes::volume_phase(&self.client, pv, "Available", None).await;
        };
        let (namespace, name) = (claim_ref.namespace.clone().unwrap_or_default(), claim_ref.name.clone().unwrap_or_default());
        let cached = self.claims.get(&ObjectRef::new(&name).within(&namespace));
        let claim = match cached.filter(|c| c.uid().as_deref() == Some(uid)) {
            Some(c) => Some((*c).clone()),
            // The cache may lag behind a new claim: ask the API before releasing.
            None => ok_if_gone(Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), &namespace).get(&name).await)?
                .filter(|c| c.uid().as_deref() == Some(uid)),
        };
        let Some(claim) = claim else { return self.release(pv).await };
        match claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).filter(|n| !n.is_empty()) {
            Some(v) if v == pv.name_any() => writes::volume_phase(&self.client, pv, "Bound", None).await,
            // The claim binds elsewhere: a binding the controller made is undone.
            Some(_) if pv.annotations().get(BOUND_BY_CONTROLLER).is_some_and(|v| v == "yes") => {
                tracing::info!(volume = %pv.name_any(), "claim bound to another volume; unbinding");
                let patch = json!({ "metadata": { "resourceVersion": pv.resource_version(), "annotations": { BOUND_BY_CONTROLLER: null } },
                    "spec": { "claimRef": null } });
                writes::patch_volume(&self.client, pv, false, patch).await
            }
            // Not yet bound (the claim's sync finishes the binding), or bound elsewhere by a user.
            _ => Ok(()),
        }
    }

    /// The volume's claim is gone: Released, then reclaimed.
    async fn release(&mut self, pv: &PersistentVolume) -> Result<(), kube::Error> {
        let phase = writes::phase(pv.status.as_ref().and_then(|s| s.phase.as_ref()));
        if phase == "Failed" {
            return Ok(());
        }
        writes::volume_phase(&self.client, pv, "Released", None).await?;
        let policy = pv.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()).unwrap_or("Retain");
        if policy != "Delete" {
            return Ok(());
        }
        let ours = pv.annotations().get(PROVISIONED_BY).is_some_and(|p| p == local_path::PROVISIONER);
        let Some((node, path)) = local_path::placement(pv).filter(|_| ours) else {
            let message = format!("error getting deleter volume plugin for volume {:?}: no deletable volume plugin matched", pv.name_any());
            self.note(pv, true, "VolumeFailedDelete", &message).await?;
            return writes::volume_phase(&self.client, pv, "Failed", Some(&message)).await;
        };
        if self.nodes.get(&ObjectRef::new(&node)).is_some() {
            if let Err(e) = local_path::remove_directory(&self.client, &node, &path).await {
                let message = format!("failed to delete volume {}: removing {path} on node {node}: {e}", pv.name_any());
                self.note(pv, true, "VolumeFailedDelete", &message).await?;
                return Err(e);
            }
        } else {
            tracing::info!(volume = %pv.name_any(), %node, "the node is gone; nothing to remove there");
        }
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        ok_if_gone(api.delete(&pv.name_any(), &DeleteParams::default()).await)?;
        tracing::info!(volume = %pv.name_any(), %node, %path, "deleted a released local-path volume");
        Ok(())
    }
}
