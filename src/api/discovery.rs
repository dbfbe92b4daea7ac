//! Legacy discovery: `/api`, `/api/v1`, `/apis` and `/apis/<group>/<version>`, built from the
//! registry, as kubectl reads them to map kinds and short names to resources.

use serde_json::{json, Value};

use super::registry::{self, Resource};

pub fn core_versions() -> Value {
    json!({ "kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "" }] })
}

/// The API groups: built-in ones, then those of custom resources.
pub fn groups(custom: &[&'static Resource]) -> Value {
    // The first version registered of a group is its preferred one.
    let mut groups: Vec<Value> = Vec::new();
    let custom_versions = custom.iter().map(|r| (r.group, r.version));
    for (g, v) in registry::group_versions().into_iter().chain(custom_versions).filter(|(g, _)| !g.is_empty()) {
        if groups.iter().any(|x| x["name"] == g && x["versions"].as_array().is_some_and(|vs| vs.iter().any(|gv| gv["version"] == v))) {
            continue;
        }
        let gv = json!({ "groupVersion": format!("{g}/{v}"), "version": v });
        match groups.iter_mut().find(|x| x["name"] == g) {
            Some(group) => group["versions"].as_array_mut().expect("versions is an array").push(gv),
            None => groups.push(json!({ "name": g, "versions": [gv.clone()], "preferredVersion": gv })),
        }
    }
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// The resource list of one group-version, or `None` if it is not served.
pub fn resources(group: &str, version: &str, custom: &[&'static Resource]) -> Option<Value> {
    let mut list: Vec<Value> = Vec::new();
    for r in registry::BUILTIN.iter().chain(custom.iter().copied()).filter(|r| r.group == group && r.version == version) {
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
