//! RBAC escalation prevention, as kube-apiserver's RBAC storage does it: writing a Role or
//! ClusterRole needs every permission it grants (held in its namespace, or cluster-wide for a
//! ClusterRole) or the `escalate` verb on it, and an aggregationRule needs full authority;
//! writing a (Cluster)RoleBinding needs the permissions of the role it refers to or the `bind`
//! verb on that role.

use serde_json::{json, Value};

use super::rules::{uncovered, Attributes};
use super::{aggregation, Rbac, GROUP};
use crate::api::status::ApiError;
use crate::pki::{Identity, MASTERS_GROUP};

/// Whether `identity` may write `obj` (a Role, ClusterRole, RoleBinding or ClusterRoleBinding,
/// by `plural`) in `namespace`; the refusal is kube-apiserver's 403.
pub fn check(rbac: &Rbac, identity: &Identity, plural: &str, namespace: Option<&str>, obj: &Value) -> Result<(), ApiError> {
    if identity.in_group(MASTERS_GROUP) {
        return Ok(());
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let forbidden = |why: &str| ApiError::forbidden(GROUP, plural, Some(name).filter(|n| !n.is_empty()), why);
    let may = |verb: &str, resource: &str, target: &str| {
        let target = Some(target).filter(|n| !n.is_empty());
        rbac.allowed(identity, &Attributes { verb, group: GROUP, resource, namespace, name: target })
    };
    let wanted: Vec<Value> = match plural {
        "roles" | "clusterroles" => {
            if may("escalate", plural, name) {
                return Ok(());
            }
            if plural == "clusterroles" && aggregation::selectors(obj).is_some() {
                let full = [
                    json!({ "apiGroups": ["*"], "resources": ["*"], "verbs": ["*"] }),
                    json!({ "nonResourceURLs": ["*"], "verbs": ["*"] }),
                ];
                if !uncovered(rbac.rules_for(identity, None).iter(), &full).is_empty() {
                    return Err(forbidden("must have cluster-admin privileges to use the aggregationRule"));
                }
            }
            obj["rules"].as_array().cloned().unwrap_or_default()
        }
        "rolebindings" | "clusterrolebindings" => {
            let role_ref = &obj["roleRef"];
            let role_name = role_ref["name"].as_str().unwrap_or_default();
            let role_plural = if role_ref["kind"] == "ClusterRole" { "clusterroles" } else { "roles" };
            if may("bind", role_plural, role_name) {
                return Ok(());
            }
            rbac.role_rules(role_ref, namespace).ok_or_else(|| ApiError::not_found(GROUP, role_plural, role_name))?
        }
        _ => return Ok(()),
    };
    let missing = uncovered(rbac.rules_for(identity, namespace).iter(), &wanted);
    if missing.is_empty() {
        return Ok(());
    }
    let mut groups = identity.groups.clone();
    if !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    let groups: Vec<String> = groups.iter().map(|g| json!(g).to_string()).collect();
    Err(forbidden(&format!(
        "user {} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        json!(identity.user),
        groups.join(" "),
        missing.join("\n")
    )))
}

#[cfg(test)]
mod tests {
    use super::super::tests::rbac;
    use super::*;

    fn setup() -> Rbac {
        rbac(vec![
            // Every usual verb, but neither `escalate` nor `bind`.
            (
                "roles/team/admin",
                json!({ "rules": [{ "apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"] }] }),
            ),
            (
                "rolebindings/team/admin",
                json!({ "metadata": { "namespace": "team" }, "subjects": [{ "kind": "User", "name": "tenant" }], "roleRef": { "kind": "Role", "name": "admin" } }),
            ),
            (
                "clusterroles/cluster-admin",
                json!({ "rules": [{ "apiGroups": ["*"], "resources": ["*"], "verbs": ["*"] }, { "nonResourceURLs": ["*"], "verbs": ["*"] }] }),
            ),
            ("clusterroles/view", json!({ "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"] }] })),
            (
                "clusterroles/binder",
                json!({ "rules": [{ "apiGroups": [GROUP], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["view"] }] }),
            ),
            (
                "clusterrolebindings/binder",
                json!({ "subjects": [{ "kind": "User", "name": "binder" }], "roleRef": { "kind": "ClusterRole", "name": "binder" } }),
            ),
        ])
    }

    fn user(name: &str) -> Identity {
        Identity { user: name.into(), groups: vec![] }
    }

    #[test]
    fn roles_grant_only_what_their_writer_holds() {
        let r = setup();
        let tenant = user("tenant");
        let role = |rules: Value| json!({ "metadata": { "name": "r" }, "rules": rules });
        let secrets = json!([{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get"] }]);
        assert!(check(&r, &tenant, "roles", Some("team"), &role(secrets.clone())).is_ok(), "held in the namespace");
        let e = check(&r, &tenant, "roles", Some("other"), &role(secrets.clone())).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "roles.rbac.authorization.k8s.io \"r\" is forbidden: user \"tenant\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"
        );
        assert!(check(&r, &tenant, "clusterroles", None, &role(secrets)).is_err(), "namespace rights are not cluster rights");
        let urls = role(json!([{ "nonResourceURLs": ["/metrics"], "verbs": ["get"] }]));
        assert!(check(&r, &tenant, "roles", Some("team"), &urls).is_err(), "no URL rights in a namespace");
        let star = rbac(vec![
            ("roles/team/star", json!({ "rules": [{ "apiGroups": ["*"], "resources": ["*"], "verbs": ["*"] }] })),
            (
                "rolebindings/team/star",
                json!({ "metadata": { "namespace": "team" }, "subjects": [{ "kind": "User", "name": "tenant" }], "roleRef": { "kind": "Role", "name": "star" } }),
            ),
        ]);
        assert!(check(&star, &tenant, "roles", Some("team"), &urls).is_ok(), "`*` verbs include escalate");
        assert!(check(&star, &tenant, "clusterroles", None, &urls).is_err(), "only in the namespace");
        let mut aggregated = role(json!([]));
        aggregated["aggregationRule"] = json!({ "clusterRoleSelectors": [{ "matchLabels": { "x": "y" } }] });
        assert!(check(&r, &tenant, "clusterroles", None, &aggregated)
            .unwrap_err()
            .message
            .ends_with("must have cluster-admin privileges to use the aggregationRule"));
    }

    #[test]
    fn bindings_need_the_roles_rights_or_bind() {
        let r = setup();
        let binding = |kind: &str, name: &str| json!({ "metadata": { "name": "b" }, "roleRef": { "kind": kind, "name": name }, "subjects": [{ "kind": "User", "name": "x" }] });
        let tenant = user("tenant");
        assert!(
            check(&r, &tenant, "rolebindings", Some("team"), &binding("ClusterRole", "view")).is_ok(),
            "tenant holds view's rights in team"
        );
        assert!(check(&r, &tenant, "rolebindings", Some("team"), &binding("ClusterRole", "cluster-admin")).is_err(), "no URL rights");
        assert!(check(&r, &tenant, "clusterrolebindings", None, &binding("ClusterRole", "view")).is_err(), "not cluster-wide");
        assert_eq!(check(&r, &tenant, "rolebindings", Some("team"), &binding("ClusterRole", "missing")).unwrap_err().code, 404);
        let binder = user("binder");
        assert!(check(&r, &binder, "clusterrolebindings", None, &binding("ClusterRole", "view")).is_ok(), "bind on view");
        assert!(check(&r, &binder, "clusterrolebindings", None, &binding("ClusterRole", "cluster-admin")).is_err(), "bind is per name");
    }
}
