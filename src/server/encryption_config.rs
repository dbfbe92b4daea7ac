//! Where a server's encryption configuration comes from: `--encryption-provider-config FILE`,
//! else `<data-dir>/server/cred/encryption-config.json` (mode 600), which
//! `--secrets-encryption` generates on first start in k3s's layout and a joining server
//! receives from the cluster. A server with neither encrypts nothing and pays nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::api::encryption::k3s::{ManagedKeys, STAGE_START};
use crate::api::encryption::{ConfigError, Encryption, EncryptionConfiguration};

use super::secrets_encrypt::write_stage;
use super::{Config, ServerError};

fn cred_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("cred")
}

/// k3s's path of the generated configuration.
pub fn managed_path(data_dir: &Path) -> PathBuf {
    cred_dir(data_dir).join("encryption-config.json")
}

/// The rotation stage file, beside the generated configuration (k3s's `encryption-state.json`).
pub fn stage_path(data_dir: &Path) -> PathBuf {
    cred_dir(data_dir).join("encryption-state.json")
}

/// The configuration file in force, if any.
pub fn path(data_dir: &Path, config: &Config) -> Option<PathBuf> {
    config.encryption_provider_config.clone().or_else(|| Some(managed_path(data_dir)).filter(|p| p.exists()))
}

/// Stores the configuration a joining server received from the cluster, unless it has its own.
pub fn store_received(data_dir: &Path, config: &Config, received: &str) -> Result<(), ServerError> {
    if config.encryption_provider_config.is_some() || managed_path(data_dir).exists() {
        return Ok(());
    }
    crate::pki::private_dir(&cred_dir(data_dir))?;
    EncryptionConfiguration::parse(received)?.write(&managed_path(data_dir))?;
    tracing::info!("stored the cluster's encryption configuration");
    Ok(())
}

/// The encryption in force for this server: generated on the first start with
/// `--secrets-encryption`, `None` when nothing is configured.
pub fn load(data_dir: &Path, config: &Config) -> Result<Option<Arc<Encryption>>, ServerError> {
    let managed = managed_path(data_dir);
    if config.secrets_encryption && config.encryption_provider_config.is_none() && !managed.exists() {
        crate::pki::private_dir(&cred_dir(data_dir))?;
        let kind = config.secrets_encryption_provider;
        ManagedKeys::generate(kind).to_config(kind).write(&managed)?;
        tracing::info!(path = %managed.display(), "generated the secrets encryption configuration");
    }
    let Some(path) = path(data_dir, config) else { return Ok(None) };
    let encryption = Encryption::load(&path)?;
    let stage = stage_path(data_dir);
    if !stage.exists() {
        crate::pki::private_dir(&cred_dir(data_dir))?;
        write_stage(&stage, &path, STAGE_START).map_err(|e| ConfigError::Parse(format!("{}: {e}", stage.display())))?;
    }
    tracing::info!(path = %path.display(), "encrypting configured resources at rest");
    Ok(Some(encryption))
}
