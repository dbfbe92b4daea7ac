//! Paths beneath a directory, walked with file descriptors one component at a time so that
//! nothing a container planted (a symlink to `/`, a `..`) leads outside: [`write_file`] never
//! follows a symlink at all, [`resolve`] (subPath) follows only symlinks whose targets stay
//! beneath the root, the kernel's RESOLVE_BENEATH done with `openat(O_NOFOLLOW)` so it works on
//! every kernel.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path};

/// How many symlinks one resolution may follow (the kernel's limit).
const MAX_LINKS: usize = 40;

fn escape(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, what.to_string())
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

/// The components of a relative path with no `..`: what a volume key, item path or subPath
/// must be. Empty and `.` components are dropped.
pub fn components(rel: &str) -> io::Result<Vec<&OsStr>> {
    let path = Path::new(rel);
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return Err(escape(&format!("{rel:?} is not a relative path beneath the volume"))),
        }
    }
    if out.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{rel:?} names no file")));
    }
    Ok(out)
}

/// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC, mode)`.
fn open_at(dir: BorrowedFd<'_>, name: &OsStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let name = c_name(name)?;
    // SAFETY: `name` is a valid NUL-terminated string and `dir` an open descriptor.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_NOFOLLOW | libc::O_CLOEXEC, mode as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn mkdir_at(dir: BorrowedFd<'_>, name: &OsStr, mode: libc::mode_t) -> io::Result<()> {
    let name = c_name(name)?;
    // SAFETY: as in `open_at`.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) } != 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e);
        }
    }
    Ok(())
}

/// The file type bits of an open descriptor.
pub fn file_type(fd: BorrowedFd<'_>) -> io::Result<libc::mode_t> {
    // SAFETY: an all-zero stat is a valid value for fstat to fill in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `st` is a valid out pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_mode & libc::S_IFMT)
}

/// The target of the symlink open (O_PATH) as `link`.
fn read_link(link: BorrowedFd<'_>) -> io::Result<OsString> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: an empty path reads the link `link` itself; `buf` is writable for its length.
    let n = unsafe { libc::readlinkat(link.as_raw_fd(), c"".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(OsString::from_vec(buf))
}

/// Opens directory `root` itself (ours: its own path may have symlinks).
pub fn open_root(root: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(root.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens (making the missing ones, mode 0755) the directories `dirs` beneath `root`; a
/// symlink anywhere is refused.
fn open_dirs(root: BorrowedFd<'_>, dirs: &[&OsStr]) -> io::Result<OwnedFd> {
    let mut current = root.try_clone_to_owned()?;
    for name in dirs {
        let flags = libc::O_PATH | libc::O_DIRECTORY;
        let next = match open_at(current.as_fd(), name, flags, 0) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                mkdir_at(current.as_fd(), name, 0o755)?;
                open_at(current.as_fd(), name, flags, 0)
            }
            other => other,
        };
        current = next.map_err(|e| refuse_link(e, name))?;
    }
    Ok(current)
}

/// ELOOP/ENOTDIR from O_NOFOLLOW means a symlink was in the way.
fn refuse_link(e: io::Error, name: &OsStr) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ELOOP | libc::ENOTDIR) => escape(&format!("{} is a symlink or not a directory; not followed", name.to_string_lossy())),
        _ => e,
    }
}

/// Writes a new file `rel` beneath `root` with `content` and `mode`, creating its parent
/// directories; no symlink is followed and an existing file is an error (O_EXCL).
pub fn write_file(root: &Path, rel: &str, content: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    let parts = components(rel)?;
    let (file, dirs) = parts.split_last().expect("components are never empty");
    let root = open_root(root)?;
    let dir = open_dirs(root.as_fd(), dirs)?;
    let fd = open_at(dir.as_fd(), file, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600).map_err(|e| refuse_link(e, file))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(content)?;
    // SAFETY: `f` is an open regular file.
    if unsafe { libc::fchmod(f.as_raw_fd(), (mode & 0o777) as libc::mode_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Resolves `rel` (a relative path with no `..`) beneath `root` for a subPath mount:
/// symlinks are followed only while they stay beneath `root` (relative targets whose `..` never
/// climb above it), missing directories are created, and the result is an `O_PATH` descriptor
/// of what was found (to bind-mount through `/proc/self/fd`).
pub fn resolve(root: &Path, rel: &str) -> io::Result<OwnedFd> {
    let mut pending: std::collections::VecDeque<OsString> = components(rel)?.into_iter().map(OsStr::to_os_string).collect();
    let mut stack = vec![open_root(root)?];
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == "." || name.is_empty() {
            continue;
        }
        if name == ".." {
            if stack.len() == 1 {
                return Err(escape(&format!("{rel:?} leads outside the volume")));
            }
            stack.pop();
            continue;
        }
        let dir = stack.last().expect("the root is never popped").as_fd();
        let fd = match open_at(dir, &name, libc::O_PATH, 0) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                mkdir_at(dir, &name, 0o755)?;
                pending.push_front(name);
                continue;
            }
            other => other?,
        };
        match file_type(fd.as_fd())? {
            libc::S_IFLNK => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = read_link(fd.as_fd())?;
                if target.as_bytes().starts_with(b"/") {
                    return Err(escape(&format!("{rel:?} goes through an absolute symlink ({})", target.to_string_lossy())));
                }
                let parts: Vec<OsString> = target.as_bytes().split(|b| *b == b'/').map(|p| OsString::from_vec(p.to_vec())).collect();
                for p in parts.into_iter().rev() {
                    pending.push_front(p);
                }
            }
            libc::S_IFDIR => stack.push(fd),
            _ if pending.is_empty() => stack.push(fd),
            _ => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
        }
    }
    Ok(stack.pop().expect("the root is never popped"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn real_path(fd: &OwnedFd) -> std::path::PathBuf {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
    }

    #[test]
    fn writes_refuse_escapes_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let (vol, outside) = (dir.path().join("vol"), dir.path().join("outside"));
        std::fs::create_dir_all(&vol).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        write_file(&vol, "a/b/c", b"x", 0o640).unwrap();
        assert_eq!(std::fs::read(vol.join("a/b/c")).unwrap(), b"x");
        for bad in ["../x", "/etc/x", "a/../../x", ""] {
            assert!(write_file(&vol, bad, b"x", 0o644).is_err(), "{bad:?}");
        }
        symlink(&outside, vol.join("link")).unwrap();
        assert!(write_file(&vol, "link/x", b"x", 0o644).is_err(), "a symlinked directory is not followed");
        symlink(outside.join("f"), vol.join("file-link")).unwrap();
        assert!(write_file(&vol, "file-link", b"x", 0o644).is_err(), "a symlinked file is not followed");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing was written outside");
    }

    #[test]
    fn sub_paths_stay_beneath_the_volume() {
        let dir = tempfile::tempdir().unwrap();
        let (vol, sibling) = (dir.path().join("vol"), dir.path().join("sibling"));
        std::fs::create_dir_all(vol.join("data/inner")).unwrap();
        std::fs::create_dir_all(&sibling).unwrap();
        std::fs::write(vol.join("data/file"), b"f").unwrap();
        // What the atomic writer makes: relative links inside the volume are followed.
        symlink("data", vol.join("..data")).unwrap();
        symlink("..data/file", vol.join("key")).unwrap();
        assert_eq!(real_path(&resolve(&vol, "key").unwrap()), vol.join("data/file"));
        assert_eq!(real_path(&resolve(&vol, "data/inner").unwrap()), vol.join("data/inner"));
        assert_eq!(real_path(&resolve(&vol, "new/dir").unwrap()), vol.join("new/dir"), "missing directories are made");
        // What a container could plant: links to / or out of the volume are refused.
        symlink("/", vol.join("root")).unwrap();
        symlink("../sibling", vol.join("up")).unwrap();
        symlink("data/../../sibling", vol.join("sneaky")).unwrap();
        symlink(&sibling, vol.join("absolute")).unwrap();
        for bad in ["root", "root/etc", "up", "up/x", "sneaky", "absolute", "../sibling", "/etc"] {
            let err = resolve(&vol, bad).expect_err(bad);
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{bad}: {err}");
        }
        assert!(!sibling.join("x").exists());
        symlink("loop", vol.join("loop")).unwrap();
        assert_eq!(resolve(&vol, "loop").unwrap_err().raw_os_error(), Some(libc::ELOOP));
    }
}
