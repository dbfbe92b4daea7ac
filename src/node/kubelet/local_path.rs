//! The kubelet's half of local-path reclaiming: `DELETE /localPath?path=<dir>` removes the
//! directory of a released local-path volume on this node. Only an absolute, normalised path
//! whose last component is named as the provisioner names volumes
//! (`pvc-<uid>_<namespace>_<claim>`) is removed, and never through a symlink; a path that is
//! already gone is success (the request is repeated until the volume is deleted).

use std::collections::HashMap;
use std::path::{Component, Path};

use axum::extract::Query;
use axum::http::StatusCode;

use crate::k8s::local_path::is_volume_directory;

/// Why a directory was not removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error("{0:?} is not the directory of a local-path volume")]
    NotAVolume(String),
    #[error("removing {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Removes the volume directory `path` (see the module's rules).
pub fn remove(path: &str) -> Result<(), RemoveError> {
    let p = Path::new(path);
    let normal = p.is_absolute() && p.components().skip(1).all(|c| matches!(c, Component::Normal(_)));
    let named = p.file_name().and_then(|n| n.to_str()).is_some_and(is_volume_directory);
    if !normal || !named {
        return Err(RemoveError::NotAVolume(path.to_string()));
    }
    let io = |source| RemoveError::Io { path: path.to_string(), source };
    match std::fs::symlink_metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
        Ok(m) if !m.is_dir() => return Err(RemoveError::NotAVolume(path.to_string())),
        Ok(_) => {}
    }
    std::fs::remove_dir_all(p).map_err(io)?;
    tracing::info!(%path, "removed a local-path volume's directory");
    Ok(())
}

/// The route's handler.
pub async fn handle(Query(query): Query<HashMap<String, String>>) -> (StatusCode, String) {
    let Some(path) = query.get("path") else { return (StatusCode::BAD_REQUEST, "missing path".into()) };
    let path = path.clone();
    match tokio::task::spawn_blocking(move || remove(&path)).await {
        Ok(Ok(())) => (StatusCode::OK, "removed".into()),
        Ok(Err(e @ RemoveError::NotAVolume(_))) => (StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_volume_directories() {
        let root = tempfile::tempdir().unwrap();
        let vol = root.path().join("pvc-1_ns_data");
        std::fs::create_dir_all(vol.join("sub")).unwrap();
        std::fs::write(vol.join("sub/f"), "x").unwrap();
        let outside = root.path().join("keep");
        std::fs::create_dir(&outside).unwrap();
        let link = root.path().join("pvc-2_ns_data");
        std::os::unix::fs::symlink(&outside, &link).unwrap();

        for bad in [outside.to_str().unwrap().to_string(), format!("{}/../pvc-1_ns_data", outside.display()), "pvc-1_ns_data".into()] {
            assert!(matches!(remove(&bad), Err(RemoveError::NotAVolume(_))), "{bad}");
        }
        assert!(matches!(remove(link.to_str().unwrap()), Err(RemoveError::NotAVolume(_))), "a symlink");
        assert!(outside.exists());
        remove(vol.to_str().unwrap()).unwrap();
        assert!(!vol.exists());
        remove(vol.to_str().unwrap()).unwrap();
    }
}
