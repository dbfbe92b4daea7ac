//! `/etc/orch/registries.yaml`, in k3s's format: `mirrors` (registry → endpoints to try first,
//! `"*"` for every registry) and `configs` (endpoint host → auth and tls), and the list of
//! endpoints a pull tries for a registry.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::node::runtime::{RegistryAuth, Result, RuntimeError};

/// Where registries.yaml is read from.
pub const DEFAULT_PATH: &str = "/etc/orch/registries.yaml";

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// base64 of `user:password`
    #[serde(default)]
    pub auth: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegistryConfig {
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// The parsed registries.yaml (empty when the file does not exist).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Registries {
    #[serde(default)]
    pub mirrors: HashMap<String, Mirror>,
    #[serde(default)]
    pub configs: HashMap<String, RegistryConfig>,
}

fn is_loopback_host(host: &str) -> bool {
    let name = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host).trim_matches(|c| c == '[' || c == ']');
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host (with port) of an endpoint URL.
pub fn endpoint_host(endpoint: &str) -> &str {
    let rest = endpoint.split_once("://").map(|(_, r)| r).unwrap_or(endpoint);
    rest.split('/').next().unwrap_or(rest)
}

impl Registries {
    /// Reads `path`; a missing file means no mirrors and no credentials.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|e| RuntimeError::Invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(RuntimeError::Io { path: path.display().to_string(), source: e }),
        }
    }

    pub fn parse(text: &str) -> std::result::Result<Self, serde_yaml::Error> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(text)
    }

    /// Base URLs to try, in order, for `registry`: its mirrors (or the `*` mirrors), then the
    /// registry itself (HTTPS; plain HTTP for loopback registries; docker.io is
    /// registry-1.docker.io).
    pub fn endpoints(&self, registry: &str) -> Vec<String> {
        let mirrors = self.mirrors.get(registry).or_else(|| self.mirrors.get("*"));
        let mut out: Vec<String> = mirrors
            .map(|m| m.endpoint.iter().map(|e| if e.contains("://") { e.clone() } else { format!("https://{e}") }).collect())
            .unwrap_or_default();
        let default = match registry {
            "docker.io" => "https://registry-1.docker.io".to_string(),
            r if is_loopback_host(r) => format!("http://{r}"),
            r => format!("https://{r}"),
        };
        if !out.contains(&default) {
            out.push(default);
        }
        out.into_iter().map(|e| e.trim_end_matches('/').to_string()).collect()
    }

    /// Credentials configured for the endpoint's host.
    pub fn auth_for(&self, endpoint: &str) -> Option<RegistryAuth> {
        let auth = self.configs.get(endpoint_host(endpoint))?.auth.as_ref()?;
        if !auth.username.is_empty() {
            return Some(RegistryAuth { username: auth.username.clone(), password: auth.password.clone() });
        }
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD.decode(auth.auth.trim()).ok()?;
        let (u, p) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        Some(RegistryAuth { username: u.into(), password: p.into() })
    }

    /// The extra CA file configured for the endpoint's host.
    pub fn ca_file_for(&self, endpoint: &str) -> Option<&str> {
        self.configs.get(endpoint_host(endpoint))?.tls.as_ref()?.ca_file.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
      - "mirror.example:5443"
configs:
  "127.0.0.1:5000":
    auth:
      username: u
      password: p
  "mirror.example:5443":
    auth:
      auth: dXNlcjpwYXNz
    tls:
      ca_file: /etc/ssl/mirror.pem
"#;

    #[test]
    fn k3s_registries_yaml_parses_into_endpoints_and_credentials() {
        let r = Registries::parse(YAML).unwrap();
        assert_eq!(r.endpoints("docker.io"), ["http://127.0.0.1:5000", "https://mirror.example:5443", "https://registry-1.docker.io"]);
        assert_eq!(r.endpoints("quay.io"), ["https://quay.io"]);
        assert_eq!(r.endpoints("localhost:5000"), ["http://localhost:5000"]);
        assert_eq!(r.auth_for("http://127.0.0.1:5000").unwrap().username, "u");
        assert_eq!(r.auth_for("https://mirror.example:5443").unwrap(), RegistryAuth { username: "user".into(), password: "pass".into() });
        assert!(r.auth_for("https://quay.io").is_none());
        assert_eq!(r.ca_file_for("https://mirror.example:5443/v2"), Some("/etc/ssl/mirror.pem"));
        assert!(Registries::parse("").unwrap().mirrors.is_empty());
    }
}
