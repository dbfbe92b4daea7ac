//! The runtime of a real node as the agent starts it: the supervised containerd (or the one
//! at `--container-runtime-endpoint`), the client in the `orch` namespace, registries.yaml, and
//! the airgap directory watcher.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::config::ContainerdPaths;
use super::containerd::Containerd;
use super::images::{airgap, registries};
use super::log_rotation::LogRotation;
use super::supervisor::{self, Supervisor};
use super::Result;

/// A started node runtime.
pub struct NodeRuntime {
    pub runtime: Containerd,
    supervisor: Option<Supervisor>,
    stop: CancellationToken,
    airgap: tokio::task::JoinHandle<()>,
}

impl NodeRuntime {
    /// Starts containerd under `<data_dir>/agent/containerd` (unless `endpoint` names an
    /// existing socket), connects (container logs rotated by `log_rotation`), and starts
    /// importing the airgap directory.
    pub async fn start(data_dir: &Path, endpoint: Option<PathBuf>, log_rotation: LogRotation) -> Result<Self> {
        let paths = ContainerdPaths::for_data_dir(data_dir);
        let (socket, supervisor) = match endpoint {
            Some(socket) => {
                supervisor::wait_for_socket(&socket, Duration::from_secs(10)).await?;
                (socket, None)
            }
            None => {
                let s = Supervisor::start(paths.clone(), Duration::from_secs(30)).await?;
                (s.socket(), Some(s))
            }
        };
        let registries = registries::Registries::load(Path::new(registries::DEFAULT_PATH))?;
        let runtime = Containerd::connect(&socket, &paths.fifo_dir(), registries).await?.with_log_rotation(log_rotation);
        let stop = CancellationToken::new();
        let dir = airgap::dir(data_dir);
        std::fs::create_dir_all(&dir).map_err(super::RuntimeError::io(dir.display()))?;
        let airgap = tokio::spawn(airgap::watch(runtime.client.clone(), dir, stop.clone()));
        Ok(Self { runtime, supervisor, stop, airgap })
    }

    /// Stops the airgap watcher and the supervised containerd (running containers stay).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.airgap.await;
        if let Some(s) = self.supervisor {
            s.stop().await;
        }
    }
}
