//! The PersistentVolume controller (kube-controller-manager's `persistentvolume-binder`) with
//! k3s's local-path provisioner built in: binds claims to volumes (static and provisioned,
//! pre-bound by `volumeName` or `claimRef`), keeps their phases (claims Pending/Bound/Lost,
//! volumes Available/Bound/Released/Failed), reclaims released volumes, gives claims without
//! a class the default StorageClass, and provisions `rancher.io/local-path` claims on the node
//! the scheduler chose (`volume.kubernetes.io/selected-node`). Every claim, volume or class
//! change resyncs all of them (binding looks across claims and volumes).
//!
//! Layout: `claims` and `volumes` (one object's sync each), `matching` (pure binding
//! decisions, shared with the scheduler), `writes` (API writes), `local_path` (the
//! provisioner).

mod claims;
pub mod local_path;
pub mod matching;
mod volumes;
mod writes;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::common::events;
use super::Context;

/// Set on a claim once its binding is complete.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a claim or volume whose side of the binding the controller wrote.
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The node the scheduler chose for a claim that waits for its first consumer.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The provisioner that is to make a claim's volume.
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The provisioner that made a volume.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// The component its Events come from.
const COMPONENT: &str = "persistentvolume-controller";
/// How often everything is resynced without a change.
const RESYNC: Duration = Duration::from_secs(15);
/// How soon a sync that failed somewhere is repeated.
const RETRY: Duration = Duration::from_secs(2);
/// How long a burst of changes is gathered before one sync.
const SETTLE: Duration = Duration::from_millis(100);

/// The caches and what one sync needs.
struct State {
    client: kube::Client,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    nodes: Store<Node>,
    /// Where local-path volumes go (`--default-local-storage-path`); none with
    /// `--disable local-storage`.
    storage_path: Option<PathBuf>,
    /// (uid, reason, message) of the events already recorded, so a waiting claim is told once.
    noted: HashSet<(String, String, String)>,
}

impl State {
    /// Records an event on `obj` unless this one was recorded before.
    async fn note<K: Resource<DynamicType = ()>>(
        &mut self,
        obj: &K,
        warning: bool,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let uid = obj.meta().uid.clone().unwrap_or_default();
        if self.noted.insert((uid, reason.to_string(), message.to_string())) {
            events::record(&self.client, obj, COMPONENT, warning, reason, message).await;
        }
        Ok(())
    }

    /// Syncs every claim, then every volume; false when some sync failed.
    async fn sync(&mut self) -> bool {
        let mut ok = true;
        for claim in self.claims.state() {
            if let Err(e) = self.sync_claim(&claim).await {
                tracing::debug!(claim = %claim.name_any(), error = %e, "claim sync failed; retrying");
                ok = false;
            }
        }
        for pv in self.volumes.state() {
            if let Err(e) = self.sync_volume(&pv).await {
                tracing::debug!(volume = %pv.name_any(), error = %e, "volume sync failed; retrying");
                ok = false;
            }
        }
        let live: HashSet<String> = self.claims.state().iter().filter_map(|c| c.uid()).collect();
        let volumes: HashSet<String> = self.volumes.state().iter().filter_map(|v| v.uid()).collect();
        self.noted.retain(|(uid, _, _)| live.contains(uid) || volumes.contains(uid));
        ok
    }
}

/// Runs the controller until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let informers = &ctx.informers;
    let (claims, volumes) = (informers.get::<PersistentVolumeClaim>(), informers.get::<PersistentVolume>());
    let (classes, nodes) = (informers.get::<StorageClass>(), informers.get::<Node>());
    let mut changes = std::pin::pin!(futures::stream::select_all([
        claims.touched().map(drop).boxed(),
        volumes.touched().map(drop).boxed(),
        classes.touched().map(drop).boxed(),
    ]));
    let Some(claims) = claims.ready(&shutdown).await else { return };
    let Some(volumes) = volumes.ready(&shutdown).await else { return };
    let Some(classes) = classes.ready(&shutdown).await else { return };
    let Some(nodes) = nodes.ready(&shutdown).await else { return };
    let storage_path = ctx.settings.local_storage_path.clone();
    let mut state = State { client: ctx.client.clone(), claims, volumes, classes, nodes, storage_path, noted: HashSet::new() };
    loop {
        let wait = if state.sync().await { RESYNC } else { RETRY };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = changes.next() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        tokio::time::sleep(SETTLE).await;
        while futures::FutureExt::now_or_never(changes.next()).flatten().is_some() {}
    }
}
