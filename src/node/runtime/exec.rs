//! Running an extra process in a running container for exec probes: the container's process
//! settings with new args, output through FIFOs, exit code from Wait, killed when it outlives
//! its timeout. (Interactive sessions are in `exec_stream`.)

use std::path::Path;
use std::time::Duration;

use containerd_client::services::v1::{
    DeleteProcessRequest, ExecProcessRequest, GetContainerRequest, KillRequest, StartRequest, WaitRequest,
};

use super::client::Client;
use super::fifo::{request_path, ProcessFifos};
use super::{ExecOutput, Result, RuntimeError};

const PROCESS_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// At most this much of each output stream is kept.
const OUTPUT_LIMIT: usize = 1 << 20;

/// The process spec of `cmd` run in container `id`: the container's own process settings with
/// new args (and a terminal when `tty`).
pub async fn process_spec(client: &Client, id: &str, cmd: &[String], tty: bool) -> Result<prost_types::Any> {
    if cmd.is_empty() {
        return Err(RuntimeError::Invalid("exec needs a command".into()));
    }
    let container = client.containers().get(client.req(GetContainerRequest { id: id.to_string() })).await;
    let container = container.map_err(RuntimeError::grpc("container get"))?.into_inner().container.unwrap_or_default();
    let spec: serde_json::Value = container.spec.map(|s| serde_json::from_slice(&s.value).unwrap_or_default()).unwrap_or_default();
    let mut process = spec["process"].clone();
    process["args"] = serde_json::json!(cmd);
    process["terminal"] = serde_json::json!(tty);
    Ok(prost_types::Any { type_url: PROCESS_TYPE.into(), value: serde_json::to_vec(&process).unwrap_or_default() })
}

/// A fresh exec id.
pub fn new_exec_id() -> String {
    format!("exec-{:016x}", rand::random::<u64>())
}

/// Runs `cmd` in container `id`, collecting its output, for at most `timeout`.
pub async fn exec(client: &Client, fifo_dir: &Path, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecOutput> {
    let process = process_spec(client, id, cmd, false).await?;
    let exec_id = new_exec_id();
    let fifos = ProcessFifos::create(fifo_dir, &format!("{id}-{exec_id}"))?;
    let req = ExecProcessRequest {
        container_id: id.to_string(),
        stdin: String::new(),
        stdout: fifos.stdout_path.display().to_string(),
        stderr: request_path(&fifos.stderr_path),
        terminal: false,
        spec: Some(process),
        exec_id: exec_id.clone(),
    };
    client.tasks().exec(client.req(req)).await.map_err(RuntimeError::grpc("task exec"))?;
    let run = async {
        let output = fifos.collect(OUTPUT_LIMIT);
        client.tasks().start(client.req(StartRequest { container_id: id.to_string(), exec_id: exec_id.clone() })).await?;
        let mut tasks = client.tasks();
        let wait = tasks.wait(client.req(WaitRequest { container_id: id.to_string(), exec_id: exec_id.clone() }));
        let (status, (stdout, stderr)) = tokio::join!(wait, output);
        Ok::<_, tonic::Status>(ExecOutput { exit_code: status?.into_inner().exit_status as i32, stdout, stderr })
    };
    let result = tokio::time::timeout(timeout, run).await;
    if result.is_err() {
        let kill = KillRequest { container_id: id.to_string(), exec_id: exec_id.clone(), signal: libc::SIGKILL as u32, all: false };
        let _ = client.tasks().kill(client.req(kill)).await;
    }
    let delete = DeleteProcessRequest { container_id: id.to_string(), exec_id };
    let _ = client.tasks().delete_process(client.req(delete)).await;
    match result {
        Ok(r) => r.map_err(RuntimeError::grpc("exec")),
        Err(_) => Err(RuntimeError::Container { id: id.to_string(), message: format!("exec {:?} timed out after {timeout:?}", cmd[0]) }),
    }
}
