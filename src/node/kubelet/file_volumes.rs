//! The content of file volumes — configMap, secret, downwardAPI and projected (with the
//! ServiceAccount token from TokenRequest, cached and renewed by [`TokenCache`]) — with each
//! file's mode, as [`super::atomic_writer`] writes it.

use std::path::{Component, Path};

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod, Volume};

use super::atomic_writer::Files;
use super::downward::{self, DownwardError, NodeAllocatable, PodAddresses};
use super::objects::{Data, DataKind, DataSource, ObjectError};
use super::token_cache::TokenCache;

/// Why the files of a volume cannot be made (the FailedMount message).
#[derive(Debug, thiserror::Error)]
pub enum FileVolumeError {
    #[error("invalid volume item path {0:?}")]
    ItemPath(String),
    #[error("key {key} not found in {} \"{name}\"", .kind.as_str())]
    MissingKey { key: String, kind: DataKind, name: String },
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error(transparent)]
    Downward(#[from] DownwardError),
}

/// A relative path with no `..`, as volume item paths must be.
pub fn safe_relative(path: &str) -> Result<(), FileVolumeError> {
    let p = Path::new(path);
    if path.is_empty() || p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(FileVolumeError::ItemPath(path.to_string()));
    }
    Ok(())
}

/// The files of ConfigMap or Secret `name` (its `data`), all keys or the listed `items`.
fn project(
    data: Option<Data>,
    items: Option<&Vec<KeyToPath>>,
    mode: u32,
    (kind, name): (DataKind, &str),
    optional: bool,
) -> Result<Files, FileVolumeError> {
    let Some(data) = data else {
        return if optional { Ok(Files::new()) } else { Err(ObjectError::Missing { kind, name: name.to_string() }.into()) };
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
                    None => return Err(FileVolumeError::MissingKey { key: item.key.clone(), kind, name: name.to_string() }),
                }
            }
        }
    }
    Ok(files)
}

fn downward_files(items: &[DownwardAPIVolumeFile], mode: u32, ctx: &VolumeContext<'_>) -> Result<Files, FileVolumeError> {
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
    pub tokens: &'a TokenCache,
}

/// The files of `volume` when it is a file volume.
pub async fn file_volume(volume: &Volume, ctx: &VolumeContext<'_>) -> Result<Option<Files>, FileVolumeError> {
    let src = ctx.source;
    if let Some(cm) = &volume.config_map {
        let mode = cm.default_mode.unwrap_or(0o644) as u32;
        let data = src.data(DataKind::ConfigMap, &cm.name).await?;
        return project(data, cm.items.as_ref(), mode, (DataKind::ConfigMap, &cm.name), cm.optional.unwrap_or(false)).map(Some);
    }
    if let Some(s) = &volume.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let mode = s.default_mode.unwrap_or(0o644) as u32;
        let data = src.data(DataKind::Secret, &name).await?;
        return project(data, s.items.as_ref(), mode, (DataKind::Secret, &name), s.optional.unwrap_or(false)).map(Some);
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
            files.extend(project(data, cm.items.as_ref(), mode, (DataKind::ConfigMap, &cm.name), cm.optional.unwrap_or(false))?);
        }
        if let Some(s) = &source.secret {
            let data = src.data(DataKind::Secret, &s.name).await?;
            files.extend(project(data, s.items.as_ref(), mode, (DataKind::Secret, &s.name), s.optional.unwrap_or(false))?);
        }
        if let Some(d) = &source.downward_api {
            files.extend(downward_files(d.items.as_deref().unwrap_or_default(), mode, ctx)?);
        }
        if let Some(t) = &source.service_account_token {
            safe_relative(&t.path)?;
            let account = ctx.pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
            let seconds = t.expiration_seconds.unwrap_or(3600);
            let token = ctx.tokens.token(src, &account, t.audience.as_deref(), seconds, std::time::SystemTime::now()).await?;
            files.insert(t.path.clone(), (token.into_bytes(), mode));
        }
    }
    Ok(Some(files))
}
