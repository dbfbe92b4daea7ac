//! kube's prefix transformers: an ordered list of providers for one resource. Writes use the
//! first provider's first key (`k8s:enc:<provider>:v1:<key name>:` + its sealed value, or the
//! plain value for `identity`); reads pick the provider and key named by the value's prefix.

use std::sync::Arc;

use super::aescbc::AesCbc;
use super::aesgcm::AesGcm;
use super::cipher::{KeyCipher, TransformError};
use super::config::{ConfigError, ProviderConfiguration};
use super::secretbox::Secretbox;

/// What every encrypted value starts with; `identity` refuses to read such values.
const ENCRYPTED: &[u8] = b"k8s:enc:";

struct NamedKey {
    /// `<name>:`, as it follows the provider's prefix.
    prefix: Vec<u8>,
    cipher: Box<dyn KeyCipher>,
}

enum Provider {
    Identity,
    Keyed {
        /// `k8s:enc:<provider>:v1:`
        prefix: &'static str,
        /// How kube's error names the provider: `AES` or `Secretbox`.
        family: &'static str,
        keys: Vec<NamedKey>,
    },
}

/// The providers of one resource, in the configuration's order.
pub struct Chain {
    providers: Vec<Provider>,
}

impl Chain {
    pub fn new(config: &[ProviderConfiguration]) -> Result<Arc<Chain>, ConfigError> {
        if config.is_empty() {
            return Err(ConfigError::Invalid("providers: Required value: at least one provider is required".into()));
        }
        let providers = config.iter().map(provider).collect::<Result<_, _>>()?;
        Ok(Arc::new(Chain { providers }))
    }

    /// The stored form of `plain` under the store key `key`.
    pub fn to_storage(&self, plain: &[u8], key: &[u8]) -> Vec<u8> {
        match &self.providers[0] {
            Provider::Identity => plain.to_vec(),
            Provider::Keyed { prefix, keys, .. } => {
                let first = &keys[0];
                [prefix.as_bytes(), &first.prefix, &first.cipher.seal(plain, key)].concat()
            }
        }
    }

    /// The plain value of `stored`, read with the provider and key its prefix names.
    pub fn from_storage(&self, stored: &[u8], key: &[u8]) -> Result<Vec<u8>, TransformError> {
        let mut errors = Vec::new();
        for provider in &self.providers {
            match provider {
                // Identity reads anything but encrypted values (kube lets a later provider try those).
                Provider::Identity if stored.starts_with(ENCRYPTED) => continue,
                Provider::Identity => return Ok(stored.to_vec()),
                Provider::Keyed { prefix, family, keys } => {
                    let Some(rest) = stored.strip_prefix(prefix.as_bytes()) else { continue };
                    match keys.iter().find_map(|k| rest.strip_prefix(k.prefix.as_slice()).map(|sealed| (k, sealed))) {
                        Some((k, sealed)) => match k.cipher.open(sealed, key) {
                            Ok(plain) => return Ok(plain),
                            Err(e) => errors.push(e),
                        },
                        None => errors.push(TransformError::NoMatchingKey(family)),
                    }
                }
            }
        }
        match errors.len() {
            0 => Err(TransformError::NoMatchingPrefix),
            1 => Err(errors.remove(0)),
            _ => Err(TransformError::Several(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))),
        }
    }
}

fn provider(config: &ProviderConfiguration) -> Result<Provider, ConfigError> {
    let set =
        [config.aesgcm.is_some(), config.aescbc.is_some(), config.secretbox.is_some(), config.identity.is_some(), config.kms.is_some()];
    if set.iter().filter(|s| **s).count() != 1 {
        return Err(ConfigError::Invalid("provider: Invalid value: exactly one provider must be configured".into()));
    }
    if config.kms.is_some() {
        return Err(ConfigError::Invalid("kms providers are not supported by orch (use aescbc, aesgcm or secretbox)".into()));
    }
    if config.identity.is_some() {
        return Ok(Provider::Identity);
    }
    let (prefix, family, keys, make): (_, _, _, fn(&[u8]) -> Option<Box<dyn KeyCipher>>) = if let Some(k) = &config.aescbc {
        ("k8s:enc:aescbc:v1:", "AES", k, |b| AesCbc::new(b).map(|c| Box::new(c) as _))
    } else if let Some(k) = &config.aesgcm {
        ("k8s:enc:aesgcm:v1:", "AES", k, |b| AesGcm::new(b).map(|c| Box::new(c) as _))
    } else {
        let k = config.secretbox.as_ref().expect("exactly one provider is set");
        ("k8s:enc:secretbox:v1:", "Secretbox", k, |b| Secretbox::new(b).map(|c| Box::new(c) as _))
    };
    if keys.keys.is_empty() {
        return Err(ConfigError::Invalid(format!("{} provider has no valid keys", prefix.split(':').nth(2).unwrap_or_default())));
    }
    let mut named = Vec::new();
    for key in &keys.keys {
        if key.name.is_empty() || named.iter().any(|n: &NamedKey| n.prefix == format!("{}:", key.name).into_bytes()) {
            return Err(ConfigError::Invalid(format!("key with invalid or duplicate name {:?} provided", key.name)));
        }
        let bytes = key.bytes()?;
        let cipher = make(&bytes).ok_or_else(|| {
            ConfigError::Invalid(format!("error while creating cipher for named key {}: invalid key size {}", key.name, bytes.len()))
        })?;
        named.push(NamedKey { prefix: format!("{}:", key.name).into_bytes(), cipher });
    }
    Ok(Provider::Keyed { prefix, family, keys: named })
}

#[cfg(test)]
mod tests {
    use super::super::config::{Key, Keys};
    use super::*;

    fn aescbc(names: &[&str]) -> ProviderConfiguration {
        let keys = names.iter().map(|n| Key { name: n.to_string(), secret: Key::random(n, 32).secret }).collect();
        ProviderConfiguration { aescbc: Some(Keys { keys }), ..Default::default() }
    }

    const KEY: &[u8] = b"/registry/core/secrets/default/s";

    #[test]
    fn writes_with_the_first_key_under_kubes_prefix_and_reads_any() {
        let old = aescbc(&["old"]);
        let chain = Chain::new(&[old.clone(), ProviderConfiguration::identity()]).unwrap();
        let stored = chain.to_storage(b"{\"data\":1}", KEY);
        assert!(stored.starts_with(b"k8s:enc:aescbc:v1:old:"), "{}", String::from_utf8_lossy(&stored));
        assert_eq!(chain.from_storage(&stored, KEY).unwrap(), b"{\"data\":1}");
        assert_eq!(chain.from_storage(b"{\"plain\":true}", KEY).unwrap(), b"{\"plain\":true}", "identity reads plain values");

        let mut rotated = aescbc(&["new"]);
        rotated.aescbc.as_mut().unwrap().keys.extend(old.aescbc.unwrap().keys);
        let chain2 = Chain::new(&[rotated, ProviderConfiguration::identity()]).unwrap();
        assert_eq!(chain2.from_storage(&stored, KEY).unwrap(), b"{\"data\":1}", "the old key still reads");
        assert!(chain2.to_storage(b"x", KEY).starts_with(b"k8s:enc:aescbc:v1:new:"));
    }

    #[test]
    fn unknown_keys_and_prefixes_fail_with_kubes_wording() {
        let stored = Chain::new(&[aescbc(&["a"])]).unwrap().to_storage(b"v", KEY);
        let other = Chain::new(&[aescbc(&["b"]), ProviderConfiguration::identity()]).unwrap();
        assert_eq!(other.from_storage(&stored, KEY).unwrap_err().to_string(), "no matching key was found for the provided AES transformer");
        let identity = Chain::new(&[ProviderConfiguration::identity()]).unwrap();
        assert_eq!(
            identity.from_storage(&stored, KEY).unwrap_err().to_string(),
            "no matching prefix found",
            "identity never reads encrypted values"
        );
        assert_eq!(Chain::new(&[aescbc(&["a"])]).unwrap().from_storage(b"{}", KEY).unwrap_err().to_string(), "no matching prefix found");
        let identity_first = Chain::new(&[ProviderConfiguration::identity(), aescbc(&["z"])]).unwrap();
        assert_eq!(identity_first.to_storage(b"plain", KEY), b"plain", "identity first writes plain values");
    }

    #[test]
    fn refuses_bad_configurations() {
        assert!(Chain::new(&[]).is_err());
        assert!(Chain::new(&[ProviderConfiguration::default()]).is_err());
        assert!(Chain::new(&[aescbc(&["dup", "dup"])]).is_err());
        let short = ProviderConfiguration { secretbox: Some(Keys { keys: vec![Key::random("k", 16)] }), ..Default::default() };
        assert!(Chain::new(&[short]).err().unwrap().to_string().contains("invalid key size 16"));
    }
}
