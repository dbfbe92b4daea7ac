//! One claim's sync (kube's `syncClaim`): a claim without a class gets the default one
//! (retroactive default StorageClass assignment, for claims created before there was one); an unbound claim binds to a matching volume,
//! waits for its first consumer (WaitForFirstConsumer), or is provisioned on the node the
//! scheduler chose; a bound claim whose volume is gone is Lost.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use serde_json::json;

use super::matching::{self, ChosenNode};
use super::{local_path, writes, State, BIND_COMPLETED, SELECTED_NODE, STORAGE_PROVISIONER};
use crate::k8s::names::HOSTNAME_LABEL;

/// The annotation kube sets (besides `volume.kubernetes.io/storage-provisioner`) on claims a
/// provisioner is to serve.
const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";

impl State {
    pub(super) async fn sync_claim(&mut self, claim: &PersistentVolumeClaim) -> Result<(), kube::Error> {
        if claim.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        match claim.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|n| !n.is_empty()) {
            None => self.sync_unbound(claim).await,
            Some(name) => self.sync_named(claim, &name).await,
        }
    }

    /// A claim naming its volume: bind it when the volume is free or already ours.
    async fn sync_named(&mut self, claim: &PersistentVolumeClaim, name: &str) -> Result<(), kube::Error> {
        let was_bound = claim.annotations().get(BIND_COMPLETED).is_some_and(|v| v == "yes");
        let Some(pv) = self.volumes.get(&ObjectRef::new(name)) else {
            if was_bound {
                self.note(claim, true, "ClaimLost", "Bound claim has lost its PersistentVolume. Data on the volume is lost!").await?;
                return writes::patch_claim(&self.client, claim, true, json!({ "status": { "phase": "Lost" } })).await;
            }
            return Ok(()); // Waiting for the volume to be created.
        };
        let free = pv.spec.as_ref().is_none_or(|s| s.claim_ref.is_none());
        if matching::bound_to(&pv, claim) {
            return writes::bind(&self.client, &pv, claim).await;
        }
        if !free {
            if was_bound {
                self.note(claim, true, "ClaimMisbound", "Two claims are bound to the same volume, this one is bound incorrectly").await?;
                return writes::patch_claim(&self.client, claim, true, json!({ "status": { "phase": "Lost" } })).await;
            }
            return self.note(claim, true, "FailedBinding", &format!("volume {name:?} already bound to a different claim.")).await;
        }
        match matching::unsatisfied(&pv, claim) {
            None => writes::bind(&self.client, &pv, claim).await,
            Some(why) => self.note(claim, true, "VolumeMismatch", &format!("Cannot bind to requested volume {name:?}: {why}")).await,
        }
    }

    async fn sync_unbound(&mut self, claim: &PersistentVolumeClaim) -> Result<(), kube::Error> {
        if claim.spec.as_ref().is_none_or(|s| s.storage_class_name.is_none()) {
            let classes = self.classes.state();
            if let Some(default) = crate::k8s::storage_class::default_class(classes.iter().map(|c| &**c)) {
                tracing::info!(claim = %claim.name_any(), class = %default.name_any(), "assigning the default storage class");
                let patch = json!({ "metadata": { "resourceVersion": claim.resource_version() },
                    "spec": { "storageClassName": default.name_any() } });
                return writes::patch_claim(&self.client, claim, false, patch).await;
            }
        }
        let class_name = matching::claim_class(claim);
        let class = (!class_name.is_empty()).then(|| self.classes.get(&ObjectRef::new(class_name))).flatten();
        let delayed = class.as_deref().is_some_and(matching::waits_for_consumer);
        let node_name = claim.annotations().get(SELECTED_NODE).cloned();
        let labels = node_name.as_ref().map(|n| self.node_labels(n));
        let chosen = node_name.as_deref().zip(labels.as_ref()).map(|(name, labels)| ChosenNode { name, labels });
        let volumes = self.volumes.state();
        if let Some(pv) = matching::find_match(claim, volumes.iter().map(|v| &**v), delayed, chosen.as_ref()) {
            return writes::bind(&self.client, pv, claim).await;
        }
        if delayed && node_name.is_none() {
            return self.note(claim, false, "WaitForFirstConsumer", "waiting for first consumer to be created before binding").await;
        }
        match class {
            Some(class) if !class.provisioner.is_empty() && class.provisioner != "kubernetes.io/no-provisioner" => {
                self.provision(claim, &class, node_name.as_deref()).await
            }
            _ => {
                self.note(claim, false, "FailedBinding", "no persistent volumes available for this claim and no storage class is set").await
            }
        }
    }

    /// The labels of node `name` (just its hostname label when the node is not known).
    fn node_labels(&self, name: &str) -> BTreeMap<String, String> {
        match self.nodes.get(&ObjectRef::new(name)) {
            Some(node) => node.labels().clone(),
            None => BTreeMap::from([(HOSTNAME_LABEL.to_string(), name.to_string())]),
        }
    }

    /// Provisions `claim` with `class`'s provisioner: the built-in local-path one makes the
    /// volume on the chosen node; another provisioner's claims wait for it.
    async fn provision(&mut self, claim: &PersistentVolumeClaim, class: &StorageClass, node: Option<&str>) -> Result<(), kube::Error> {
        if claim.annotations().get(STORAGE_PROVISIONER) != Some(&class.provisioner) {
            let provisioner = &class.provisioner;
            let patch =
                json!({ "metadata": { "annotations": { STORAGE_PROVISIONER: provisioner, BETA_STORAGE_PROVISIONER: provisioner } } });
            return writes::patch_claim(&self.client, claim, false, patch).await;
        }
        let root = self.storage_path.clone().filter(|_| class.provisioner == local_path::PROVISIONER);
        let Some(root) = root else {
            let message = format!(
                "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. \
                 If volume creation is delayed, please verify that your external provisioner is running and correctly registered.",
                class.provisioner
            );
            return self.note(claim, false, "ExternalProvisioning", &message).await;
        };
        let Some(node) = node else {
            let message = "failed to provision volume with StorageClass \"".to_string()
                + &class.name_any()
                + "\": configuration error, no node was specified";
            return self.note(claim, true, "ProvisioningFailed", &message).await;
        };
        let key = format!("{}/{}", claim.namespace().unwrap_or_default(), claim.name_any());
        self.note(claim, false, "Provisioning", &format!("External provisioner is provisioning volume for claim {key:?}")).await?;
        let pv = local_path::volume(claim, class, node, &root);
        let api: kube::Api<k8s_openapi::api::core::v1::PersistentVolume> = kube::Api::all(self.client.clone());
        match api.create(&Default::default(), &pv).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
            Err(e) => return Err(e),
        }
        let name = pv.name_any();
        tracing::info!(claim = %key, volume = %name, %node, "provisioned a local-path volume");
        self.note(claim, false, "ProvisioningSucceeded", &format!("Successfully provisioned volume {name}")).await?;
        Ok(())
    }
}
