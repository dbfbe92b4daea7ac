//! Image records (the Images service): creating or moving a name to a target once its content
//! is in and unpacked, listing, removing, and resolving a name to the manifest and config for
//! this machine's platform.

use std::collections::HashMap;

use containerd_client::services::v1::{
    CreateImageRequest, DeleteImageRequest, GetImageRequest, Image, ListImagesRequest, UpdateImageRequest,
};

use super::manifest::{self, Descriptor, ImageConfig, Index, Manifest};
use super::{content, unpack};
use crate::node::runtime::client::Client;
use crate::node::runtime::{ImageInfo, Result, RuntimeError};

/// An image resolved for this platform.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: String,
    /// What the name points at (a manifest or an index).
    pub target: Descriptor,
    pub manifest: Manifest,
    pub config: ImageConfig,
    pub pinned: bool,
}

impl Resolved {
    /// Chain ID of the top layer.
    pub fn chain_id(&self) -> Option<String> {
        manifest::chain_ids(&self.config.rootfs.diff_ids).pop()
    }

    pub fn info(&self) -> ImageInfo {
        let size = self.manifest.config.size + self.manifest.layers.iter().map(|l| l.size).sum::<i64>();
        ImageInfo { name: self.name.clone(), digest: self.target.digest.clone(), size: size.max(0) as u64, pinned: self.pinned }
    }
}

/// The label of images garbage collection must keep (containerd's CRI and k3s use it).
pub const PINNED_LABEL: &str = "io.cri-containerd.pinned";

fn is_pinned(labels: &HashMap<String, String>) -> bool {
    labels.get(PINNED_LABEL).is_some_and(|v| v == "pinned")
}

fn image_error(image: &str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Image { image: image.to_string(), message: message.into() }
}

/// The manifest for this platform under `target` (itself, or the index's matching entry), as
/// stored in the content store.
pub async fn platform_manifest(client: &Client, image: &str, target: &Descriptor) -> Result<Manifest> {
    let mut desc = target.clone();
    for _ in 0..4 {
        let bytes = content::read(client, &desc.digest).await?;
        let media_type = if desc.media_type.is_empty() { sniff_media_type(&bytes) } else { desc.media_type.clone() };
        if manifest::is_index(&media_type) {
            let index: Index = serde_json::from_slice(&bytes).map_err(|e| image_error(image, format!("bad index: {e}")))?;
            desc = manifest::pick_platform(&index)
                .cloned()
                .ok_or_else(|| image_error(image, format!("no manifest for linux/{} in the index", crate::host::kube_arch())))?;
            continue;
        }
        return serde_json::from_slice(&bytes).map_err(|e| image_error(image, format!("bad manifest: {e}")));
    }
    Err(image_error(image, "indexes nested too deep"))
}

/// The media type a document declares in its `mediaType` field (or an index when it has
/// `manifests`).
pub fn sniff_media_type(bytes: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    match v["mediaType"].as_str() {
        Some(t) => t.to_string(),
        None if v.get("manifests").is_some() => manifest::OCI_INDEX.to_string(),
        None => manifest::OCI_MANIFEST.to_string(),
    }
}

/// Reads the manifest and config of `target`, unpacks its layers and points `name` at it
/// (`pinned`: image garbage collection keeps it, as for airgap images).
pub async fn register(client: &Client, name: &str, target: &Descriptor, pinned: bool) -> Result<Resolved> {
    let manifest = platform_manifest(client, name, target).await?;
    let config = read_config(client, name, &manifest).await?;
    unpack::unpack(client, name, &manifest, &config).await?;
    put(client, name, target, pinned).await?;
    tracing::info!(image = %name, digest = %target.digest, pinned, "image ready");
    Ok(Resolved { name: name.to_string(), target: target.clone(), manifest, config, pinned })
}

async fn read_config(client: &Client, name: &str, manifest: &Manifest) -> Result<ImageConfig> {
    let bytes = content::read(client, &manifest.config.digest).await?;
    serde_json::from_slice(&bytes).map_err(|e| image_error(name, format!("bad image config: {e}")))
}

/// Creates the image record `name` → `target`, or moves an existing one; `pinned` labels it
/// as kept by garbage collection (an existing pin stays either way).
pub async fn put(client: &Client, name: &str, target: &Descriptor, pinned: bool) -> Result<()> {
    let labels: HashMap<String, String> = if pinned { [(PINNED_LABEL.to_string(), "pinned".to_string())].into() } else { HashMap::new() };
    let image = Image { name: name.to_string(), target: Some(target.to_proto()), labels, ..Default::default() };
    let create = CreateImageRequest { image: Some(image.clone()), source_date_epoch: None };
    match client.images().create(client.req(create)).await {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::AlreadyExists => {
            let mut paths = vec!["target".to_string()];
            if pinned {
                paths.push(format!("labels.{PINNED_LABEL}"));
            }
            let mask = prost_types::FieldMask { paths };
            let update = UpdateImageRequest { image: Some(image), update_mask: Some(mask), source_date_epoch: None };
            client.images().update(client.req(update)).await.map_err(RuntimeError::grpc("image update"))?;
            Ok(())
        }
        Err(s) => Err(RuntimeError::grpc("image create")(s)),
    }
}

fn descriptor(d: containerd_client::types::Descriptor) -> Descriptor {
    Descriptor { media_type: d.media_type, digest: d.digest, size: d.size, annotations: d.annotations, platform: None }
}

/// The image `name` resolved for this platform, if the store has it (and its content).
pub async fn get(client: &Client, name: &str) -> Result<Option<Resolved>> {
    let image = match client.images().get(client.req(GetImageRequest { name: name.to_string() })).await {
        Ok(r) => r.into_inner().image,
        Err(s) if s.code() == tonic::Code::NotFound => None,
        Err(s) => return Err(RuntimeError::grpc("image get")(s)),
    };
    let Some(image) = image else { return Ok(None) };
    let pinned = is_pinned(&image.labels);
    let Some(target) = image.target.map(descriptor) else { return Ok(None) };
    let manifest = platform_manifest(client, name, &target).await?;
    let config = read_config(client, name, &manifest).await?;
    Ok(Some(Resolved { name: name.to_string(), target, manifest, config, pinned }))
}

/// Every image in the store (those whose content is incomplete are skipped with a warning).
pub async fn list(client: &Client) -> Result<Vec<ImageInfo>> {
    let images = client.images().list(client.req(ListImagesRequest { filters: vec![] })).await.map_err(RuntimeError::grpc("image list"))?;
    let mut out = Vec::new();
    for image in images.into_inner().images {
        let Some(target) = image.target.map(descriptor) else { continue };
        match platform_manifest(client, &image.name, &target).await {
            Ok(m) => {
                let size = m.config.size + m.layers.iter().map(|l| l.size).sum::<i64>();
                let pinned = is_pinned(&image.labels);
                out.push(ImageInfo { name: image.name, digest: target.digest, size: size.max(0) as u64, pinned });
            }
            Err(e) => tracing::warn!(image = %image.name, error = %e, "skipping an image whose content is incomplete"),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Removes the image record `name`; its content and snapshots go with the next garbage
/// collection unless another image uses them. Returns whether it existed.
pub async fn remove(client: &Client, name: &str) -> Result<bool> {
    let req = DeleteImageRequest { name: name.to_string(), sync: true, target: None };
    match client.images().delete(client.req(req)).await {
        Ok(_) => Ok(true),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
        Err(s) => Err(RuntimeError::grpc("image delete")(s)),
    }
}
