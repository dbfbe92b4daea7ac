//! A pod's volumes on the node: emptyDir under `<pod dir>/volumes/<name>` (a tmpfs for
//! `medium: Memory`), hostPath (created for the `…OrCreate` types), persistentVolumeClaim (the
//! bound PersistentVolume's hostPath or local path), and the file volumes of
//! [`super::file_volumes`], written atomically and refreshed while the pod runs ([`refresh`]).
//! Containers get them as bind mounts ([`mounts`]); a `subPath` (or `subPathExpr` expanded
//! with the container's environment) is its own bind mount of what was found inside the
//! volume without following the container's symlinks out of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, Volume};

use super::env::expand;
use super::file_volumes::{file_volume, safe_relative, FileVolumeError, VolumeContext};
use super::host_mounts::{self, MountError};
use super::host_path::{host_path, HostPathError};
use super::objects::ObjectError;
use super::{atomic_writer, fs, FsError};
use crate::k8s::quantity;
use crate::node::runtime::BindMount;

/// Why a pod's volume cannot be prepared or mounted (the FailedMount or
/// CreateContainerConfigError message).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(transparent)]
    HostPath(#[from] HostPathError),
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error(transparent)]
    Files(#[from] FileVolumeError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("volume {0:?} is not defined")]
    Undefined(String),
}

/// Where volume `name` of a pod lives under `pod_volumes`: one directory, whatever the name.
fn volume_dir(pod_volumes: &Path, name: &str) -> Result<PathBuf, VolumeError> {
    safe_relative(name)?;
    if name.contains('/') || name.starts_with("..") {
        return Err(FileVolumeError::ItemPath(name.to_string()).into());
    }
    Ok(pod_volumes.join(name))
}

/// Prepares every volume of the pod under `pod_volumes` (`<pod dir>/volumes`) and returns where
/// each is on the host. Errors are the message of a FailedMount.
pub async fn prepare(pod_volumes: &Path, ctx: &VolumeContext<'_>) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
    let mut out = BTreeMap::new();
    for volume in ctx.pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let dir = volume_dir(pod_volumes, &volume.name)?;
        let path = if let Some(h) = &volume.host_path {
            host_path(h)?
        } else if let Some(claim) = &volume.persistent_volume_claim {
            ctx.source.claim_path(&claim.claim_name).await?
        } else if let Some(files) = file_volume(volume, ctx).await? {
            atomic_writer::write(&dir, &files)?;
            dir
        } else if let Some(e) = volume.empty_dir.as_ref().filter(|e| e.medium.as_deref() == Some("Memory")) {
            let size = e.size_limit.as_ref().and_then(quantity::value).map(|b| b.max(0) as u64);
            host_mounts::mount_tmpfs(&dir, size)?;
            dir
        } else {
            // emptyDir, and every other kind this node has no driver for yet, is a plain directory.
            if volume.empty_dir.is_none() {
                tracing::warn!(volume = %volume.name, "volume type not supported yet; using an empty directory");
            }
            std::fs::create_dir_all(&dir).map_err(fs("creating", &dir))?;
            dir
        };
        out.insert(volume.name.clone(), path);
    }
    Ok(out)
}

/// Rewrites the file volumes whose objects (or token) changed since they were written, as the
/// kubelet's periodic sync does; a volume that cannot be read now keeps its content.
pub async fn refresh(pod_volumes: &Path, ctx: &VolumeContext<'_>) {
    for volume in ctx.pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let Ok(dir) = volume_dir(pod_volumes, &volume.name) else { continue };
        let written = match file_volume(volume, ctx).await {
            Ok(Some(files)) => atomic_writer::write(&dir, &files).map_err(VolumeError::from),
            Ok(None) => continue,
            Err(e) => Err(e.into()),
        };
        match written {
            Ok(true) => tracing::info!(volume = %volume.name, dir = %dir.display(), "updated a volume's files"),
            Ok(false) => {}
            Err(e) => tracing::warn!(volume = %volume.name, error = %e, "cannot refresh the volume"),
        }
    }
}

fn is_file_volume(v: &Volume) -> bool {
    v.config_map.is_some() || v.secret.is_some() || v.downward_api.is_some() || v.projected.is_some()
}

/// The bind mounts of `container`'s volumeMounts (file volumes and read-only claims
/// read-only). A subPath, or a subPathExpr expanded with the container's `env`, is bind-mounted
/// at `<subpaths>/<index>` (the container's directory of them) by [`host_mounts::bind_sub_path`].
pub fn mounts(
    pod: &Pod,
    container: &Container,
    volumes: &BTreeMap<String, PathBuf>,
    env: &[(String, String)],
    subpaths: &Path,
) -> Result<Vec<BindMount>, VolumeError> {
    let specs = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    let vars: BTreeMap<String, String> = env.iter().cloned().collect();
    let mut out = Vec::new();
    for (index, m) in container.volume_mounts.iter().flatten().enumerate() {
        let host = volumes.get(&m.name).ok_or_else(|| VolumeError::Undefined(m.name.clone()))?;
        let forced_read_only = specs
            .clone()
            .find(|v| v.name == m.name)
            .is_some_and(|v| is_file_volume(v) || v.persistent_volume_claim.as_ref().is_some_and(|c| c.read_only == Some(true)));
        let sub_path = match (m.sub_path.as_deref().filter(|s| !s.is_empty()), m.sub_path_expr.as_deref().filter(|s| !s.is_empty())) {
            (Some(sub), _) => Some(sub.to_string()),
            (None, Some(expr)) => Some(expand(expr, &vars)),
            (None, None) => None,
        };
        let host_path = match sub_path {
            Some(sub) => {
                safe_relative(&sub)?;
                host_mounts::bind_sub_path(host, &sub, &subpaths.join(index.to_string()))?
            }
            None => host.clone(),
        };
        out.push(BindMount {
            host_path,
            container_path: m.mount_path.clone(),
            read_only: m.read_only.unwrap_or(false) || forced_read_only,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::kubelet::downward::{NodeAllocatable, PodAddresses};
    use crate::node::kubelet::objects::{DataKind, StaticData};
    use crate::node::kubelet::token_cache::TokenCache;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn file_volumes_hold_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host/data");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"a": "b"}},
            "spec": {
                "serviceAccountName": "builder",
                "containers": [{"name": "c", "volumeMounts": [
                    {"name": "cache", "mountPath": "/cache"},
                    {"name": "cfg", "mountPath": "/etc/cfg"},
                    {"name": "sa", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true},
                    {"name": "host", "mountPath": "/host", "subPath": "sub"}
                ]}],
                "volumes": [
                    {"name": "cache", "emptyDir": {}},
                    {"name": "cfg", "configMap": {"name": "cm", "items": [{"key": "a", "path": "conf/a.txt", "mode": 0o600}]}},
                    {"name": "creds", "secret": {"secretName": "s"}},
                    {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                    {"name": "sa", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
                    ]}},
                    {"name": "host", "hostPath": {"path": host.to_str().unwrap(), "type": "DirectoryOrCreate"}},
                    {"name": "claim", "persistentVolumeClaim": {"claimName": "data"}}
                ]
            }
        }))
        .unwrap();
        let mut data = StaticData::default();
        data.0.insert((DataKind::ConfigMap, "cm".into()), [("a".to_string(), b"A".to_vec()), ("b".to_string(), b"B".to_vec())].into());
        data.0.insert((DataKind::Secret, "s".into()), [("password".to_string(), b"pw".to_vec())].into());
        data.0.insert((DataKind::ConfigMap, "kube-root-ca.crt".into()), [("ca.crt".to_string(), b"PEM".to_vec())].into());
        data.1.insert("data".into(), dir.path().join("pv"));
        let addrs = PodAddresses::default();
        let tokens = TokenCache::default();
        let ctx = VolumeContext { pod: &pod, addrs: &addrs, node: NodeAllocatable::default(), source: &data, tokens: &tokens };
        let volumes = prepare(&dir.path().join("vols"), &ctx).await.unwrap();
        let read = |v: &str, f: &str| std::fs::read_to_string(volumes[v].join(f)).unwrap();
        assert_eq!(read("cfg", "conf/a.txt"), "A");
        assert!(!volumes["cfg"].join("b").exists(), "only the listed items");
        let mode = std::fs::metadata(volumes["cfg"].join("conf/a.txt")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read("creds", "password"), "pw");
        assert_eq!(read("info", "labels"), "a=\"b\"");
        assert_eq!(read("sa", "token"), "token-of-builder-for-api-3607s");
        assert_eq!(read("sa", "ca.crt"), "PEM");
        assert_eq!(read("sa", "namespace"), "ns");
        assert!(volumes["cache"].is_dir() && host.is_dir());
        assert_eq!(volumes["claim"], dir.path().join("pv"));

        data.0.insert((DataKind::Secret, "s".into()), [("password".to_string(), b"new".to_vec())].into());
        let ctx = VolumeContext { pod: &pod, addrs: &addrs, node: NodeAllocatable::default(), source: &data, tokens: &tokens };
        refresh(&dir.path().join("vols"), &ctx).await;
        assert_eq!(read("creds", "password"), "new", "a refresh follows the object");
        assert_eq!(data.token_requests(), 1, "the token is still fresh");

        let c = &pod.spec.as_ref().unwrap().containers[0];
        if crate::host::is_root() {
            let subpaths = dir.path().join("subpaths");
            let m = mounts(&pod, c, &volumes, &[], &subpaths).unwrap();
            assert_eq!(m.len(), 4);
            assert!(!m[0].read_only && m[1].read_only && m[2].read_only);
            assert_eq!(m[3].host_path, subpaths.join("3"), "a subPath is its own bind mount");
            assert!(host.join("sub").is_dir());
            super::host_mounts::unmount_under(&subpaths);
        }

        let mut missing = pod.clone();
        missing.spec.as_mut().unwrap().volumes.as_mut().unwrap()[1] =
            serde_json::from_value(json!({"name": "cfg", "configMap": {"name": "nope"}})).unwrap();
        let ctx = VolumeContext { pod: &missing, addrs: &addrs, node: NodeAllocatable::default(), source: &data, tokens: &tokens };
        assert_eq!(prepare(&dir.path().join("vols2"), &ctx).await.unwrap_err().to_string(), "configmap \"nope\" not found");
    }
}
