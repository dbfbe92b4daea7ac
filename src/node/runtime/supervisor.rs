//! Runs and supervises the node's own `containerd` child process: writes its config, starts
//! it, waits for its socket, restarts it with exponential back-off when it dies and stops it
//! on shutdown. Containers survive a containerd restart (their shims keep running).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::config::ContainerdPaths;
use super::{Result, RuntimeError};

/// Back-off between restarts: doubles from 1 s up to 30 s, and starts over after a run that
/// lasted a minute.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const STABLE_RUN: Duration = Duration::from_secs(60);

/// Finds `binary` in PATH (and the sbin directories, which a non-login PATH may lack).
pub fn find_binary(binary: &str) -> Option<PathBuf> {
    search_dirs(&std::env::var_os("PATH").unwrap_or_default()).into_iter().map(|d| d.join(binary)).find(|p| is_executable(p))
}

/// Where [`find_binary`] looks: the directories of `path`, then the usual system ones (a
/// service's PATH may lack the sbin directories runc lives in).
pub fn search_dirs(path: &std::ffi::OsStr) -> Vec<PathBuf> {
    std::env::split_paths(path)
        .filter(|d| !d.as_os_str().is_empty())
        .chain(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .collect()
}

/// Whether `p` is a file someone may execute.
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// The containerd binary, after checking that runc is there too; a missing one is an error
/// naming the Debian package to install.
pub fn check_binaries() -> Result<PathBuf> {
    find_binary("runc").ok_or(RuntimeError::MissingBinary { binary: "runc", package: "runc" })?;
    find_binary("containerd").ok_or(RuntimeError::MissingBinary { binary: "containerd", package: "containerd" })
}

/// The next back-off after a run of `ran` that followed a back-off of `previous`.
fn next_backoff(previous: Duration, ran: Duration) -> Duration {
    if ran >= STABLE_RUN {
        MIN_BACKOFF
    } else {
        (previous * 2).clamp(MIN_BACKOFF, MAX_BACKOFF)
    }
}

/// A supervised containerd. Stop it with [`Supervisor::stop`]; when the async runtime shuts
/// down without that, containerd is killed.
pub struct Supervisor {
    pub paths: ContainerdPaths,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Supervisor {
    /// Writes the config, starts containerd and waits (up to `ready_timeout`) until its socket
    /// answers. It is restarted whenever it exits until [`Supervisor::stop`].
    pub async fn start(paths: ContainerdPaths, ready_timeout: Duration) -> Result<Self> {
        let binary = check_binaries()?;
        paths.write_config()?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(supervise(binary, paths.clone(), stop.clone()));
        let supervisor = Self { paths, stop, task };
        if let Err(e) = wait_for_socket(&supervisor.paths.socket(), ready_timeout).await {
            supervisor.stop().await;
            return Err(e);
        }
        Ok(supervisor)
    }

    pub fn socket(&self) -> PathBuf {
        self.paths.socket()
    }

    /// Stops containerd (SIGTERM, then SIGKILL after 10 s) and the supervision.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Waits until something accepts connections on `socket`.
pub async fn wait_for_socket(socket: &Path, timeout: Duration) -> Result<()> {
    let until = Instant::now() + timeout;
    loop {
        match tokio::net::UnixStream::connect(socket).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= until => {
                return Err(RuntimeError::Connect {
                    socket: socket.display().to_string(),
                    message: format!("not ready after {timeout:?}: {e}"),
                })
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn supervise(binary: PathBuf, paths: ContainerdPaths, stop: CancellationToken) {
    let mut backoff = Duration::ZERO;
    loop {
        let started = Instant::now();
        match spawn(&binary, &paths) {
            Ok(mut child) => {
                tracing::info!(pid = child.id(), socket = %paths.socket().display(), log = %paths.log().display(), "containerd started");
                tokio::select! {
                    status = child.wait() => {
                        let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                        tracing::warn!(%status, log = %paths.log().display(), "containerd exited");
                    }
                    _ = stop.cancelled() => {
                        terminate(&mut child).await;
                        return;
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot start containerd"),
        }
        backoff = next_backoff(backoff, started.elapsed());
        tracing::info!(?backoff, "restarting containerd");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => return,
        }
    }
}

fn spawn(binary: &Path, paths: &ContainerdPaths) -> Result<tokio::process::Child> {
    let log_path = paths.log();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(RuntimeError::io(log_path.display()))?;
    let log2 = log.try_clone().map_err(RuntimeError::io(log_path.display()))?;
    // A stale socket from a killed containerd would make it refuse to start.
    let _ = std::fs::remove_file(paths.socket());
    tokio::process::Command::new(binary)
        .arg("--config")
        .arg(paths.config())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        // If orch goes away without stopping it, containerd goes too (containers stay).
        .kill_on_drop(true)
        .spawn()
        .map_err(RuntimeError::io(binary.display()))
}

async fn terminate(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
        tracing::warn!("containerd did not stop within 10s; killing it");
        let _ = child.kill().await;
    }
    tracing::info!("containerd stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_a_cap_and_resets_after_a_stable_run() {
        let mut b = Duration::ZERO;
        let mut seen = vec![];
        for _ in 0..7 {
            b = next_backoff(b, Duration::from_secs(1));
            seen.push(b.as_secs());
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(next_backoff(b, STABLE_RUN), MIN_BACKOFF);
    }

    #[test]
    fn missing_binaries_name_their_package() {
        let e = RuntimeError::MissingBinary { binary: "runc", package: "runc" }.to_string();
        assert_eq!(e, "runc not found in PATH: install Debian's `runc` package (apt-get install runc)");
        assert!(find_binary("sh").is_some());
        assert!(find_binary("no-such-binary-orch").is_none());
    }
}
