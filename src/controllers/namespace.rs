//! The namespace lifecycle controller: a deleted namespace stays (phase Terminating) while its
//! `kubernetes` finalizer is listed; this controller deletes everything in it (every namespaced
//! resource discovery reports), waits until nothing is left — other finalizers may hold
//! objects a while — reporting progress in Kubernetes' Namespace* conditions, then removes
//! the finalizer through `PUT /api/v1/namespaces/<ns>/finalize`, and the API deletes it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::common::{backoff, ok_if_gone};
use super::Context;
use crate::k8s::time as kube_time;

/// The spec finalizer the API puts on every namespace.
pub const FINALIZER: &str = "kubernetes";
/// How soon to look again while content remains.
const RECHECK: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let controller = Controller::new(Api::<Namespace>::all(ctx.client.clone()), watcher::Config::default())
        .graceful_shutdown_on(shutdown.cancelled_owned());
    backoff::run(controller, reconcile, ctx).await;
}

/// What deleting a namespace's content found.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Objects still present, by resource.
    pub remaining: BTreeMap<String, usize>,
    /// Finalizers holding objects, with how many objects each holds.
    pub finalizers: BTreeMap<String, usize>,
    pub discovery_error: Option<String>,
    pub delete_errors: Vec<String>,
}

impl Sweep {
    pub fn empty(&self) -> bool {
        self.remaining.is_empty() && self.discovery_error.is_none()
    }

    /// The conditions Kubernetes reports on a Terminating namespace.
    pub fn conditions(&self) -> Vec<NamespaceCondition> {
        let now = kube_time::now();
        let condition = |type_: &str, failing: bool, reason_true: &str, message: String| NamespaceCondition {
            type_: type_.into(),
            status: if failing { "True" } else { "False" }.into(),
            reason: Some(if failing { reason_true } else { "ContentDeleted" }.into()),
            message: Some(if failing { message } else { "All content successfully deleted, may be waiting on finalization".into() }),
            last_transition_time: Some(now.clone()),
        };
        let list =
            |m: &BTreeMap<String, usize>| m.iter().map(|(k, n)| format!("{k} has {n} resource instances")).collect::<Vec<_>>().join(", ");
        vec![
            NamespaceCondition {
                reason: Some(if self.discovery_error.is_some() { "DiscoveryFailed" } else { "ResourcesDiscovered" }.into()),
                message: Some(self.discovery_error.clone().unwrap_or_else(|| "All resources successfully discovered".into())),
                ..condition("NamespaceDeletionDiscoveryFailure", self.discovery_error.is_some(), "DiscoveryFailed", String::new())
            },
            NamespaceCondition {
                reason: Some("ParsedGroupVersions".into()),
                message: Some("All legacy kube types successfully parsed".into()),
                ..condition("NamespaceDeletionGroupVersionParsingFailure", false, "", String::new())
            },
            condition(
                "NamespaceDeletionContentFailure",
                !self.delete_errors.is_empty(),
                "ContentDeletionFailed",
                self.delete_errors.join("; "),
            ),
            condition(
                "NamespaceContentRemaining",
                !self.remaining.is_empty(),
                "SomeResourcesRemain",
                format!("Some resources are remaining: {}", list(&self.remaining)),
            ),
            condition(
                "NamespaceFinalizersRemaining",
                !self.finalizers.is_empty(),
                "SomeFinalizersRemain",
                format!("Some content in the namespace has finalizers remaining: {}", list(&self.finalizers)),
            ),
        ]
    }
}

/// Deletes every object in `ns` and reports what is left.
async fn sweep(client: &kube::Client, ns: &str) -> Sweep {
    let mut out = Sweep::default();
    let resources = match super::api_resources::namespaced(client).await {
        Ok(r) => r,
        Err(e) => {
            out.discovery_error = Some(format!("discovery failed: {e}"));
            return out;
        }
    };
    for (ar, _) in resources {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let items = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(e) => {
                out.delete_errors.push(format!("listing {}: {e}", ar.plural));
                continue;
            }
        };
        for obj in &items {
            if obj.metadata.deletion_timestamp.is_none() {
                if let Err(e) = ok_if_gone(api.delete(&obj.name_any(), &DeleteParams::background()).await) {
                    out.delete_errors.push(format!("deleting {} {}: {e}", ar.plural, obj.name_any()));
                }
            }
            for f in obj.finalizers() {
                *out.finalizers.entry(f.clone()).or_default() += 1;
            }
        }
        // Whatever the deletes did not remove at once is still there.
        let left = api.list(&ListParams::default()).await.map(|l| l.items.len()).unwrap_or(items.len());
        if left > 0 {
            let key = if ar.group.is_empty() { ar.plural.clone() } else { format!("{}.{}", ar.plural, ar.group) };
            out.remaining.insert(key, left);
        }
    }
    out
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let finalizers = ns.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default();
    if ns.metadata.deletion_timestamp.is_none() || !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let result = sweep(&ctx.client, &name).await;
    if !result.empty() {
        tracing::debug!(namespace = %name, remaining = ?result.remaining, "namespace content remains");
        let patch = json!({ "status": { "phase": "Terminating", "conditions": result.conditions() } });
        if let Err(e) = ok_if_gone(namespaces.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await) {
            tracing::debug!(namespace = %name, error = %e, "could not record namespace conditions");
        }
        return Ok(Action::requeue(RECHECK));
    }
    let mut done = (*ns).clone();
    if let Some(spec) = done.spec.as_mut() {
        spec.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
    }
    ok_if_gone(namespaces.replace_subresource("finalize", &name, &PostParams::default(), &done).await)?;
    tracing::info!(namespace = %name, "namespace emptied and finalized");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_say_what_remains() {
        let mut sweep = Sweep::default();
        sweep.remaining.insert("pods".into(), 2);
        sweep.finalizers.insert("example.com/hold".into(), 1);
        let conditions = sweep.conditions();
        let by_type = |t: &str| conditions.iter().find(|c| c.type_ == t).unwrap();
        assert_eq!(by_type("NamespaceContentRemaining").status, "True");
        assert_eq!(
            by_type("NamespaceContentRemaining").message.as_deref(),
            Some("Some resources are remaining: pods has 2 resource instances")
        );
        assert_eq!(by_type("NamespaceFinalizersRemaining").reason.as_deref(), Some("SomeFinalizersRemain"));
        assert_eq!(by_type("NamespaceDeletionContentFailure").status, "False");
        assert_eq!(by_type("NamespaceDeletionDiscoveryFailure").status, "False");
        assert!(!sweep.empty());
        assert!(Sweep::default().empty());
    }
}
