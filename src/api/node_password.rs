//! Node passwords (k3s's habit): the first machine to join under a node name records a salted
//! hash of its password in a Secret in `kube-system`; a later join under that name must present
//! the same password (compared in constant time), so another machine cannot take over an
//! existing node's name.

use base64::Engine;
use serde_json::json;

use super::objects::{self, Scope};
use super::{registry, ApiError, ServiceNetwork};
use crate::k8s::names::KUBE_SYSTEM;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum NodePasswordError {
    #[error("node name {0:?} is already in use by another machine (its node password differs)")]
    Taken(String),
    #[error(transparent)]
    Api(#[from] ApiError),
}

fn hash(salt: &str, password: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{salt}\0{password}").as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Records the password of a new node name, or checks it for a known one.
pub async fn check_or_record(store: &dyn Store, node: &str, password: &str) -> Result<(), NodePasswordError> {
    let secrets = registry::lookup("", "v1", "secrets").expect("secrets are built in");
    let scope = Scope::new(secrets, Some(KUBE_SYSTEM), ServiceNetwork::default());
    let name = format!("{node}.node-password.orch");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let decode = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    loop {
        match objects::get(store, &scope, &name).await {
            Ok(secret) => {
                let salt = decode(&secret["data"]["salt"]);
                return if crate::pki::constant_time_eq(decode(&secret["data"]["hash"]).as_bytes(), hash(&salt, password).as_bytes()) {
                    Ok(())
                } else {
                    Err(NodePasswordError::Taken(node.into()))
                };
            }
            Err(e) if e.reason == "NotFound" => {
                let salt: String = (0..16).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
                let secret = json!({
                    "metadata": { "name": name, "labels": { "orch.io/node-password": "true" } },
                    "type": "orch.io/node-password",
                    "data": { "salt": b64(&salt), "hash": b64(&hash(&salt, password)) },
                });
                match objects::create(store, &scope, secret, Some("orch-server")).await {
                    Ok(_) => return Ok(()),
                    // Another join under the same name won the race: check against its record.
                    Err(e) if e.reason == "AlreadyExists" => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}
