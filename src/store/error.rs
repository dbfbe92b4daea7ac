//! Errors of the store, shared by every implementation and carried over RPC unchanged.

use serde::{Deserialize, Serialize};

use super::types::Revision;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum StoreError {
    /// The requested revision is older than the last compaction (the API maps this to 410 Gone).
    #[error("required revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted { requested: Revision, compacted: Revision },
    #[error("required revision {requested} is a future revision (current {current})")]
    FutureRevision { requested: Revision, current: Revision },
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// No leader is known or the leader cannot be reached; retrying later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("corrupt data in store: {0}")]
    Corrupt(String),
    /// A stored value could not be decrypted (kube-apiserver's wording; the API answers 500).
    #[error("unable to transform key {key:?}: {message}")]
    Transform { key: String, message: String },
    #[error("store is shut down")]
    Closed,
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Storage(e.to_string())
    }
}
