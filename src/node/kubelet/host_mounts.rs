//! Mounts the node makes for pods' volumes: a tmpfs for an emptyDir with `medium: Memory`
//! (its `sizeLimit` as the size), and unmounting whatever is mounted under a pod's directory
//! before it is removed (found in `/proc/self/mountinfo`, so it also works for pods an earlier
//! run of the agent left).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{fs, FsError};

/// Why a tmpfs could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{} has a NUL byte", .0.display())]
    NulInPath(PathBuf),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("mounting a tmpfs on {}: {source}", dir.display())]
    Tmpfs { dir: PathBuf, source: std::io::Error },
}

fn c_path(path: &Path) -> Result<CString, MountError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| MountError::NulInPath(path.to_path_buf()))
}

/// Mount points in `/proc/self/mountinfo` (octal escapes undone).
fn mount_points() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines().filter_map(|l| l.split(' ').nth(4)).map(|p| PathBuf::from(unescape(p))).collect()
}

/// Undoes mountinfo's `\ooo` escapes of space, tab, newline and backslash.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(c as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Mounts a tmpfs of at most `size` bytes (half the RAM, tmpfs's default, when `None`) on
/// `dir`, unless one is already there (a restarted agent).
pub fn mount_tmpfs(dir: &Path, size: Option<u64>) -> Result<(), MountError> {
    std::fs::create_dir_all(dir).map_err(fs("creating", dir))?;
    if mount_points().iter().any(|p| p == dir) {
        return Ok(());
    }
    let options = match size {
        Some(bytes) => format!("mode=0777,size={bytes}"),
        None => "mode=0777".to_string(),
    };
    let (source, target, fstype) = (c"tmpfs", c_path(dir)?, c"tmpfs");
    let data = CString::new(options).expect("no NUL in the options");
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let rc = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, data.as_ptr().cast()) };
    if rc != 0 {
        return Err(MountError::Tmpfs { dir: dir.to_path_buf(), source: std::io::Error::last_os_error() });
    }
    tracing::debug!(dir = %dir.display(), ?size, "mounted a tmpfs");
    Ok(())
}

/// Unmounts (lazily, deepest first) every mount at or under `dir`.
pub fn unmount_under(dir: &Path) {
    let mut points: Vec<PathBuf> = mount_points().into_iter().filter(|p| p.starts_with(dir)).collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for point in points {
        let Ok(target) = c_path(&point) else { continue };
        // SAFETY: `target` is a valid NUL-terminated string.
        let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        if rc == 0 {
            tracing::debug!(dir = %point.display(), "unmounted");
        } else {
            tracing::warn!(dir = %point.display(), error = %std::io::Error::last_os_error(), "cannot unmount");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn tmpfs_mounts_and_unmounts() {
        if !crate::host::is_root() {
            eprintln!("SKIPPED tmpfs test: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("pod/volumes/cache");
        mount_tmpfs(&mnt, Some(1 << 20)).unwrap();
        mount_tmpfs(&mnt, Some(1 << 20)).unwrap();
        assert_eq!(mount_points().iter().filter(|p| **p == mnt).count(), 1, "mounted once");
        let too_big = std::fs::write(mnt.join("f"), vec![0u8; 2 << 20]);
        assert!(too_big.is_err(), "the size limit holds");
        unmount_under(&dir.path().join("pod"));
        assert!(!mount_points().contains(&mnt));
        std::fs::remove_dir_all(dir.path().join("pod")).unwrap();
    }
}
