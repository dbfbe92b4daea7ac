//! RBAC evaluation: Roles, ClusterRoles and their bindings, mirrored in memory from the store
//! (see `api::mirror`), so that each authorisation is a lookup. `system:masters` is allowed
//! everything without consulting RBAC, as in kube-apiserver. Aggregated ClusterRoles
//! ([`aggregation`]) grant the rules of the ClusterRoles their selectors pick; the escalation
//! checks on writes of RBAC objects are in [`escalation`], the default roles in [`bootstrap`].

mod aggregation;
pub mod bootstrap;
pub mod escalation;
mod rules;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::Value;

use crate::pki::{Identity, MASTERS_GROUP};
use crate::store::Store;
pub use rules::Attributes;
use rules::Request;

/// The API group of RBAC objects.
pub const GROUP: &str = "rbac.authorization.k8s.io";
const PREFIX: &str = "/registry/rbac.authorization.k8s.io/";

/// Every RBAC object, by store key, and the rules aggregated ClusterRoles gather.
#[derive(Default)]
struct Objects {
    by_key: HashMap<String, Value>,
    aggregated: HashMap<String, Vec<Value>>,
}

impl Objects {
    fn cluster_roles(&self) -> impl Iterator<Item = &Value> {
        self.by_key.iter().filter(|(k, _)| k.starts_with(&format!("{PREFIX}clusterroles/"))).map(|(_, v)| v)
    }

    fn regather(&mut self) {
        self.aggregated = aggregation::gather(self.cluster_roles());
    }

    fn cluster_role(&self, name: &str) -> Option<&Value> {
        self.by_key.get(&format!("{PREFIX}clusterroles/{name}"))
    }

    /// The rules a binding in `namespace` (none: a ClusterRoleBinding) grants through `role_ref`.
    fn role_rules(&self, role_ref: &Value, namespace: Option<&str>) -> Option<Vec<&Value>> {
        let name = role_ref["name"].as_str().unwrap_or("");
        let role = match (role_ref["kind"].as_str(), namespace) {
            (Some("ClusterRole"), _) => self.cluster_role(name)?,
            (Some("Role"), Some(ns)) => self.by_key.get(&format!("{PREFIX}roles/{ns}/{name}"))?,
            _ => return None,
        };
        // An aggregated ClusterRole grants what it gathers (its stored rules are a copy of it).
        match self.aggregated.get(name).filter(|_| role_ref["kind"] == "ClusterRole") {
            Some(gathered) => Some(gathered.iter().collect()),
            None => Some(role["rules"].as_array().into_iter().flatten().collect()),
        }
    }

    /// Calls `f` with every rule granted to `identity` in `namespace` (none: cluster-wide
    /// bindings only) until it answers true.
    fn any_rule(&self, identity: &Identity, namespace: Option<&str>, mut f: impl FnMut(&Value) -> bool) -> bool {
        self.by_key.iter().any(|(key, binding)| {
            let binding_ns = binding["metadata"]["namespace"].as_str();
            let cluster_wide = key.starts_with(&format!("{PREFIX}clusterrolebindings/"));
            let namespaced = key.starts_with(&format!("{PREFIX}rolebindings/"));
            // A RoleBinding grants only inside its namespace; a ClusterRoleBinding everywhere.
            let in_scope = cluster_wide || (namespaced && binding_ns.is_some() && binding_ns == namespace);
            in_scope
                && binding["subjects"].as_array().into_iter().flatten().any(|s| subject_matches(s, identity, binding_ns))
                && self
                    .role_rules(&binding["roleRef"], binding_ns.filter(|_| namespaced))
                    .is_some_and(|rules| rules.into_iter().any(&mut f))
        })
    }
}

pub struct Rbac {
    objects: RwLock<Objects>,
    /// Signalled when what an aggregated ClusterRole gathers may have changed.
    aggregation_changed: tokio::sync::Notify,
}

fn subject_matches(subject: &Value, identity: &Identity, binding_namespace: Option<&str>) -> bool {
    let name = subject["name"].as_str().unwrap_or("");
    match subject["kind"].as_str() {
        Some("User") => name == identity.user,
        // Every caller orch serves is authenticated (there is no anonymous access to the API).
        Some("Group") => identity.in_group(name) || (name == "system:authenticated"),
        Some("ServiceAccount") => {
            let ns = subject["namespace"].as_str().or(binding_namespace).unwrap_or("");
            identity.user == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

impl crate::api::mirror::Mirror for Rbac {
    fn reset(&self, _prefix: &str, objects: Vec<(String, Value)>) {
        let mut o = self.objects.write();
        o.by_key = objects.into_iter().collect();
        o.regather();
        self.aggregation_changed.notify_one();
    }

    fn apply(&self, _prefix: &str, key: &str, object: Option<Value>) {
        let mut o = self.objects.write();
        match object {
            Some(v) => o.by_key.insert(key.to_string(), v),
            None => o.by_key.remove(key),
        };
        if key.starts_with(&format!("{PREFIX}clusterroles/")) {
            o.regather();
            self.aggregation_changed.notify_one();
        }
    }
}

impl Rbac {
    /// Starts following `store`; decisions fail closed until the first load is done.
    pub fn start(store: Arc<dyn Store>, tasks: &crate::tasks::Tasks) -> Arc<Self> {
        let rbac = Arc::new(Self { objects: RwLock::new(Objects::default()), aggregation_changed: tokio::sync::Notify::new() });
        crate::api::mirror::follow(store.clone(), &[PREFIX.to_string()], &rbac, tasks);
        tasks.spawn(aggregation::write_gathered(store, rbac.clone()));
        rbac
    }

    /// Whether `identity` may do `a`.
    pub fn allowed(&self, identity: &Identity, a: &Attributes<'_>) -> bool {
        identity.in_group(MASTERS_GROUP) || self.objects.read().any_rule(identity, a.namespace, |r| rules::allows(r, &Request::Resource(a)))
    }

    /// Whether `identity` may send `verb` (`get`, `post`, …) to `path` outside the resource API
    /// (discovery, OpenAPI), by `nonResourceURLs` rules.
    pub fn allowed_path(&self, identity: &Identity, verb: &str, path: &str) -> bool {
        identity.in_group(MASTERS_GROUP)
            || self.objects.read().any_rule(identity, None, |r| rules::allows(r, &Request::NonResource { verb, path }))
    }

    /// Every rule granted to `identity` in `namespace` (none: cluster-wide only).
    fn rules_for(&self, identity: &Identity, namespace: Option<&str>) -> Vec<Value> {
        let mut out = Vec::new();
        self.objects.read().any_rule(identity, namespace, |r| {
            out.push(r.clone());
            false
        });
        out
    }

    /// Aggregated ClusterRoles whose stored rules differ from what they gather, with those.
    fn stale_aggregates(&self) -> Vec<(String, Vec<Value>)> {
        let o = self.objects.read();
        o.aggregated
            .iter()
            .filter(|(name, rules)| {
                o.cluster_role(name).is_some_and(|role| role["rules"].as_array().cloned().unwrap_or_default() != **rules)
            })
            .map(|(name, rules)| (name.clone(), rules.clone()))
            .collect()
    }

    /// The rules role `role_ref` grants when bound in `namespace`; `None` if it does not exist.
    fn role_rules(&self, role_ref: &Value, namespace: Option<&str>) -> Option<Vec<Value>> {
        Some(self.objects.read().role_rules(role_ref, namespace)?.into_iter().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::mirror::Mirror;
    use serde_json::json;

    pub(super) fn rbac(objects: Vec<(&str, Value)>) -> Rbac {
        let r = Rbac { objects: RwLock::new(Objects::default()), aggregation_changed: tokio::sync::Notify::new() };
        r.reset(PREFIX, objects.into_iter().map(|(k, v)| (format!("{PREFIX}{k}"), v)).collect());
        r
    }

    #[test]
    fn bindings_grant_their_roles_rules_in_their_scope() {
        let r = rbac(vec![
            ("roles/team/reader", json!({"rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]})),
            (
                "rolebindings/team/dev-reads",
                json!({"metadata": {"namespace": "team"}, "subjects": [{"kind": "Group", "name": "developers"}], "roleRef": {"kind": "Role", "name": "reader"}}),
            ),
            (
                "clusterroles/ns-viewer",
                json!({"rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["*"], "resourceNames": ["team"]}]}),
            ),
            (
                "clusterrolebindings/alice-ns",
                json!({"subjects": [{"kind": "User", "name": "alice"}], "roleRef": {"kind": "ClusterRole", "name": "ns-viewer"}}),
            ),
            ("clusterroles/discovery", json!({"rules": [{"nonResourceURLs": ["/api", "/api/*"], "verbs": ["get"]}]})),
            (
                "clusterrolebindings/discovery",
                json!({"subjects": [{"kind": "Group", "name": "system:authenticated"}], "roleRef": {"kind": "ClusterRole", "name": "discovery"}}),
            ),
        ]);
        let dev = Identity { user: "bob".into(), groups: vec!["developers".into()] };
        let alice = Identity { user: "alice".into(), groups: vec![] };
        let attrs = |verb, resource, namespace, name| Attributes { verb, group: "", resource, namespace, name };
        assert!(r.allowed(&dev, &attrs("list", "configmaps", Some("team"), None)));
        assert!(!r.allowed(&dev, &attrs("list", "configmaps", Some("default"), None)), "a RoleBinding is namespace-bound");
        assert!(!r.allowed(&dev, &attrs("create", "configmaps", Some("team"), None)));
        assert!(r.allowed(&alice, &attrs("get", "namespaces", None, Some("team"))));
        assert!(!r.allowed(&alice, &attrs("get", "namespaces", None, Some("other"))), "resourceNames restrict");
        assert!(r.allowed(&Identity { user: "root".into(), groups: vec![MASTERS_GROUP.into()] }, &attrs("delete", "anything", None, None)));
        assert!(r.allowed_path(&alice, "get", "/api/v1"));
        assert!(!r.allowed_path(&alice, "get", "/apis"));
        assert!(!r.allowed_path(&alice, "post", "/api"));
    }
}
