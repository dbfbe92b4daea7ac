//! Aggregated ClusterRoles (`aggregationRule.clusterRoleSelectors`), as kube's
//! clusterrole-aggregation controller fills them: such a role grants the rules of every other
//! ClusterRole whose labels one of its selectors matches (through further aggregated roles
//! too). Computed whenever a ClusterRole changes; authorisation reads the result.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::api::selector::LabelSelector;

/// The selectors of an aggregated ClusterRole (`None`: not aggregated).
pub fn selectors(role: &Value) -> Option<Vec<LabelSelector>> {
    let list = role["aggregationRule"]["clusterRoleSelectors"].as_array()?;
    Some(list.iter().filter_map(|s| LabelSelector::from_json(s).ok()).collect())
}

/// Rules gathered by each aggregated ClusterRole among `roles`, by name (its own rules apart).
pub fn gather<'a>(roles: impl Iterator<Item = &'a Value>) -> HashMap<String, Vec<Value>> {
    let roles: HashMap<&str, &Value> = roles.filter_map(|r| Some((r["metadata"]["name"].as_str()?, r))).collect();
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
fn collect(roles: &HashMap<&str, &Value>, name: &str, seen: &mut HashSet<String>, rules: &mut Vec<Value>) {
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
