//! The `rancher.io/local-path` provisioner, k3s's local-path-provisioner built in: a claim of a
//! class with this provisioner, once the scheduler has chosen its node, gets a PersistentVolume
//! `pvc-<claim uid>` of type hostPath (DirectoryOrCreate) at
//! `<storage path>/pvc-<uid>_<namespace>_<claim>` pinned to that node by node affinity. The
//! node's kubelet creates the directory when a pod mounts it; when a released volume is
//! reclaimed (Delete), the node's kubelet removes it (asked through the API's `nodes/proxy`),
//! then the volume is deleted.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::json;

pub use crate::k8s::local_path::PROVISIONER;
use crate::k8s::local_path::{directory, volume_name, KUBELET_REMOVE_ROUTE};
use crate::k8s::names::HOSTNAME_LABEL;

/// The annotation k3s's provisioner leaves on its volumes: the node they were made for.
const SELECTED_NODE_ANNOTATION: &str = "local.path.provisioner/selected-node";

/// The volume provisioned for `claim` on `node` under `root`, pre-bound to the claim.
pub fn volume(claim: &PersistentVolumeClaim, class: &StorageClass, node: &str, root: &Path) -> PersistentVolume {
    let name = volume_name(claim.metadata.uid.as_deref().unwrap_or_default());
    let (namespace, claim_name) =
        (claim.metadata.namespace.as_deref().unwrap_or_default(), claim.metadata.name.as_deref().unwrap_or_default());
    let spec = claim.spec.clone().unwrap_or_default();
    let storage = spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")).cloned();
    let annotations = BTreeMap::from([
        (super::PROVISIONED_BY.to_string(), PROVISIONER.to_string()),
        (SELECTED_NODE_ANNOTATION.to_string(), node.to_string()),
    ]);
    serde_json::from_value(json!({
        "metadata": { "name": name, "annotations": annotations },
        "spec": {
            "capacity": { "storage": storage },
            "accessModes": spec.access_modes,
            "volumeMode": spec.volume_mode.unwrap_or_else(|| "Filesystem".into()),
            "persistentVolumeReclaimPolicy": class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into()),
            "storageClassName": class.metadata.name,
            "hostPath": { "path": directory(root, &name, namespace, claim_name), "type": "DirectoryOrCreate" },
            "nodeAffinity": { "required": { "nodeSelectorTerms": [
                { "matchExpressions": [ { "key": HOSTNAME_LABEL, "operator": "In", "values": [node] } ] } ] } },
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": claim.metadata.namespace, "name": claim.metadata.name,
                "uid": claim.metadata.uid, "resourceVersion": claim.metadata.resource_version,
            },
        },
    }))
    .expect("a valid PersistentVolume")
}

/// The node a local-path volume lives on (its node affinity's hostname) and its directory.
pub fn placement(pv: &PersistentVolume) -> Option<(String, String)> {
    let spec = pv.spec.as_ref()?;
    let path = spec.host_path.as_ref()?.path.clone();
    let terms = &spec.node_affinity.as_ref()?.required.as_ref()?.node_selector_terms;
    let node = terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten())
        .find(|e| e.key == HOSTNAME_LABEL && e.operator == "In")
        .and_then(|e| e.values.as_ref()?.first().cloned())?;
    Some((node, path))
}

/// Asks `node`'s kubelet, through the API's node proxy, to remove the directory `path`.
pub async fn remove_directory(client: &kube::Client, node: &str, path: &str) -> Result<(), kube::Error> {
    let query = form_urlencoded::Serializer::new(String::new()).append_pair("path", path).finish();
    let uri = format!("/api/v1/nodes/{node}/proxy{KUBELET_REMOVE_ROUTE}?{query}");
    let request = http::Request::delete(uri).body(Vec::new()).map_err(kube::Error::HttpError)?;
    client.request_text(request).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provisions_a_host_path_volume_pinned_to_the_node() {
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "web", "uid": "1234-ab", "resourceVersion": "7"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "local-path"}}))
        .unwrap();
        let class: StorageClass = serde_json::from_value(json!({"metadata": {"name": "local-path"},
            "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}))
        .unwrap();
        let pv = volume(&claim, &class, "n1", Path::new("/var/lib/orch/storage"));
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-1234-ab"));
        let spec = pv.spec.as_ref().unwrap();
        assert_eq!(spec.host_path.as_ref().unwrap().path, "/var/lib/orch/storage/pvc-1234-ab_web_data");
        assert_eq!(spec.host_path.as_ref().unwrap().type_.as_deref(), Some("DirectoryOrCreate"));
        assert_eq!(spec.claim_ref.as_ref().unwrap().uid.as_deref(), Some("1234-ab"));
        assert_eq!(spec.storage_class_name.as_deref(), Some("local-path"));
        assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Delete"));
        assert_eq!(pv.metadata.annotations.as_ref().unwrap()["pv.kubernetes.io/provisioned-by"], PROVISIONER);
        assert_eq!(placement(&pv), Some(("n1".into(), "/var/lib/orch/storage/pvc-1234-ab_web_data".into())));
    }
}
