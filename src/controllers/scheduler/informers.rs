//! The shared pod and node informers forwarded to the scheduling loop as messages, so the
//! loop alone owns the cache and the queue.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::watcher::Event;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::controllers::informer::{Change, Informers, Watched};

/// A change seen by one of the watches.
#[derive(Debug)]
pub enum Update {
    Pod(Event<Arc<Pod>>),
    Node(Event<Arc<Node>>),
    /// A claim, volume or storage class changed: pods waiting on them may fit now.
    Volumes,
}

/// Forwards both informers; stops at `shutdown` or when the loop drops its receiver.
pub fn start(informers: &Informers, tracker: &TaskTracker, shutdown: &CancellationToken, tx: mpsc::Sender<Update>) {
    tracker.spawn(forward(informers.get::<Pod>().subscribe(), Update::Pod, tx.clone(), shutdown.clone()));
    tracker.spawn(forward(informers.get::<Node>().subscribe(), Update::Node, tx.clone(), shutdown.clone()));
    let volumes = futures::stream::select_all([
        informers.get::<PersistentVolumeClaim>().touched().map(drop).boxed(),
        informers.get::<PersistentVolume>().touched().map(drop).boxed(),
        informers.get::<StorageClass>().touched().map(drop).boxed(),
    ]);
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        let mut volumes = std::pin::pin!(volumes);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                c = volumes.next() => if c.is_none() || tx.send(Update::Volumes).await.is_err() { return },
            }
        }
    });
}

async fn forward<K: Watched>(
    changes: impl Stream<Item = Change<K>>,
    wrap: fn(Event<Arc<K>>) -> Update,
    tx: mpsc::Sender<Update>,
    shutdown: CancellationToken,
) {
    let mut changes = std::pin::pin!(changes);
    loop {
        let change = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = changes.next() => c,
        };
        let event = match change {
            None => return,
            Some(Change::Init) => Event::Init,
            Some(Change::InitApply(o, _)) => Event::InitApply(o),
            Some(Change::InitDone) => Event::InitDone,
            Some(Change::Apply(o, _)) => Event::Apply(o),
            Some(Change::Delete(o)) => Event::Delete(o),
        };
        if tx.send(wrap(event)).await.is_err() {
            return;
        }
    }
}
