//! The RBAC that node agents (`system:node:<name>`, group `system:nodes`) need to run a node:
//! the `orch-node` ClusterRole (Kubernetes calls its counterpart `system:node`, a name the
//! API's validation does not accept yet) and a binding of it to the `system:nodes` group,
//! created when missing. Secrets, ConfigMaps and volumes are left out: Kubernetes grants
//! those per node with its Node authorizer (only what the node's pods use), which orch does
//! not have yet.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Context;

pub const ROLE: &str = "orch-node";
pub const NODES_GROUP: &str = "system:nodes";

fn role() -> ClusterRole {
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| json!({ "apiGroups": groups, "resources": resources, "verbs": verbs });
    let read = ["get", "list", "watch"];
    serde_json::from_value(json!({
        "metadata": { "name": ROLE, "labels": { "kubernetes.io/bootstrapping": "rbac-defaults" } },
        "rules": [
            rule(&[""], &["nodes"], &["get", "list", "watch", "create", "update", "patch"]),
            rule(&[""], &["nodes/status", "pods/status"], &["get", "update", "patch"]),
            rule(&[""], &["pods"], &["get", "list", "watch", "delete"]),
            rule(&[""], &["services", "endpoints"], &read),
            rule(&["discovery.k8s.io"], &["endpointslices"], &read),
            rule(&["", "events.k8s.io"], &["events"], &["create", "patch", "update"]),
            rule(&["coordination.k8s.io"], &["leases"], &["get", "list", "watch", "create", "update", "patch"]),
            rule(&["storage.k8s.io"], &["csidrivers", "csinodes", "volumeattachments"], &read),
        ],
    }))
    .expect("a valid ClusterRole")
}

fn binding() -> ClusterRoleBinding {
    serde_json::from_value(json!({
        "metadata": { "name": ROLE, "labels": { "kubernetes.io/bootstrapping": "rbac-defaults" } },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLE },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": NODES_GROUP }],
    }))
    .expect("a valid ClusterRoleBinding")
}

async fn ensure(client: &kube::Client) -> Result<(), kube::Error> {
    created(Api::<ClusterRole>::all(client.clone()).create(&PostParams::default(), &role()).await)?;
    created(Api::<ClusterRoleBinding>::all(client.clone()).create(&PostParams::default(), &binding()).await)
}

/// A create that found the object already there counts as done.
fn created<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Creates the node RBAC (retrying until it succeeds or `shutdown`), then returns.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    loop {
        match ensure(&ctx.client).await {
            Ok(()) => return,
            Err(e) => tracing::info!(error = %e, "node RBAC not created yet; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
