//! RBAC evaluation: Roles, ClusterRoles and their bindings, kept in memory by a task that
//! follows the store (initial list, then a watch), so that each authorisation is a lookup.
//! `system:masters` is allowed everything without consulting RBAC, as in kube-apiserver.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::RwLock;
use serde_json::Value;

use crate::pki::{Identity, MASTERS_GROUP};
use crate::store::{EventKind, KeyRange, RangeRequest, Store, WatchRequest};

const PREFIX: &str = "/registry/rbac.authorization.k8s.io/";

/// What a request wants to do.
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// Every RBAC object, by store key.
#[derive(Default)]
struct Objects(HashMap<String, Value>);

pub struct Rbac {
    objects: RwLock<Objects>,
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

fn rule_allows(rule: &Value, a: &Attributes<'_>) -> bool {
    let any = |list: &[&str], want: &str| list.iter().any(|x| *x == "*" || *x == want);
    let names = strs(&rule["resourceNames"]);
    any(&strs(&rule["verbs"]), a.verb)
        && any(&strs(&rule["apiGroups"]), a.group)
        && any(&strs(&rule["resources"]), a.resource)
        && (names.is_empty() || a.name.is_some_and(|n| names.contains(&n)))
}

fn subject_matches(subject: &Value, identity: &Identity, binding_namespace: Option<&str>) -> bool {
    let name = subject["name"].as_str().unwrap_or("");
    match subject["kind"].as_str() {
        Some("User") => name == identity.user,
        Some("Group") => identity.in_group(name) || (name == "system:authenticated"),
        Some("ServiceAccount") => {
            let ns = subject["namespace"].as_str().or(binding_namespace).unwrap_or("");
            identity.user == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

impl Rbac {
    /// Starts following `store`; decisions fail closed until the first load is done.
    pub fn start(store: Arc<dyn Store>, tasks: &crate::tasks::Tasks) -> Arc<Self> {
        let rbac = Arc::new(Self { objects: RwLock::new(Objects::default()) });
        let weak = Arc::downgrade(&rbac);
        tasks.spawn(async move {
            loop {
                let Some(rbac) = weak.upgrade() else { return };
                if let Err(e) = rbac.follow(store.as_ref()).await {
                    tracing::warn!(error = %e, "RBAC cache lost its watch; reloading");
                }
                drop(rbac);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        rbac
    }

    async fn follow(&self, store: &dyn Store) -> Result<(), crate::store::StoreError> {
        let all = store.range(RangeRequest { range: KeyRange::prefix(PREFIX), ..Default::default() }).await?;
        let loaded: HashMap<String, Value> = all
            .kvs
            .iter()
            .filter_map(|kv| Some((String::from_utf8_lossy(&kv.key).into_owned(), serde_json::from_slice(&kv.value).ok()?)))
            .collect();
        self.objects.write().0 = loaded;
        let mut events = store.watch(WatchRequest { range: KeyRange::prefix(PREFIX), start_revision: all.revision + 1 }).await?;
        while let Some(batch) = events.next().await {
            let mut objects = self.objects.write();
            for ev in batch? {
                let key = String::from_utf8_lossy(&ev.kv.key).into_owned();
                match ev.kind {
                    EventKind::Put => {
                        if let Ok(v) = serde_json::from_slice(&ev.kv.value) {
                            objects.0.insert(key, v);
                        }
                    }
                    EventKind::Delete => {
                        objects.0.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether `identity` may do `a`.
    pub fn allowed(&self, identity: &Identity, a: &Attributes<'_>) -> bool {
        if identity.in_group(MASTERS_GROUP) {
            return true;
        }
        let objects = self.objects.read();
        let role = |kind: &str, namespace: Option<&str>, name: &str| -> Option<&Value> {
            match (kind, namespace) {
                ("ClusterRole", _) => objects.0.get(&format!("{PREFIX}clusterroles/{name}")),
                ("Role", Some(ns)) => objects.0.get(&format!("{PREFIX}roles/{ns}/{name}")),
                _ => None,
            }
        };
        objects.0.iter().any(|(key, binding)| {
            let namespace = binding["metadata"]["namespace"].as_str();
            let cluster_wide = key.starts_with(&format!("{PREFIX}clusterrolebindings/"));
            let namespaced = key.starts_with(&format!("{PREFIX}rolebindings/"));
            // A RoleBinding grants only inside its namespace; a ClusterRoleBinding everywhere.
            let in_scope = cluster_wide || (namespaced && namespace.is_some() && namespace == a.namespace);
            in_scope
                && binding["subjects"].as_array().into_iter().flatten().any(|s| subject_matches(s, identity, namespace))
                && role(binding["roleRef"]["kind"].as_str().unwrap_or(""), namespace, binding["roleRef"]["name"].as_str().unwrap_or(""))
                    .is_some_and(|r| r["rules"].as_array().into_iter().flatten().any(|rule| rule_allows(rule, a)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rbac(objects: Vec<(&str, Value)>) -> Rbac {
        Rbac { objects: RwLock::new(Objects(objects.into_iter().map(|(k, v)| (format!("{PREFIX}{k}"), v)).collect())) }
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
    }
}
