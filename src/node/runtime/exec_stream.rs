//! Interactive processes on containerd (`kubectl exec`, `kubectl attach`): an exec process
//! with stdin, stdout and stderr FIFOs handed out as channels (a terminal instead of stderr
//! with `tty`), stdin closed with CloseIO, resized with ResizePty and awaited with Wait. An exec process whose session
//! is dropped before it exited is killed and deleted.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

use containerd_client::services::v1::{
    CloseIoRequest, DeleteProcessRequest, ExecProcessRequest, KillRequest, ResizePtyRequest, StartRequest, WaitRequest,
};

use super::client::Client;
use super::exec::{new_exec_id, process_spec};
use super::fifo::{remove_all, request_path, write_from, ProcessFifos};
use super::{Result, RuntimeError, SessionControl, StreamRequest, StreamSession, TermSize};

/// Starts `cmd` in container `id` with the requested streams.
pub async fn exec_stream(client: &Client, fifo_dir: &Path, id: &str, cmd: &[String], req: StreamRequest) -> Result<StreamSession> {
    let process = process_spec(client, id, cmd, req.tty).await?;
    let exec_id = new_exec_id();
    let fifos = ProcessFifos::create_with(fifo_dir, &format!("{id}-{exec_id}"), req.stdin, !req.tty)?;
    let exec = ExecProcessRequest {
        container_id: id.to_string(),
        stdin: request_path(&fifos.stdin_path),
        stdout: fifos.stdout_path.display().to_string(),
        stderr: request_path(&fifos.stderr_path),
        terminal: req.tty,
        spec: Some(process),
        exec_id: exec_id.clone(),
    };
    client.tasks().exec(client.req(exec)).await.map_err(RuntimeError::grpc("task exec"))?;
    let control = ProcessControl {
        client: client.clone(),
        id: id.to_string(),
        exec_id: exec_id.clone(),
        fifos: fifos.paths(),
        ended: AtomicBool::new(false),
    };
    let start = StartRequest { container_id: id.to_string(), exec_id };
    // On failure the control's drop deletes the process.
    client.tasks().start(client.req(start)).await.map_err(RuntimeError::grpc("task start"))?;
    let (stdin, stdout, stderr) = fifos.into_channels();
    let stdin = stdin.map(|pipe| {
        let (tx, rx) = mpsc::channel(16);
        let (client, id, exec_id) = (client.clone(), id.to_string(), control.exec_id.clone());
        tokio::spawn(async move {
            write_from(rx, pipe).await;
            close_stdin(&client, &id, &exec_id).await;
        });
        tx
    });
    tracing::debug!(%id, exec = %control.exec_id, cmd = ?cmd, "exec session started");
    Ok(StreamSession { stdin, stdout: req.stdout.then_some(stdout), stderr: stderr.filter(|_| req.stderr), control: Box::new(control) })
}

/// Closes the stdin of a process (`exec_id` "": the container's main one). The shim keeps a
/// writer of the stdin FIFO open, so closing orch's end is not enough.
pub async fn close_stdin(client: &Client, id: &str, exec_id: &str) {
    let req = CloseIoRequest { container_id: id.to_string(), exec_id: exec_id.to_string(), stdin: true };
    if let Err(e) = client.tasks().close_io(client.req(req)).await {
        tracing::debug!(%id, exec = %exec_id, error = %e, "cannot close a process's stdin");
    }
}

/// The process of a session: an exec process, or (exec id "") a container's main process.
pub struct ProcessControl {
    pub client: Client,
    pub id: String,
    pub exec_id: String,
    /// FIFOs to remove when the session ends.
    pub fifos: Vec<PathBuf>,
    /// The process was awaited (and an exec process deleted).
    pub ended: AtomicBool,
}

impl ProcessControl {
    /// The control of container `id`'s main process (attach).
    pub fn main_process(client: &Client, id: &str) -> Self {
        Self { client: client.clone(), id: id.to_string(), exec_id: String::new(), fifos: vec![], ended: AtomicBool::new(false) }
    }

    fn is_exec(&self) -> bool {
        !self.exec_id.is_empty()
    }
}

#[async_trait::async_trait]
impl SessionControl for ProcessControl {
    async fn resize(&self, size: TermSize) -> Result<()> {
        let req = ResizePtyRequest {
            container_id: self.id.clone(),
            exec_id: self.exec_id.clone(),
            width: size.width.into(),
            height: size.height.into(),
        };
        self.client.tasks().resize_pty(self.client.req(req)).await.map_err(RuntimeError::grpc("task resize pty"))?;
        Ok(())
    }

    async fn wait(&self) -> Result<i32> {
        let req = WaitRequest { container_id: self.id.clone(), exec_id: self.exec_id.clone() };
        let status = self.client.tasks().wait(self.client.req(req)).await.map_err(RuntimeError::grpc("task wait"))?;
        if self.is_exec() && !self.ended.swap(true, Ordering::SeqCst) {
            let delete = DeleteProcessRequest { container_id: self.id.clone(), exec_id: self.exec_id.clone() };
            let _ = self.client.tasks().delete_process(self.client.req(delete)).await;
            remove_all(&self.fifos);
        }
        Ok(status.into_inner().exit_status as i32)
    }
}

impl Drop for ProcessControl {
    fn drop(&mut self) {
        if !self.is_exec() || self.ended.load(Ordering::SeqCst) {
            return;
        }
        let (client, id, exec_id, fifos) = (self.client.clone(), self.id.clone(), self.exec_id.clone(), std::mem::take(&mut self.fifos));
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return remove_all(&fifos) };
        handle.spawn(async move {
            tracing::debug!(%id, exec = %exec_id, "exec session ended before its process; killing it");
            let kill = KillRequest { container_id: id.clone(), exec_id: exec_id.clone(), signal: libc::SIGKILL as u32, all: false };
            let _ = client.tasks().kill(client.req(kill)).await;
            let wait = WaitRequest { container_id: id.clone(), exec_id: exec_id.clone() };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), client.tasks().wait(client.req(wait))).await;
            let _ = client.tasks().delete_process(client.req(DeleteProcessRequest { container_id: id, exec_id })).await;
            remove_all(&fifos);
        });
    }
}
