//! The packaged local-path StorageClass, written as k3s writes its `local-storage.yaml` into
//! the auto-deployed manifests directory at every start, so users see it and the manifests
//! controller applies it (and keeps it applied). With `--disable local-storage` the file is
//! removed, as k3s removes disabled manifests, and the controller deletes the class. The
//! provisioner itself is built in (see `controllers::volume`), so unlike k3s's file this one
//! declares no provisioner Deployment.

use std::path::Path;

use crate::pki::PkiError;

/// The manifest's file name (k3s's).
const FILE: &str = "local-storage.yaml";

/// The StorageClass k3s packages: default, WaitForFirstConsumer, reclaim Delete.
const MANIFEST: &str = "\
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-path
  annotations:
    storageclass.kubernetes.io/is-default-class: \"true\"
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
";

/// Writes (`enabled`) or removes the manifest in `manifests_dir`.
pub fn stage(manifests_dir: &Path, enabled: bool) -> Result<(), PkiError> {
    let path = manifests_dir.join(FILE);
    if enabled {
        tracing::info!(path = %path.display(), "writing manifest");
        crate::pki::write_private(&path, MANIFEST)
    } else {
        match std::fs::remove_file(&path) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                Err(PkiError::Write { path: path.display().to_string(), source })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_default_class_and_removes_it_when_disabled() {
        let dir = tempfile::tempdir().unwrap();
        stage(dir.path(), true).unwrap();
        let class: k8s_openapi::api::storage::v1::StorageClass =
            serde_yaml::from_str(&std::fs::read_to_string(dir.path().join(FILE)).unwrap()).unwrap();
        assert_eq!(class.provisioner, "rancher.io/local-path");
        assert_eq!(class.volume_binding_mode.as_deref(), Some("WaitForFirstConsumer"));
        assert_eq!(class.metadata.annotations.unwrap()["storageclass.kubernetes.io/is-default-class"], "true");
        stage(dir.path(), false).unwrap();
        assert!(!dir.path().join(FILE).exists());
        stage(dir.path(), false).unwrap();
    }
}
