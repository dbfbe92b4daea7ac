//! Where a pod's persistentVolumeClaim is on this node: the bound PersistentVolume's hostPath or
//! local path. A claim that is missing, unbound or of another volume type is an error message
//! worded like the kubelet's.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use super::host_path::{host_path, HostPathError};

/// Why a claim has no volume on this node (the FailedMount message).
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("persistentvolumeclaim {0:?} not found")]
    NotFound(String),
    #[error("persistentvolumeclaim {0:?} is being deleted")]
    Deleting(String),
    #[error("persistentvolumeclaim {0:?} is not bound")]
    Unbound(String),
    #[error("persistentvolume {volume:?} of persistentvolumeclaim {claim:?} not found")]
    VolumeNotFound { volume: String, claim: String },
    #[error(transparent)]
    HostPath(#[from] HostPathError),
    #[error("local volume {volume:?}: path {path} does not exist")]
    LocalPathMissing { volume: String, path: String },
    #[error("persistentvolume {0:?}: only hostPath and local volumes are supported on this node")]
    Unsupported(String),
}

/// The name of the PersistentVolume claim `name` is bound to.
pub fn bound_volume(name: &str, claim: Option<&PersistentVolumeClaim>) -> Result<String, ClaimError> {
    let claim = claim.ok_or_else(|| ClaimError::NotFound(name.to_string()))?;
    if claim.metadata.deletion_timestamp.is_some() {
        return Err(ClaimError::Deleting(name.to_string()));
    }
    let volume = claim.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|v| !v.is_empty());
    volume.ok_or_else(|| ClaimError::Unbound(name.to_string()))
}

/// The host path of PersistentVolume `volume` (bound to claim `claim`).
pub fn volume_path(claim: &str, volume: &str, pv: Option<&PersistentVolume>) -> Result<PathBuf, ClaimError> {
    let pv = pv.ok_or_else(|| ClaimError::VolumeNotFound { volume: volume.to_string(), claim: claim.to_string() })?;
    let spec = pv.spec.as_ref();
    if let Some(h) = spec.and_then(|s| s.host_path.as_ref()) {
        let source = k8s_openapi::api::core::v1::HostPathVolumeSource { path: h.path.clone(), type_: h.type_.clone() };
        return Ok(host_path(&source)?);
    }
    if let Some(l) = spec.and_then(|s| s.local.as_ref()) {
        let path = PathBuf::from(&l.path);
        return if path.exists() {
            Ok(path)
        } else {
            Err(ClaimError::LocalPathMissing { volume: volume.to_string(), path: l.path.clone() })
        };
    }
    Err(ClaimError::Unsupported(volume.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_resolve_to_their_volume_path() {
        assert_eq!(bound_volume("data", None).unwrap_err().to_string(), "persistentvolumeclaim \"data\" not found");
        let pending: PersistentVolumeClaim = serde_json::from_value(json!({"metadata": {"name": "data"}, "spec": {}})).unwrap();
        assert_eq!(bound_volume("data", Some(&pending)).unwrap_err().to_string(), "persistentvolumeclaim \"data\" is not bound");
        let bound: PersistentVolumeClaim =
            serde_json::from_value(json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pv1"}})).unwrap();
        assert_eq!(bound_volume("data", Some(&bound)).unwrap(), "pv1");

        let dir = tempfile::tempdir().unwrap();
        let made = dir.path().join("made");
        let host: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": "pv1"},
            "spec": {"hostPath": {"path": made.to_str().unwrap(), "type": "DirectoryOrCreate"}}}))
        .unwrap();
        assert_eq!(volume_path("data", "pv1", Some(&host)).unwrap(), made);
        assert!(made.is_dir());
        let local: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": "pv2"},
            "spec": {"local": {"path": "/nonexistent/orch"}}}))
        .unwrap();
        assert!(volume_path("data", "pv2", Some(&local)).unwrap_err().to_string().contains("does not exist"));
        let nfs: PersistentVolume =
            serde_json::from_value(json!({"metadata": {"name": "pv3"}, "spec": {"nfs": {"server": "x", "path": "/"}}})).unwrap();
        assert!(volume_path("data", "pv3", Some(&nfs)).unwrap_err().to_string().contains("only hostPath and local"));
        assert!(volume_path("data", "pv4", None).unwrap_err().to_string().contains("not found"));
    }
}
