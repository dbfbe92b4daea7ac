//! Version numbers orch reports: its own and the Kubernetes API version it serves.

/// orch's own version.
pub const ORCH_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The Kubernetes minor version whose API orch serves (kubectl picks its client by this).
pub const KUBERNETES_MAJOR: &str = "1";
pub const KUBERNETES_MINOR: &str = "33";
/// The full Kubernetes version string reported by `orch version` and `/version`.
pub const KUBERNETES_VERSION: &str = "v1.33.0";
/// The kubelet version nodes report in `status.nodeInfo` (the API's version: kubectl warns
/// about skew otherwise).
pub const KUBELET_VERSION: &str = KUBERNETES_VERSION;
