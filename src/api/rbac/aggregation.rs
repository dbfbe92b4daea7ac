//! Aggregated ClusterRoles (`aggregationRule.clusterRoleSelectors`), as kube's
//! clusterrole-aggregation controller fills them: such a role grants the rules of every other
//! ClusterRole whose labels one of its selectors matches (through further aggregated roles
//! too). Computed whenever a ClusterRole changes; authorisation reads the result at once, and
//! [`write_gathered`] copies it into the stored role's `rules`, where clients see it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::Rbac;
use crate::api::objects::{self, Scope};
use crate::api::selector::LabelSelector;
use crate::api::services::ServiceNetwork;
use crate::store::Store;

/// Keeps the stored `rules` of every aggregated ClusterRole equal to what it gathers (every
/// server does it; a write happens only when they differ).
pub async fn write_gathered(store: Arc<dyn Store>, rbac: Arc<Rbac>) {
    let resource = crate::api::registry::lookup(super::GROUP, "v1", "clusterroles").expect("RBAC resources are built in");
    let scope = Scope::new(resource, None, ServiceNetwork::default());
    loop {
        let mut failed = false;
        for (name, rules) in rbac.stale_aggregates() {
            let edit = |before: &Value| {
                let mut next = before.clone();
                next["rules"] = json!(rules);
                Ok(next)
            };
            match objects::modify(store.as_ref(), &scope, &name, "clusterrole-aggregation-controller", &|_| Ok(()), &edit).await {
                Ok(_) => tracing::info!(role = name, "aggregated ClusterRole rules updated"),
                Err(e) if e.reason == "NotFound" => {}
                Err(e) => {
                    tracing::warn!(role = name, error = %e.message, "cannot update an aggregated ClusterRole; retrying");
                    failed = true;
                }
            }
        }
        if failed {
            tokio::time::sleep(Duration::from_secs(1)).await;
        } else {
            // A change while writing left a permit: the loop runs again at once.
            rbac.aggregation_changed.notified().await;
        }
    }
}

/// The selectors of an aggregated ClusterRole (`None`: not aggregated).
pub fn selectors(role: &Value) -> Option<Vec<LabelSelector>> {
    let list = role["aggregationRule"]["clusterRoleSelectors"].as_array()?;
    Some(list.iter().filter_map(|s| LabelSelector::from_json(s).ok()).collect())
}

/// Rules gathered by each aggregated ClusterRole among `roles`, by name (its own rules apart).
pub fn gather<'a>(roles: impl Iterator<Item = &'a Value>) -> HashMap<String, Vec<Value>> {
    // Ordered by name, so that the same roles always gather their rules in the same order.
    let roles: BTreeMap<&str, &Value> = roles.filter_map(|r| Some((r["metadata"]["name"].as_str()?, r))).collect();
    let mut out = HashMap::new();
    for (name, role) in &roles {
        if selectors(role).is_some() {
            let mut rules = Vec::new();
            collect(&roles, name, &mut HashSet::from([name.to_string()]), &mut rules);
            out.insert(name.to_string(), rules);
        }
    }
    out
}

/// Adds to `rules` the rules of the roles `name` selects, following aggregated ones once each.
fn collect(roles: &BTreeMap<&str, &Value>, name: &str, seen: &mut HashSet<String>, rules: &mut Vec<Value>) {
    let Some(selectors) = roles.get(name).and_then(|r| selectors(r)) else { return };
    for (other, role) in roles {
        let labels = &role["metadata"]["labels"];
        if *other == name || !selectors.iter().any(|s| s.matches(labels)) {
            continue;
        }
        for rule in role["rules"].as_array().into_iter().flatten() {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
        if seen.insert(other.to_string()) {
            collect(roles, other, seen, rules);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aggregated_roles_gather_what_their_selectors_pick() {
        let role = |name: &str, labels: Value, rules: Value, aggregate: Option<&str>| {
            let mut r = json!({ "metadata": { "name": name, "labels": labels }, "rules": rules });
            if let Some(label) = aggregate {
                r["aggregationRule"] = json!({ "clusterRoleSelectors": [{ "matchLabels": { label: "true" } }] });
            }
            r
        };
        let get = |res: &str| json!({ "apiGroups": [""], "resources": [res], "verbs": ["get"] });
        let roles = [
            role("admin", json!({}), json!([]), Some("to-admin")),
            role("edit", json!({ "to-admin": "true" }), json!([]), Some("to-edit")),
            role("crd-edit", json!({ "to-edit": "true" }), json!([get("widgets")]), None),
            role("extra-admin", json!({ "to-admin": "true" }), json!([get("secrets")]), None),
            role("loop", json!({ "to-admin": "true", "to-loop": "true" }), json!([get("loops")]), Some("to-loop")),
            role("unrelated", json!({}), json!([get("nodes")]), None),
        ];
        let gathered = gather(roles.iter());
        let admin = &gathered["admin"];
        for res in ["widgets", "secrets", "loops"] {
            assert!(admin.contains(&get(res)), "admin gathers {res} through edit and its own selector");
        }
        assert!(!admin.contains(&get("nodes")));
        assert_eq!(gathered["edit"], vec![get("widgets")]);
        assert_eq!(gathered["loop"], Vec::<Value>::new(), "a role never gathers itself");
        assert!(!gathered.contains_key("unrelated"));
    }
}
