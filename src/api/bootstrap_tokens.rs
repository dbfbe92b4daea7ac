//! Agent-only bootstrap tokens, stored as Kubernetes stores them: Secrets
//! `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`. `orch token`
//! manages them through the API; the node-bootstrap endpoint checks them here.

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

/// Whether `<id>.<secret>` is a stored, unexpired bootstrap token.
pub async fn valid(store: &dyn Store, token: &str) -> bool {
    let Some((id, secret)) = token.split_once('.') else { return false };
    let secrets = registry::lookup("", "v1", "secrets").expect("secrets are built in");
    let scope = Scope::new(secrets, Some(KUBE_SYSTEM), ServiceNetwork::default());
    let Ok(stored) = objects::get(store, &scope, &format!("bootstrap-token-{id}")).await else { return false };
    let unexpired = match field(&stored, "expiration") {
        Some(exp) => time::OffsetDateTime::parse(&exp, &time::format_description::well_known::Rfc3339)
            .is_ok_and(|t| t > time::OffsetDateTime::now_utc()),
        None => true,
    };
    stored["type"] == SECRET_TYPE && field(&stored, "token-secret").as_deref() == Some(secret) && unexpired
}
