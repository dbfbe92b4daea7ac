//! The resource quota controller: keeps each ResourceQuota's status (`hard` as in the spec,
//! `used` from `k8s::quota`) current as pods, services, configmaps, secrets and
//! PersistentVolumeClaims of its namespace come and go. Admission enforces the quota.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, ResourceQuota, ResourceQuotaStatus, Secret, Service};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::common::{backoff, ok_if_gone};
use super::Context;
use crate::k8s::quota::{used, Objects};

/// How often usage is recounted even without changes (as kube-controller-manager's resync).
const RESYNC: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// The quotas of an object's namespace.
fn quotas_of<K: Resource>(
    quotas: Store<ResourceQuota>,
) -> impl Fn(Arc<K>) -> Vec<ObjectRef<ResourceQuota>> + Send + Sync + Clone + 'static {
    move |obj: Arc<K>| {
        let ns = obj.meta().namespace.clone();
        quotas.state().into_iter().filter(|q| q.namespace() == ns).map(|q| ObjectRef::from_obj(&*q)).collect()
    }
}

pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let controller = Controller::new(Api::<ResourceQuota>::all(client.clone()), watcher::Config::default());
    let quotas = controller.store();
    let informers = &ctx.informers;
    let controller = controller
        .watches_shared_stream(informers.get::<Pod>().touched(), quotas_of(quotas.clone()))
        .watches_shared_stream(informers.get::<Service>().touched(), quotas_of(quotas.clone()))
        .watches_shared_stream(informers.get::<ConfigMap>().touched(), quotas_of(quotas.clone()))
        .watches_shared_stream(informers.get::<Secret>().touched(), quotas_of(quotas.clone()))
        .watches_shared_stream(informers.get::<PersistentVolumeClaim>().touched(), quotas_of(quotas))
        .graceful_shutdown_on(shutdown.cancelled_owned());
    backoff::run(controller, reconcile, ctx).await;
}

async fn reconcile(quota: Arc<ResourceQuota>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = quota.namespace().unwrap_or_default();
    let hard = quota.spec.as_ref().and_then(|s| s.hard.clone()).unwrap_or_default();
    let all = ListParams::default();
    let client = &ctx.client;
    let objects = Objects {
        pods: Api::<Pod>::namespaced(client.clone(), &ns).list(&all).await?.items,
        services: Api::<Service>::namespaced(client.clone(), &ns).list(&all).await?.items,
        config_maps: Api::<ConfigMap>::namespaced(client.clone(), &ns).list(&all).await?.items,
        secrets: Api::<Secret>::namespaced(client.clone(), &ns).list(&all).await?.items,
        claims: Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns).list(&all).await?.items,
    };
    let status = ResourceQuotaStatus { used: Some(used(&hard, &objects)), hard: Some(hard) };
    if quota.status.as_ref() != Some(&status) {
        let api: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns);
        ok_if_gone(api.patch_status(&quota.name_any(), &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await)?;
    }
    Ok(Action::requeue(RESYNC))
}
