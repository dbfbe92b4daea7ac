//! A pod's volumes on the node: emptyDir under `<pod dir>/volumes/<name>`, hostPath (created
//! for the `…OrCreate` types), and the file volumes — configMap, secret, downwardAPI and
//! projected (with the ServiceAccount token from TokenRequest) — written with their modes.
//! Containers get them as bind mounts ([`mounts`]).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, DownwardAPIVolumeFile, KeyToPath, Pod, Volume};

use super::downward::{self, NodeAllocatable, PodAddresses};
use super::objects::{Data, DataKind, DataSource};
use crate::agent::runtime::BindMount;

/// Files of a file volume: relative path → (content, mode).
type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// A relative path with no `..`, as volume item paths must be.
fn safe_relative(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if path.is_empty() || p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!("invalid volume item path {path:?}"));
    }
    Ok(())
}

fn project(data: Option<Data>, items: Option<&Vec<KeyToPath>>, mode: u32, what: &str, optional: bool) -> Result<Files, String> {
    let Some(data) = data else {
        return if optional { Ok(Files::new()) } else { Err(format!("{what} not found")) };
    };
    let mut files = Files::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                files.insert(k, (v, mode));
            }
        }
        Some(items) => {
            for item in items {
                safe_relative(&item.path)?;
                match data.get(&item.key) {
                    Some(v) => {
                        files.insert(item.path.clone(), (v.clone(), item.mode.map(|m| m as u32).unwrap_or(mode)));
                    }
                    None if optional => {}
                    None => return Err(format!("key {} not found in {what}", item.key)),
                }
            }
        }
    }
    Ok(files)
}

fn downward_files(items: &[DownwardAPIVolumeFile], mode: u32, ctx: &VolumeContext<'_>) -> Result<Files, String> {
    let mut files = Files::new();
    for item in items {
        safe_relative(&item.path)?;
        let value = if let Some(f) = &item.field_ref {
            downward::field(ctx.pod, &f.field_path, ctx.addrs)?
        } else if let Some(r) = &item.resource_field_ref {
            let containers = ctx.pod.spec.iter().flat_map(|s| s.containers.iter());
            let c = containers.clone().find(|c| Some(c.name.as_str()) == r.container_name.as_deref()).or(containers.clone().next());
            let Some(c) = c else { continue };
            downward::resource(c, &r.resource, r.divisor.as_ref(), ctx.node)?
        } else {
            continue;
        };
        files.insert(item.path.clone(), (value.into_bytes(), item.mode.map(|m| m as u32).unwrap_or(mode)));
    }
    Ok(files)
}

/// What volume preparation needs besides the pod.
pub struct VolumeContext<'a> {
    pub pod: &'a Pod,
    pub addrs: &'a PodAddresses,
    pub node: NodeAllocatable,
    pub source: &'a dyn DataSource,
}

async fn file_volume(volume: &Volume, ctx: &VolumeContext<'_>) -> Result<Option<Files>, String> {
    let src = ctx.source;
    if let Some(cm) = &volume.config_map {
        let mode = cm.default_mode.unwrap_or(0o644) as u32;
        let data = src.data(DataKind::ConfigMap, &cm.name).await?;
        let what = format!("configmap \"{}\"", cm.name);
        return project(data, cm.items.as_ref(), mode, &what, cm.optional.unwrap_or(false)).map(Some);
    }
    if let Some(s) = &volume.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let mode = s.default_mode.unwrap_or(0o644) as u32;
        let data = src.data(DataKind::Secret, &name).await?;
        return project(data, s.items.as_ref(), mode, &format!("secret \"{name}\""), s.optional.unwrap_or(false)).map(Some);
    }
    if let Some(d) = &volume.downward_api {
        return downward_files(d.items.as_deref().unwrap_or_default(), d.default_mode.unwrap_or(0o644) as u32, ctx).map(Some);
    }
    let Some(p) = &volume.projected else { return Ok(None) };
    let mode = p.default_mode.unwrap_or(0o644) as u32;
    let mut files = Files::new();
    for source in p.sources.iter().flatten() {
        if let Some(cm) = &source.config_map {
            let data = src.data(DataKind::ConfigMap, &cm.name).await?;
            let what = format!("configmap \"{}\"", cm.name);
            files.extend(project(data, cm.items.as_ref(), mode, &what, cm.optional.unwrap_or(false))?);
        }
        if let Some(s) = &source.secret {
            let data = src.data(DataKind::Secret, &s.name).await?;
            files.extend(project(data, s.items.as_ref(), mode, &format!("secret \"{}\"", s.name), s.optional.unwrap_or(false))?);
        }
        if let Some(d) = &source.downward_api {
            files.extend(downward_files(d.items.as_deref().unwrap_or_default(), mode, ctx)?);
        }
        if let Some(t) = &source.service_account_token {
            safe_relative(&t.path)?;
            let account = ctx.pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
            let token = src.service_account_token(&account, t.audience.as_deref(), t.expiration_seconds.unwrap_or(3600)).await?;
            files.insert(t.path.clone(), (token.into_bytes(), mode));
        }
    }
    Ok(Some(files))
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> String {
    let message = format!("{what} {}", path.display());
    move |e| format!("{message}: {e}")
}

/// Writes `files` into `dir` (each replaced atomically), removing files no longer listed.
fn write_files(dir: &Path, files: &Files) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    for (rel, (content, mode)) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
        std::fs::write(&tmp, content).map_err(io("writing", &tmp))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(*mode & 0o777)).map_err(io("chmod", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("renaming", &path))?;
    }
    for entry in std::fs::read_dir(dir).map_err(io("reading", dir))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_file() && !files.keys().any(|k| k == &name || k.starts_with(&format!("{name}/"))) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Prepares every volume of the pod under `pod_volumes` (`<pod dir>/volumes`) and returns where
/// each is on the host. Errors are the message of a FailedMount.
pub async fn prepare(pod_volumes: &Path, ctx: &VolumeContext<'_>) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut out = BTreeMap::new();
    for volume in ctx.pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let dir = pod_volumes.join(&volume.name);
        if let Some(h) = &volume.host_path {
            let path = PathBuf::from(&h.path);
            match h.type_.as_deref().unwrap_or("") {
                "DirectoryOrCreate" => std::fs::create_dir_all(&path).map_err(io("creating", &path))?,
                "FileOrCreate" if !path.exists() => {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
                    }
                    std::fs::write(&path, b"").map_err(io("creating", &path))?;
                }
                "Directory" if !path.is_dir() => return Err(format!("hostPath type check failed: {} is not a directory", h.path)),
                "File" if !path.is_file() => return Err(format!("hostPath type check failed: {} is not a file", h.path)),
                _ => {}
            }
            out.insert(volume.name.clone(), path);
        } else if let Some(files) = file_volume(volume, ctx).await? {
            write_files(&dir, &files)?;
            out.insert(volume.name.clone(), dir);
        } else {
            // emptyDir, and every other kind this node has no driver for yet, is a plain directory.
            if volume.empty_dir.is_none() {
                tracing::warn!(volume = %volume.name, "volume type not supported yet; using an empty directory");
            }
            std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
            out.insert(volume.name.clone(), dir);
        }
    }
    Ok(out)
}

/// The bind mounts of `container`'s volumeMounts (subPath included; file volumes read-only).
pub fn mounts(pod: &Pod, container: &Container, volumes: &BTreeMap<String, PathBuf>) -> Result<Vec<BindMount>, String> {
    let specs = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    let mut out = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let host = volumes.get(&m.name).ok_or_else(|| format!("volume {:?} is not defined", m.name))?;
        let file_volume = specs
            .clone()
            .find(|v| v.name == m.name)
            .is_some_and(|v| v.config_map.is_some() || v.secret.is_some() || v.downward_api.is_some() || v.projected.is_some());
        let mut host_path = host.clone();
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            safe_relative(sub)?;
            host_path = host.join(sub);
            if !host_path.exists() {
                std::fs::create_dir_all(&host_path).map_err(io("creating", &host_path))?;
            }
        }
        out.push(BindMount { host_path, container_path: m.mount_path.clone(), read_only: m.read_only.unwrap_or(false) || file_volume });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::kubelet::objects::StaticData;
    use serde_json::json;

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
                    {"name": "host", "hostPath": {"path": host.to_str().unwrap(), "type": "DirectoryOrCreate"}}
                ]
            }
        }))
        .unwrap();
        let mut data = StaticData::default();
        data.0.insert((DataKind::ConfigMap, "cm".into()), [("a".to_string(), b"A".to_vec()), ("b".to_string(), b"B".to_vec())].into());
        data.0.insert((DataKind::Secret, "s".into()), [("password".to_string(), b"pw".to_vec())].into());
        data.0.insert((DataKind::ConfigMap, "kube-root-ca.crt".into()), [("ca.crt".to_string(), b"PEM".to_vec())].into());
        let addrs = PodAddresses::default();
        let ctx = VolumeContext { pod: &pod, addrs: &addrs, node: NodeAllocatable::default(), source: &data };
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

        let c = &pod.spec.as_ref().unwrap().containers[0];
        let m = mounts(&pod, c, &volumes).unwrap();
        assert_eq!(m.len(), 4);
        assert!(!m[0].read_only && m[1].read_only && m[2].read_only);
        assert_eq!(m[3].host_path, host.join("sub"));
        assert!(host.join("sub").is_dir());

        let mut missing = pod.clone();
        missing.spec.as_mut().unwrap().volumes.as_mut().unwrap()[1] =
            serde_json::from_value(json!({"name": "cfg", "configMap": {"name": "nope"}})).unwrap();
        let ctx = VolumeContext { pod: &missing, addrs: &addrs, node: NodeAllocatable::default(), source: &data };
        assert_eq!(prepare(&dir.path().join("vols2"), &ctx).await.unwrap_err(), "configmap \"nope\" not found");
    }
}
