//! The scheduler: kube-scheduler's default profile for orch. Watches pods and nodes, keeps a
//! cache of what every node has committed, and binds each pending pod of `default-scheduler`
//! to the best node — filters and scores as kube-scheduler's default plugins, its queueing and
//! backoff, its FailedScheduling wording. Runs inside the controller manager.
//!
//! Layout: `driver` (the loop owning cache + queue) ← `informers` (watches); `framework`
//! (one decision) over `plugins` with `cache`/`node_info`/`pod_info`/`resources`; `binder` and
//! `events` (API writes off the loop), `prebind` (claims bound before the pod); `diagnosis`
//! (failure messages).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::controllers::Context;

pub mod binder;
pub mod cache;
pub mod diagnosis;
pub mod driver;
pub mod events;
pub mod framework;
pub mod informers;
pub mod node_info;
pub mod plugins;
pub mod pod_info;
pub mod prebind;
pub mod prepared;
pub mod queue;
pub mod resources;

/// Watch updates buffered between the watches and the loop.
const UPDATE_BUFFER: usize = 4096;
/// How long in-flight bindings and event writes get to finish at shutdown.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the scheduler until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let (update_tx, update_rx) = mpsc::channel(UPDATE_BUFFER);
    let (outcome_tx, outcome_rx) = mpsc::unbounded_channel();
    informers::start(&ctx.informers, &tracker, &shutdown, update_tx);
    let events = events::Recorder::start(ctx.client.clone(), &tracker, shutdown.clone());
    let binder = binder::Binder::new(ctx.client.clone(), tracker.clone(), outcome_tx);
    tracing::info!("scheduler started");
    let volumes = plugins::volume_binding::VolumeStores {
        claims: ctx.informers.get().store(),
        volumes: ctx.informers.get().store(),
        classes: ctx.informers.get().store(),
    };
    let algorithm = framework::Algorithm::with_volumes(volumes);
    driver::Driver::new(binder, events, algorithm).run(update_rx, outcome_rx, shutdown).await;
    tracker.close();
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        tracing::warn!("scheduler tasks still running after {DRAIN:?}; leaving them");
    }
}
