//! FIFOs between containerd's shim and orch for a process's stdout and stderr: created with
//! mkfifo(3), opened for reading before the task exists (with a placeholder writer held until
//! the shim has opened its end, so the reader does not see an early end of file), and copied
//! into a CRI log file (and to attached clients), into memory, or into channels until the
//! shim closes them; and a process's stdin FIFO.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use super::attach::{AttachRegistry, LiveStreams};
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

/// The FIFOs of one process: stdout, and optionally stdin and stderr (a process with a terminal
/// has none; its terminal output comes on stdout). Output FIFOs are open for reading; stdin is
/// open read-write, so opening never waits for the shim and the shim's reader sees end of
/// file only when orch closes it.
pub struct ProcessFifos {
    pub stdin_path: Option<PathBuf>,
    pub stdout_path: PathBuf,
    pub stderr_path: Option<PathBuf>,
    stdin: Option<pipe::Sender>,
    stdout: pipe::Receiver,
    stderr: Option<pipe::Receiver>,
    /// Held until the shim has opened the write ends.
    placeholders: Vec<pipe::Sender>,
}

/// A path as containerd's task and exec requests take it ("" for none).
pub fn request_path(p: &Option<PathBuf>) -> String {
    p.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
}

impl ProcessFifos {
    /// Creates `<dir>/<name>-stdout` and `-stderr` and opens them.
    pub fn create(dir: &Path, name: &str) -> Result<Self> {
        Self::create_with(dir, name, false, true)
    }

    /// Creates and opens `<dir>/<name>-stdout`, and `-stdin` and `-stderr` when asked for.
    pub fn create_with(dir: &Path, name: &str, stdin: bool, stderr: bool) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(RuntimeError::io(dir.display()))?;
        let path = |stream: &str| dir.join(format!("{name}-{stream}"));
        let mut placeholders = Vec::new();
        let mut open = |p: &Path| -> Result<pipe::Receiver> {
            mkfifo(p)?;
            let rx = pipe::OpenOptions::new().open_receiver(p).map_err(RuntimeError::io(p.display()))?;
            placeholders.push(pipe::OpenOptions::new().open_sender(p).map_err(RuntimeError::io(p.display()))?);
            Ok(rx)
        };
        let stdout_path = path("stdout");
        let stdout = open(&stdout_path)?;
        let stderr_path = stderr.then(|| path("stderr"));
        let stderr = stderr_path.as_deref().map(&mut open).transpose()?;
        let stdin_path = stdin.then(|| path("stdin"));
        let stdin = stdin_path.as_deref().map(open_input).transpose()?;
        Ok(Self { stdin_path, stdout_path, stderr_path, stdin, stdout, stderr, placeholders })
    }

    /// Reopens existing FIFOs of a process that already runs (after an agent restart).
    pub fn reopen(dir: &Path, name: &str) -> Result<Self> {
        let stdin = dir.join(format!("{name}-stdin")).exists();
        let stderr = dir.join(format!("{name}-stderr")).exists();
        let mut fifos = Self::create_with(dir, name, stdin, stderr)?;
        fifos.placeholders.clear();
        Ok(fifos)
    }

    /// Copies the output of container `id` into `log` until the shim closes it, publishing it
    /// to clients attached through `attach` (which also gets the stdin). Spawned; returns at once.
    pub fn copy_to_log(self, log: LogFile, attach: &AttachRegistry, id: &str, stdin_once: bool) -> tokio::task::JoinHandle<()> {
        let Self { stdin_path, stdout_path, stderr_path, stdin, stdout, stderr, placeholders } = self;
        let live = attach.register(id, stdin, stdin_once);
        let (attach, id) = (attach.clone(), id.to_string());
        tokio::spawn(async move {
            let out = copy_stream(stdout, Stream::Stdout, log.clone(), live.clone());
            let err = async {
                if let Some(rx) = stderr {
                    copy_stream(rx, Stream::Stderr, log, live.clone()).await;
                }
            };
            // The shim opened its ends when the task was created; from now on end of file
            // means the process and everything holding its output are gone.
            drop(placeholders);
            tokio::join!(out, err);
            live.end().await;
            attach.remove(&id, &live);
            for p in [Some(stdout_path), stderr_path, stdin_path].into_iter().flatten() {
                let _ = std::fs::remove_file(p);
            }
        })
    }

    /// Collects stdout and stderr (each up to `limit` bytes) until the shim closes them.
    pub async fn collect(self, limit: usize) -> (Vec<u8>, Vec<u8>) {
        let paths = self.paths();
        let Self { stdout, stderr, placeholders, .. } = self;
        drop(placeholders);
        let stderr = async {
            match stderr {
                Some(rx) => read_all(rx, limit).await,
                None => Vec::new(),
            }
        };
        let (o, e) = tokio::join!(read_all(stdout, limit), stderr);
        remove_all(&paths);
        (o, e)
    }

    /// Hands the streams over (once the shim has opened its ends): the stdin FIFO (see
    /// [`write_from`]) and channels the output arrives on until the process closes it.
    pub fn into_channels(self) -> (Option<pipe::Sender>, mpsc::Receiver<Bytes>, Option<mpsc::Receiver<Bytes>>) {
        let Self { stdin, stdout, stderr, placeholders, .. } = self;
        drop(placeholders);
        (stdin, read_into(stdout), stderr.map(read_into))
    }

    /// The FIFO files.
    pub fn paths(&self) -> Vec<PathBuf> {
        [Some(self.stdout_path.clone()), self.stderr_path.clone(), self.stdin_path.clone()].into_iter().flatten().collect()
    }
}

/// Removes FIFO files (once both ends are open they are no longer needed by name).
pub fn remove_all(paths: &[PathBuf]) {
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}

/// Opens the stdin FIFO `p` (created if missing) read-write for writing into it.
fn open_input(p: &Path) -> Result<pipe::Sender> {
    mkfifo(p)?;
    pipe::OpenOptions::new().read_write(true).open_sender(p).map_err(RuntimeError::io(p.display()))
}

/// Writes chunks from `rx` into `pipe` until the channel closes or the reader is gone. (The
/// shim holds a writer of its own: the process sees end of file only after CloseIO.)
pub async fn write_from(mut rx: mpsc::Receiver<Bytes>, mut pipe: pipe::Sender) {
    while let Some(chunk) = rx.recv().await {
        if pipe.write_all(&chunk).await.is_err() {
            return;
        }
    }
}

/// A channel fed with what `rx` reads until end of file (or until nobody listens).
fn read_into(mut rx: pipe::Receiver) -> mpsc::Receiver<Bytes> {
    let (tx, out) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    out
}

async fn copy_stream(mut rx: pipe::Receiver, stream: Stream, log: LogFile, live: Arc<LiveStreams>) {
    let mut split = LineSplitter::new(stream);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                split.push(&buf[..n], &log);
                live.publish(stream, &buf[..n]);
            }
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
