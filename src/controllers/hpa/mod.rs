//! The HorizontalPodAutoscaler controller, as kube-controller-manager's: every 15 s each
//! autoscaling/v2 HPA reads its target's scale, its pods' resource usage from the metrics API
//! (`metrics.k8s.io`) and resizes the target (see `sync`).

mod behavior;
mod conditions;
mod metric;
mod metrics_source;
mod replicas;
mod scale;
mod sync;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use self::behavior::History;
use self::metrics_source::{MetricsApi, MetricsSource};
use super::common::{backoff, Error};
use super::Context;

/// How often each HPA is synced (`--horizontal-pod-autoscaler-sync-period`).
const SYNC_PERIOD: Duration = Duration::from_secs(15);

struct Ctx {
    client: kube::Client,
    metrics: Box<dyn MetricsSource>,
    /// Each HPA's recommendations and scale events, by `namespace/name`.
    histories: Mutex<HashMap<String, History>>,
}

/// Runs the HPA controller.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let state =
        Arc::new(Ctx { client: ctx.client.clone(), metrics: Box::new(MetricsApi(ctx.client.clone())), histories: Mutex::default() });
    let controller = Controller::new(Api::<HorizontalPodAutoscaler>::all(ctx.client.clone()), watcher::Config::default())
        .graceful_shutdown_on(async move { shutdown.cancelled().await });
    backoff::run(controller, reconcile, state).await;
}

async fn reconcile(hpa: Arc<HorizontalPodAutoscaler>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if hpa.metadata.deletion_timestamp.is_some() {
        ctx.histories.lock().remove(&format!("{}/{}", hpa.namespace().unwrap_or_default(), hpa.name_any()));
        return Ok(Action::await_change());
    }
    sync::sync(&ctx, &hpa, k8s_openapi::jiff::Timestamp::now()).await?;
    Ok(Action::requeue(SYNC_PERIOD))
}
