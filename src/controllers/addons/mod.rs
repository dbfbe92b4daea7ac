//! Auto-deployed manifests (k3s's `server/manifests`): every manifest file of the directory
//! (see `discover`) is applied at start and again whenever its content changes (the directory
//! is read every few seconds), recorded as an `Addon` in kube-system; when a file is removed,
//! the objects it declared are deleted, and its Addon too. Errors become Warning Events on
//! the Addon and log lines; the other files still apply.
//!
//! It runs as a controller, so only the elected controller manager applies: one writer, and
//! no two servers with different files fighting over the same objects. Each Addon remembers
//! the server whose directory holds its file, and only that server deletes what it declared,
//! so a new leader without the file leaves the objects alone (keep the same manifests on
//! every server, as with k3s).

mod addon;
mod apply;
mod discover;
mod documents;
mod events;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Context;

/// How often the directory is read.
const PERIOD: Duration = Duration::from_secs(5);

/// Deploys the manifests of `ctx.settings.manifests_dir` until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let Some(dir) = ctx.settings.manifests_dir.clone() else { return };
    let mut deployer = sync::Deployer::new(ctx.client.clone(), dir, crate::host::hostname());
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match deployer.sync().await {
            Ok(()) => {}
            // Right after the first start, before the built-in CRDs are created.
            Err(sync::SyncError::Api(e)) if super::common::is_not_found(&e) => tracing::debug!("Addons not served yet"),
            Err(e) => tracing::warn!(error = %e, "cannot deploy the manifests; retrying"),
        }
    }
}
