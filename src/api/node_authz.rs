//! The Node authorizer (with NodeRestriction): what a node agent (`system:node:<name>` in
//! `system:nodes`) may do. It reads what running pods needs, and changes only its own Node
//! and Lease and the pods bound to it; everything else is left to RBAC (which grants nodes
//! nothing by default).

use serde_json::Value;

use super::rbac::Attributes;
use crate::k8s::names::NODE_LEASE_NAMESPACE;
use crate::pki::Identity;

/// The group of node agents.
pub const NODES_GROUP: &str = "system:nodes";

/// The node an identity acts for, if it is a node agent.
pub fn node_of(identity: &Identity) -> Option<&str> {
    identity.in_group(NODES_GROUP).then(|| identity.user.strip_prefix("system:node:")).flatten()
}

/// The authorizer's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Allowed if the object written is the node's own (see [`owns`]).
    AllowIfOwned,
    /// Not a node request this authorizer decides; RBAC decides.
    NoOpinion,
}

const READ: &[&str] = &["get", "list", "watch"];

/// Decides a node's request by its attributes alone; objects are checked with [`owns`].
pub fn decide(node: &str, a: &Attributes<'_>) -> Decision {
    let read = READ.contains(&a.verb);
    match (a.group, a.resource) {
        ("", "nodes") if read => Decision::Allow,
        ("", "nodes" | "nodes/status") if a.name.is_none_or(|n| n == node) => Decision::AllowIfOwned,
        ("", "pods" | "services" | "endpoints" | "persistentvolumes" | "persistentvolumeclaims" | "configmaps" | "secrets") if read => {
            Decision::Allow
        }
        ("discovery.k8s.io", "endpointslices") | ("storage.k8s.io", _) | ("node.k8s.io", _) if read => Decision::Allow,
        ("", "pods/status" | "pods") if matches!(a.verb, "update" | "patch" | "delete") => Decision::AllowIfOwned,
        ("", "serviceaccounts/token") if a.verb == "create" => Decision::Allow,
        ("", "events") | ("events.k8s.io", "events") if matches!(a.verb, "create" | "update" | "patch") => Decision::Allow,
        ("coordination.k8s.io", "leases") if a.namespace == Some(NODE_LEASE_NAMESPACE) => {
            if read || a.name.is_none_or(|n| n == node) {
                Decision::AllowIfOwned
            } else {
                Decision::NoOpinion
            }
        }
        _ => Decision::NoOpinion,
    }
}

/// Whether an object a node writes is its own: its Node, its Lease, or a pod bound to it.
pub fn owns(node: &str, plural: &str, obj: &Value) -> bool {
    match plural {
        "nodes" | "leases" => obj["metadata"]["name"] == node,
        "pods" => obj["spec"]["nodeName"] == node,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs<'a>(verb: &'a str, group: &'a str, resource: &'a str, ns: Option<&'a str>, name: Option<&'a str>) -> Attributes<'a> {
        Attributes { verb, group, resource, namespace: ns, name }
    }

    #[test]
    fn nodes_change_only_what_is_theirs() {
        let me = Identity { user: "system:node:n1".into(), groups: vec![NODES_GROUP.into()] };
        let node = node_of(&me).unwrap();
        assert_eq!(node, "n1");
        assert_eq!(decide(node, &attrs("list", "", "pods", None, None)), Decision::Allow);
        assert_eq!(decide(node, &attrs("patch", "", "nodes/status", None, Some("n1"))), Decision::AllowIfOwned);
        assert_eq!(decide(node, &attrs("patch", "", "nodes/status", None, Some("n2"))), Decision::NoOpinion);
        assert_eq!(decide(node, &attrs("create", "", "pods", Some("default"), None)), Decision::NoOpinion);
        assert_eq!(
            decide(node, &attrs("update", "coordination.k8s.io", "leases", Some("kube-node-lease"), Some("n2"))),
            Decision::NoOpinion
        );
        assert_eq!(decide(node, &attrs("delete", "", "configmaps", Some("default"), Some("x"))), Decision::NoOpinion);
        assert!(owns("n1", "pods", &json!({ "spec": { "nodeName": "n1" } })));
        assert!(!owns("n1", "pods", &json!({ "spec": { "nodeName": "n2" } })));
        assert!(node_of(&Identity { user: "system:node:n1".into(), groups: vec![] }).is_none());
    }
}
