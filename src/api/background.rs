//! Where the API's background work runs — the RBAC and CRD followers and the watch-cache
//! feeders: each task is tracked by the server's `TaskTracker` and ends when its
//! `CancellationToken` fires, so shutdown drains them.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The owner of the API's background tasks.
#[derive(Clone, Default)]
pub struct Background {
    pub tasks: TaskTracker,
    pub cancel: CancellationToken,
}

impl Background {
    pub fn new(tasks: TaskTracker, cancel: CancellationToken) -> Self {
        Self { tasks, cancel }
    }

    /// Runs `work` as a tracked task that is dropped when the token fires.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = work => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cancelling_ends_and_drains_the_tasks() {
        let bg = Background::default();
        bg.spawn(std::future::pending());
        bg.cancel.cancel();
        bg.tasks.close();
        tokio::time::timeout(std::time::Duration::from_secs(1), bg.tasks.wait()).await.expect("the task ended on cancel");
    }
}
