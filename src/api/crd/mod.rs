//! CustomResourceDefinitions: the served custom resources, kept in a table that follows the
//! stored CRDs (a store watch, plus a synchronous reload after a CRD write on this server), so
//! a custom resource is served the moment its definition is accepted.
//!
//! A custom resource is a [`Resource`] like the built-ins, with its CRD-specific parts
//! ([`Custom`]: schema, printer columns, scale paths) reachable from it. Both live for the rest
//! of the process (`&'static`), like the built-ins; a changed definition gets a new entry, and
//! identical reloads reuse the old one, so only real CRD changes cost memory.

pub mod schema;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt;
use serde_json::{json, Value};

use super::objects::{self, SharedStore};
use super::registry::{self, Resource};
use crate::store::{EventKind, KeyRange, RangeRequest, WatchRequest};

/// What a custom resource has beyond a built-in one.
#[derive(Debug)]
pub struct Custom {
    /// The version's openAPIV3Schema (structural).
    pub schema: Value,
    /// additionalPrinterColumns: (name, type, format, description, priority, jsonPath).
    pub columns: Vec<PrinterColumn>,
    /// The scale subresource's paths, if it has one.
    pub scale: Option<ScalePaths>,
}

#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    pub kind: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

#[derive(Debug, Clone)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

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
        self.served.read().expect("crd table lock").get(&key).copied()
    }

    /// Every served custom resource.
    pub fn all(&self) -> Vec<&'static Resource> {
        let mut all: Vec<&'static Resource> = self.served.read().expect("crd table lock").values().copied().collect();
        all.sort_by_key(|r| (r.group, r.version, r.plural));
        all
    }

    /// Serves the versions of `crd` (replacing what an earlier version of it served).
    pub fn load(&self, crd: &Value) {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        let mut resources = Vec::new();
        for version in crd["spec"]["versions"].as_array().into_iter().flatten().filter(|v| v["served"] != false) {
            let identity = json!({ "spec": crd["spec"], "version": version["name"] }).to_string();
            let mut built = self.built.lock().expect("crd cache lock");
            let resource = *built.entry(identity).or_insert_with(|| Box::leak(Box::new(build(crd, version))));
            resources.push(resource);
        }
        let mut served = self.served.write().expect("crd table lock");
        served.retain(|_, r| crd_name(r) != name);
        for r in resources {
            served.insert((r.group.to_string(), r.version.to_string(), r.plural.to_string()), r);
        }
    }

    /// Stops serving the resources of the CRD called `name`.
    pub fn unload(&self, name: &str) {
        self.served.write().expect("crd table lock").retain(|_, r| crd_name(r) != name);
    }

    /// Serves exactly the CRDs in the store now (after a CRD write on this server, so that its
    /// custom resources are served before the write's response is sent).
    pub async fn reload_all(&self, store: &SharedStore) -> Result<(), crate::store::StoreError> {
        let crds = registry::lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions").expect("CRDs are built in");
        let listed = store.range(RangeRequest { range: KeyRange::prefix(crds.key_prefix(None)), ..Default::default() }).await?;
        let stored: Vec<Value> = listed.kvs.iter().filter_map(|kv| objects::decode(kv).ok()).collect();
        let names: Vec<String> = stored.iter().filter_map(|c| c["metadata"]["name"].as_str().map(str::to_string)).collect();
        self.served.write().expect("crd table lock").retain(|_, r| names.contains(&crd_name(r)));
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

/// What the API server writes into a new CRD's status: its names accepted, established, and
/// the storage version recorded.
pub fn initial_status(crd: &Value) -> Value {
    let now = objects::now_rfc3339();
    let storage: Vec<Value> =
        crd["spec"]["versions"].as_array().into_iter().flatten().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect();
    let condition = |kind: &str, reason: &str, message: &str| json!({ "type": kind, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message });
    json!({
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": crd["spec"]["names"],
        "storedVersions": storage,
    })
}

/// Problems of a CRD that make it unservable, as (field, message).
pub fn problems(crd: &Value) -> Vec<(String, String)> {
    let spec = &crd["spec"];
    let mut out = Vec::new();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    for field in ["group", "names.plural", "names.kind"] {
        let v = field.split('.').fold(spec, |v, k| &v[k]);
        if v.as_str().is_none_or(str::is_empty) {
            out.push((format!("spec.{field}"), "Required value".into()));
        }
    }
    let expected = format!("{}.{}", text(&spec["names"]["plural"]), text(&spec["group"]));
    if crd["metadata"]["name"] != expected.as_str() {
        out.push((
            "metadata.name".into(),
            format!("Invalid value: {}: must be spec.names.plural+\".\"+spec.group", crd["metadata"]["name"]),
        ));
    }
    if !matches!(spec["scope"].as_str(), Some("Namespaced" | "Cluster")) {
        out.push(("spec.scope".into(), "Unsupported value: supported values: \"Cluster\", \"Namespaced\"".into()));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        out.push(("spec.versions".into(), "Invalid value: must have exactly one version marked as storage version".into()));
    } else if versions.iter().filter(|v| v["storage"] == true).count() != 1 {
        out.push(("spec.versions".into(), "Invalid value: must have exactly one version marked as storage version".into()));
    }
    for (i, v) in versions.iter().enumerate() {
        if v["schema"]["openAPIV3Schema"].get("type").is_none() {
            out.push((format!("spec.versions[{i}].schema.openAPIV3Schema.type"), "Required value: must not be empty at the root".into()));
        }
    }
    out
}

/// Reads a value by a kubectl-style JSONPath as printer columns use them: `.a.b`, `.a[0].b`,
/// and `.a[?(@.type=="Ready")].status` filters.
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    let mut rest = path.trim().trim_start_matches('{').trim_end_matches('}').trim_start_matches('.');
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inner = &after[..end];
            cur = if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (field, value) = filter.split_once("==")?;
                let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
                cur.as_array()?.iter().find(|item| item[field.trim()].as_str() == Some(value))?
            } else {
                cur.get(inner.parse::<usize>().ok()?)?
            };
            rest = after[end + 1..].trim_start_matches('.');
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            cur = cur.get(&rest[..end])?;
            rest = rest[end..].trim_start_matches('.');
        }
    }
    Some(cur)
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
        assert!(problems(&crd()).is_empty());
    }

    #[test]
    fn json_paths_read_fields_indexes_and_filters() {
        let obj = json!({ "spec": { "size": 3 }, "status": { "conditions": [{ "type": "A", "status": "False" }, { "type": "Ready", "status": "True" }] } });
        assert_eq!(json_path(&obj, ".spec.size"), Some(&json!(3)));
        assert_eq!(json_path(&obj, ".status.conditions[0].type"), Some(&json!("A")));
        assert_eq!(json_path(&obj, ".status.conditions[?(@.type==\"Ready\")].status"), Some(&json!("True")));
        assert_eq!(json_path(&obj, ".spec.missing"), None);
    }
}
