//! One pass over the manifests directory: applies the files whose content changed since their
//! Addon last recorded it, and removes what the files deleted from the directory declared.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::addon::{self, Addon};
use super::apply;
use super::discover::{self, Manifest};
use super::documents;
use super::events::{self, Kind};

/// How long a manifest whose objects were rejected waits before it is applied again (one with
/// bad syntax waits for its content to change).
const RETRY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot read the manifests directory: {0}")]
    Dir(#[from] std::io::Error),
    #[error("cannot read or write Addons: {0}")]
    Api(#[from] kube::Error),
}

/// A content that failed, and when to try it again (never: until it changes).
struct Failure {
    checksum: String,
    retry_at: Option<Instant>,
}

/// Deploys one directory's manifests; remembers failures so that a broken file is not
/// reported every pass.
pub struct Deployer {
    client: kube::Client,
    dir: PathBuf,
    /// This server's name, stamped on the Addons it deploys.
    server: String,
    failed: HashMap<PathBuf, Failure>,
    /// Files whose name another file already took, warned about once.
    clashes: BTreeSet<PathBuf>,
}

impl Deployer {
    pub fn new(client: kube::Client, dir: PathBuf, server: String) -> Self {
        Self { client, dir, server, failed: HashMap::new(), clashes: BTreeSet::new() }
    }

    pub async fn sync(&mut self) -> Result<(), SyncError> {
        let files = discover::list(&self.dir)?;
        let (manifests, clashes) = discover::select(&self.dir, &files);
        for path in clashes.iter().filter(|p| !self.clashes.contains(*p)) {
            tracing::warn!(file = %path.display(), "another manifest has the same name; ignoring this one");
        }
        self.clashes = clashes.into_iter().collect();
        let addons = addon::list(&self.client).await?;
        for manifest in &manifests {
            let content = match std::fs::read(&manifest.path) {
                Ok(content) => content,
                Err(e) => {
                    tracing::warn!(file = %manifest.path.display(), error = %e, "cannot read manifest");
                    continue;
                }
            };
            let checksum = documents::checksum(&content);
            let existing = addons.get(&manifest.name);
            if existing.is_some_and(|a| a.checksum == checksum && a.server == self.server && Path::new(&a.source) == manifest.path) {
                self.failed.remove(&manifest.path);
                continue;
            }
            let waiting = self.failed.get(&manifest.path).filter(|f| f.checksum == checksum);
            if waiting.is_some_and(|f| f.retry_at.is_none_or(|at| Instant::now() < at)) {
                continue;
            }
            // One file's trouble does not hold up the others; it is tried again next pass.
            if let Err(e) = self.deploy(manifest, &content, checksum, existing).await {
                tracing::warn!(file = %manifest.path.display(), error = %e, "cannot deploy manifest");
            }
        }
        let current: BTreeSet<&str> = manifests.iter().map(|m| m.name.as_str()).collect();
        let removed: Vec<&Addon> = addons.values().filter(|a| !current.contains(a.name.as_str()) && self.file_removed(a, &files)).collect();
        for gone in removed {
            if let Err(e) = self.remove(gone).await {
                tracing::warn!(file = %gone.source, error = %e, "cannot remove a deleted manifest's Addon");
            }
        }
        Ok(())
    }

    /// Whether `addon` is this server's and its file is no longer in the directory.
    fn file_removed(&self, addon: &Addon, files: &[String]) -> bool {
        let source = Path::new(&addon.source);
        let file = source.file_name().and_then(|f| f.to_str()).unwrap_or_default();
        addon.server == self.server && source.parent() == Some(self.dir.as_path()) && !files.iter().any(|f| f == file)
    }

    /// Applies `manifest`'s objects, deletes those it no longer declares and records the
    /// outcome on its Addon.
    async fn deploy(&mut self, manifest: &Manifest, content: &[u8], checksum: String, existing: Option<&Addon>) -> Result<(), SyncError> {
        let previous = existing.map(|a| a.objects.clone()).unwrap_or_default();
        let mut addon = Addon {
            name: manifest.name.clone(),
            uid: None,
            source: manifest.path.display().to_string(),
            checksum: existing.map(|a| a.checksum.clone()).unwrap_or_default(),
            server: self.server.clone(),
            objects: previous.clone(),
        };
        let objects = match documents::parse(content) {
            Ok(objects) => objects,
            Err(e) => {
                let stored = addon::write(&self.client, &addon).await?;
                let message = format!("Parse manifest at {:?} failed: {e}", stored.source);
                self.report_failure(&stored, checksum, None, "ParseManifestFailed", vec![message]).await;
                return Ok(());
            }
        };
        let (mut declared, mut errors) = (Vec::new(), Vec::new());
        for obj in objects {
            let (reference, applied) = apply::apply(&self.client, obj).await;
            errors.extend(applied.err());
            declared.push(reference);
        }
        for reference in documents::stale(&previous, &declared) {
            if let Err(e) = apply::delete(&self.client, &reference).await {
                errors.push(e);
                // Still listed, so the next pass deletes it.
                declared.push(reference);
            }
        }
        addon.objects = declared;
        if errors.is_empty() {
            addon.checksum = checksum.clone();
        }
        let stored = addon::write(&self.client, &addon).await?;
        if errors.is_empty() {
            self.failed.remove(&manifest.path);
            tracing::info!(file = %manifest.path.display(), objects = stored.objects.len(), "applied manifest");
            let message = format!("Applied manifest at {:?}", stored.source);
            events::record(&self.client, &stored, Kind::Normal, "AppliedManifest", &message).await;
        } else {
            let messages = errors.iter().map(|e| format!("Applying manifest at {:?} failed: {e}", stored.source)).collect();
            self.report_failure(&stored, checksum, Some(Instant::now() + RETRY), "ApplyManifestFailed", messages).await;
        }
        Ok(())
    }

    /// Reports the failures of applying `addon`'s file (content `checksum`) as Warning Events
    /// with `reason`, and remembers them.
    async fn report_failure(&mut self, addon: &Addon, checksum: String, retry_at: Option<Instant>, reason: &str, messages: Vec<String>) {
        for message in &messages {
            tracing::warn!(%reason, "{message}");
            events::record(&self.client, addon, Kind::Warning, reason, message).await;
        }
        self.failed.insert(PathBuf::from(&addon.source), Failure { checksum, retry_at });
    }

    /// Deletes the objects of a removed file, then its Addon (or, when some deletes failed,
    /// records those left to retry).
    async fn remove(&mut self, gone: &Addon) -> Result<(), SyncError> {
        let message = format!("Deleting manifest at {:?}", gone.source);
        events::record(&self.client, gone, Kind::Normal, "DeletingManifest", &message).await;
        let mut left = Vec::new();
        for reference in gone.objects.iter().rev() {
            if let Err(e) = apply::delete(&self.client, reference).await {
                tracing::warn!(file = %gone.source, error = %e, "cannot delete an object of a removed manifest");
                events::record(&self.client, gone, Kind::Warning, "DeleteManifestFailed", &e).await;
                left.push(reference.clone());
            }
        }
        self.failed.remove(Path::new(&gone.source));
        if left.is_empty() {
            addon::delete(&self.client, &gone.name).await?;
            tracing::info!(file = %gone.source, objects = gone.objects.len(), "manifest removed; deleted its objects");
        } else {
            left.reverse();
            addon::write(&self.client, &Addon { objects: left, ..gone.clone() }).await?;
        }
        Ok(())
    }
}
