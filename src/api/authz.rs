//! Authorisation of every request, as kube-apiserver's `--authorization-mode=Node,RBAC`: the
//! Node authorizer first for node agents, then RBAC; a refusal is kube's 403 wording. Also the
//! SelfSubjectAccessReview (`kubectl auth can-i`), answered by the same chain.

use serde_json::{json, Value};

use super::node_authz::{self, graph::Graph, Decision};
use super::rbac::{Attributes, Rbac};
use super::status::ApiError;
use crate::pki::Identity;

/// The Node authorizer's decision when it allows, or the 403 when neither authorizer does.
pub fn authorize(rbac: &Rbac, graph: &Graph, identity: &Identity, a: &Attributes<'_>) -> Result<Decision, ApiError> {
    let decision = node_authz::node_of(identity).map_or(Decision::NoOpinion(None), |node| node_authz::decide(graph, node, a));
    match decision {
        Decision::NoOpinion(_) if rbac.allowed(identity, a) => Ok(Decision::Allow),
        Decision::NoOpinion(why) => Err(forbidden(identity, a, why.as_deref())),
        allowed => Ok(allowed),
    }
}

/// kube-apiserver's refusal: `<resource> "<name>" is forbidden: User "<user>" cannot <verb>
/// resource "<resource/sub>" in API group "<group>" in the namespace "<ns>"[: <reason>]`.
pub fn forbidden(identity: &Identity, a: &Attributes<'_>, reason: Option<&str>) -> ApiError {
    let scope = match a.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let mut why = format!("User \"{}\" cannot {} resource \"{}\" in API group \"{}\" {scope}", identity.user, a.verb, a.resource, a.group);
    if let Some(reason) = reason.filter(|r| !r.is_empty()) {
        why = format!("{why}: {reason}");
    }
    let plural = a.resource.split('/').next().unwrap_or_default();
    ApiError::forbidden(a.group, plural, a.name, &why)
}

/// Answers a SelfSubjectAccessReview about the caller (resource or non-resource attributes).
pub fn self_subject_access_review(rbac: &Rbac, graph: &Graph, identity: &Identity, mut review: Value) -> Value {
    let spec = &review["spec"];
    let ok = if let Some(path) = spec["nonResourceAttributes"]["path"].as_str() {
        rbac.allowed_path(identity, spec["nonResourceAttributes"]["verb"].as_str().unwrap_or(""), path)
    } else {
        let attrs = &spec["resourceAttributes"];
        let text = |k: &str| attrs[k].as_str().unwrap_or("").to_string();
        let resource = match text("subresource") {
            sub if sub.is_empty() => text("resource"),
            sub => format!("{}/{sub}", text("resource")),
        };
        let (verb, group, namespace, name) = (text("verb"), text("group"), text("namespace"), text("name"));
        let a = Attributes {
            verb: &verb,
            group: &group,
            resource: &resource,
            namespace: Some(namespace.as_str()).filter(|n| !n.is_empty()),
            name: Some(name.as_str()).filter(|n| !n.is_empty()),
        };
        authorize(rbac, graph, identity, &a).is_ok()
    };
    let reason = if ok { "allowed by RBAC" } else { "no RBAC rule allows it" };
    review["status"] = json!({ "allowed": ok, "reason": reason });
    review["metadata"] = json!({});
    review
}
