//! Mounts the node makes for pods' volumes: a tmpfs for an emptyDir with `medium: Memory`
//! (its `sizeLimit` as the size), subPath bind mounts of what [`beneath::resolve`] found
//! without following the container's symlinks out of the volume (through `/proc/self/fd`, so
//! nothing can be swapped in between), and unmounting whatever is mounted under a pod's directory
//! before it is removed (found in `/proc/self/mountinfo`, so it also works for pods an earlier
//! run of the agent left).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use std::os::fd::{AsFd, AsRawFd};

use super::{beneath, fs, FsError};

/// Why a tmpfs could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{} has a NUL byte", .0.display())]
    NulInPath(PathBuf),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("mounting a tmpfs on {}: {source}", dir.display())]
    Tmpfs { dir: PathBuf, source: std::io::Error },
    #[error("subPath {sub_path:?} of {}: {source}", volume.display())]
    SubPath { volume: PathBuf, sub_path: String, source: std::io::Error },
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

/// Bind-mounts `sub_path` of the volume at `volume` on `target` (made a directory or an empty
/// file to match) and returns `target`: what a container mounts for a volumeMount's subPath.
/// Symlinks are followed only while they stay inside the volume; the mount source is the
/// descriptor that resolution opened, so a symlink swapped in afterwards changes nothing.
pub fn bind_sub_path(volume: &Path, sub_path: &str, target: &Path) -> Result<PathBuf, MountError> {
    let failed = |source| MountError::SubPath { volume: volume.to_path_buf(), sub_path: sub_path.to_string(), source };
    let fd = beneath::resolve(volume, sub_path).map_err(failed)?;
    let is_dir = beneath::file_type(fd.as_fd()).map_err(failed)? == libc::S_IFDIR;
    unmount_under(target);
    if std::fs::symlink_metadata(target).is_ok_and(|m| m.is_dir() != is_dir) {
        let removed = if is_dir { std::fs::remove_file(target) } else { std::fs::remove_dir_all(target) };
        removed.map_err(fs("removing", target))?;
    }
    if is_dir {
        std::fs::create_dir_all(target).map_err(fs("creating", target))?;
    } else {
        let parent = target.parent().unwrap_or(target);
        std::fs::create_dir_all(parent).map_err(fs("creating", parent))?;
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(target).map_err(fs("creating", target))?;
    }
    let source = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL in a number");
    let target_c = c_path(target)?;
    // SAFETY: both are valid NUL-terminated strings; the other arguments may be null for a bind mount.
    let rc = unsafe { libc::mount(source.as_ptr(), target_c.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
    if rc != 0 {
        return Err(failed(std::io::Error::last_os_error()));
    }
    tracing::debug!(volume = %volume.display(), sub_path, target = %target.display(), "bind-mounted a subPath");
    Ok(target.to_path_buf())
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

    #[test]
    fn sub_paths_bind_what_is_inside_the_volume() {
        if !crate::host::is_root() {
            eprintln!("SKIPPED subPath bind test: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (vol, sibling) = (dir.path().join("vol"), dir.path().join("sibling"));
        std::fs::create_dir_all(vol.join("data")).unwrap();
        std::fs::create_dir_all(&sibling).unwrap();
        std::fs::write(sibling.join("secret"), b"host secret").unwrap();
        std::fs::write(vol.join("data/file"), b"mine").unwrap();
        // "The container" plants links out of the volume.
        std::os::unix::fs::symlink("/", vol.join("root")).unwrap();
        std::os::unix::fs::symlink("../sibling", vol.join("up")).unwrap();
        let subpaths = dir.path().join("pod/volume-subpaths/v/c");
        for (i, bad) in ["root", "up", "up/secret", "data/../../sibling"].iter().enumerate() {
            let err = bind_sub_path(&vol, bad, &subpaths.join(i.to_string())).unwrap_err();
            assert!(matches!(err, MountError::SubPath { .. }), "{bad}: {err}");
        }
        let file = bind_sub_path(&vol, "data/file", &subpaths.join("9")).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
        let made = bind_sub_path(&vol, "new/dir", &subpaths.join("10")).unwrap();
        std::fs::write(made.join("x"), b"1").unwrap();
        assert_eq!(std::fs::read_to_string(vol.join("new/dir/x")).unwrap(), "1", "the mount is the volume's directory");
        assert_eq!(mount_points().iter().filter(|p| p.starts_with(dir.path())).count(), 2);
        unmount_under(&dir.path().join("pod"));
        assert_eq!(mount_points().iter().filter(|p| p.starts_with(dir.path())).count(), 0);
    }
}
