//! Size-based rotation of container logs, as the kubelet's containerLogMaxSize and
//! containerLogMaxFiles do it: a full `0.log` is renamed `0.log.<UTC time>` and a fresh
//! `0.log` started; at most `max_files` files (the current one included) are kept.

use std::path::{Path, PathBuf};

/// When a container's log is rotated and how many files are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    /// Bytes a log file may reach before it is rotated.
    pub max_size: u64,
    /// Files kept per container run, the current one included (at least 2).
    pub max_files: usize,
}

impl Default for LogRotation {
    /// The kubelet's defaults: 10Mi and 5 files.
    fn default() -> Self {
        Self { max_size: 10 * 1024 * 1024, max_files: 5 }
    }
}

impl LogRotation {
    /// Whether a file of `size` bytes must be rotated before `incoming` more are written.
    pub fn due(&self, size: u64, incoming: usize) -> bool {
        size > 0 && size + incoming as u64 > self.max_size
    }

    /// Renames `path` to `path.<time>` and removes the oldest rotated files beyond the limit.
    pub fn rotate(&self, path: &Path, now: time::OffsetDateTime) -> std::io::Result<PathBuf> {
        let stamp = now.to_offset(time::UtcOffset::UTC);
        let suffix = format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}.{:06}",
            stamp.year(),
            u8::from(stamp.month()),
            stamp.day(),
            stamp.hour(),
            stamp.minute(),
            stamp.second(),
            stamp.microsecond()
        );
        let rotated = PathBuf::from(format!("{}.{suffix}", path.display()));
        std::fs::rename(path, &rotated)?;
        let mut old = rotated_files(path);
        let keep = self.max_files.max(2) - 1;
        let excess = old.len().saturating_sub(keep);
        for gone in old.drain(..excess) {
            if let Err(e) = std::fs::remove_file(&gone) {
                tracing::warn!(file = %gone.display(), error = %e, "cannot remove an old container log");
            }
        }
        Ok(rotated)
    }
}

/// The rotated files of the log at `path`, oldest first.
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return Vec::new() };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_is_due_past_the_size() {
        let r = LogRotation { max_size: 100, max_files: 3 };
        assert!(!r.due(0, 500), "an empty file takes any record");
        assert!(!r.due(60, 40));
        assert!(r.due(60, 41));
        assert_eq!(LogRotation::default(), LogRotation { max_size: 10 << 20, max_files: 5 });
    }

    #[test]
    fn keeps_at_most_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        let r = LogRotation { max_size: 10, max_files: 3 };
        let t0 = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        for i in 0..4 {
            std::fs::write(&log, format!("run {i}")).unwrap();
            let rotated = r.rotate(&log, t0 + time::Duration::seconds(i)).unwrap();
            assert!(!log.exists() && rotated.exists());
        }
        let kept = rotated_files(&log);
        assert_eq!(kept.len(), 2, "max_files counts the current file: {kept:?}");
        assert_eq!(std::fs::read_to_string(&kept[0]).unwrap(), "run 2");
        assert_eq!(std::fs::read_to_string(&kept[1]).unwrap(), "run 3");
        assert_eq!(kept[1].file_name().unwrap().to_string_lossy(), "0.log.20231114-221323.000000");
    }
}
