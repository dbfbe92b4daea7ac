//! Owned background work: the tasks a long-lived part of orch starts (the API's store
//! followers and watch-cache feeders, a kubelet's workers, streams and API server, a hollow
//! node's loop) run on one `TaskTracker` and end when one `CancellationToken` fires, so
//! stopping can wait for all of them, for a bounded time. A leaf: it knows nothing of orch.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The tasks of one owner and the token that stops them.
#[derive(Clone, Default)]
pub struct Tasks {
    pub tracker: TaskTracker,
    pub cancel: CancellationToken,
}

impl Tasks {
    pub fn new(tracker: TaskTracker, cancel: CancellationToken) -> Self {
        Self { tracker, cancel }
    }

    /// Runs `work` as a tracked task that is dropped when the token fires.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) -> JoinHandle<Option<()>> {
        self.tracker.spawn(self.cancel.clone().run_until_cancelled_owned(work))
    }

    /// Fires the token and waits at most `bound` for every task to end; false when some did
    /// not.
    pub async fn stop(&self, bound: Duration) -> bool {
        self.cancel.cancel();
        self.tracker.close();
        tokio::time::timeout(bound, self.tracker.wait()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stopping_ends_and_drains_the_tasks() {
        let tasks = Tasks::default();
        tasks.spawn(std::future::pending());
        assert!(tasks.stop(Duration::from_secs(1)).await, "the task ended on cancel");
    }
}
