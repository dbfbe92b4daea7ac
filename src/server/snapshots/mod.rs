//! Snapshots of the store, as k3s's `etcd-snapshot`: `POST /v1-orch/snapshots` (cluster admins)
//! saves a consistent, checksummed copy with its revision and the sealed server credentials to
//! the snapshot dir (`<data-dir>/server/db/snapshots` by default), the schedule
//! (`--snapshot-schedule-cron`, default every 12 h) saves `orch-snapshot-<node>-<time>` and
//! prunes to `--snapshot-retention`; listing, deleting and pruning work on the directory alone,
//! so `orch snapshot ls` also works while the server is down.

pub mod bundle;
pub mod cron;
pub mod file;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use file::Header;

use crate::pki::Peer;
use crate::raft::RaftStore;

pub const SAVE_PATH: &str = "/v1-orch/snapshots";
/// The name prefix of scheduled snapshots (k3s: `etcd-snapshot`).
pub const SCHEDULED_PREFIX: &str = "orch-snapshot";
/// The name prefix of `orch snapshot save` without `--name` (k3s's too).
pub const ON_DEMAND_PREFIX: &str = "on-demand";
/// How long building the copy may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// `<data-dir>/server/db/snapshots`, k3s's place.
pub fn default_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("db").join("snapshots")
}

/// What the server saves snapshots with.
pub struct Snapshots {
    pub store: Arc<RaftStore>,
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub node: String,
    /// The server token's secret: seals the credentials inside each snapshot.
    pub token_secret: String,
    /// One save at a time.
    pub busy: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SaveRequest {
    /// Name prefix; the node name and the time are appended as k3s does.
    #[serde(default)]
    pub name: Option<String>,
}

impl Snapshots {
    /// Saves a snapshot named `<prefix>-<node>-<unix time>`; returns its header.
    pub async fn save(&self, prefix: &str) -> Result<Header, String> {
        let fits = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
        if prefix.is_empty() || prefix.len() > 200 || !prefix.bytes().all(fits) || prefix.starts_with('.') {
            return Err(format!("snapshot name {prefix:?}: use letters, digits, '-', '_' and '.' (at most 200)"));
        }
        let _one = self.busy.lock().await;
        crate::pki::private_dir(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let now = time::OffsetDateTime::now_utc();
        let name = format!("{prefix}-{}-{}", self.node, now.unix_timestamp());
        let mut copy = self.store.consistent_copy(BUILD_TIMEOUT).await.map_err(|e| format!("copying the store: {e}"))?;
        let credentials = bundle::seal(&self.data_dir, &self.token_secret).map_err(|e| format!("sealing the credentials: {e}"))?;
        let header = Header {
            name: name.clone(),
            node: self.node.clone(),
            created_at: crate::k8s::time::now_rfc3339(),
            credentials: Some(credentials),
            ..Default::default()
        };
        let path = self.dir.join(&name);
        let header = tokio::task::spawn_blocking(move || file::write(&path, header, &mut copy))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("writing the snapshot: {e}"))?;
        tracing::info!(snapshot = %header.name, revision = header.revision, bytes = header.size, "saved a store snapshot");
        Ok(header)
    }

    /// Saves on `schedule` and prunes to `retention`, until `cancel`.
    pub async fn run_schedule(self: Arc<Self>, schedule: cron::Schedule, retention: usize, cancel: CancellationToken) {
        loop {
            let now = time::OffsetDateTime::now_utc();
            let Some(next) = schedule.next_after(now) else {
                tracing::warn!("the snapshot schedule never fires again");
                return;
            };
            let wait = Duration::try_from(next - now).unwrap_or_default();
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            match self.save(SCHEDULED_PREFIX).await {
                Ok(_) => match prune(&self.dir, SCHEDULED_PREFIX, retention) {
                    Ok(gone) if !gone.is_empty() => tracing::info!(?gone, "pruned old snapshots"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "pruning snapshots"),
                },
                Err(e) => tracing::warn!(error = %e, "scheduled snapshot failed"),
            }
        }
    }
}

pub fn routes(state: Arc<Snapshots>) -> Router {
    Router::new().route(SAVE_PATH, post(save)).with_state(state)
}

async fn save(State(s): State<Arc<Snapshots>>, Extension(peer): Extension<Peer>, Json(req): Json<SaveRequest>) -> Response {
    if let Some(refused) = super::secrets_encrypt::admin_only(&peer, "take snapshots") {
        return refused;
    }
    match s.save(req.name.as_deref().unwrap_or(ON_DEMAND_PREFIX)).await {
        Ok(header) => Json(Header { credentials: None, ..header }).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

/// A snapshot in the directory.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub header: Header,
    pub location: PathBuf,
}

/// The snapshots in `dir`, oldest first (files that are not snapshots are left out).
pub fn list(dir: &Path) -> std::io::Result<Vec<Listed>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out: Vec<Listed> = entries
        .flatten()
        .filter(|e| e.path().is_file())
        .filter_map(|e| {
            file::read_header(&e.path()).ok().map(|(h, _)| Listed { header: Header { credentials: None, ..h }, location: e.path() })
        })
        .collect();
    out.sort_by(|a, b| (&a.header.created_at, &a.header.name).cmp(&(&b.header.created_at, &b.header.name)));
    Ok(out)
}

/// Deletes the snapshot `name` from `dir`.
pub fn delete(dir: &Path, name: &str) -> Result<(), String> {
    let found = list(dir).map_err(|e| e.to_string())?.into_iter().find(|s| s.header.name == name);
    let Some(found) = found else { return Err(format!("snapshot {name} not found in {}", dir.display())) };
    std::fs::remove_file(&found.location).map_err(|e| format!("{}: {e}", found.location.display()))?;
    crate::pki::sync_parent(&found.location).map_err(|e| e.to_string())
}

/// Deletes the oldest snapshots named `<prefix>-…` beyond the newest `retention`; returns the
/// names deleted.
pub fn prune(dir: &Path, prefix: &str, retention: usize) -> Result<Vec<String>, String> {
    let ours: Vec<Listed> = list(dir)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|s| s.header.name.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('-')))
        .collect();
    let excess = ours.len().saturating_sub(retention);
    let mut gone = Vec::new();
    for old in &ours[..excess] {
        delete(dir, &old.header.name)?;
        gone.push(old.header.name.clone());
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(dir: &Path, name: &str, created_at: &str) {
        let header = Header { name: name.into(), created_at: created_at.into(), ..Default::default() };
        std::fs::write(dir.join(name), format!("orch-snapshot/1\n{}\n", serde_json::to_string(&header).unwrap())).unwrap();
    }

    #[test]
    fn prune_keeps_the_newest_of_one_prefix() {
        let dir = tempfile::tempdir().unwrap();
        for (i, name) in ["orch-snapshot-n1-1", "orch-snapshot-n1-2", "orch-snapshot-n1-3", "on-demand-n1-4"].iter().enumerate() {
            fake(dir.path(), name, &format!("2026-12-05T10:0{i}:00Z"));
        }
        std::fs::write(dir.path().join("notes.txt"), "not a snapshot").unwrap();
        assert_eq!(list(dir.path()).unwrap().len(), 4);
        assert_eq!(prune(dir.path(), SCHEDULED_PREFIX, 2).unwrap(), ["orch-snapshot-n1-1"]);
        let left: Vec<_> = list(dir.path()).unwrap().into_iter().map(|s| s.header.name).collect();
        assert_eq!(left, ["orch-snapshot-n1-2", "orch-snapshot-n1-3", "on-demand-n1-4"]);
        assert!(delete(dir.path(), "nope").unwrap_err().contains("not found"));
        delete(dir.path(), "on-demand-n1-4").unwrap();
        assert_eq!(list(dir.path()).unwrap().len(), 2);
    }
}
