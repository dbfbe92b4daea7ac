//! The content store: streaming blobs in (Write with the expected digest, so containerd checks
//! it at commit), reading small ones back, and the garbage-collection labels that tie an
//! image's manifest to its config, layers and unpacked snapshots.

use std::collections::HashMap;
use std::sync::Arc;

use containerd_client::services::v1::{Info, InfoRequest, ReadContentRequest, UpdateRequest, WriteAction, WriteContentRequest};
use futures::StreamExt;
use parking_lot::Mutex;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::node::runtime::client::Client;
use crate::node::runtime::{Result, RuntimeError};

const CHUNK: usize = 1 << 20;

/// Whether the store has the blob `digest` (committed).
pub async fn exists(client: &Client, digest: &str) -> Result<bool> {
    match client.content().info(client.req(InfoRequest { digest: digest.to_string() })).await {
        Ok(_) => Ok(true),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
        Err(s) => Err(RuntimeError::grpc("content info")(s)),
    }
}

/// Streams `reader` into the store as one blob and returns its digest. With `expected`,
/// containerd refuses a blob whose digest differs (and nothing is written when it is there
/// already); `labels` are set on the blob either way.
pub async fn write<R>(client: &Client, reader: R, expected: Option<&str>, labels: HashMap<String, String>) -> Result<String>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    if let Some(digest) = expected {
        if exists(client, digest).await? {
            set_labels(client, digest, labels).await?;
            return Ok(digest.to_string());
        }
    }
    let reference = format!("orch-ingest-{:016x}", rand::random::<u64>());
    let read_error = Arc::new(Mutex::new(None::<std::io::Error>));
    let computed = Arc::new(Mutex::new(None::<String>));
    let state = WriteState {
        reader,
        hasher: Sha256::new(),
        offset: 0,
        done: false,
        reference,
        expected: expected.map(str::to_string),
        labels: labels.clone(),
        read_error: read_error.clone(),
        computed: computed.clone(),
    };
    let requests = futures::stream::unfold(state, next_request);
    let result = async {
        let mut responses = client.content().write(client.req(requests)).await?.into_inner();
        while responses.next().await.transpose()?.is_some() {}
        Ok::<_, tonic::Status>(())
    }
    .await;
    if let Some(e) = read_error.lock().take() {
        return Err(RuntimeError::Io { path: "image blob".into(), source: e });
    }
    let digest = computed.lock().clone();
    let digest = digest.ok_or_else(|| RuntimeError::Invalid("the blob stream ended early".into()))?;
    match result {
        Ok(()) => Ok(digest),
        Err(s) if s.code() == tonic::Code::AlreadyExists => {
            set_labels(client, &digest, labels).await?;
            Ok(digest)
        }
        Err(s) => Err(RuntimeError::grpc("content write")(s)),
    }
}

/// Writes an in-memory blob (manifests, configs).
pub async fn write_bytes(client: &Client, data: Vec<u8>, labels: HashMap<String, String>) -> Result<String> {
    let digest = super::manifest::sha256_digest(&data);
    write(client, std::io::Cursor::new(data), Some(&digest), labels).await
}

struct WriteState<R> {
    reader: R,
    hasher: Sha256,
    offset: i64,
    done: bool,
    reference: String,
    expected: Option<String>,
    labels: HashMap<String, String>,
    read_error: Arc<Mutex<Option<std::io::Error>>>,
    computed: Arc<Mutex<Option<String>>>,
}

/// The next message of a Write stream: data chunks, then one commit with the digest.
async fn next_request<R: AsyncRead + Unpin>(mut s: WriteState<R>) -> Option<(WriteContentRequest, WriteState<R>)> {
    if s.done {
        return None;
    }
    let mut buf = vec![0u8; CHUNK];
    let mut filled = 0;
    while filled < CHUNK {
        match s.reader.read(&mut buf[filled..]).await {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) => {
                *s.read_error.lock() = Some(e);
                return None;
            }
        }
    }
    buf.truncate(filled);
    let mut req = WriteContentRequest { r#ref: s.reference.clone(), offset: s.offset, ..Default::default() };
    if filled > 0 {
        s.hasher.update(&buf);
        s.offset += filled as i64;
        req.action = WriteAction::Write as i32;
        req.data = buf;
        return Some((req, s));
    }
    let digest = format!("sha256:{:x}", std::mem::take(&mut s.hasher).finalize());
    *s.computed.lock() = Some(digest.clone());
    req.action = WriteAction::Commit as i32;
    req.total = s.offset;
    req.expected = s.expected.clone().unwrap_or(digest);
    req.labels = std::mem::take(&mut s.labels);
    s.done = true;
    Some((req, s))
}

/// Reads a whole (small) blob.
pub async fn read(client: &Client, digest: &str) -> Result<Vec<u8>> {
    let req = client.req(ReadContentRequest { digest: digest.to_string(), offset: 0, size: 0 });
    let mut stream = client.content().read(req).await.map_err(RuntimeError::grpc("content read"))?.into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await.transpose().map_err(RuntimeError::grpc("content read"))? {
        out.extend_from_slice(&chunk.data);
    }
    if super::manifest::sha256_digest(&out) != digest {
        return Err(RuntimeError::Invalid(format!("content {digest} does not match its digest")));
    }
    Ok(out)
}

/// Adds `labels` to the blob `digest` (other labels stay).
pub async fn set_labels(client: &Client, digest: &str, labels: HashMap<String, String>) -> Result<()> {
    if labels.is_empty() {
        return Ok(());
    }
    let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
    let info = Info { digest: digest.to_string(), labels, ..Default::default() };
    let req = UpdateRequest { info: Some(info), update_mask: Some(prost_types::FieldMask { paths }) };
    client.content().update(client.req(req)).await.map_err(RuntimeError::grpc("content update"))?;
    Ok(())
}

/// GC labels of a manifest: it references its config and layers.
pub fn manifest_labels(m: &super::manifest::Manifest) -> HashMap<String, String> {
    let mut labels = HashMap::from([("containerd.io/gc.ref.content.config".to_string(), m.config.digest.clone())]);
    for (i, l) in m.layers.iter().enumerate() {
        labels.insert(format!("containerd.io/gc.ref.content.l.{i}"), l.digest.clone());
    }
    labels
}

/// GC labels of an index: it references its manifests.
pub fn index_labels(index: &super::manifest::Index) -> HashMap<String, String> {
    index.manifests.iter().enumerate().map(|(i, m)| (format!("containerd.io/gc.ref.content.m.{i}"), m.digest.clone())).collect()
}
