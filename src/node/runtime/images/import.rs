//! Importing image tarballs: OCI image layouts (`index.json` + `blobs/`) and `docker save`
//! archives (`manifest.json` + layer tars). Blobs are streamed into the content store with
//! their digests checked, then each named image is unpacked and recorded.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::archive::TarIndex;
use super::manifest::{self, Descriptor, Index, Manifest};
use super::{content, reference, store};
use crate::node::runtime::client::Client;
use crate::node::runtime::{ImageInfo, Result, RuntimeError};

/// One image of a `docker save` archive's manifest.json.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Imports every named image in the tarball at `path` and returns them.
pub async fn import_file(client: &Client, path: &Path) -> Result<Vec<ImageInfo>> {
    let owned = path.to_path_buf();
    let index = tokio::task::spawn_blocking(move || TarIndex::scan(&owned))
        .await
        .map_err(|e| RuntimeError::Invalid(format!("scanning {}: {e}", path.display())))??;
    tracing::info!(file = %path.display(), "importing images");
    // Everything written runs under a lease until the image records reference it.
    let leased = client.with_lease(Duration::from_secs(3600)).await?;
    let result = if index.contains("index.json") && oci_names(&index)?.iter().any(|(n, _)| n.is_some()) {
        import_oci(&leased, &index).await
    } else if index.contains("manifest.json") {
        import_docker(&leased, &index).await
    } else {
        Err(RuntimeError::Invalid(format!(
            "{}: neither an OCI image layout (index.json) nor a docker archive (manifest.json)",
            path.display()
        )))
    };
    leased.end_lease().await;
    result
}

/// The entries of index.json with the names they carry.
fn oci_names(index: &TarIndex) -> Result<Vec<(Option<String>, Descriptor)>> {
    let top: Index = serde_json::from_slice(&index.read("index.json")?).map_err(|e| bad(index, "index.json", e))?;
    Ok(top
        .manifests
        .into_iter()
        .map(|d| {
            let full = d.annotations.get("io.containerd.image.name").cloned();
            let short = d.annotations.get("org.opencontainers.image.ref.name").filter(|n| n.contains('/') || n.contains(':')).cloned();
            (full.or(short).map(|n| reference::normalize(&n)), d)
        })
        .collect())
}

fn bad(index: &TarIndex, member: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Invalid(format!("{}: {member}: {e}", index.path.display()))
}

fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

async fn import_oci(client: &Client, index: &TarIndex) -> Result<Vec<ImageInfo>> {
    let mut out = Vec::new();
    for (name, desc) in oci_names(index)? {
        let Some(name) = name else {
            tracing::warn!(digest = %desc.digest, "skipping an unnamed image of the layout");
            continue;
        };
        write_tree(client, index, &desc, 0).await?;
        out.push(store::register(client, &name, &desc, true).await?.info());
    }
    Ok(out)
}

/// Writes `desc` and everything under it that the layout holds, with GC labels.
async fn write_tree(client: &Client, index: &TarIndex, desc: &Descriptor, depth: u32) -> Result<()> {
    let path = blob_path(&desc.digest);
    if manifest::is_index(&desc.media_type) || manifest::is_manifest(&desc.media_type) {
        if depth > 3 {
            return Err(bad(index, &path, "indexes nested too deep"));
        }
        let bytes = index.read(&path)?;
        let labels = if manifest::is_index(&desc.media_type) {
            let child: Index = serde_json::from_slice(&bytes).map_err(|e| bad(index, &path, e))?;
            for m in child.manifests.iter().filter(|m| index.contains(&blob_path(&m.digest))) {
                Box::pin(write_tree(client, index, m, depth + 1)).await?;
            }
            content::index_labels(&child)
        } else {
            let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| bad(index, &path, e))?;
            for blob in std::iter::once(&m.config).chain(&m.layers) {
                write_blob(client, index, &blob_path(&blob.digest), Some(&blob.digest)).await?;
            }
            content::manifest_labels(&m)
        };
        content::write(client, std::io::Cursor::new(bytes), Some(&desc.digest), labels).await?;
        return Ok(());
    }
    write_blob(client, index, &path, Some(&desc.digest)).await.map(|_| ())
}

async fn write_blob(client: &Client, index: &TarIndex, member: &str, expected: Option<&str>) -> Result<String> {
    if let Some(digest) = expected {
        if content::exists(client, digest).await? {
            return Ok(digest.to_string());
        }
    }
    let size = index.size(member).unwrap_or(0);
    tracing::info!(blob = %member, bytes = size, "writing blob");
    content::write(client, index.open(member).await?, expected, HashMap::new()).await
}

async fn import_docker(client: &Client, index: &TarIndex) -> Result<Vec<ImageInfo>> {
    let entries: Vec<DockerEntry> = serde_json::from_slice(&index.read("manifest.json")?).map_err(|e| bad(index, "manifest.json", e))?;
    let mut out = Vec::new();
    for entry in entries {
        let tags = entry.repo_tags.clone().unwrap_or_default();
        if tags.is_empty() {
            tracing::warn!(config = %entry.config, "skipping an untagged image of the archive");
            continue;
        }
        let target = write_docker_image(client, index, &entry).await?;
        for tag in tags {
            out.push(store::register(client, &reference::normalize(&tag), &target, true).await?.info());
        }
    }
    Ok(out)
}

/// Writes the layers and config of one docker-archive image and a schema 2 manifest for them;
/// returns the manifest's descriptor.
async fn write_docker_image(client: &Client, index: &TarIndex, entry: &DockerEntry) -> Result<Descriptor> {
    let config_bytes = index.read(&entry.config)?;
    let config = Descriptor {
        media_type: manifest::DOCKER_CONFIG.into(),
        digest: manifest::sha256_digest(&config_bytes),
        size: config_bytes.len() as i64,
        ..Default::default()
    };
    let mut layers = Vec::new();
    for member in &entry.layers {
        let known = member.strip_prefix("blobs/sha256/").map(|hex| format!("sha256:{hex}"));
        let gzip = index.head(member, 2)? == [0x1f, 0x8b];
        let digest = write_blob(client, index, member, known.as_deref()).await?;
        let media_type = if gzip { manifest::DOCKER_LAYER_GZIP } else { manifest::DOCKER_LAYER };
        layers.push(Descriptor {
            media_type: media_type.into(),
            digest,
            size: index.size(member).unwrap_or(0) as i64,
            ..Default::default()
        });
    }
    content::write_bytes(client, config_bytes, HashMap::new()).await?;
    let m = Manifest { schema_version: 2, media_type: manifest::DOCKER_MANIFEST.into(), config, layers };
    let bytes = serde_json::to_vec(&m).map_err(|e| RuntimeError::Invalid(e.to_string()))?;
    let size = bytes.len() as i64;
    let digest = content::write_bytes(client, bytes, content::manifest_labels(&m)).await?;
    Ok(Descriptor { media_type: manifest::DOCKER_MANIFEST.into(), digest, size, ..Default::default() })
}
