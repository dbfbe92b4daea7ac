//! Authorisation: who may do what. Until RBAC lands, members of `system:masters` may do
//! everything and nobody else anything; every decision goes through [`allowed`], which is also
//! what SelfSubjectAccessReview (`kubectl auth can-i`) answers.

use serde_json::{json, Value};

use crate::pki::{Identity, MASTERS_GROUP};

/// Whether `identity` may `verb` the resource (the attributes are kept for RBAC).
pub fn allowed(identity: &Identity, _verb: &str, _group: &str, _resource: &str, _namespace: Option<&str>) -> bool {
    identity.in_group(MASTERS_GROUP)
}

/// Answers a SelfSubjectAccessReview about the caller.
pub fn self_subject_access_review(identity: &Identity, mut review: Value) -> Value {
    let attrs = &review["spec"]["resourceAttributes"];
    let text = |k: &str| attrs[k].as_str().unwrap_or("").to_string();
    let namespace = text("namespace");
    let ok = allowed(identity, &text("verb"), &text("group"), &text("resource"), Some(namespace.as_str()).filter(|n| !n.is_empty()));
    let reason = if ok { "member of system:masters" } else { "only system:masters is authorised until RBAC is available" };
    review["status"] = json!({ "allowed": ok, "reason": reason });
    review["metadata"] = json!({});
    review
}
