//! FIFOs between containerd's shim and orch for a process's stdout and stderr: created with
//! mkfifo(3), opened for reading before the task exists (with a placeholder writer held until
//! the shim has opened its end, so the reader does not see an early end of file), and copied
//! into a CRI log file or into memory until the shim closes them.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::cri_log::{LineSplitter, LogFile, Stream};
use super::{Result, RuntimeError};

/// Creates the FIFO `path` (mode 0600) unless it exists.
fn mkfifo(path: &Path) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| RuntimeError::Invalid(format!("{}: NUL in path", path.display())))?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(RuntimeError::Io { path: path.display().to_string(), source: e });
        }
    }
    Ok(())
}

/// The stdout and stderr FIFOs of one process, open for reading.
pub struct ProcessFifos {
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    stdout: pipe::Receiver,
    stderr: pipe::Receiver,
    /// Held until the shim has opened the write ends.
    placeholders: Vec<pipe::Sender>,
}

impl ProcessFifos {
    /// Creates `<dir>/<name>-stdout` and `-stderr` and opens them.
    pub fn create(dir: &Path, name: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(RuntimeError::io(dir.display()))?;
        let stdout_path = dir.join(format!("{name}-stdout"));
        let stderr_path = dir.join(format!("{name}-stderr"));
        let mut placeholders = Vec::new();
        let mut open = |p: &Path| -> Result<pipe::Receiver> {
            mkfifo(p)?;
            let rx = pipe::OpenOptions::new().open_receiver(p).map_err(RuntimeError::io(p.display()))?;
            placeholders.push(pipe::OpenOptions::new().open_sender(p).map_err(RuntimeError::io(p.display()))?);
            Ok(rx)
        };
        let stdout = open(&stdout_path)?;
        let stderr = open(&stderr_path)?;
        Ok(Self { stdout_path, stderr_path, stdout, stderr, placeholders })
    }

    /// Reopens existing FIFOs of a process that already runs (after an agent restart).
    pub fn reopen(dir: &Path, name: &str) -> Result<Self> {
        let mut fifos = Self::create(dir, name)?;
        fifos.placeholders.clear();
        Ok(fifos)
    }

    /// Copies both streams into `log` until the shim closes them (spawned; returns at once).
    pub fn copy_to_log(self, log: LogFile) -> tokio::task::JoinHandle<()> {
        let Self { stdout, stderr, placeholders, stdout_path, stderr_path } = self;
        tokio::spawn(async move {
            let out = copy_stream(stdout, Stream::Stdout, log.clone());
            let err = copy_stream(stderr, Stream::Stderr, log);
            // The shim opened its ends when the task was created; from now on end of file
            // means the process and everything holding its output are gone.
            drop(placeholders);
            tokio::join!(out, err);
            let _ = std::fs::remove_file(stdout_path);
            let _ = std::fs::remove_file(stderr_path);
        })
    }

    /// Collects both streams (each up to `limit` bytes) until the shim closes them.
    pub async fn collect(self, limit: usize) -> (Vec<u8>, Vec<u8>) {
        let Self { stdout, stderr, placeholders, stdout_path, stderr_path } = self;
        drop(placeholders);
        let (o, e) = tokio::join!(read_all(stdout, limit), read_all(stderr, limit));
        let _ = std::fs::remove_file(stdout_path);
        let _ = std::fs::remove_file(stderr_path);
        (o, e)
    }
}

async fn copy_stream(mut rx: pipe::Receiver, stream: Stream, log: LogFile) {
    let mut split = LineSplitter::new(stream);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => split.push(&buf[..n], &log),
            Err(e) => {
                tracing::warn!(error = %e, stream = stream.as_str(), "container output stream failed");
                break;
            }
        }
    }
    split.finish(&log);
}

async fn read_all(mut rx: pipe::Receiver, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = rx.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&buf[..n.min(room)]);
    }
    out
}
