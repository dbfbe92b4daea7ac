//! The default ClusterRoles and ClusterRoleBindings (`bootstrap_policy.yaml`: cluster-admin,
//! admin, edit, view, system:discovery, system:basic-user, system:public-info-viewer,
//! system:node, …), reconciled at every start as kube-apiserver's `rbac/bootstrap-roles`
//! post-start hook does: missing objects are created; existing ones annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "true"` get the rules, selectors, subjects,
//! labels and annotations they lack (nothing is removed); `autoupdate: "false"` leaves them be.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::aggregation;
use super::rules::uncovered;
use crate::api::objects::{self, Scope};
use crate::api::registry;
use crate::api::services::ServiceNetwork;
use crate::api::status::ApiError;
use crate::store::Store;

const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
const MANAGER: &str = "orch-server";

#[derive(Deserialize)]
struct Policy {
    roles: Vec<Value>,
    bindings: Vec<Binding>,
}

#[derive(Deserialize)]
struct Binding {
    metadata: Value,
    #[serde(rename = "roleRef")]
    role_ref: String,
    #[serde(default)]
    subjects: Vec<Value>,
}

/// The default roles (aggregated ones with the rules they gather among the defaults) and
/// bindings, labelled and annotated as kube-apiserver writes them.
pub fn defaults() -> (Vec<Value>, Vec<Value>) {
    let policy: Policy = serde_yaml::from_str(include_str!("bootstrap_policy.yaml")).expect("the bootstrap policy is valid YAML");
    let stamp = |obj: &mut Value| {
        obj["metadata"]["labels"]["kubernetes.io/bootstrapping"] = json!("rbac-defaults");
        obj["metadata"]["annotations"][AUTOUPDATE] = json!("true");
    };
    let gathered = aggregation::gather(policy.roles.iter());
    let roles = policy
        .roles
        .iter()
        .map(|role| {
            let mut role = role.clone();
            if let Some(rules) = gathered.get(role["metadata"]["name"].as_str().unwrap_or_default()) {
                role["rules"] = json!(rules);
            }
            if role.get("rules").is_none() {
                role["rules"] = json!([]);
            }
            stamp(&mut role);
            role
        })
        .collect();
    let bindings = policy
        .bindings
        .into_iter()
        .map(|b| {
            let mut binding = json!({
                "metadata": b.metadata,
                "roleRef": { "apiGroup": super::GROUP, "kind": "ClusterRole", "name": b.role_ref },
                "subjects": b.subjects.into_iter().map(|mut s| {
                    if s["kind"] != "ServiceAccount" {
                        s["apiGroup"] = json!(super::GROUP);
                    }
                    s
                }).collect::<Vec<_>>(),
            });
            stamp(&mut binding);
            binding
        })
        .collect();
    (roles, bindings)
}

/// What `current` lacks of `wanted` (labels, annotations, rules, selectors, subjects), merged
/// in; `None` when nothing is missing or the object opts out of auto-update.
fn reconciled(current: &Value, wanted: &Value) -> Option<Value> {
    if current["metadata"]["annotations"][AUTOUPDATE] == "false" {
        return None;
    }
    let mut next = current.clone();
    for field in ["labels", "annotations"] {
        let map = next["metadata"][field].as_object().cloned().unwrap_or_default();
        let mut merged: Map<String, Value> = wanted["metadata"][field].as_object().cloned().unwrap_or_default();
        merged.extend(map);
        if !merged.is_empty() {
            next["metadata"][field] = Value::Object(merged);
        }
    }
    let mut add_missing = |path: &[&str], covered: &dyn Fn(&Value, &Value) -> bool| {
        let pick = |v: &Value| path.iter().fold(v.clone(), |v, k| v[*k].clone());
        let have = pick(&next).as_array().cloned().unwrap_or_default();
        let mut all = have.clone();
        all.extend(pick(wanted).as_array().into_iter().flatten().filter(|w| !have.iter().any(|h| covered(h, w))).cloned());
        if all.len() != have.len() {
            let slot = path.iter().fold(&mut next, |v, k| &mut v[*k]);
            *slot = json!(all);
        }
    };
    add_missing(&["rules"], &|have, want| uncovered(std::iter::once(have), std::slice::from_ref(want)).is_empty());
    add_missing(&["aggregationRule", "clusterRoleSelectors"], &|have, want| have == want);
    add_missing(&["subjects"], &|have, want| {
        have["kind"] == want["kind"] && have["name"] == want["name"] && have["namespace"] == want["namespace"]
    });
    (next != *current).then_some(next)
}

/// Creates or reconciles every default role and binding.
pub async fn ensure(store: &dyn Store) -> Result<(), ApiError> {
    let (roles, bindings) = defaults();
    for (plural, objects) in [("clusterroles", roles), ("clusterrolebindings", bindings)] {
        let resource = registry::lookup(super::GROUP, "v1", plural).expect("RBAC resources are built in");
        let scope = Scope::new(resource, None, ServiceNetwork::default());
        for wanted in objects {
            let name = wanted["metadata"]["name"].as_str().unwrap_or_default().to_string();
            match objects::get(store, &scope, &name).await {
                Ok(current) => {
                    if let Some(next) = reconciled(&current, &wanted) {
                        objects::update(store, &scope, &name, next, MANAGER, &|_| Ok(())).await?;
                        tracing::info!(plural, name, "reconciled a default RBAC object");
                    }
                }
                Err(e) if e.reason == "NotFound" => match objects::create(store, &scope, wanted, Some(MANAGER)).await {
                    Ok(_) => tracing::info!(plural, name, "created a default RBAC object"),
                    Err(e) if e.reason == "AlreadyExists" => {}
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kubes_and_reconcile_by_adding() {
        let (roles, bindings) = defaults();
        let role = |name: &str| roles.iter().find(|r| r["metadata"]["name"] == name).unwrap_or_else(|| panic!("{name}"));
        let has = |name: &str, group: &str, resource: &str, verb: &str| {
            let rule = json!({ "apiGroups": [group], "resources": [resource], "verbs": [verb] });
            uncovered(role(name)["rules"].as_array().unwrap().iter(), &[rule]).is_empty()
        };
        assert!(has("admin", "rbac.authorization.k8s.io", "rolebindings", "create"));
        assert!(has("admin", "apps", "deployments", "update"), "admin gathers edit");
        assert!(has("admin", "", "pods", "list"), "admin gathers view through edit");
        assert!(has("edit", "", "secrets", "get") && !has("edit", "rbac.authorization.k8s.io", "roles", "create"));
        assert!(has("view", "", "configmaps", "watch") && !has("view", "", "secrets", "get"), "view reads no secrets");
        assert_eq!(role("edit")["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"], "true");
        assert_eq!(role("view")["metadata"]["annotations"][AUTOUPDATE], "true");
        let discovery = bindings.iter().find(|b| b["metadata"]["name"] == "system:discovery").unwrap();
        assert_eq!(discovery["subjects"][0]["name"], "system:authenticated");
        assert_eq!(discovery["roleRef"]["kind"], "ClusterRole");

        // A user's extra rule and label stay; a missing default rule comes back.
        let wanted = role("system:discovery");
        let mut edited = wanted.clone();
        edited["rules"] = json!([{ "nonResourceURLs": ["/metrics"], "verbs": ["get"] }]);
        edited["metadata"]["labels"]["mine"] = json!("yes");
        let next = reconciled(&edited, wanted).expect("a rule is missing");
        assert_eq!(next["rules"].as_array().unwrap().len(), 2);
        assert_eq!(next["metadata"]["labels"]["mine"], "yes");
        assert_eq!(reconciled(&next, wanted), None, "nothing left to add");
        edited["metadata"]["annotations"][AUTOUPDATE] = json!("false");
        assert_eq!(reconciled(&edited, wanted), None, "opted out");
        let binding = bindings.iter().find(|b| b["metadata"]["name"] == "system:node").unwrap();
        assert_eq!(reconciled(binding, binding), None, "a binding without subjects stays without");
    }
}
