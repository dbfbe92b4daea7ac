//! kube-apiserver's EncryptionConfiguration (`apiserver.config.k8s.io/v1`), read from JSON or
//! YAML, validated as kube validates it, and written back as k3s writes it (Go's field order).

use std::path::Path;

use base64::Engine;
use serde::{Deserialize, Serialize};

pub const KIND: &str = "EncryptionConfiguration";
pub const API_VERSION: &str = "apiserver.config.k8s.io/v1";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("error while reading file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error(transparent)]
    Write(#[from] crate::pki::PkiError),
    #[error("error while parsing file: {0}")]
    Parse(String),
    #[error("error while building transformers: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncryptionConfiguration {
    pub kind: String,
    pub api_version: String,
    pub resources: Vec<ResourceConfiguration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfiguration {
    /// `secrets`, `deployments.apps`, `*.apps`, `*.` (the core group) or `*.*`.
    pub resources: Vec<String>,
    /// The first encrypts writes; all are tried, in order, for reads.
    pub providers: Vec<ProviderConfiguration>,
}

/// Exactly one field is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aesgcm: Option<Keys>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aescbc: Option<Keys>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secretbox: Option<Keys>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    pub keys: Vec<Key>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub name: String,
    /// Base64 of the key's bytes.
    pub secret: String,
}

impl Key {
    /// A new key named `name` with `len` random bytes.
    pub fn random(name: &str, len: usize) -> Key {
        let mut bytes = vec![0u8; len];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        Key { name: name.to_string(), secret: base64::engine::general_purpose::STANDARD.encode(bytes) }
    }

    pub fn bytes(&self) -> Result<Vec<u8>, ConfigError> {
        base64::engine::general_purpose::STANDARD
            .decode(self.secret.trim())
            .map_err(|e| ConfigError::Invalid(format!("could not obtain secret for named key {}: {e}", self.name)))
    }
}

impl EncryptionConfiguration {
    /// A configuration of one entry for `resources` with `providers`.
    pub fn new(resources: &[&str], providers: Vec<ProviderConfiguration>) -> Self {
        Self {
            kind: KIND.into(),
            api_version: API_VERSION.into(),
            resources: vec![ResourceConfiguration { resources: resources.iter().map(|r| r.to_string()).collect(), providers }],
        }
    }

    /// Parses a file's contents (JSON or YAML) and checks its kind and version.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_yaml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        if config.kind != KIND || config.api_version != API_VERSION {
            return Err(ConfigError::Parse(format!(
                "no kind \"{}\" is registered for version \"{}\"; want kind {KIND}, apiVersion {API_VERSION}",
                config.kind, config.api_version
            )));
        }
        Ok(config)
    }

    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text)
    }

    /// The compact JSON k3s writes.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("the configuration always serialises")
    }

    /// Writes the configuration to `path`, owner-only (it holds keys), replacing it atomically.
    pub fn write(&self, path: &Path) -> Result<(), ConfigError> {
        Ok(crate::pki::write_private(path, &self.to_json())?)
    }
}

impl ProviderConfiguration {
    pub fn identity() -> Self {
        Self { identity: Some(Identity {}), ..Self::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kubes_yaml_and_writes_k3s_json() {
        let yaml = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets, '*.apps']\n    providers:\n      - aesgcm:\n          keys:\n            - name: key1\n              secret: c2VjcmV0IGlzIHNlY3VyZQ==\n      - identity: {}\n";
        let config = EncryptionConfiguration::parse(yaml).unwrap();
        assert_eq!(config.resources[0].resources, ["secrets", "*.apps"]);
        assert_eq!(config.resources[0].providers[0].aesgcm.as_ref().unwrap().keys[0].bytes().unwrap(), b"secret is secure");
        assert_eq!(
            config.to_json(),
            r#"{"kind":"EncryptionConfiguration","apiVersion":"apiserver.config.k8s.io/v1","resources":[{"resources":["secrets","*.apps"],"providers":[{"aesgcm":{"keys":[{"name":"key1","secret":"c2VjcmV0IGlzIHNlY3VyZQ=="}]}},{"identity":{}}]}]}"#
        );
        assert_eq!(EncryptionConfiguration::parse(&config.to_json()).unwrap(), config);
    }

    #[test]
    fn refuses_other_kinds_and_unknown_fields() {
        assert!(EncryptionConfiguration::parse("apiVersion: v1\nkind: ConfigMap\nresources: []\n").is_err());
        let typo = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aescbcc: {keys: []}\n";
        assert!(matches!(EncryptionConfiguration::parse(typo), Err(ConfigError::Parse(_))));
    }
}
