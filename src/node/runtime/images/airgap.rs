//! The airgap directory `<data-dir>/agent/images/`: every `*.tar` in it is imported when the
//! agent starts and again whenever a file appears or changes (polled; a file is taken once its
//! size and modification time have held still for one poll, so half-copied files wait).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::import;
use crate::node::runtime::client::Client;

/// How often the directory is looked at.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The airgap directory of a data dir.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("agent").join("images")
}

type Stamp = (u64, SystemTime);

/// What changed since the last look: files whose stamp equals the one seen on the previous
/// poll (stable) and differs from the one last imported.
#[derive(Default)]
struct Tracker {
    seen: HashMap<PathBuf, Stamp>,
    imported: HashMap<PathBuf, Stamp>,
}

impl Tracker {
    fn ready(&mut self, now: HashMap<PathBuf, Stamp>) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> =
            now.iter().filter(|(p, s)| self.seen.get(*p) == Some(s) && self.imported.get(*p) != Some(s)).map(|(p, _)| p.clone()).collect();
        out.sort();
        self.seen = now;
        out
    }
}

fn scan(dir: &Path) -> HashMap<PathBuf, Stamp> {
    let Ok(entries) = std::fs::read_dir(dir) else { return HashMap::new() };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "tar"))
        .filter_map(|e| {
            let m = e.metadata().ok().filter(|m| m.is_file())?;
            Some((e.path(), (m.len(), m.modified().ok()?)))
        })
        .collect()
}

/// Imports the directory's tarballs now and whenever they change, until `shutdown`.
pub async fn watch(client: Client, dir: PathBuf, shutdown: CancellationToken) {
    let mut tracker = Tracker::default();
    // At start every file present counts as stable.
    tracker.seen = scan(&dir);
    loop {
        for path in tracker.ready(scan(&dir)) {
            let stamp = tracker.seen[&path];
            match import::import_file(&client, &path).await {
                Ok(images) => {
                    let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
                    tracing::info!(file = %path.display(), images = ?names, "airgap images imported");
                }
                Err(e) => tracing::error!(file = %path.display(), error = %e, "cannot import airgap images"),
            }
            // A failed file is not retried until it changes.
            tracker.imported.insert(path, stamp);
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_taken_once_stable_and_again_when_changed() {
        let t0 = SystemTime::UNIX_EPOCH;
        let t1 = t0 + Duration::from_secs(1);
        let a = PathBuf::from("a.tar");
        let mut tr = Tracker::default();
        assert!(tr.ready(HashMap::from([(a.clone(), (1, t0))])).is_empty(), "new and still growing");
        assert_eq!(tr.ready(HashMap::from([(a.clone(), (1, t0))])), [a.clone()]);
        tr.imported.insert(a.clone(), (1, t0));
        assert!(tr.ready(HashMap::from([(a.clone(), (1, t0))])).is_empty(), "imported already");
        assert!(tr.ready(HashMap::from([(a.clone(), (2, t1))])).is_empty(), "changing");
        assert_eq!(tr.ready(HashMap::from([(a.clone(), (2, t1))])), [a]);
    }

    #[test]
    fn only_tar_files_count() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("x.tar"), b"1").unwrap();
        std::fs::write(d.path().join("notes.txt"), b"1").unwrap();
        assert_eq!(scan(d.path()).keys().collect::<Vec<_>>(), [&d.path().join("x.tar")]);
    }
}
