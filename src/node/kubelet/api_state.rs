//! What the kubelet API's handlers share (logs, exec, attach, port-forward): where the logs
//! are, the container runtime, and the kubelet's task tracker their long-running streams run on.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::node::runtime::ContainerRuntime;

/// What the API handlers need.
pub struct KubeletApi {
    pub logs_dir: PathBuf,
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The kubelet's tasks and what stops them: followed logs and upgraded sessions run there.
    pub tasks: TaskTracker,
    pub cancel: CancellationToken,
}

impl KubeletApi {
    /// Runs `task` (a followed log, an exec, attach or port-forward session) as a task of the
    /// kubelet, dropped when the kubelet stops.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> JoinHandle<Option<()>> {
        self.tasks.spawn(self.cancel.clone().run_until_cancelled_owned(task))
    }
}
