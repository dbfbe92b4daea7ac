//! Pod and node watches (kube-runtime watchers with the default backoff) forwarded to the
//! scheduling loop as messages, so the loop alone owns the cache and the queue.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A change seen by one of the watches.
#[derive(Debug)]
pub enum Update {
    Pod(watcher::Event<Arc<Pod>>),
    Node(watcher::Event<Arc<Node>>),
}

/// Starts both watches; they stop at `shutdown` or when the loop drops its receiver.
pub fn start(client: &kube::Client, tracker: &TaskTracker, shutdown: &CancellationToken, tx: mpsc::Sender<Update>) {
    tracker.spawn(forward(Api::<Pod>::all(client.clone()), Update::Pod, tx.clone(), shutdown.clone()));
    tracker.spawn(forward(Api::<Node>::all(client.clone()), Update::Node, tx, shutdown.clone()));
}

async fn forward<K>(api: Api<K>, wrap: fn(watcher::Event<Arc<K>>) -> Update, tx: mpsc::Sender<Update>, shutdown: CancellationToken)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = events.next() => e,
        };
        match event {
            None => return,
            Some(Err(e)) => tracing::debug!("scheduler watch error (retrying): {e}"),
            Some(Ok(e)) => {
                // The cache keeps every pod; managedFields would be most of its memory.
                let e = e.modify(crate::controllers::trim_managed_fields);
                let e = match e {
                    watcher::Event::Apply(o) => watcher::Event::Apply(Arc::new(o)),
                    watcher::Event::Delete(o) => watcher::Event::Delete(Arc::new(o)),
                    watcher::Event::InitApply(o) => watcher::Event::InitApply(Arc::new(o)),
                    watcher::Event::Init => watcher::Event::Init,
                    watcher::Event::InitDone => watcher::Event::InitDone,
                };
                if tx.send(wrap(e)).await.is_err() {
                    return;
                }
            }
        }
    }
}
