//! Writes a manifest's objects to the cluster and removes them again: server-side apply as
//! field manager `orch-deploy` (forcing ownership, as k3s does), the resource and its scope
//! found by discovery, so custom resources work too.

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::Value;

use super::documents::ObjectRef;
use crate::controllers::common::ok_if_gone;

/// The field manager of everything the manifests declare.
pub const FIELD_MANAGER: &str = "orch-deploy";

/// The namespace of namespaced objects a manifest leaves without one (as kubectl and k3s).
pub const DEFAULT_NAMESPACE: &str = "default";

fn gvk(api_version: &str, kind: &str) -> GroupVersionKind {
    match api_version.split_once('/') {
        Some((group, version)) => GroupVersionKind::gvk(group, version, kind),
        None => GroupVersionKind::gvk("", api_version, kind),
    }
}

async fn resolve(client: &kube::Client, api_version: &str, kind: &str) -> Result<(ApiResource, ApiCapabilities), String> {
    kube::discovery::pinned_kind(client, &gvk(api_version, kind))
        .await
        .map_err(|e| format!("the server does not serve {kind} in {api_version}: {e}"))
}

fn api(client: &kube::Client, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// Applies `obj` (a parsed manifest object). Returns its reference, with the namespace the
/// object lands in, and whether the apply succeeded.
pub async fn apply(client: &kube::Client, mut obj: Value) -> (ObjectRef, Result<(), String>) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut reference = ObjectRef {
        api_version: text(&obj["apiVersion"]),
        kind: text(&obj["kind"]),
        namespace: obj["metadata"]["namespace"].as_str().map(str::to_string),
        name: text(&obj["metadata"]["name"]),
    };
    let (resource, caps) = match resolve(client, &reference.api_version, &reference.kind).await {
        Ok(found) => found,
        Err(e) => return (reference, Err(e)),
    };
    if caps.scope == Scope::Namespaced {
        let namespace = reference.namespace.get_or_insert_with(|| DEFAULT_NAMESPACE.to_string());
        obj["metadata"]["namespace"] = Value::String(namespace.clone());
    } else {
        reference.namespace = None;
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let result = api(client, &resource, reference.namespace.as_deref())
        .patch(&reference.name, &params, &Patch::Apply(&obj))
        .await
        .map(drop)
        .map_err(|e| format!("cannot apply {reference}: {e}"));
    (reference, result)
}

/// Deletes the object `reference` names (in the background, its dependents by the garbage
/// collector); one already gone, or of a kind no longer served, is fine.
pub async fn delete(client: &kube::Client, reference: &ObjectRef) -> Result<(), String> {
    let Ok((resource, _)) = resolve(client, &reference.api_version, &reference.kind).await else {
        tracing::info!(object = %reference, "kind no longer served; nothing to delete");
        return Ok(());
    };
    let deleted = api(client, &resource, reference.namespace.as_deref()).delete(&reference.name, &DeleteParams::background()).await;
    ok_if_gone(deleted).map(drop).map_err(|e| format!("cannot delete {reference}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_api_versions() {
        assert_eq!(gvk("v1", "ConfigMap"), GroupVersionKind::gvk("", "v1", "ConfigMap"));
        assert_eq!(gvk("apps/v1", "Deployment"), GroupVersionKind::gvk("apps", "v1", "Deployment"));
    }
}
