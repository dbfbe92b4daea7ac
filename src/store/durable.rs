//! Flushes of a sled database that reach stable storage.
//!
//! sled 0.34's `flush` writes its log with `sync_file_range`: data pages only — not the file's
//! size or other metadata, and no flush of the device's write cache — and it never syncs the
//! files it keeps large values in (`blobs/<lsn>`, values above about 128 KiB); only its
//! background thread calls `fsync`, once a second. [`DurableDb::flush`] finishes the job:
//! after sled's flush it `fdatasync`s every blob file it has not synced before, then the
//! `blobs/` directory (so their names are on disk), then the log file `db` — the commit point,
//! written last so that a log record never reaches the disk before the blob it points to.
//! One call covers every write made before it began, so callers group commits around it.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{StoreConfig, StoreError};

/// The file system calls a durable flush makes (a fake records them in tests).
pub trait SyncFs: Send + Sync + 'static {
    /// `fdatasync` of the file at `path`.
    fn sync_file(&self, path: &Path) -> std::io::Result<()>;
    /// `fsync` of the directory at `path`, making the names in it durable.
    fn sync_dir(&self, path: &Path) -> std::io::Result<()>;
    /// The names in the directory at `path` (empty when it does not exist).
    fn list_dir(&self, path: &Path) -> std::io::Result<Vec<OsString>>;
}

/// The real file system.
pub struct RealFs;

impl SyncFs for RealFs {
    fn sync_file(&self, path: &Path) -> std::io::Result<()> {
        std::fs::File::open(path)?.sync_data()
    }

    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }

    fn list_dir(&self, path: &Path) -> std::io::Result<Vec<OsString>> {
        match std::fs::read_dir(path) {
            Ok(entries) => entries.map(|e| e.map(|e| e.file_name())).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// A sled database with flushes that are durable on return.
pub struct DurableDb {
    db: sled::Db,
    dir: PathBuf,
    fs: Arc<dyn SyncFs>,
    /// Blob files already synced; the lock also serialises the syncs of concurrent flushes.
    synced_blobs: Mutex<HashSet<OsString>>,
}

impl DurableDb {
    /// Opens the sled database under `path`, sized by `config`, in an owner-only directory (the
    /// store holds every Secret).
    pub fn open(path: &Path, config: &StoreConfig) -> Result<Arc<Self>, StoreError> {
        Self::open_with(path, config, Arc::new(RealFs))
    }

    /// [`Self::open`] with the file system calls of flushes going to `fs`.
    pub fn open_with(path: &Path, config: &StoreConfig, fs: Arc<dyn SyncFs>) -> Result<Arc<Self>, StoreError> {
        let private = |e: std::io::Error| StoreError::Storage(format!("{}: {e}", path.display()));
        crate::pki::private_dir(path).map_err(private)?;
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(config.cache_capacity)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(Some(1000))
            .open()
            .map_err(StoreError::from)?;
        crate::pki::restrict_tree(path).map_err(private)?;
        Ok(Arc::new(Self { db, dir: path.to_path_buf(), fs, synced_blobs: Mutex::default() }))
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Makes every write to the database made before the call durable (blocking).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        let io = |what: &str| {
            let what = what.to_string();
            move |e: std::io::Error| StoreError::Storage(format!("syncing {what}: {e}"))
        };
        let mut synced = self.synced_blobs.lock();
        let blobs = self.dir.join("blobs");
        let present: HashSet<OsString> = self.fs.list_dir(&blobs).map_err(io("the blob directory"))?.into_iter().collect();
        let mut new: Vec<&OsString> = present.difference(&synced).collect();
        new.sort();
        for name in &new {
            match self.fs.sync_file(&blobs.join(name)) {
                // Removed by sled since the listing: it no longer holds live data.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                r => r.map_err(io("a blob file"))?,
            }
        }
        if !new.is_empty() {
            self.fs.sync_dir(&blobs).map_err(io("the blob directory"))?;
        }
        *synced = present;
        self.fs.sync_file(&self.dir.join("db")).map_err(io("the log file"))
    }

    /// [`Self::flush`] on the blocking pool.
    pub async fn flush_async(self: &Arc<Self>) -> Result<(), StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.flush()).await.map_err(|e| StoreError::Storage(format!("flush task: {e}")))?
    }
}

/// A [`SyncFs`] for tests: the real file system, with every sync recorded in order.
#[cfg(test)]
#[derive(Default)]
pub struct RecordingFs {
    pub calls: Mutex<Vec<String>>,
}

#[cfg(test)]
impl RecordingFs {
    /// The recorded calls since the last take, as `file <name>` / `dir <name>`.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock())
    }

    fn record(&self, kind: &str, path: &Path) {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let parent = path.parent().and_then(|p| p.file_name()).unwrap_or_default().to_string_lossy();
        self.calls.lock().push(format!("{kind} {parent}/{name}"));
    }
}

#[cfg(test)]
impl SyncFs for RecordingFs {
    fn sync_file(&self, path: &Path) -> std::io::Result<()> {
        self.record("file", path);
        RealFs.sync_file(path)
    }

    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.record("dir", path);
        RealFs.sync_dir(path)
    }

    fn list_dir(&self, path: &Path) -> std::io::Result<Vec<OsString>> {
        RealFs.list_dir(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_then_their_directory_then_the_log_are_synced_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(RecordingFs::default());
        let db = DurableDb::open_with(&dir.path().join("db"), &StoreConfig::default(), fs.clone()).unwrap();
        db.flush().unwrap();
        fs.take();

        db.db().insert("small", b"x".as_slice()).unwrap();
        db.flush().unwrap();
        assert_eq!(fs.take(), vec!["file db/db"], "a small write lives in the log file only");

        // Values this large go to a blob file of their own.
        db.db().insert("large", vec![7u8; 1 << 20]).unwrap();
        db.flush().unwrap();
        let calls = fs.take();
        let blob_syncs = calls.iter().filter(|c| c.starts_with("file blobs/")).count();
        assert!(blob_syncs >= 1, "the blob file is synced: {calls:?}");
        assert_eq!(calls[blob_syncs..], ["dir db/blobs", "file db/db"], "blobs, then their directory, then the log: {calls:?}");

        db.db().insert("small2", b"y".as_slice()).unwrap();
        db.flush().unwrap();
        assert_eq!(fs.take(), vec!["file db/db"], "a blob is synced once, not at every flush");
    }
}
