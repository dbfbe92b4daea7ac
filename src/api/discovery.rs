//! Discovery: `/api`, `/api/v1`, `/apis` and `/apis/<group>/<version>`, built from the
//! registry, as kubectl reads them to map kinds and short names to resources — in the legacy
//! form (one request per group-version) and in the aggregated form (`apidiscovery.k8s.io/v2`,
//! every group's resources in one answer to `/api` and one to `/apis`).

use serde_json::{json, Map, Value};

use super::registry::{self, Resource};

/// The media type of aggregated discovery, as clients ask for it and as it is answered.
pub const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub fn core_versions() -> Value {
    json!({ "kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "" }] })
}

/// The named API groups with their versions, preferred (first registered) first: built-in
/// ones, then those of custom resources.
fn named_groups(custom: &[&'static Resource]) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    let custom_versions = custom.iter().map(|r| (r.group, r.version));
    for (g, v) in registry::group_versions().into_iter().chain(custom_versions).filter(|(g, _)| !g.is_empty()) {
        match groups.iter_mut().find(|(name, _)| *name == g) {
            Some((_, versions)) if !versions.contains(&v) => versions.push(v),
            Some(_) => {}
            None => groups.push((g, vec![v])),
        }
    }
    groups
}

/// The API groups in the legacy form.
pub fn groups(custom: &[&'static Resource]) -> Value {
    let groups: Vec<Value> = named_groups(custom)
        .into_iter()
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions.iter().map(|v| json!({ "groupVersion": format!("{g}/{v}"), "version": v })).collect();
            json!({ "name": g, "versions": versions, "preferredVersion": versions[0] })
        })
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

fn served<'a>(group: &'a str, version: &'a str, custom: &'a [&'static Resource]) -> impl Iterator<Item = &'static Resource> + 'a {
    registry::BUILTIN.iter().chain(custom.iter().copied()).filter(move |r| r.group == group && r.version == version)
}

/// The resource list of one group-version in the legacy form, or `None` if it is not served.
pub fn resources(group: &str, version: &str, custom: &[&'static Resource]) -> Option<Value> {
    let mut list: Vec<Value> = Vec::new();
    for r in served(group, version, custom) {
        list.push(json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
            "shortNames": r.short_names,
            "categories": r.categories,
        }));
        for sub in r.subresources {
            let (kind, sub_group, sub_version, verbs) = registry::subresource_info(sub);
            let mut entry = json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": if kind.is_empty() { r.kind } else { kind },
                "verbs": verbs,
            });
            if !sub_group.is_empty() {
                entry["group"] = json!(sub_group);
                entry["version"] = json!(sub_version);
            }
            list.push(entry);
        }
    }
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list }))
}

/// Whether an `Accept` header asks for aggregated discovery before anything this server
/// answers in the legacy form (kube's negotiation: the first acceptable range wins; the
/// protobuf form of aggregated discovery is not served, so it is passed over).
pub fn wants_aggregated(accept: &str) -> bool {
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).map(|(k, v)| (k.trim(), v.trim())).collect();
        let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        match (media, param("g"), param("v"), param("as")) {
            ("application/json", Some("apidiscovery.k8s.io"), Some("v2"), Some("APIGroupDiscoveryList")) => return true,
            ("application/json" | "application/*" | "*/*", None, None, None) => return false,
            _ => {}
        }
    }
    false
}

/// Aggregated discovery (`APIGroupDiscoveryList`): the core group for `/api` (`core`), every
/// named group for `/apis`.
pub fn aggregated(core: bool, custom: &[&'static Resource]) -> Value {
    let groups = if core { vec![("", vec!["v1"])] } else { named_groups(custom) };
    let items: Vec<Value> = groups
        .into_iter()
        .map(|(g, versions)| {
            let mut metadata = json!({ "creationTimestamp": null });
            if !g.is_empty() {
                metadata["name"] = json!(g);
            }
            let versions: Vec<Value> = versions
                .into_iter()
                .map(|v| {
                    let resources: Vec<Value> = served(g, v, custom).map(resource_discovery).collect();
                    json!({ "version": v, "resources": resources, "freshness": "Current" })
                })
                .collect();
            json!({ "metadata": metadata, "versions": versions })
        })
        .collect();
    json!({ "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items })
}

/// One resource as `APIResourceDiscovery` (a kind's group and version are left empty where they
/// are the resource's own, as kube-apiserver writes them).
fn resource_discovery(r: &'static Resource) -> Value {
    let mut entry = Map::new();
    entry.insert("resource".into(), json!(r.plural));
    entry.insert("responseKind".into(), json!({ "group": "", "version": "", "kind": r.kind }));
    entry.insert("scope".into(), json!(if r.namespaced { "Namespaced" } else { "Cluster" }));
    entry.insert("singularResource".into(), json!(r.singular));
    entry.insert("verbs".into(), json!(r.verbs));
    if !r.short_names.is_empty() {
        entry.insert("shortNames".into(), json!(r.short_names));
    }
    if !r.categories.is_empty() {
        entry.insert("categories".into(), json!(r.categories));
    }
    let subresources: Vec<Value> = r
        .subresources
        .iter()
        .map(|sub| {
            let (kind, group, version, verbs) = registry::subresource_info(sub);
            let kind = if kind.is_empty() { r.kind } else { kind };
            json!({ "subresource": sub, "responseKind": { "group": group, "version": version, "kind": kind }, "verbs": verbs })
        })
        .collect();
    if !subresources.is_empty() {
        entry.insert("subresources".into(), Value::Array(subresources));
    }
    Value::Object(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_takes_the_first_range_served() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert!(wants_aggregated(kubectl));
        let protobuf_first = "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
        assert!(wants_aggregated(protobuf_first));
        assert!(!wants_aggregated("application/json, */*"));
        assert!(!wants_aggregated("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"));
        assert!(!wants_aggregated(""));
    }

    #[test]
    fn aggregated_lists_what_legacy_lists() {
        let apis = aggregated(false, &[]);
        let legacy = groups(&[]);
        let names: Vec<&Value> = apis["items"].as_array().unwrap().iter().map(|g| &g["metadata"]["name"]).collect();
        let legacy_names: Vec<&Value> = legacy["groups"].as_array().unwrap().iter().map(|g| &g["name"]).collect();
        assert_eq!(names, legacy_names);
        let apps = apis["items"].as_array().unwrap().iter().find(|g| g["metadata"]["name"] == "apps").unwrap();
        let deployments = apps["versions"][0]["resources"].as_array().unwrap().iter().find(|r| r["resource"] == "deployments").unwrap();
        assert_eq!(deployments["scope"], "Namespaced");
        assert_eq!(deployments["responseKind"]["kind"], "Deployment");
        assert_eq!(deployments["shortNames"], json!(["deploy"]));
        let scale = deployments["subresources"].as_array().unwrap().iter().find(|s| s["subresource"] == "scale").unwrap();
        assert_eq!(scale["responseKind"], json!({ "group": "autoscaling", "version": "v1", "kind": "Scale" }));

        let core = aggregated(true, &[]);
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        assert!(core["items"][0]["metadata"].get("name").is_none());
        let legacy_core = resources("", "v1", &[]).unwrap();
        let plain = legacy_core["resources"].as_array().unwrap().iter().filter(|r| !r["name"].as_str().unwrap().contains('/')).count();
        assert_eq!(core["items"][0]["versions"][0]["resources"].as_array().unwrap().len(), plain);
    }
}
