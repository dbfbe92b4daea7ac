//! The Node authorizer (with NodeRestriction), as kube-apiserver's: what a node agent
//! (`system:node:<name>` in `system:nodes`) may do. It reads the Secrets, ConfigMaps,
//! PersistentVolumeClaims, PersistentVolumes and ServiceAccount tokens that pods bound to it
//! refer to ([`graph`]), what every node needs (pods, services, nodes, …), and changes only its
//! own Node and Lease and the pods bound to it; everything else is left to RBAC (which grants
//! nodes nothing by default).

pub mod graph;

use serde_json::Value;

use super::rbac::Attributes;
use crate::k8s::names::NODE_LEASE_NAMESPACE;
use crate::pki::Identity;
use graph::{Graph, Kind};

/// The group of node agents.
pub const NODES_GROUP: &str = "system:nodes";

/// The longest token a node gets for a pod, in seconds (longer requests are capped to it, as
/// kube-apiserver caps them to `--service-account-max-token-expiration`).
pub const MAX_TOKEN_SECONDS: i64 = 24 * 3600;

/// The node an identity acts for, if it is a node agent.
pub fn node_of(identity: &Identity) -> Option<&str> {
    identity.in_group(NODES_GROUP).then(|| identity.user.strip_prefix("system:node:")).flatten()
}

/// The authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Allowed if the object written is the node's own, before and after (see [`owns`]).
    AllowIfOwned,
    /// A TokenRequest, allowed if it is bound to a pod on the node ([`check_token_request`]).
    AllowBoundToken,
    /// Not allowed by this authorizer; RBAC decides. The reason (if any) ends the message of
    /// a refusal, as kube-apiserver writes it.
    NoOpinion(Option<String>),
}

/// Where the kubelet posts Events about its Node.
const NODE_EVENTS_NAMESPACE: &str = "default";

const READ: &[&str] = &["get", "list", "watch"];

/// The kinds whose objects a node reads only when its pods refer to them.
fn graph_kind(group: &str, resource: &str) -> Option<Kind> {
    match (group, resource) {
        ("", "secrets") => Some(Kind::Secret),
        ("", "configmaps") => Some(Kind::ConfigMap),
        ("", "persistentvolumeclaims") => Some(Kind::Claim),
        _ => None,
    }
}

/// Decides a node's request by its attributes and the graph; objects written are checked with
/// [`owns`].
pub fn decide(graph: &Graph, node: &str, a: &Attributes<'_>) -> Decision {
    let read = READ.contains(&a.verb);
    let refuse = |why: String| Decision::NoOpinion(Some(why));
    if let Some(kind) = graph_kind(a.group, a.resource) {
        return match (read, a.namespace, a.name) {
            (false, _, _) => refuse("can only read resources of this type".into()),
            (true, Some(ns), Some(name)) if graph.refers(node, kind, ns, name) => Decision::Allow,
            (true, Some(_), Some(_)) => refuse(format!("no relationship found between node '{node}' and this object")),
            _ => refuse("can only get individual resources of this type".into()),
        };
    }
    match (a.group, a.resource) {
        ("", "persistentvolumes") => match (read, a.name) {
            (true, Some(name)) if graph.uses_volume(node, name) => Decision::Allow,
            (true, Some(_)) => refuse(format!("no relationship found between node '{node}' and this object")),
            (true, None) => refuse("can only get individual resources of this type".into()),
            (false, _) => refuse("can only read resources of this type".into()),
        },
        ("", "serviceaccounts/token") => match (a.verb, a.namespace, a.name) {
            ("create", Some(ns), Some(name)) if graph.refers(node, Kind::ServiceAccount, ns, name) => Decision::AllowBoundToken,
            ("create", Some(_), Some(_)) => refuse(format!("no relationship found between node '{node}' and this object")),
            _ => refuse("can only create tokens for individual service accounts".into()),
        },
        ("", "nodes") if read => Decision::Allow,
        ("", "nodes" | "nodes/status") if a.name.is_none_or(|n| n == node) => Decision::AllowIfOwned,
        ("", "pods" | "services" | "endpoints") if read => Decision::Allow,
        ("discovery.k8s.io", "endpointslices") | ("storage.k8s.io", _) | ("node.k8s.io", _) if read => Decision::Allow,
        ("", "pods/status" | "pods") if matches!(a.verb, "update" | "patch" | "delete") => Decision::AllowIfOwned,
        // Events about the node itself (in `default`, as the kubelet posts them) and about
        // its pods, in their namespaces: a node cannot flood other tenants' namespaces.
        ("", "events") | ("events.k8s.io", "events") if matches!(a.verb, "create" | "update" | "patch") => match a.namespace {
            Some(ns) if ns == NODE_EVENTS_NAMESPACE || graph.has_pod_in(node, ns) => Decision::Allow,
            _ => refuse(format!("node '{node}' has no pods in this namespace")),
        },
        ("coordination.k8s.io", "leases") if a.namespace == Some(NODE_LEASE_NAMESPACE) => {
            if read || a.name.is_none_or(|n| n == node) {
                Decision::AllowIfOwned
            } else {
                Decision::NoOpinion(None)
            }
        }
        _ => Decision::NoOpinion(None),
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

/// NodeRestriction on a node's TokenRequest in `namespace`: it must be bound to a pod bound to
/// the node (by name and uid); its lifetime is capped to [`MAX_TOKEN_SECONDS`]. Returns the
/// refusal's message.
pub fn check_token_request(graph: &Graph, node: &str, namespace: &str, request: &mut Value) -> Result<(), String> {
    let bound = &request["spec"]["boundObjectRef"];
    if !bound.is_object() {
        return Err(format!("node '{node}' requested a token not bound to a pod"));
    }
    if bound["kind"] != "Pod" {
        return Err(format!("node '{node}' requested a token bound to a {} instead of a pod", bound["kind"]));
    }
    let (name, uid) = (bound["name"].as_str().unwrap_or_default(), bound["uid"].as_str().unwrap_or_default());
    if uid.is_empty() {
        return Err(format!("node '{node}' requested a token with a pod binding without a uid"));
    }
    match graph.pod(namespace, name) {
        Some((on, _)) if on != node => Err(format!("node '{node}' requested a token bound to a pod scheduled on a different node")),
        Some((_, known)) if known != uid => Err(format!(
            "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
        )),
        Some(_) => {
            let seconds = &mut request["spec"]["expirationSeconds"];
            if seconds.as_i64().is_some_and(|s| s > MAX_TOKEN_SECONDS) {
                *seconds = MAX_TOKEN_SECONDS.into();
            }
            Ok(())
        }
        None => Err(format!("node '{node}' requested a token bound to a pod that is not bound to a node or does not exist")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::mirror::Mirror;
    use serde_json::json;

    fn attrs<'a>(verb: &'a str, group: &'a str, resource: &'a str, ns: Option<&'a str>, name: Option<&'a str>) -> Attributes<'a> {
        Attributes { verb, group, resource, namespace: ns, name }
    }

    fn graph() -> Graph {
        let g = Graph::default();
        let pod = json!({ "metadata": { "name": "p", "namespace": "team", "uid": "u1" }, "spec": { "nodeName": "n1",
            "serviceAccountName": "sa", "volumes": [{ "name": "s", "secret": { "secretName": "mine" } }] } });
        g.reset(graph::PODS, vec![(format!("{}team/p", graph::PODS), pod)]);
        g
    }

    #[test]
    fn nodes_change_only_what_is_theirs() {
        let g = graph();
        let me = Identity { user: "system:node:n1".into(), groups: vec![NODES_GROUP.into()] };
        let node = node_of(&me).unwrap();
        assert_eq!(node, "n1");
        let no = Decision::NoOpinion(None);
        assert_eq!(decide(&g, node, &attrs("list", "", "pods", None, None)), Decision::Allow);
        assert_eq!(decide(&g, node, &attrs("patch", "", "nodes/status", None, Some("n1"))), Decision::AllowIfOwned);
        assert_eq!(decide(&g, node, &attrs("patch", "", "nodes/status", None, Some("n2"))), no);
        assert_eq!(decide(&g, node, &attrs("create", "", "pods", Some("default"), None)), no);
        assert_eq!(decide(&g, node, &attrs("update", "coordination.k8s.io", "leases", Some("kube-node-lease"), Some("n2"))), no);
        assert!(owns("n1", "pods", &json!({ "spec": { "nodeName": "n1" } })));
        assert!(!owns("n1", "pods", &json!({ "spec": { "nodeName": "n2" } })));
        assert!(node_of(&Identity { user: "system:node:n1".into(), groups: vec![] }).is_none());
    }

    #[test]
    fn nodes_post_events_only_about_themselves_and_their_pods() {
        let g = graph();
        for (ns, allowed) in [(Some("team"), true), (Some("default"), true), (Some("other"), false), (None, false)] {
            for group in ["", "events.k8s.io"] {
                let decision = decide(&g, "n1", &attrs("create", group, "events", ns, None));
                assert_eq!(decision == Decision::Allow, allowed, "{group} events in {ns:?}: {decision:?}");
            }
        }
        assert_ne!(decide(&g, "n2", &attrs("create", "", "events", Some("team"), None)), Decision::Allow, "n2 has no pod in team");
        g.reset(graph::PODS, vec![]);
        assert_ne!(decide(&g, "n1", &attrs("patch", "", "events", Some("team"), Some("e"))), Decision::Allow, "its pod is gone");
    }

    #[test]
    fn nodes_read_only_what_their_pods_refer_to() {
        let g = graph();
        let refused = |d: Decision| match d {
            Decision::NoOpinion(Some(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(decide(&g, "n1", &attrs("get", "", "secrets", Some("team"), Some("mine"))), Decision::Allow);
        assert_eq!(decide(&g, "n1", &attrs("watch", "", "secrets", Some("team"), Some("mine"))), Decision::Allow, "a watch of one name");
        assert_eq!(
            refused(decide(&g, "n2", &attrs("get", "", "secrets", Some("team"), Some("mine")))),
            "no relationship found between node 'n2' and this object"
        );
        assert_eq!(refused(decide(&g, "n1", &attrs("list", "", "secrets", None, None))), "can only get individual resources of this type");
        assert_eq!(
            refused(decide(&g, "n1", &attrs("list", "", "configmaps", Some("team"), None))),
            "can only get individual resources of this type"
        );
        assert_eq!(
            refused(decide(&g, "n1", &attrs("delete", "", "secrets", Some("team"), Some("mine")))),
            "can only read resources of this type"
        );
        assert_eq!(
            refused(decide(&g, "n1", &attrs("get", "", "persistentvolumes", None, Some("pv")))),
            "no relationship found between node 'n1' and this object"
        );
        assert_eq!(decide(&g, "n1", &attrs("create", "", "serviceaccounts/token", Some("team"), Some("sa"))), Decision::AllowBoundToken);
        assert!(matches!(
            decide(&g, "n1", &attrs("create", "", "serviceaccounts/token", Some("team"), Some("default"))),
            Decision::NoOpinion(Some(_))
        ));
    }

    #[test]
    fn node_tokens_are_bound_to_their_pods_and_capped() {
        let g = graph();
        let request = |bound: Value, seconds: i64| json!({ "spec": { "boundObjectRef": bound, "expirationSeconds": seconds } });
        let mut ok = request(json!({ "kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u1" }), 1 << 40);
        assert_eq!(check_token_request(&g, "n1", "team", &mut ok), Ok(()));
        assert_eq!(ok["spec"]["expirationSeconds"], MAX_TOKEN_SECONDS);
        let mut short = request(json!({ "kind": "Pod", "name": "p", "uid": "u1" }), 3607);
        assert_eq!(check_token_request(&g, "n1", "team", &mut short), Ok(()));
        assert_eq!(short["spec"]["expirationSeconds"], 3607);
        for (node, mut req) in [
            ("n1", json!({ "spec": {} })),
            ("n1", request(json!({ "kind": "Secret", "name": "p", "uid": "u1" }), 3600)),
            ("n1", request(json!({ "kind": "Pod", "name": "p" }), 3600)),
            ("n1", request(json!({ "kind": "Pod", "name": "p", "uid": "old" }), 3600)),
            ("n1", request(json!({ "kind": "Pod", "name": "gone", "uid": "u1" }), 3600)),
            ("n2", request(json!({ "kind": "Pod", "name": "p", "uid": "u1" }), 3600)),
        ] {
            assert!(check_token_request(&g, node, "team", &mut req).is_err(), "{node}: {req}");
        }
    }
}
