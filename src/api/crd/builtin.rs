//! The CustomResourceDefinitions every orch cluster has from the start: k3s's `Addon`
//! (`k3s.cattle.io/v1`), which records each auto-deployed manifest (see
//! `controllers::addons`). Created at server start beside the system namespaces.

use serde_json::{json, Value};

use super::super::objects::{self, Scope};
use super::super::registry;
use super::super::{ApiError, ServiceNetwork};

/// k3s's Addon CRD: namespaced, `spec.source` (the manifest's path) and `spec.checksum`
/// (sha256 of its content), printed as kubectl shows them on k3s.
fn addon() -> Value {
    let string = json!({ "type": "string" });
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "addons.k3s.cattle.io" },
        "spec": {
            "group": "k3s.cattle.io",
            "names": { "kind": "Addon", "listKind": "AddonList", "plural": "addons", "singular": "addon" },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "additionalPrinterColumns": [
                    { "name": "Source", "type": "string", "jsonPath": ".spec.source" },
                    { "name": "Checksum", "type": "string", "jsonPath": ".spec.checksum" },
                ],
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": { "type": "object", "properties": { "source": string, "checksum": string } },
                        "status": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
                    },
                }},
            }],
        },
    })
}

/// Creates the built-in CRDs that do not exist yet.
pub async fn ensure(store: &dyn crate::store::Store) -> Result<(), ApiError> {
    let crds = registry::lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions").expect("CRDs are built in");
    let scope = Scope::new(crds, None, ServiceNetwork::default());
    match objects::create(store, &scope, addon(), Some("orch-server")).await {
        Ok(_) => tracing::info!(crd = "addons.k3s.cattle.io", "created built-in CRD"),
        Err(e) if e.reason == "AlreadyExists" => {}
        Err(e) => return Err(e),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_addon_crd_is_valid() {
        assert_eq!(super::super::definition::problems(&addon()), Vec::<(String, String)>::new());
    }
}
