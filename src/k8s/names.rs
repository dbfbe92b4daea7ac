//! Well-known names: namespaces, labels and taints every Kubernetes component agrees on.

/// Namespace of the nodes' heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Namespace of the cluster's own components.
pub const KUBE_SYSTEM: &str = "kube-system";
/// Namespaces that exist from the start and cannot be deleted.
pub const SYSTEM_NAMESPACES: &[&str] = &["default", KUBE_SYSTEM, "kube-public", NODE_LEASE_NAMESPACE];

/// Label every node carries with its own name.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// Labels a server's own node carries (k3s sets both).
pub const CONTROL_PLANE_LABELS: &[(&str, &str)] =
    &[("node-role.kubernetes.io/control-plane", "true"), ("node-role.kubernetes.io/master", "true")];

/// Taint of a node whose heartbeats stopped (Ready condition Unknown).
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Taint of a node that reports itself not ready (Ready condition False).
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
