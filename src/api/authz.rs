//! Authorisation of every request, as kube-apiserver's `--authorization-mode=Node,RBAC`: the
//! Node authorizer first for node agents, then RBAC; a refusal is kube's 403 wording. Also the
//! SelfSubjectAccessReview (`kubectl auth can-i`), answered by the same chain.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use serde_json::{json, Value};

use super::node_authz::{self, graph::Graph, Decision};
use super::objects::{self, Scope};
use super::rbac::{Attributes, Rbac};
use super::status::ApiError;
use super::{read_body, subresources, ApiState};
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

/// An authorised request, as NodeRestriction looks at it.
pub struct NodeRequest<'a> {
    pub decision: &'a Decision,
    pub identity: &'a Identity,
    pub attributes: &'a Attributes<'a>,
    pub scope: &'a Scope<'a>,
}

/// NodeRestriction after the Node authorizer allowed a request: a node changes only its own
/// Node and Lease and the pods bound to it, as stored (checked here) and as written (the node
/// returned, for [`not_owned`] checks of the object written); its TokenRequests are bound to
/// its pods and capped (the body returned is the checked request).
pub async fn node_restriction(
    state: &ApiState,
    request: NodeRequest<'_>,
    headers: &mut HeaderMap,
    body: Body,
) -> Result<(Option<String>, Body), ApiError> {
    let NodeRequest { decision, identity, attributes: a, scope } = request;
    let Some(node) = node_authz::node_of(identity) else { return Ok((None, body)) };
    match decision {
        Decision::AllowIfOwned if !matches!(a.verb, "get" | "list" | "watch") => {
            if let Some(name) = a.name {
                let stored = Scope::new(scope.resource, scope.namespace, scope.net);
                match objects::get(state.store.as_ref(), &stored, name).await {
                    Ok(current) if !node_authz::owns(node, scope.resource.plural, &current) => return Err(not_owned(node, a)),
                    Err(e) if a.verb == "delete" => return Err(e),
                    _ => {}
                }
            }
            Ok((Some(node.to_string()), body))
        }
        Decision::AllowBoundToken => {
            let raw = read_body(body).await?;
            let mut token_request = subresources::parse_token_request(headers, &raw)?;
            node_authz::check_token_request(&state.graph, node, a.namespace.unwrap_or_default(), &mut token_request)
                .map_err(|why| forbidden(identity, a, Some(&why)))?;
            headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
            Ok((None, Body::from(token_request.to_string())))
        }
        _ => Ok((None, body)),
    }
}

/// The refusal of a node's write to an object that is not its own.
pub fn not_owned(node: &str, a: &Attributes<'_>) -> ApiError {
    ApiError::forbidden_message(&format!(
        "{} \"{}\" is forbidden: node \"{node}\" may only change its own Node and Lease and the pods bound to it",
        a.resource,
        a.name.unwrap_or_default()
    ))
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
