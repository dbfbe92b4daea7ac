//! The `Addon` objects (`k3s.cattle.io/v1`, in kube-system) that record the deployed
//! manifests: `spec.source` is the file, `spec.checksum` the sha256 of the content last
//! applied without error; annotations keep the objects the file declared (to delete those
//! it stops declaring) and the server whose directory the file is in.

use std::collections::BTreeMap;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{json, Value};

use super::apply::FIELD_MANAGER;
use super::documents::ObjectRef;
use crate::controllers::common::ok_if_gone;

/// Annotation listing (as JSON) the objects the manifest declared when last applied.
const OBJECTS_ANNOTATION: &str = "addons.orch.io/objects";
/// Annotation naming the server that deploys the manifest (the one with the file).
const SERVER_ANNOTATION: &str = "addons.orch.io/server";

/// What an Addon records.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Addon {
    pub name: String,
    pub uid: Option<String>,
    pub source: String,
    /// Empty until the manifest applied without error.
    pub checksum: String,
    pub server: String,
    pub objects: Vec<ObjectRef>,
}

pub fn resource() -> ApiResource {
    ApiResource {
        group: "k3s.cattle.io".into(),
        version: "v1".into(),
        api_version: "k3s.cattle.io/v1".into(),
        kind: "Addon".into(),
        plural: "addons".into(),
    }
}

fn api(client: &kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), crate::k8s::names::KUBE_SYSTEM, &resource())
}

impl Addon {
    fn from_object(obj: &DynamicObject) -> Addon {
        let annotations = obj.metadata.annotations.clone().unwrap_or_default();
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Addon {
            name: obj.metadata.name.clone().unwrap_or_default(),
            uid: obj.metadata.uid.clone(),
            source: text(&obj.data["spec"]["source"]),
            checksum: text(&obj.data["spec"]["checksum"]),
            server: annotations.get(SERVER_ANNOTATION).cloned().unwrap_or_default(),
            objects: annotations.get(OBJECTS_ANNOTATION).and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default(),
        }
    }

    fn to_object(&self) -> Value {
        let objects = serde_json::to_string(&self.objects).expect("references serialize");
        let annotations: BTreeMap<&str, &str> = [(OBJECTS_ANNOTATION, objects.as_str()), (SERVER_ANNOTATION, self.server.as_str())].into();
        json!({
            "apiVersion": "k3s.cattle.io/v1",
            "kind": "Addon",
            "metadata": { "name": self.name, "namespace": crate::k8s::names::KUBE_SYSTEM, "annotations": annotations },
            "spec": { "source": self.source, "checksum": self.checksum },
        })
    }
}

/// Every Addon, by name.
pub async fn list(client: &kube::Client) -> Result<BTreeMap<String, Addon>, kube::Error> {
    let listed = api(client).list(&ListParams::default()).await?;
    Ok(listed.items.iter().map(Addon::from_object).map(|a| (a.name.clone(), a)).collect())
}

/// Writes `addon` (server-side apply); returns it as stored (with its uid).
pub async fn write(client: &kube::Client, addon: &Addon) -> Result<Addon, kube::Error> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let stored = api(client).patch(&addon.name, &params, &Patch::Apply(addon.to_object())).await?;
    Ok(Addon::from_object(&stored))
}

pub async fn delete(client: &kube::Client, name: &str) -> Result<(), kube::Error> {
    ok_if_gone(api(client).delete(name, &DeleteParams::default()).await).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_object() {
        let addon = Addon {
            name: "web".into(),
            uid: None,
            source: "/var/lib/orch/server/manifests/web.yaml".into(),
            checksum: "abc".into(),
            server: "pi1".into(),
            objects: vec![ObjectRef { api_version: "v1".into(), kind: "ConfigMap".into(), namespace: Some("a".into()), name: "b".into() }],
        };
        let obj: DynamicObject = serde_json::from_value(addon.to_object()).unwrap();
        assert_eq!(Addon::from_object(&obj), addon);
        assert_eq!(obj.data["spec"]["checksum"], "abc");
    }
}
