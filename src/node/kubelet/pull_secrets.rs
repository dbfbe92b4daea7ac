//! imagePullSecrets: the registry credentials a pod's `kubernetes.io/dockerconfigjson` (or
//! legacy `kubernetes.io/dockercfg`) Secrets hold for the registry of an image.

use base64::Engine;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::Api;
use serde_json::Value;

use crate::node::runtime::images::reference::Reference;
use crate::node::runtime::RegistryAuth;

/// The names Docker Hub goes by in docker config files.
const DOCKER_HUB: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/"];

/// The credentials for `image` among the pod's imagePullSecrets (the first that matches);
/// Secrets that cannot be read are skipped with a log line, as the kubelet does.
pub async fn auth_for(client: &kube::Client, pod: &Pod, image: &str) -> Option<RegistryAuth> {
    let names: Vec<String> =
        pod.spec.as_ref()?.image_pull_secrets.as_ref()?.iter().map(|r| r.name.clone()).filter(|n| !n.is_empty()).collect();
    let registry = Reference::parse(image).ok()?.registry;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
    for name in names {
        let secret = match secrets.get(&name).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(secret = %name, error = %e, "cannot read an imagePullSecret; pulling without it");
                continue;
            }
        };
        let data = secret.data.unwrap_or_default();
        let config = [".dockerconfigjson", ".dockercfg"]
            .iter()
            .find_map(|key| data.get(*key))
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes.0).ok());
        if let Some(auth) = config.and_then(|c| auth_from_config(&c, &registry)) {
            return Some(auth);
        }
    }
    None
}

/// The entry for `registry` in a docker config (`{"auths": {...}}`, or the legacy flat map):
/// `username`/`password`, or `auth` = base64("user:password").
pub fn auth_from_config(config: &Value, registry: &str) -> Option<RegistryAuth> {
    let auths = config.get("auths").unwrap_or(config).as_object()?;
    let host_of = |key: &str| key.trim_start_matches("https://").trim_start_matches("http://").split('/').next().unwrap_or("").to_string();
    let wanted = |key: &str| {
        let host = host_of(key);
        host == registry || (DOCKER_HUB.contains(&registry) && (DOCKER_HUB.contains(&key) || DOCKER_HUB.contains(&host.as_str())))
    };
    let entry = auths.iter().find(|(key, _)| wanted(key)).map(|(_, v)| v)?;
    if let (Some(user), Some(password)) = (entry["username"].as_str(), entry["password"].as_str()) {
        return Some(RegistryAuth { username: user.into(), password: password.into() });
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(entry["auth"].as_str()?).ok()?;
    let (user, password) = String::from_utf8(decoded).ok()?.split_once(':').map(|(u, p)| (u.to_string(), p.to_string()))?;
    Some(RegistryAuth { username: user, password })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credentials_are_found_by_registry_host() {
        let config = json!({ "auths": {
            "registry.example.com:5000": { "username": "u", "password": "p" },
            "https://index.docker.io/v1/": { "auth": base64::engine::general_purpose::STANDARD.encode("hub:secret") },
        } });
        let auth = auth_from_config(&config, "registry.example.com:5000").unwrap();
        assert_eq!((auth.username.as_str(), auth.password.as_str()), ("u", "p"));
        let hub = auth_from_config(&config, "docker.io").unwrap();
        assert_eq!((hub.username.as_str(), hub.password.as_str()), ("hub", "secret"));
        assert!(auth_from_config(&config, "quay.io").is_none());
        // The legacy .dockercfg format is the bare map.
        let legacy = json!({ "quay.io": { "username": "q", "password": "r" } });
        assert_eq!(auth_from_config(&legacy, "quay.io").unwrap().username, "q");
    }
}
