//! What the kubelet API's handlers share (logs, exec, attach, port-forward, stats): where the
//! logs are, the container runtime, the resource sampler's latest figures, and the kubelet's
//! tasks their long-running streams run on.

use std::path::PathBuf;
use std::sync::Arc;

use crate::node::runtime::ContainerRuntime;
use crate::node::stats::StatsSource;
use crate::tasks::Tasks;

/// What the API handlers need.
pub struct KubeletApi {
    pub logs_dir: PathBuf,
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The kubelet's tasks: followed logs and upgraded sessions run there, dropped when the
    /// kubelet stops.
    pub tasks: Tasks,
    /// The node's resource figures (`/stats/summary`, `/metrics/resource`).
    pub stats: Arc<dyn StatsSource>,
}
