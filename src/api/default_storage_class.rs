//! kube-apiserver's DefaultStorageClass admission plugin: a PersistentVolumeClaim created
//! without `storageClassName` gets the cluster's default StorageClass (see
//! `k8s::storage_class`); an explicit `""` asks for no class and is left alone, as is a claim
//! created while no class is the default (the PersistentVolume controller assigns one later).

use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{json, Value};

use super::registry;
use super::status::ApiError;
use crate::k8s::storage_class::default_class;
use crate::store::{KeyRange, RangeRequest, Store};

/// Sets the default class on `claim` when it names none.
pub async fn admit(store: &dyn Store, claim: &mut Value) -> Result<(), ApiError> {
    if claim["spec"].get("storageClassName").is_some_and(|v| !v.is_null()) {
        return Ok(());
    }
    let Some(classes) = registry::lookup("storage.k8s.io", "v1", "storageclasses") else { return Ok(()) };
    let listed = store.range(RangeRequest { range: KeyRange::prefix(classes.key_prefix(None)), ..Default::default() }).await?;
    let classes: Vec<StorageClass> = listed.kvs.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect();
    if let Some(name) = default_class(&classes).and_then(|c| c.metadata.name.clone()) {
        claim["spec"]["storageClassName"] = json!(name);
    }
    Ok(())
}
