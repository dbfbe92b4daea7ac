//! Container lifecycle on containerd: a container record with its runtime spec and a snapshot
//! on the image's top layer; a task whose output is copied into the CRI log (and whose stdin
//! and output attach sessions share, with a terminal when the spec asks for one); wait (with OOM
//! detection from the cgroup's counters), kill, delete, and listing for adoption.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::snapshots::{MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest};
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest, DeleteTaskRequest, GetContainerRequest, GetRequest,
    KillRequest, ListContainersRequest, StartRequest, UpdateContainerRequest, WaitRequest,
};
use containerd_client::types::v1::Status as TaskStatus;

use super::attach::AttachRegistry;
use super::client::Client;
use super::cri_log::LogFile;
use super::fifo::{request_path, ProcessFifos};
use super::images::store;
use super::log_rotation::LogRotation;
use super::{spec, ContainerConfig, ContainerInfo, ContainerState, ExitStatus, Result, RuntimeError};
use super::{LABEL_CGROUP, LABEL_LOG_PATH, LABEL_OOM_KILLED, LABEL_STDIN, SNAPSHOTTER};

const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const RUNC_V2: &str = "io.containerd.runc.v2";

fn container_error(id: &str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Container { id: id.to_string(), message: message.into() }
}

/// Ignores a NotFound answer (for idempotent removal).
fn ok_if_missing<T>(r: std::result::Result<T, tonic::Status>, call: &'static str) -> Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
        Err(s) => Err(RuntimeError::grpc(call)(s)),
    }
}

fn timestamp(t: Option<prost_types::Timestamp>) -> time::OffsetDateTime {
    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp_nanos(t.seconds as i128 * 1_000_000_000 + t.nanos as i128).ok())
        .unwrap_or_else(time::OffsetDateTime::now_utc)
}

/// Creates the container `config.id` from its (present) image.
pub async fn create(client: &Client, config: &ContainerConfig) -> Result<()> {
    let image = store::get(client, &config.image)
        .await?
        .ok_or_else(|| RuntimeError::Image { image: config.image.clone(), message: "not present on this node".into() })?;
    let parent = image.chain_id().ok_or_else(|| container_error(&config.id, "the image has no layers"))?;
    let spec = spec::runtime_spec(config, &image.config.config);
    let spec = prost_types::Any { type_url: SPEC_TYPE.into(), value: serde_json::to_vec(&spec).unwrap_or_default() };
    // The snapshot is unreferenced until the container record exists: a lease keeps
    // containerd's garbage collector (scheduled by any earlier removal) off it meanwhile.
    let leased = client.with_lease(Duration::from_secs(600)).await?;
    let result = create_leased(&leased, config, image.name.clone(), parent, spec).await;
    leased.end_lease().await;
    result
}

async fn create_leased(client: &Client, config: &ContainerConfig, image: String, parent: String, spec: prost_types::Any) -> Result<()> {
    let prepare = PrepareSnapshotRequest { snapshotter: SNAPSHOTTER.into(), key: config.id.clone(), parent, labels: HashMap::new() };
    client.snapshots().prepare(client.req(prepare)).await.map_err(RuntimeError::grpc("snapshot prepare"))?;
    let mut labels: HashMap<String, String> = config.labels.clone().into_iter().collect();
    labels.insert(LABEL_LOG_PATH.into(), config.log_path.display().to_string());
    labels.insert(LABEL_CGROUP.into(), spec_cgroup(config));
    if config.stdin {
        labels.insert(LABEL_STDIN.into(), if config.stdin_once { "once" } else { "true" }.into());
    }
    let container = Container {
        id: config.id.clone(),
        labels,
        image: image.clone(),
        runtime: Some(Runtime { name: RUNC_V2.into(), options: None }),
        spec: Some(spec),
        snapshotter: SNAPSHOTTER.into(),
        snapshot_key: config.id.clone(),
        ..Default::default()
    };
    if let Err(s) = client.containers().create(client.req(CreateContainerRequest { container: Some(container) })).await {
        let _ =
            client.snapshots().remove(client.req(RemoveSnapshotRequest { snapshotter: SNAPSHOTTER.into(), key: config.id.clone() })).await;
        return Err(RuntimeError::grpc("container create")(s));
    }
    tracing::debug!(id = %config.id, %image, "container created");
    Ok(())
}

fn spec_cgroup(config: &ContainerConfig) -> String {
    format!("{}/{}", config.cgroup_parent.trim_end_matches('/'), config.id)
}

async fn get(client: &Client, id: &str) -> Result<Container> {
    let r = client
        .containers()
        .get(client.req(GetContainerRequest { id: id.to_string() }))
        .await
        .map_err(RuntimeError::grpc("container get"))?;
    r.into_inner().container.ok_or_else(|| container_error(id, "containerd returned no container"))
}

fn spec_of(container: &Container) -> serde_json::Value {
    container.spec.as_ref().and_then(|s| serde_json::from_slice(&s.value).ok()).unwrap_or_default()
}

/// Whether the container's process has a terminal.
fn has_terminal(container: &Container) -> bool {
    spec_of(container)["process"]["terminal"].as_bool().unwrap_or(false)
}

/// The network namespace in the container's spec.
fn netns_of(container: &Container) -> Option<PathBuf> {
    let spec = spec_of(container);
    let namespaces = spec["linux"]["namespaces"].as_array()?;
    namespaces.iter().find(|n| n["type"] == "network").and_then(|n| n["path"].as_str()).map(PathBuf::from)
}

fn log_file(container: &Container, rotation: LogRotation) -> Result<LogFile> {
    let id = &container.id;
    let log_path = container.labels.get(LABEL_LOG_PATH).cloned().ok_or_else(|| container_error(id, "no log path label"))?;
    LogFile::open(Path::new(&log_path), rotation).map_err(RuntimeError::io(&log_path))
}

fn stdin_once(container: &Container) -> bool {
    container.labels.get(LABEL_STDIN).is_some_and(|v| v == "once")
}

/// Creates and starts the task of a created container, its output going to its log file (and
/// to attached clients), rotated by `rotation`.
pub async fn start(client: &Client, fifo_dir: &Path, attach: &AttachRegistry, id: &str, rotation: LogRotation) -> Result<()> {
    let container = get(client, id).await?;
    let log = log_file(&container, rotation)?;
    let mounts = MountsRequest { snapshotter: SNAPSHOTTER.into(), key: container.snapshot_key.clone() };
    let rootfs = client.snapshots().mounts(client.req(mounts)).await.map_err(RuntimeError::grpc("snapshot mounts"))?.into_inner().mounts;
    let tty = has_terminal(&container);
    let fifos = ProcessFifos::create_with(fifo_dir, id, container.labels.contains_key(LABEL_STDIN), !tty)?;
    let create = CreateTaskRequest {
        container_id: id.to_string(),
        rootfs,
        stdin: request_path(&fifos.stdin_path),
        stdout: fifos.stdout_path.display().to_string(),
        stderr: request_path(&fifos.stderr_path),
        terminal: tty,
        ..Default::default()
    };
    client.tasks().create(client.req(create)).await.map_err(RuntimeError::grpc("task create"))?;
    fifos.copy_to_log(log, attach, id, stdin_once(&container));
    let start = StartRequest { container_id: id.to_string(), exec_id: String::new() };
    client.tasks().start(client.req(start)).await.map_err(RuntimeError::grpc("task start"))?;
    tracing::debug!(%id, "container started");
    Ok(())
}

/// Resumes copying the output of a running container (after an agent restart).
pub async fn resume_logs(client: &Client, fifo_dir: &Path, attach: &AttachRegistry, id: &str, rotation: LogRotation) -> Result<()> {
    let container = get(client, id).await?;
    ProcessFifos::reopen(fifo_dir, id)?.copy_to_log(log_file(&container, rotation)?, attach, id, stdin_once(&container));
    Ok(())
}

/// Waits for the container's main process to exit.
pub async fn wait(client: &Client, id: &str) -> Result<ExitStatus> {
    let container = get(client, id).await?;
    let r = client.tasks().wait(client.req(WaitRequest { container_id: id.to_string(), exec_id: String::new() })).await;
    let r = r.map_err(RuntimeError::grpc("task wait"))?.into_inner();
    let oom_killed = container.labels.get(LABEL_CGROUP).is_some_and(|cg| oom_kills(cg) > 0);
    if oom_killed {
        mark_oom_killed(client, id).await?;
    }
    Ok(ExitStatus { code: r.exit_status as i32, finished_at: timestamp(r.exited_at), oom_killed })
}

async fn mark_oom_killed(client: &Client, id: &str) -> Result<()> {
    let container =
        Container { id: id.to_string(), labels: [(LABEL_OOM_KILLED.to_string(), "true".to_string())].into(), ..Default::default() };
    let mask = prost_types::FieldMask { paths: vec![format!("labels.{LABEL_OOM_KILLED}")] };
    let req = UpdateContainerRequest { container: Some(container), update_mask: Some(mask) };
    client.containers().update(client.req(req)).await.map_err(RuntimeError::grpc("container update"))?;
    Ok(())
}

/// How many processes the OOM killer killed in the cgroup `path` (v2 `memory.events`, or v1
/// `memory.oom_control`); 0 when it cannot be read.
pub fn oom_kills(path: &str) -> u64 {
    let rel = path.trim_start_matches('/');
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let file =
        if unified { format!("/sys/fs/cgroup/{rel}/memory.events") } else { format!("/sys/fs/cgroup/memory/{rel}/memory.oom_control") };
    std::fs::read_to_string(file).map(|text| parse_oom_kills(&text)).unwrap_or(0)
}

fn parse_oom_kills(text: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// Sends `signal` to every process of the container (a missing task is not an error).
pub async fn kill(client: &Client, id: &str, signal: i32) -> Result<()> {
    let req = KillRequest { container_id: id.to_string(), exec_id: String::new(), signal: signal as u32, all: true };
    match client.tasks().kill(client.req(req)).await {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
        // The process is gone already.
        Err(s) if s.message().contains("process already finished") => Ok(()),
        Err(s) => Err(RuntimeError::grpc("task kill")(s)),
    }
}

/// Removes the task (killing it), the container and its snapshot; missing parts are fine.
pub async fn remove(client: &Client, id: &str) -> Result<()> {
    let current = match state(client, id).await {
        Err(e) if e.is_not_found() => ContainerState::Created,
        other => other?,
    };
    if let ContainerState::Running { .. } = current {
        kill(client, id, libc::SIGKILL).await?;
        let mut tasks = client.tasks();
        let wait = tasks.wait(client.req(WaitRequest { container_id: id.to_string(), exec_id: String::new() }));
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), wait).await;
    }
    ok_if_missing(client.tasks().delete(client.req(DeleteTaskRequest { container_id: id.to_string() })).await, "task delete")?;
    ok_if_missing(client.containers().delete(client.req(DeleteContainerRequest { id: id.to_string() })).await, "container delete")?;
    let snapshot = RemoveSnapshotRequest { snapshotter: SNAPSHOTTER.into(), key: id.to_string() };
    ok_if_missing(client.snapshots().remove(client.req(snapshot)).await, "snapshot remove")
}

/// The state of the container's task.
pub async fn state(client: &Client, id: &str) -> Result<ContainerState> {
    let oom = |c: &Container| c.labels.get(LABEL_OOM_KILLED).is_some_and(|v| v == "true");
    let container = get(client, id).await?;
    let task = client.tasks().get(client.req(GetRequest { container_id: id.to_string(), exec_id: String::new() })).await;
    let process = match task {
        Ok(r) => r.into_inner().process,
        Err(s) if s.code() == tonic::Code::NotFound => None,
        Err(s) => return Err(RuntimeError::grpc("task get")(s)),
    };
    Ok(match process {
        None => ContainerState::Created,
        Some(p) => match TaskStatus::try_from(p.status).unwrap_or(TaskStatus::Unknown) {
            TaskStatus::Running | TaskStatus::Paused | TaskStatus::Pausing => ContainerState::Running { pid: p.pid },
            TaskStatus::Stopped => ContainerState::Exited(ExitStatus {
                code: p.exit_status as i32,
                finished_at: timestamp(p.exited_at),
                oom_killed: oom(&container),
            }),
            TaskStatus::Created | TaskStatus::Unknown => ContainerState::Created,
        },
    })
}

/// Every container in the namespace with its state.
pub async fn list(client: &Client) -> Result<Vec<ContainerInfo>> {
    let r = client.containers().list(client.req(ListContainersRequest { filters: vec![] })).await;
    let mut out = Vec::new();
    for c in r.map_err(RuntimeError::grpc("container list"))?.into_inner().containers {
        let state = match state(client, &c.id).await {
            Ok(s) => s,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let netns = netns_of(&c);
        let labels: BTreeMap<String, String> = c.labels.into_iter().collect();
        out.push(ContainerInfo { id: c.id, image: c.image, labels, state, netns });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_counters_parse_for_both_cgroup_versions() {
        assert_eq!(parse_oom_kills("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"), 1);
        assert_eq!(parse_oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"), 2);
        assert_eq!(parse_oom_kills(""), 0);
    }
}
