//! k3s's managed encryption configuration (`--secrets-encryption`): `secrets` only, the keys
//! of `aescbc` and `secretbox`, `identity` last when enabled and first when disabled; the key
//! operations behind `secrets-encrypt prepare | rotate | rotate-keys | enable | disable`, the
//! rotation stages and the status k3s reports, with its JSON field names.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::{EncryptionConfiguration, Key, Keys, ProviderConfiguration};

pub const STAGE_START: &str = "start";
pub const STAGE_PREPARE: &str = "prepare";
pub const STAGE_ROTATE: &str = "rotate";
pub const STAGE_REENCRYPT_ACTIVE: &str = "reencrypt_active";
pub const STAGE_REENCRYPT_FINISHED: &str = "reencrypt_finished";
/// Asks for rotate-keys (k3s ≥ 1.28: new key, re-encrypt, drop the old one).
pub const STAGE_ROTATE_KEYS: &str = "rotate_keys";

/// How long k3s's keys are, in bytes.
const KEY_SIZE: usize = 32;

/// Which provider encrypts (`--secrets-encryption-provider`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProviderKind {
    #[default]
    Aescbc,
    Secretbox,
}

impl std::str::FromStr for ProviderKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "aescbc" => Ok(ProviderKind::Aescbc),
            "secretbox" => Ok(ProviderKind::Secretbox),
            other => Err(format!("{other:?}: use aescbc or secretbox")),
        }
    }
}

impl ProviderKind {
    /// The flag's spelling.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Aescbc => "aescbc",
            ProviderKind::Secretbox => "secretbox",
        }
    }

    fn key_name(self) -> &'static str {
        match self {
            ProviderKind::Aescbc => "aescbckey",
            ProviderKind::Secretbox => "secretboxkey",
        }
    }
}

/// What `GET /v1-orch/encrypt/status` answers (k3s's `EncryptionState`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub stage: String,
    /// `<key type> <key name>`, e.g. `AES-CBC aescbckey`.
    pub activekey: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    #[serde(default)]
    pub hashmatch: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hasherror: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inactivekeys: Vec<String>,
}

/// What `PUT /v1-orch/encrypt/config` takes (k3s's `EncryptionRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub skip: bool,
}

/// The keys of a managed configuration and whether it encrypts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedKeys {
    pub aescbc: Vec<Key>,
    pub secretbox: Vec<Key>,
    pub enabled: bool,
}

impl ManagedKeys {
    /// The first configuration k3s generates: one key of `kind`, enabled.
    pub fn generate(kind: ProviderKind) -> ManagedKeys {
        let mut keys = ManagedKeys { aescbc: vec![], secretbox: vec![], enabled: true };
        keys.of(kind).push(Key::random(kind.key_name(), KEY_SIZE));
        keys
    }

    /// The keys of a configuration in k3s's layout, or why it is not one.
    pub fn from_config(config: &EncryptionConfiguration) -> Result<ManagedKeys, String> {
        let not_managed = || {
            "the encryption configuration is not the one --secrets-encryption manages (one entry for secrets with aescbc, secretbox and identity providers): edit it by hand and run `orch secrets-encrypt reencrypt`".to_string()
        };
        let [entry] = config.resources.as_slice() else { return Err(not_managed()) };
        if entry.resources != ["secrets"] {
            return Err(not_managed());
        }
        let mut keys =
            ManagedKeys { aescbc: vec![], secretbox: vec![], enabled: entry.providers.last().is_some_and(|p| p.identity.is_some()) };
        for p in &entry.providers {
            match p {
                ProviderConfiguration { aescbc: Some(k), .. } => keys.aescbc.extend(k.keys.iter().cloned()),
                ProviderConfiguration { secretbox: Some(k), .. } => keys.secretbox.extend(k.keys.iter().cloned()),
                ProviderConfiguration { identity: Some(_), .. } => {}
                _ => return Err(not_managed()),
            }
        }
        if keys.enabled && entry.providers.first().is_some_and(|p| p.identity.is_some()) {
            keys.enabled = false;
        }
        Ok(keys)
    }

    /// k3s's layout: `kind`'s keys, the other kind's (if any) and identity; identity first
    /// when disabled.
    pub fn to_config(&self, kind: ProviderKind) -> EncryptionConfiguration {
        let aescbc = (!self.aescbc.is_empty())
            .then(|| ProviderConfiguration { aescbc: Some(Keys { keys: self.aescbc.clone() }), ..Default::default() });
        let secretbox = (!self.secretbox.is_empty())
            .then(|| ProviderConfiguration { secretbox: Some(Keys { keys: self.secretbox.clone() }), ..Default::default() });
        let keyed: Vec<ProviderConfiguration> = match kind {
            ProviderKind::Aescbc => [aescbc, secretbox].into_iter().flatten().collect(),
            ProviderKind::Secretbox => [secretbox, aescbc].into_iter().flatten().collect(),
        };
        let providers = if self.enabled {
            keyed.into_iter().chain([ProviderConfiguration::identity()]).collect()
        } else {
            [ProviderConfiguration::identity()].into_iter().chain(keyed).collect()
        };
        EncryptionConfiguration::new(&["secrets"], providers)
    }

    fn of(&mut self, kind: ProviderKind) -> &mut Vec<Key> {
        match kind {
            ProviderKind::Aescbc => &mut self.aescbc,
            ProviderKind::Secretbox => &mut self.secretbox,
        }
    }

    /// Adds a new key of `kind` last (`prepare`): it reads, it does not write yet.
    pub fn append_new(&mut self, kind: ProviderKind) {
        let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).expect("0 is a valid nanosecond");
        let stamp = now.format(&time::format_description::well_known::Rfc3339).expect("a timestamp always formats");
        self.of(kind).push(Key::random(&format!("{}-{stamp}", kind.key_name()), KEY_SIZE));
    }

    /// Moves the last key of `kind` first (`rotate`): it now encrypts.
    pub fn rotate(&mut self, kind: ProviderKind) {
        let keys = self.of(kind);
        if let Some(last) = keys.pop() {
            keys.insert(0, last);
        }
    }

    /// Removes the key no value uses after a re-encryption: the last of `kind`, or, when
    /// `kind` has a single key, the last of the other kind (the cluster moved between kinds).
    pub fn drop_oldest(&mut self, kind: ProviderKind) {
        let other = match kind {
            ProviderKind::Aescbc => ProviderKind::Secretbox,
            ProviderKind::Secretbox => ProviderKind::Aescbc,
        };
        if self.of(kind).len() == 1 && !self.of(other).is_empty() {
            self.of(other).pop();
        } else if self.of(kind).len() > 1 {
            self.of(kind).pop();
        }
    }
}

/// The status of `config`'s keys: the first key of the first provider is active, unless
/// identity comes first; the others only read.
pub fn key_status(config: &EncryptionConfiguration) -> Status {
    let mut status = Status::default();
    let mut active = true;
    for p in config.resources.first().map(|r| r.providers.as_slice()).unwrap_or_default() {
        let (kind, keys) = match p {
            ProviderConfiguration { aescbc: Some(k), .. } => ("AES-CBC", k),
            ProviderConfiguration { aesgcm: Some(k), .. } => ("AES-GCM", k),
            ProviderConfiguration { secretbox: Some(k), .. } => ("XSalsa20-POLY1305", k),
            _ => {
                active = false;
                continue;
            }
        };
        for key in &keys.keys {
            let named = format!("{kind} {}", key.name);
            if std::mem::take(&mut active) {
                status.activekey = named;
            } else {
                status.inactivekeys.push(named);
            }
        }
    }
    status.enable = Some(!status.activekey.is_empty());
    status
}

/// The hex SHA-256 of the configuration file, as k3s records it beside the stage.
pub fn config_hash(path: &Path) -> std::io::Result<String> {
    Ok(Sha256::digest(std::fs::read(path)?).iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_k3s_layout() {
        let keys = ManagedKeys::generate(ProviderKind::Aescbc);
        let config = keys.to_config(ProviderKind::Aescbc);
        let json = config.to_json();
        assert!(json.starts_with(r#"{"kind":"EncryptionConfiguration","apiVersion":"apiserver.config.k8s.io/v1","resources":[{"resources":["secrets"],"providers":[{"aescbc":{"keys":[{"name":"aescbckey","secret":""#), "{json}");
        assert!(json.ends_with(r#""}]}},{"identity":{}}]}]}"#), "{json}");
        assert_eq!(keys.aescbc[0].bytes().unwrap().len(), 32);
        assert_eq!(ManagedKeys::from_config(&config).unwrap(), keys);
        let status = key_status(&config);
        assert_eq!((status.activekey.as_str(), status.enable), ("AES-CBC aescbckey", Some(true)));
    }

    #[test]
    fn prepare_rotate_and_drop_as_k3s() {
        let mut keys = ManagedKeys::generate(ProviderKind::Aescbc);
        keys.append_new(ProviderKind::Aescbc);
        assert_eq!(keys.aescbc[0].name, "aescbckey", "prepare keeps the old key active");
        assert!(keys.aescbc[1].name.starts_with("aescbckey-20"), "{}", keys.aescbc[1].name);
        keys.rotate(ProviderKind::Aescbc);
        assert!(keys.aescbc[0].name.starts_with("aescbckey-"));
        keys.drop_oldest(ProviderKind::Aescbc);
        assert_eq!(keys.aescbc.len(), 1);
        assert!(keys.aescbc[0].name.starts_with("aescbckey-"));
        keys.drop_oldest(ProviderKind::Aescbc);
        assert_eq!(keys.aescbc.len(), 1, "the last key is never dropped");
    }

    #[test]
    fn disabled_puts_identity_first() {
        let mut keys = ManagedKeys::generate(ProviderKind::Secretbox);
        keys.enabled = false;
        let config = keys.to_config(ProviderKind::Secretbox);
        assert!(config.resources[0].providers[0].identity.is_some());
        assert_eq!(ManagedKeys::from_config(&config).unwrap().enabled, false);
        let status = key_status(&config);
        assert_eq!(status.enable, Some(false));
        assert_eq!(status.inactivekeys, ["XSalsa20-POLY1305 secretboxkey"]);
        let custom = EncryptionConfiguration::new(&["secrets", "configmaps"], vec![ProviderConfiguration::identity()]);
        assert!(ManagedKeys::from_config(&custom).is_err());
    }
}
