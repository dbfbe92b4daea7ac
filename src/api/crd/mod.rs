//! CustomResourceDefinitions: the served custom resources, kept in a table that follows the
//! stored CRDs (a store watch, plus a synchronous reload after a CRD write on this server), so
//! a custom resource is served the moment its definition is accepted.
//!
//! A custom resource is a [`Resource`] like the built-ins, with its CRD-specific parts
//! ([`Custom`]: schema, printer columns, scale paths) reachable from it. Both live for the rest
//! of the process (`&'static`), like the built-ins; a changed definition gets a new entry, and
//! identical reloads reuse the old one, so only real CRD changes cost memory.

pub mod builtin;
pub mod definition;
pub mod schema;

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};

use super::objects::{self, SharedStore};
use super::registry::{self, Resource};
use crate::store::{EventKind, KeyRange, RangeRequest, WatchRequest};
use definition::{Custom, PrinterColumn, ScalePaths};

type Key = (String, String, String);

/// The served custom resources.
#[derive(Default)]
pub struct Crds {
    /// (group, version, plural) → resource.
    served: RwLock<HashMap<Key, &'static Resource>>,
    /// Every resource built so far, by the definition it was built from.
    built: Mutex<HashMap<String, &'static Resource>>,
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn leak_list(v: &Value) -> &'static [&'static str] {
    let items: Vec<&'static str> = v.as_array().into_iter().flatten().filter_map(Value::as_str).map(leak).collect();
    Box::leak(items.into_boxed_slice())
}

impl Crds {
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
        let key = (group.to_string(), version.to_string(), plural.to_string());
        self.served.read().get(&key).copied()
    }

    /// Every served custom resource.
    pub fn all(&self) -> Vec<&'static Resource> {
        let mut all: Vec<&'static Resource> = self.served.read().values().copied().collect();
        all.sort_by_key(|r| (r.group, r.version, r.plural));
        all
    }

    /// Serves the versions of `crd` (replacing what an earlier version of it served).
    pub fn load(&self, crd: &Value) {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        let mut resources = Vec::new();
        for version in crd["spec"]["versions"].as_array().into_iter().flatten().filter(|v| v["served"] != false) {
            let identity = json!({ "spec": crd["spec"], "version": version["name"] }).to_string();
            let mut built = self.built.lock();
            let resource = *built.entry(identity).or_insert_with(|| Box::leak(Box::new(build(crd, version))));
            resources.push(resource);
        }
        let mut served = self.served.write();
        served.retain(|_, r| crd_name(r) != name);
        for r in resources {
            served.insert((r.group.to_string(), r.version.to_string(), r.plural.to_string()), r);
        }
    }

    /// Stops serving the resources of the CRD called `name`.
    pub fn unload(&self, name: &str) {
        self.served.write().retain(|_, r| crd_name(r) != name);
    }

    /// Serves exactly the CRDs in the store now (after a CRD write on this server, so that its
    /// custom resources are served before the write's response is sent).
    pub async fn reload_all(&self, store: &SharedStore) -> Result<(), crate::store::StoreError> {
        let crds = registry::lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions").expect("CRDs are built in");
        let listed = store.range(RangeRequest { range: KeyRange::prefix(crds.key_prefix(None)), ..Default::default() }).await?;
        let stored: Vec<Value> = listed.kvs.iter().filter_map(|kv| objects::decode(kv).ok()).collect();
        let names: Vec<String> = stored.iter().filter_map(|c| c["metadata"]["name"].as_str().map(str::to_string)).collect();
        self.served.write().retain(|_, r| names.contains(&crd_name(r)));
        for crd in &stored {
            self.load(crd);
        }
        Ok(())
    }

    /// Deletes every stored object of the CRD called `name` (before the CRD itself goes).
    pub async fn delete_objects(&self, store: &SharedStore, name: &str) -> Result<(), crate::store::StoreError> {
        let served = self.all();
        let Some(r) = served.iter().find(|r| crd_name(r) == name) else { return Ok(()) };
        let listed = store.range(RangeRequest { range: KeyRange::prefix(r.key_prefix(None)), ..Default::default() }).await?;
        for chunk in listed.kvs.chunks(256) {
            let ops = chunk.iter().map(|kv| crate::store::Op::Delete { key: kv.key.clone() }).collect();
            store.txn(crate::store::TxnRequest { compare: vec![], success: ops, failure: vec![] }).await?;
        }
        Ok(())
    }

    /// Loads every stored CRD, then follows changes (from any server) until the store closes.
    pub async fn follow(self: Arc<Self>, store: SharedStore) {
        let crds = registry::lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions").expect("CRDs are built in");
        let prefix = crds.key_prefix(None);
        loop {
            let listed = store.range(RangeRequest { range: KeyRange::prefix(prefix.clone()), ..Default::default() }).await;
            let Ok(listed) = listed else {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            };
            for kv in &listed.kvs {
                if let Ok(crd) = objects::decode(kv) {
                    self.load(&crd);
                }
            }
            let request = WatchRequest { range: KeyRange::prefix(prefix.clone()), start_revision: listed.revision + 1 };
            let Ok(mut events) = store.watch(request).await else { continue };
            while let Some(Ok(batch)) = events.next().await {
                for ev in batch {
                    match ev.kind {
                        EventKind::Put => {
                            if let Ok(crd) = objects::decode(&ev.kv) {
                                self.load(&crd);
                            }
                        }
                        EventKind::Delete => {
                            let key = String::from_utf8_lossy(&ev.kv.key).into_owned();
                            self.unload(key.rsplit('/').next().unwrap_or_default());
                        }
                    }
                }
            }
            tracing::debug!("CRD watch ended; listing again");
        }
    }
}

/// The CRD a custom resource came from: `<plural>.<group>`.
fn crd_name(r: &Resource) -> String {
    format!("{}.{}", r.plural, r.group)
}

fn build(crd: &Value, version: &Value) -> Resource {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let text = |v: &Value| leak(v.as_str().unwrap_or_default());
    let subresources = &version["subresources"];
    let mut subs: Vec<&'static str> = Vec::new();
    if subresources.get("status").is_some() {
        subs.push("status");
    }
    let scale = subresources.get("scale").map(|s| ScalePaths {
        spec_replicas: s["specReplicasPath"].as_str().unwrap_or(".spec.replicas").to_string(),
        status_replicas: s["statusReplicasPath"].as_str().unwrap_or(".status.replicas").to_string(),
        label_selector: s["labelSelectorPath"].as_str().map(str::to_string),
    });
    if scale.is_some() {
        subs.push("scale");
    }
    let mut columns: Vec<PrinterColumn> = version["additionalPrinterColumns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| PrinterColumn {
            name: c["name"].as_str().unwrap_or_default().to_string(),
            kind: c["type"].as_str().unwrap_or("string").to_string(),
            format: c["format"].as_str().unwrap_or_default().to_string(),
            description: c["description"].as_str().unwrap_or_default().to_string(),
            priority: c["priority"].as_i64().unwrap_or(0),
            json_path: c["jsonPath"].as_str().unwrap_or_default().to_string(),
        })
        .collect();
    if columns.is_empty() {
        columns.push(PrinterColumn {
            name: "Age".into(),
            kind: "date".into(),
            format: String::new(),
            description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        });
    }
    let custom = Custom { schema: version["schema"]["openAPIV3Schema"].clone(), columns, scale };
    Resource {
        group: text(&spec["group"]),
        version: text(&version["name"]),
        kind: text(&names["kind"]),
        plural: text(&names["plural"]),
        singular: leak(
            names["singular"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| names["kind"].as_str().unwrap_or_default().to_lowercase())
                .as_str(),
        ),
        short_names: leak_list(&names["shortNames"]),
        categories: leak_list(&names["categories"]),
        namespaced: spec["scope"] != "Cluster",
        verbs: registry::STORED_VERBS,
        subresources: Box::leak(subs.into_boxed_slice()),
        schema: None,
        custom: Some(Box::leak(Box::new(custom))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({ "metadata": { "name": "widgets.example.com" }, "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": { "plural": "widgets", "kind": "Widget", "shortNames": ["wd"] },
            "versions": [{ "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object" } },
                "subresources": { "status": {}, "scale": { "specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size" } },
                "additionalPrinterColumns": [{ "name": "Size", "type": "integer", "jsonPath": ".spec.size" }] }] } })
    }

    #[test]
    fn a_loaded_crd_is_served_and_unloading_stops_it() {
        let crds = Crds::default();
        crds.load(&crd());
        let r = crds.lookup("example.com", "v1", "widgets").unwrap();
        assert_eq!((r.kind, r.singular, r.short_names, r.subresources), ("Widget", "widget", &["wd"][..], &["status", "scale"][..]));
        assert_eq!(r.custom.unwrap().scale.as_ref().unwrap().spec_replicas, ".spec.size");
        // Reloading the same definition reuses the resource.
        crds.load(&crd());
        assert!(std::ptr::eq(r, crds.lookup("example.com", "v1", "widgets").unwrap()));
        crds.unload("widgets.example.com");
        assert!(crds.lookup("example.com", "v1", "widgets").is_none());
        assert!(definition::problems(&crd()).is_empty());
    }
}
