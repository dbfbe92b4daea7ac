//! hostPath volumes: the path checked against its declared type (and created for the
//! `…OrCreate` types), for pod volumes and for hostPath-backed PersistentVolumes alike.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::HostPathVolumeSource;

use super::{fs, FsError};

/// Why a hostPath cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HostPathError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("hostPath type check failed: {path} is not a {expected}")]
    Type { path: String, expected: &'static str },
}

/// Checks (and for the `…OrCreate` types creates) a hostPath.
pub fn host_path(h: &HostPathVolumeSource) -> Result<PathBuf, HostPathError> {
    let path = PathBuf::from(&h.path);
    let wrong_type = |expected| Err(HostPathError::Type { path: h.path.clone(), expected });
    match h.type_.as_deref().unwrap_or("") {
        "DirectoryOrCreate" => std::fs::create_dir_all(&path).map_err(fs("creating", &path))?,
        "FileOrCreate" if !path.exists() => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(fs("creating", parent))?;
            }
            std::fs::write(&path, b"").map_err(fs("creating", &path))?;
        }
        "Directory" if !path.is_dir() => return wrong_type("directory"),
        "File" if !path.is_file() => return wrong_type("file"),
        _ => {}
    }
    Ok(path)
}
