//! The kubelet's atomic writer for file volumes (configMap, secret, downwardAPI, projected):
//! the files live in a timestamped `..<time>` directory, `..data` is a symlink to the current
//! one and every top-level entry is a symlink through `..data`. An update writes a new
//! directory and swaps `..data` with one rename, so a container never sees half an update.
//! Whatever the keys and item paths say (objects stored before admission checked them too),
//! nothing is written outside the volume: paths must be relative with no `..`, may not start
//! with `..` (the writer's own names), and no symlink is followed while writing.

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{beneath, fs, FsError};

/// Files of a file volume: relative path → (content, mode).
pub type Files = BTreeMap<String, (Vec<u8>, u32)>;

const DATA: &str = "..data";

/// The files under `dir` (recursively), as written.
fn read_tree(root: &Path, dir: &Path, out: &mut Files) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_symlink() {
            return Err(std::io::Error::other("a symlink inside a volume version"));
        }
        if meta.is_dir() {
            read_tree(root, &entry.path(), out)?;
        } else {
            let rel = entry.path().strip_prefix(root).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
            out.insert(rel, (std::fs::read(entry.path())?, meta.permissions().mode() & 0o777));
        }
    }
    Ok(())
}

/// What `dir` holds now (nothing when it was never written this way).
fn current(dir: &Path) -> Option<Files> {
    let target = std::fs::read_link(dir.join(DATA)).ok()?;
    if target.components().count() != 1 || !target.to_string_lossy().starts_with("..") {
        return None;
    }
    let mut files = Files::new();
    read_tree(&dir.join(&target), &dir.join(&target), &mut files).ok()?;
    Some(files)
}

/// The first component of a file's path, once the path is known to stay inside the volume
/// and off the writer's own `..` names.
fn top_level(rel: &str) -> Result<&str, std::io::Error> {
    let parts = beneath::components(rel)?;
    let first = parts[0].to_str().unwrap_or_default();
    if first.starts_with("..") {
        return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, format!("{rel:?} starts with '..'")));
    }
    Ok(first)
}

fn remove_any(path: &Path) {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => return,
    };
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a stale volume file");
    }
}

/// Makes `dir` hold exactly `files`; returns whether anything changed.
pub fn write(dir: &Path, files: &Files) -> Result<bool, FsError> {
    let mut wanted = std::collections::BTreeSet::new();
    for rel in files.keys() {
        wanted.insert(top_level(rel).map_err(fs("checking", &dir.join(rel)))?);
    }
    std::fs::create_dir_all(dir).map_err(fs("creating", dir))?;
    if current(dir).as_ref() == Some(files) {
        return Ok(false);
    }
    let stamp = format!("..{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    let version: PathBuf = dir.join(&stamp);
    std::fs::create_dir(&version).map_err(fs("creating", &version))?;
    for (rel, (content, mode)) in files {
        beneath::write_file(&version, rel, content, *mode).map_err(fs("writing", &version.join(rel)))?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&stamp, &tmp).map_err(fs("linking", &tmp))?;
    std::fs::rename(&tmp, dir.join(DATA)).map_err(fs("renaming", &tmp))?;
    for name in &wanted {
        let link = dir.join(name);
        let target = Path::new(DATA).join(name);
        if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
            remove_any(&link);
            symlink(&target, &link).map_err(fs("linking", &link))?;
        }
    }
    for entry in std::fs::read_dir(dir).map_err(fs("reading", dir))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale_version = name.starts_with("..") && name != DATA && name != stamp;
        let stale_entry = !name.starts_with("..") && !wanted.contains(name.as_str());
        if stale_version || stale_entry {
            remove_any(&entry.path());
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> Files {
        pairs.iter().map(|(k, v)| (k.to_string(), (v.as_bytes().to_vec(), 0o644))).collect()
    }

    #[test]
    fn updates_swap_the_data_link() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("vol");
        assert!(write(&d, &files(&[("a", "1"), ("conf/b", "2")])).unwrap());
        assert_eq!(std::fs::read_to_string(d.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(d.join("conf/b")).unwrap(), "2");
        assert_eq!(std::fs::read_link(d.join("a")).unwrap(), Path::new("..data/a"));
        let first = std::fs::read_link(d.join(DATA)).unwrap();

        assert!(!write(&d, &files(&[("a", "1"), ("conf/b", "2")])).unwrap(), "no change, no write");
        assert_eq!(std::fs::read_link(d.join(DATA)).unwrap(), first);

        assert!(write(&d, &files(&[("a", "changed"), ("c", "3")])).unwrap());
        assert_eq!(std::fs::read_to_string(d.join("a")).unwrap(), "changed");
        assert_eq!(std::fs::read_to_string(d.join("c")).unwrap(), "3");
        assert!(!d.join("conf").exists(), "gone keys are removed");
        let names: Vec<String> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names.len(), 4, "..data, one version, a and c: {names:?}");
        assert!(!d.join(&first).exists(), "the old version is removed");
    }

    #[test]
    fn nothing_is_written_outside_the_volume() {
        let dir = tempfile::tempdir().unwrap();
        let (d, outside) = (dir.path().join("vol"), dir.path().join("outside"));
        std::fs::create_dir_all(&outside).unwrap();
        // Keys of objects stored before admission checked them.
        for key in ["../outside/x", "/abs", "a/../../outside/x", "..data", "..2020/x", ""] {
            assert!(write(&d, &files(&[("ok", "1"), (key, "1")])).is_err(), "{key:?}");
        }
        // Symlinks planted where the writer puts its names and the keys' links.
        std::fs::create_dir_all(&d).unwrap();
        symlink(&outside, d.join("conf")).unwrap();
        symlink(&outside, d.join(DATA)).unwrap();
        symlink(&outside, d.join("..data_tmp")).unwrap();
        assert!(write(&d, &files(&[("conf/b", "2"), ("a", "1")])).unwrap());
        assert_eq!(std::fs::read_to_string(d.join("conf/b")).unwrap(), "2");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing was written outside");
        assert!(std::fs::symlink_metadata(&outside).unwrap().is_dir(), "the planted link's target is untouched");
    }
}
