//! SelfSubjectAccessReview (`kubectl auth can-i`): the caller asks the same authoriser every
//! request goes through ([`super::rbac::Rbac`]).

use serde_json::{json, Value};

use super::rbac::{Attributes, Rbac};
use crate::pki::Identity;

/// Answers a SelfSubjectAccessReview about the caller.
pub fn self_subject_access_review(rbac: &Rbac, identity: &Identity, mut review: Value) -> Value {
    let attrs = &review["spec"]["resourceAttributes"];
    let text = |k: &str| attrs[k].as_str().unwrap_or("").to_string();
    let (verb, group, resource, namespace, name) = (text("verb"), text("group"), text("resource"), text("namespace"), text("name"));
    let ok = rbac.allowed(
        identity,
        &Attributes {
            verb: &verb,
            group: &group,
            resource: &resource,
            namespace: Some(namespace.as_str()).filter(|n| !n.is_empty()),
            name: Some(name.as_str()).filter(|n| !n.is_empty()),
        },
    );
    let reason = if ok { "allowed by RBAC" } else { "no RBAC rule allows it" };
    review["status"] = json!({ "allowed": ok, "reason": reason });
    review["metadata"] = json!({});
    review
}
