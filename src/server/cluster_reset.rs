//! `orch server --cluster-reset [--cluster-reset-restore-path FILE]`, k3s's way back when
//! quorum is lost for good: the store of this server (or a snapshot's) becomes the first state
//! of a new one-server cluster. The old replica directory is moved aside, a fresh one is seeded
//! with the data (new raft node id, no members, the store revision kept) and bootstrapped; the
//! server then exits and is restarted without the flag, and the other servers re-join with an
//! empty store. A snapshot restored where no cluster ever ran brings its credentials (CA, keys,
//! tokens), opened with the cluster's server token.

use std::path::{Path, PathBuf};

use super::snapshots::{bundle, file};
use super::{credentials, Config, ServerError};
use crate::pki::{self, JoinToken};
use crate::raft::{backup, RaftStore};
use crate::rpc::HttpClient;
use crate::store::mvcc::MvccEngine;
use crate::store::{DurableDb, Revision};

fn refused(why: impl std::fmt::Display) -> ServerError {
    ServerError::Flag(format!("--cluster-reset: {why}"))
}

/// Moves the replica directory `dir` aside; returns where it went.
fn move_aside(dir: &Path) -> Result<PathBuf, ServerError> {
    let old = dir.with_file_name(format!("raft-old-{}", time::OffsetDateTime::now_utc().unix_timestamp()));
    std::fs::rename(dir, &old).map_err(|e| refused(format!("moving {} aside: {e}", dir.display())))?;
    pki::sync_parent(dir)?;
    Ok(old)
}

/// Seeds `raft_dir` with the snapshot at `path`, first unsealing its credentials when this data
/// dir has none (then `--token` must be the snapshot's cluster's server token).
fn restore(config: &Config, raft_dir: &Path, path: &Path) -> Result<(Revision, Option<PathBuf>), ServerError> {
    let (header, entries) = file::open_verified(path).map_err(|e| refused(format!("{}: {e}", path.display())))?;
    if !credentials::has_ca(&config.data_dir) {
        let sealed =
            header.credentials.as_deref().ok_or_else(|| refused("the snapshot carries no credentials and this data dir has none"))?;
        let token = config.token.as_deref().ok_or_else(|| {
            refused("this data dir has no cluster credentials: give --token the server token of the cluster the snapshot was taken from")
        })?;
        let files = bundle::unseal_into(sealed, &JoinToken::parse(token)?.secret, &config.data_dir).map_err(refused)?;
        tracing::info!(files, "restored the cluster's credentials from the snapshot");
    }
    let old = raft_dir.exists().then(|| move_aside(raft_dir)).transpose()?;
    tracing::info!(snapshot = %header.name, revision = header.revision, "restoring the store from a snapshot");
    Ok((backup::seed(raft_dir, &super::store_config(config), entries)?, old))
}

/// Seeds `raft_dir` with the data this server's own store has applied.
fn reset_in_place(config: &Config, raft_dir: &Path) -> Result<(Revision, Option<PathBuf>), ServerError> {
    if !raft_dir.exists() {
        return Err(refused(format!("{} holds no store to reset", raft_dir.display())));
    }
    let old = move_aside(raft_dir)?;
    let entries = {
        let db = DurableDb::open(&old.join("db"), &super::store_config(config))?;
        MvccEngine::open(db.db().open_tree("kv").map_err(crate::store::StoreError::from)?)?.dump()?
    };
    Ok((backup::seed(raft_dir, &super::store_config(config), entries.into_iter().map(Ok))?, Some(old)))
}

/// Resets the cluster; returns what to do next, for the user.
pub async fn cluster_reset(config: &Config, restore_path: Option<&Path>) -> Result<String, ServerError> {
    let data_dir = config.data_dir.as_path();
    pki::private_dir(&data_dir.join("server"))?;
    let raft_dir = data_dir.join("server").join("raft");
    let (revision, old) = match restore_path {
        Some(path) => restore(config, &raft_dir, path)?,
        None => reset_in_place(config, &raft_dir)?,
    };
    if !credentials::has_ca(data_dir) {
        let ca = credentials::tls_dir(data_dir).display().to_string();
        return Err(ServerError::MissingCa { store: raft_dir.display().to_string(), ca });
    }
    let url = super::https_url(super::advertise_ip(config), config.https_listen_port);
    let ca = std::fs::read_to_string(credentials::ca_cert_path(data_dir))?;
    let settings = super::raft_settings(config, &url, HttpClient::new(pki::client_config(&ca, None)?));
    // sled lets go of its file lock when its flusher thread ends, a moment after the seeding
    // handle is dropped.
    let mut tries = 0;
    let store = loop {
        match RaftStore::open(&raft_dir, settings.clone()).await {
            Err(e) if tries < 100 && e.to_string().contains("could not acquire lock") => tries += 1,
            other => break other?,
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    store.bootstrap().await?;
    store.shutdown().await;
    let kept = old.map(|o| format!(" (the old store is kept in {})", o.display())).unwrap_or_default();
    Ok(format!(
        "orch: the store is now a one-server cluster at revision {revision}{kept}.\n\
         Restart this server without --cluster-reset. On every other server, move {} aside and \
         start it with --join {url} to re-join.",
        raft_dir.display()
    ))
}
