//! Named network namespaces kept alive by bind mounts in a directory, as `ip netns` does under
//! `/run/netns` (orch uses `/run/orch/netns`), and running code inside one: a namespace is
//! created by a helper thread that `unshare(CLONE_NEWNET)`s and bind-mounts its own
//! `/proc/self/task/<tid>/ns/net`; code is run in one by a helper thread that `setns`es into
//! it. Threads are used so the caller's thread (a tokio worker) never changes namespace.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// `statfs` type of nsfs, the file system of `/proc/*/ns/*` and their bind mounts.
const NSFS_MAGIC: i64 = 0x6e73_6673;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{0:?} is not a valid network namespace name")]
    BadName(String),
    #[error("a helper thread for namespace {0} panicked")]
    ThreadPanicked(PathBuf),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> NetnsError + 'a {
    move |source| NetnsError::Io { what, path: path.to_path_buf(), source }
}

fn check(ret: libc::c_int) -> std::io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A directory of named network namespaces.
#[derive(Clone, Debug)]
pub struct NetnsDir {
    dir: PathBuf,
}

impl NetnsDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Creates the namespace `name` unless it exists; returns its path (open it to join it).
    pub fn create(&self, name: &str) -> Result<PathBuf, NetnsError> {
        if !super::names::valid_pod_id(name) {
            return Err(NetnsError::BadName(name.to_string()));
        }
        fs::create_dir_all(&self.dir).map_err(io_err("creating", &self.dir))?;
        let path = self.path_of(name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                if is_netns(&path)? {
                    return Ok(path);
                }
            }
            Err(e) => return Err(io_err("creating", &path)(e)),
        }
        let target = CString::new(path.as_os_str().as_bytes()).map_err(|_| NetnsError::BadName(name.to_string()))?;
        let made = std::thread::scope(|s| {
            s.spawn(|| -> std::io::Result<()> {
                // SAFETY: plain syscalls on this helper thread with valid, NUL-terminated strings;
                // unsharing the network namespace affects only this thread, which then exits.
                unsafe {
                    check(libc::unshare(libc::CLONE_NEWNET))?;
                    let source = CString::new(format!("/proc/self/task/{}/ns/net", libc::gettid())).expect("no NUL");
                    check(libc::mount(source.as_ptr(), target.as_ptr(), c"none".as_ptr(), libc::MS_BIND, std::ptr::null()))
                }
            })
            .join()
        });
        match made {
            Ok(Ok(())) => Ok(path),
            Ok(Err(e)) => {
                let _ = fs::remove_file(&path);
                Err(io_err("creating network namespace", &path)(e))
            }
            Err(_) => Err(NetnsError::ThreadPanicked(path)),
        }
    }

    /// Unmounts and removes the namespace `name`; fine if it does not exist. The namespace
    /// itself lives on while a process still uses it.
    pub fn remove(&self, name: &str) -> Result<(), NetnsError> {
        let path = self.path_of(name);
        let target = CString::new(path.as_os_str().as_bytes()).map_err(|_| NetnsError::BadName(name.to_string()))?;
        // SAFETY: valid NUL-terminated path; MNT_DETACH only detaches this one mount.
        if let Err(e) = check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) }) {
            if !matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) {
                return Err(io_err("unmounting", &path)(e));
            }
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("removing", &path)(e)),
        }
    }

    /// The names of the namespaces in the directory.
    pub fn list(&self) -> Result<Vec<String>, NetnsError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("listing", &self.dir)(e)),
        };
        let mut names: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        names.sort();
        Ok(names)
    }
}

/// Whether `path` is a network namespace (an nsfs mount) rather than a plain file.
fn is_netns(path: &Path) -> Result<bool, NetnsError> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| NetnsError::BadName(path.display().to_string()))?;
    // SAFETY: statfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    check(unsafe { libc::statfs(c.as_ptr(), &mut st) }).map_err(io_err("inspecting", path))?;
    Ok(st.f_type as i64 == NSFS_MAGIC)
}

/// Runs `f` on a helper thread that has joined the network namespace at `netns` (or stays in
/// the caller's when `None`), and returns its result. Sockets created by `f` stay bound to
/// that namespace after the thread has gone.
pub fn run_in<T: Send>(netns: Option<&Path>, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    let Some(path) = netns else { return Ok(f()) };
    let file = File::open(path).map_err(io_err("opening network namespace", path))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: the fd is a valid open namespace file; setns changes only this thread.
            check(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }).map_err(io_err("joining network namespace", path))?;
            Ok(f())
        })
        .join()
        .map_err(|_| NetnsError::ThreadPanicked(path.to_path_buf()))?
    })
}
