//! What every node agent does for its Node, hollow or real: registers it (creating it, or
//! updating the labels of one registered before), writes its status through `nodes/status`
//! (learning its uid and podCIDR) and renews its Lease in `kube-node-lease`.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use super::node_object;
use super::NodeError;
use crate::k8s::names::NODE_LEASE_NAMESPACE;

/// How soon a failed Lease renewal is tried again (the kubelet retries at once, a few times):
/// after a server dies the next one answers within a few seconds.
pub const LEASE_RETRY: Duration = Duration::from_secs(1);

/// Whether `e` is an API answer with HTTP status `code`.
pub fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// A node's registration: its Node and its Lease.
pub struct Heartbeat {
    name: String,
    nodes: Api<Node>,
    leases: Api<Lease>,
    lease_seconds: i32,
    uid: String,
    lease_failed: bool,
}

impl Heartbeat {
    /// The registration of node `name`, whose Lease is renewed every `renew_interval`.
    pub fn new(client: kube::Client, name: &str, renew_interval: Duration) -> Self {
        Self {
            name: name.to_string(),
            nodes: Api::all(client.clone()),
            leases: Api::namespaced(client, NODE_LEASE_NAMESPACE),
            lease_seconds: (renew_interval.as_secs() * 4).clamp(1, 40) as i32,
            uid: String::new(),
            lease_failed: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates the Node `node` (a Node object as JSON), or updates the labels of the one
    /// registered before.
    pub async fn register(&mut self, node: Value) -> Result<(), NodeError> {
        let node: Node = serde_json::from_value(node).map_err(|e| NodeError::Decode { what: "Node", source: e })?;
        match self.nodes.create(&PostParams::default(), &node).await {
            Ok(_) => tracing::info!(node = %self.name, "registered the node"),
            Err(e) if is_status(&e, 409) => {
                let labels = json!({ "metadata": { "labels": node.metadata.labels } });
                self.nodes.patch(&self.name, &PatchParams::default(), &Patch::Merge(labels)).await?;
                tracing::info!(node = %self.name, "the node was registered before; updated its labels");
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Writes the whole node status (the heartbeat); returns the Node as stored.
    pub async fn post_status(&mut self, status: Value) -> Result<Node, NodeError> {
        let patch = json!({ "status": status });
        let node = self.nodes.patch_status(&self.name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        self.uid = node.metadata.uid.clone().unwrap_or_default();
        Ok(node)
    }

    /// The Node as stored (to learn its podCIDR as soon as it is assigned).
    pub async fn node(&self) -> Result<Node, NodeError> {
        Ok(self.nodes.get(&self.name).await?)
    }

    /// Renews (or takes) the Lease. Returns true when this renewal ends an outage (the caller
    /// then posts its status at once rather than at the next heartbeat).
    pub async fn renew_lease(&mut self) -> Result<bool, NodeError> {
        let lease = node_object::lease(&self.name, &self.uid, self.lease_seconds);
        let spec = json!({ "spec": lease["spec"] });
        let renewed = match self.leases.patch(&self.name, &PatchParams::default(), &Patch::Merge(spec)).await {
            Err(e) if is_status(&e, 404) => {
                let lease: Lease = serde_json::from_value(lease).map_err(|e| NodeError::Decode { what: "Lease", source: e })?;
                self.leases.create(&PostParams::default(), &lease).await.map(|_| ())
            }
            other => other.map(|_| ()),
        };
        let recovered = renewed.is_ok() && std::mem::take(&mut self.lease_failed);
        self.lease_failed = renewed.is_err();
        renewed?;
        Ok(recovered)
    }
}

/// The node's podCIDR, once the IPAM controller has given it one.
pub fn pod_cidr(node: &Node) -> Option<String> {
    let spec = node.spec.clone().unwrap_or_default();
    spec.pod_cidr.or_else(|| spec.pod_cidrs.and_then(|c| c.into_iter().next()))
}
