//! The gRPC connection to containerd over its unix socket: service clients and requests
//! carrying the `containerd-namespace` header (and, during an image import or pull, the
//! `containerd-lease` that keeps half-written content from being garbage-collected).

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::{
    containers_client::ContainersClient, content_client::ContentClient, diff_client::DiffClient, images_client::ImagesClient,
    leases_client::LeasesClient, tasks_client::TasksClient, version_client::VersionClient, CreateRequest as CreateLeaseRequest,
    DeleteRequest as DeleteLeaseRequest,
};
use tonic::transport::Channel;

use super::{Result, RuntimeError};

/// A cheap-to-clone handle on containerd, bound to one namespace and optionally one lease.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    namespace: String,
    lease: Option<String>,
    pub socket: PathBuf,
}

impl Client {
    /// Connects to the containerd socket at `socket` (reconnecting by itself later if
    /// containerd restarts).
    pub async fn connect(socket: &Path, namespace: &str) -> Result<Self> {
        let channel = tokio::time::timeout(Duration::from_secs(10), containerd_client::connect(socket))
            .await
            .map_err(|_| RuntimeError::Connect { socket: socket.display().to_string(), message: "timed out".into() })?
            .map_err(|e| RuntimeError::Connect { socket: socket.display().to_string(), message: e.to_string() })?;
        Ok(Self { channel, namespace: namespace.to_string(), lease: None, socket: socket.to_path_buf() })
    }

    /// A request for `msg` in this client's namespace (and lease).
    pub fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        let md = req.metadata_mut();
        if let Ok(ns) = self.namespace.parse() {
            md.insert("containerd-namespace", ns);
        }
        if let Some(lease) = self.lease.as_ref().and_then(|l| l.parse().ok()) {
            md.insert("containerd-lease", lease);
        }
        req
    }

    pub fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone()).max_decoding_message_size(64 << 20)
    }

    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }

    pub fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }

    pub fn diff(&self) -> DiffClient<Channel> {
        DiffClient::new(self.channel.clone())
    }

    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }

    pub fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }

    /// containerd's version, e.g. `1.6.20~ds1`.
    pub async fn version(&self) -> Result<String> {
        let v = VersionClient::new(self.channel.clone()).version(()).await.map_err(RuntimeError::grpc("version"))?;
        Ok(v.into_inner().version)
    }

    /// A client whose requests run under a new lease that expires after `ttl` even if
    /// [`Client::end_lease`] is never called (a crash in the middle of an import).
    pub async fn with_lease(&self, ttl: Duration) -> Result<Self> {
        let expire = time::OffsetDateTime::now_utc() + ttl;
        let expire = expire.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let id = format!("orch-{:016x}", rand::random::<u64>());
        let req = CreateLeaseRequest { id: id.clone(), labels: [("containerd.io/gc.expire".to_string(), expire)].into() };
        LeasesClient::new(self.channel.clone()).create(self.req(req)).await.map_err(RuntimeError::grpc("create lease"))?;
        Ok(Self { lease: Some(id), ..self.clone() })
    }

    /// Deletes this client's lease: what it created stays only if something references it.
    pub async fn end_lease(&self) {
        if let Some(id) = &self.lease {
            let req = self.req(DeleteLeaseRequest { id: id.clone(), sync: false });
            if let Err(e) = LeasesClient::new(self.channel.clone()).delete(req).await {
                tracing::warn!(lease = %id, error = %e.message(), "cannot delete containerd lease");
            }
        }
    }
}
