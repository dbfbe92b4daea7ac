//! Agent-only bootstrap tokens, stored as Kubernetes stores them: Secrets
//! `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`. `orch token`
//! manages them through the API; the node-bootstrap endpoint checks them here with
//! kube-apiserver's bootstrap authenticator's rules: the Secret's `token-id` matches, it is
//! not being deleted, `usage-bootstrap-authentication` is `true`, `expiration` (RFC 3339) is
//! in the future (an unparsable one counts as expired), every `auth-extra-groups` entry is a
//! `system:bootstrappers:` group, and the secret matches (in constant time).

use base64::Engine;
use serde_json::{json, Value};

use super::objects::{self, Scope};
use super::{registry, ServiceNetwork};
use crate::k8s::names::KUBE_SYSTEM;
use crate::store::Store;

pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A field of a Secret's data, decoded.
pub fn field(secret: &Value, key: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::STANDARD.decode(secret["data"][key].as_str()?).ok()?;
    String::from_utf8(raw).ok()
}

/// The Secret recording token `<id>.<secret>`, expiring at `expiration` (RFC 3339) if given.
pub fn secret_for(id: &str, secret: &str, expiration: Option<&str>, description: &str) -> Value {
    let mut data = json!({
        "token-id": b64(id), "token-secret": b64(secret), "description": b64(description),
        "usage-bootstrap-authentication": b64("true"),
    });
    if let Some(exp) = expiration {
        data["expiration"] = json!(b64(exp));
    }
    json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": format!("bootstrap-token-{id}"), "namespace": KUBE_SYSTEM }, "type": SECRET_TYPE, "data": data })
}

/// Whether `group` may appear in `auth-extra-groups` (kube's `ValidateBootstrapGroupName`).
fn valid_extra_group(group: &str) -> bool {
    let Some(rest) = group.strip_prefix("system:bootstrappers:") else { return false };
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-';
    (1..=256).contains(&rest.len())
        && rest.bytes().all(allowed)
        && rest.bytes().last().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Whether the stored `secret` admits token `<id>.<token_secret>` for authentication now.
fn admits(stored: &Value, id: &str, token_secret: &str, now: time::OffsetDateTime) -> bool {
    let unexpired = match field(stored, "expiration") {
        Some(exp) => time::OffsetDateTime::parse(&exp, &time::format_description::well_known::Rfc3339).is_ok_and(|t| t > now),
        None => true,
    };
    let groups_valid = field(stored, "auth-extra-groups").is_none_or(|g| g.split(',').all(|g| valid_extra_group(g.trim())));
    let stored_secret = field(stored, "token-secret").unwrap_or_default();
    stored["type"] == SECRET_TYPE
        && stored["metadata"]["deletionTimestamp"].is_null()
        && field(stored, "token-id").as_deref() == Some(id)
        && field(stored, "usage-bootstrap-authentication").as_deref() == Some("true")
        && unexpired
        && groups_valid
        && crate::pki::constant_time_eq(stored_secret.as_bytes(), token_secret.as_bytes())
}

/// Whether `<id>.<secret>` is a stored bootstrap token valid for authentication now.
pub async fn valid(store: &dyn Store, token: &str) -> bool {
    if !crate::pki::is_bootstrap(token) {
        return false;
    }
    let Some((id, secret)) = token.split_once('.') else { return false };
    let secrets = registry::lookup("", "v1", "secrets").expect("secrets are built in");
    let scope = Scope::new(secrets, Some(KUBE_SYSTEM), ServiceNetwork::default());
    let Ok(stored) = objects::get(store, &scope, &format!("bootstrap-token-{id}")).await else { return false };
    admits(&stored, id, secret, time::OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }

    #[test]
    fn a_created_token_is_admitted_only_with_its_secret() {
        let stored = secret_for("abcdef", "0123456789abcdef", None, "");
        assert!(admits(&stored, "abcdef", "0123456789abcdef", now()));
        assert!(!admits(&stored, "abcdef", "0123456789abcdeg", now()));
        assert!(!admits(&stored, "abcdeg", "0123456789abcdef", now()), "the token-id must match");
    }

    #[test]
    fn usage_expiration_groups_and_deletion_are_honoured() {
        let ok = |f: &dyn Fn(&mut Value)| {
            let mut stored = secret_for("abcdef", "0123456789abcdef", Some("2999-01-01T00:00:00Z"), "");
            f(&mut stored);
            admits(&stored, "abcdef", "0123456789abcdef", now())
        };
        assert!(ok(&|_| {}));
        assert!(!ok(&|s| s["data"]["usage-bootstrap-authentication"] = json!(b64("false"))));
        assert!(!ok(&|s| {
            s["data"].as_object_mut().unwrap().remove("usage-bootstrap-authentication");
        }));
        assert!(!ok(&|s| s["data"]["expiration"] = json!(b64("2001-01-01T00:00:00Z"))));
        assert!(!ok(&|s| s["data"]["expiration"] = json!(b64("tomorrow"))));
        assert!(ok(&|s| s["data"]["auth-extra-groups"] = json!(b64("system:bootstrappers:worker,system:bootstrappers:edge"))));
        assert!(!ok(&|s| s["data"]["auth-extra-groups"] = json!(b64("system:masters"))));
        assert!(!ok(&|s| s["data"]["auth-extra-groups"] = json!(b64("system:bootstrappers:"))));
        assert!(!ok(&|s| s["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:00Z")));
        assert!(!ok(&|s| s["type"] = json!("Opaque")));
    }
}
