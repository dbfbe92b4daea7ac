//! Unpacking an image's layers into committed overlayfs snapshots named by chain ID (Prepare on
//! the parent, the diff service's Apply, Commit), as containerd's own unpacker does; layers
//! already unpacked are skipped.

use std::collections::HashMap;

use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::ApplyRequest;

use super::content;
use super::manifest::{chain_ids, ImageConfig, Manifest};
use crate::node::runtime::client::Client;
use crate::node::runtime::{Result, RuntimeError, SNAPSHOTTER};

/// Whether the committed snapshot `name` exists.
pub async fn snapshot_exists(client: &Client, name: &str) -> Result<bool> {
    let req = StatSnapshotRequest { snapshotter: SNAPSHOTTER.into(), key: name.to_string() };
    match client.snapshots().stat(client.req(req)).await {
        Ok(_) => Ok(true),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
        Err(s) => Err(RuntimeError::grpc("snapshot stat")(s)),
    }
}

/// Unpacks every layer of `manifest` (whose config is `config`) and returns the chain ID of
/// the top layer, the parent of the image's containers' snapshots. `image` names the image
/// in progress messages.
pub async fn unpack(client: &Client, image: &str, manifest: &Manifest, config: &ImageConfig) -> Result<String> {
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != manifest.layers.len() {
        return Err(RuntimeError::Image {
            image: image.into(),
            message: format!("the config lists {} layers, the manifest {}", diff_ids.len(), manifest.layers.len()),
        });
    }
    let chain = chain_ids(diff_ids);
    for (i, layer) in manifest.layers.iter().enumerate() {
        if snapshot_exists(client, &chain[i]).await? {
            continue;
        }
        let parent = if i == 0 { String::new() } else { chain[i - 1].clone() };
        tracing::info!(%image, layer = %layer.digest, n = i + 1, of = manifest.layers.len(), "unpacking layer");
        apply_layer(client, image, layer, &diff_ids[i], &parent, &chain[i]).await?;
    }
    let top =
        chain.last().cloned().ok_or_else(|| RuntimeError::Image { image: image.into(), message: "the image has no layers".into() })?;
    let label = HashMap::from([(format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"), top.clone())]);
    content::set_labels(client, &manifest.config.digest, label).await?;
    Ok(top)
}

async fn apply_layer(
    client: &Client,
    image: &str,
    layer: &super::manifest::Descriptor,
    diff_id: &str,
    parent: &str,
    chain_id: &str,
) -> Result<()> {
    let key = format!("orch-extract-{:016x}-{chain_id}", rand::random::<u64>());
    let prepare =
        PrepareSnapshotRequest { snapshotter: SNAPSHOTTER.into(), key: key.clone(), parent: parent.to_string(), labels: HashMap::new() };
    let mounts = client.snapshots().prepare(client.req(prepare)).await.map_err(RuntimeError::grpc("snapshot prepare"))?.into_inner().mounts;
    let result = async {
        let apply = ApplyRequest { diff: Some(layer.to_proto()), mounts, payloads: HashMap::new(), sync_fs: false };
        let applied = client.diff().apply(client.req(apply)).await.map_err(RuntimeError::grpc("diff apply"))?.into_inner().applied;
        let applied = applied.map(|d| d.digest).unwrap_or_default();
        if applied != diff_id {
            return Err(RuntimeError::Image {
                image: image.into(),
                message: format!("layer {} unpacked to {applied}, but the config says {diff_id}", layer.digest),
            });
        }
        let commit =
            CommitSnapshotRequest { snapshotter: SNAPSHOTTER.into(), name: chain_id.to_string(), key: key.clone(), labels: HashMap::new() };
        match client.snapshots().commit(client.req(commit)).await {
            Ok(_) => Ok(false),
            Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(true),
            Err(s) => Err(RuntimeError::grpc("snapshot commit")(s)),
        }
    }
    .await;
    if !matches!(result, Ok(false)) {
        let remove = RemoveSnapshotRequest { snapshotter: SNAPSHOTTER.into(), key };
        let _ = client.snapshots().remove(client.req(remove)).await;
    }
    result.map(|_| ())
}
