//! Encryption at rest (kube-apiserver's `--encryption-provider-config`, k3s's
//! `--secrets-encryption`): values of the configured resources are encrypted between the API
//! and the store by [`EncryptingStore`], with kube's providers (`aescbc`, `aesgcm`,
//! `secretbox`, `identity`) and value format (`k8s:enc:<provider>:v1:<key name>:<sealed>`).
//! The configuration is re-read on [`Encryption::reload`] (key rotation) without a restart.

mod aescbc;
mod aesgcm;
mod chain;
mod cipher;
pub mod config;
pub mod k3s;
mod secretbox;
mod store;
mod table;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

pub use cipher::TransformError;
pub use config::{ConfigError, EncryptionConfiguration};
pub use store::EncryptingStore;
pub use table::Table;

/// The encryption configuration in force, read from its file.
pub struct Encryption {
    path: PathBuf,
    table: RwLock<Arc<Table>>,
}

impl Encryption {
    /// Reads and checks the configuration at `path`.
    pub fn load(path: &Path) -> Result<Arc<Encryption>, ConfigError> {
        let table = Table::new(&EncryptionConfiguration::read(path)?)?;
        Ok(Arc::new(Encryption { path: path.to_path_buf(), table: RwLock::new(Arc::new(table)) }))
    }

    /// Reads the file again; the old configuration stays in force when the new one is invalid.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let table = Table::new(&EncryptionConfiguration::read(&self.path)?)?;
        *self.table.write() = Arc::new(table);
        tracing::info!(path = %self.path.display(), "encryption configuration reloaded");
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration in force now.
    pub fn table(&self) -> Arc<Table> {
        self.table.read().clone()
    }
}
