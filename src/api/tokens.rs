//! ServiceAccount tokens: JWTs the servers sign (HS256, with a key every server derives from
//! the cluster CA key, so all of them issue and verify the same tokens), issued by the
//! TokenRequest API (`serviceaccounts/<name>/token`) and accepted as `Authorization: Bearer`.
//! A token is only good for its audience, until it expires, and while its ServiceAccount (same
//! uid) exists.

use base64::Engine;
use ring::hmac;
use serde_json::{json, Value};

use crate::pki::Identity;

/// The issuer and default audience of tokens, as Kubernetes names them.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Default token lifetime (an hour, as kubectl create token asks).
const DEFAULT_SECONDS: i64 = 3600;
/// Shortest lifetime Kubernetes allows.
const MIN_SECONDS: i64 = 600;

#[derive(Clone)]
pub struct TokenKeys {
    key: hmac::Key,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What a verified token says.
pub struct Claims {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Claims {
    pub fn identity(&self) -> Identity {
        Identity {
            user: format!("system:serviceaccount:{}:{}", self.namespace, self.name),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{}", self.namespace),
                "system:authenticated".into(),
            ],
        }
    }
}

impl TokenKeys {
    /// The signing key derived from `secret` (the cluster CA key PEM on servers).
    pub fn derive(secret: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, &[b"orch service-account token key\0".as_slice(), secret].concat());
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, digest.as_ref()) }
    }

    /// Signs a token for ServiceAccount `namespace/name` (uid `uid`).
    pub fn issue(&self, namespace: &str, name: &str, uid: &str, audiences: &[String], seconds: Option<i64>, now: i64) -> (String, i64) {
        let exp = now + seconds.unwrap_or(DEFAULT_SECONDS).max(MIN_SECONDS);
        let audiences = if audiences.is_empty() { vec![ISSUER.to_string()] } else { audiences.to_vec() };
        let header = json!({ "alg": "HS256", "typ": "JWT" });
        let claims = json!({
            "iss": ISSUER, "sub": format!("system:serviceaccount:{namespace}:{name}"), "aud": audiences,
            "iat": now, "nbf": now, "exp": exp,
            "kubernetes.io": { "namespace": namespace, "serviceaccount": { "name": name, "uid": uid } },
        });
        let signing_input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let signature = hmac::sign(&self.key, signing_input.as_bytes());
        (format!("{signing_input}.{}", b64(signature.as_ref())), exp)
    }

    /// Verifies signature, lifetime and that the token is meant for this API server.
    pub fn verify(&self, token: &str, now: i64) -> Option<Claims> {
        let (signing_input, signature) = token.rsplit_once('.')?;
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature).ok()?;
        hmac::verify(&self.key, signing_input.as_bytes(), &signature).ok()?;
        let (_, payload) = signing_input.split_once('.')?;
        let claims: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let for_us = claims["aud"].as_array()?.iter().any(|a| a == ISSUER);
        let current = claims["nbf"].as_i64()? <= now + 60 && now < claims["exp"].as_i64()?;
        if claims["iss"] != ISSUER || !for_us || !current {
            return None;
        }
        let sa = &claims["kubernetes.io"];
        Some(Claims {
            namespace: sa["namespace"].as_str()?.to_string(),
            name: sa["serviceaccount"]["name"].as_str()?.to_string(),
            uid: sa["serviceaccount"]["uid"].as_str()?.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_for_their_audience_key_and_lifetime() {
        let keys = TokenKeys::derive(b"ca key");
        let (token, exp) = keys.issue("team", "robot", "u1", &[], None, 1_000);
        assert_eq!(exp, 1_000 + 3600);
        let claims = keys.verify(&token, 1_100).expect("valid token");
        assert_eq!(claims.identity().user, "system:serviceaccount:team:robot");
        assert!(keys.verify(&token, exp).is_none(), "expired");
        assert!(TokenKeys::derive(b"other ca").verify(&token, 1_100).is_none(), "another cluster's key");
        let (vault, _) = keys.issue("team", "robot", "u1", &["vault".to_string()], None, 1_000);
        assert!(keys.verify(&vault, 1_100).is_none(), "a token for another audience");
        let tampered = token.replacen('.', ".x", 1);
        assert!(keys.verify(&tampered, 1_100).is_none());
    }
}
