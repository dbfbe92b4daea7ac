//! [`Containerd`]: the [`ContainerRuntime`] of a real node, over containerd's native API in the
//! `orch` namespace (the supervised child's socket, or `--container-runtime-endpoint`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::attach::AttachRegistry;
use super::client::Client;
use super::exec_stream::{self, ProcessControl};
use super::images::registries::Registries;
use super::images::{import, pull, pull_decision, reference, store, PullDecision};
use super::log_rotation::LogRotation;
use super::{containers, exec, ContainerConfig, ContainerInfo, ContainerRuntime, ContainerState, ExecOutput, ExitStatus, ImageInfo};
use super::{PullPolicy, RegistryAuth, Result, RuntimeError, StreamRequest, StreamSession, NAMESPACE};

/// containerd as the node's runtime.
#[derive(Clone)]
pub struct Containerd {
    pub client: Client,
    fifo_dir: PathBuf,
    registries: Registries,
    attach: AttachRegistry,
    log_rotation: LogRotation,
}

impl Containerd {
    /// Connects to the containerd at `socket`; FIFOs for container output live in `fifo_dir`.
    pub async fn connect(socket: &Path, fifo_dir: &Path, registries: Registries) -> Result<Self> {
        let client = Client::connect(socket, NAMESPACE).await?;
        std::fs::create_dir_all(fifo_dir).map_err(RuntimeError::io(fifo_dir.display()))?;
        let closer = client.clone();
        let attach = AttachRegistry::new(Arc::new(move |id: String| {
            let client = closer.clone();
            Box::pin(async move { exec_stream::close_stdin(&client, &id, "").await })
        }));
        Ok(Self { client, fifo_dir: fifo_dir.to_path_buf(), registries, attach, log_rotation: LogRotation::default() })
    }

    /// Rotates containers' logs by `rotation` instead of the kubelet's defaults.
    pub fn with_log_rotation(mut self, rotation: LogRotation) -> Self {
        self.log_rotation = rotation;
        self
    }

    /// Imports the image tarball at `path` (OCI layout or `docker save`).
    pub async fn import(&self, path: &Path) -> Result<Vec<ImageInfo>> {
        import::import_file(&self.client, path).await
    }

    /// Pulls `image` from its registry (or a mirror) and unpacks it.
    pub async fn pull(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<ImageInfo> {
        pull::pull(&self.client, &self.registries, &reference::normalize(image), auth).await
    }

    pub async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        store::list(&self.client).await
    }

    /// Removes the image `name` (normalised); whether it existed.
    pub async fn remove_image(&self, name: &str) -> Result<bool> {
        store::remove(&self.client, &reference::normalize(name)).await
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for Containerd {
    async fn version(&self) -> Result<String> {
        Ok(format!("containerd://{}", self.client.version().await?))
    }

    async fn ensure_image(&self, image: &str, policy: PullPolicy, auth: Option<&RegistryAuth>) -> Result<ImageInfo> {
        let name = reference::normalize(image);
        let present = store::get(&self.client, &name).await?;
        match (pull_decision(policy, present.is_some()), present) {
            (PullDecision::UsePresent, Some(p)) => Ok(p.info()),
            (PullDecision::NeverPullMissing, _) | (PullDecision::UsePresent, None) => Err(RuntimeError::Image {
                image: image.to_string(),
                message: "not present on this node and imagePullPolicy is Never".into(),
            }),
            (PullDecision::Pull, _) => self.pull(&name, auth).await,
        }
    }

    async fn create_container(&self, config: &ContainerConfig) -> Result<()> {
        let config = ContainerConfig { image: reference::normalize(&config.image), ..config.clone() };
        containers::create(&self.client, &config).await
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        containers::start(&self.client, &self.fifo_dir, &self.attach, id, self.log_rotation).await
    }

    async fn wait_container(&self, id: &str) -> Result<ExitStatus> {
        containers::wait(&self.client, id).await
    }

    async fn kill_container(&self, id: &str, signal: i32) -> Result<()> {
        containers::kill(&self.client, id, signal).await
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        containers::remove(&self.client, id).await
    }

    async fn exec(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecOutput> {
        exec::exec(&self.client, &self.fifo_dir, id, cmd, timeout).await
    }

    async fn exec_stream(&self, id: &str, cmd: &[String], streams: StreamRequest) -> Result<StreamSession> {
        exec_stream::exec_stream(&self.client, &self.fifo_dir, id, cmd, streams).await
    }

    async fn attach(&self, id: &str, streams: StreamRequest) -> Result<StreamSession> {
        self.attach.session(id, streams, Box::new(ProcessControl::main_process(&self.client, id)))
    }

    async fn list_containers(&self) -> Result<Vec<ContainerInfo>> {
        containers::list(&self.client).await
    }

    async fn container_state(&self, id: &str) -> Result<ContainerState> {
        containers::state(&self.client, id).await
    }

    async fn adopt(&self, id: &str) -> Result<()> {
        containers::resume_logs(&self.client, &self.fifo_dir, &self.attach, id, self.log_rotation).await
    }
}
