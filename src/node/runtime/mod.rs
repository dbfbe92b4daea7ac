//! The container runtime of a node: a narrow [`ContainerRuntime`] trait (what the kubelet
//! needs), its containerd implementation ([`containerd::Containerd`], over containerd's native
//! gRPC API in the `orch` namespace), a fake for the kubelet's unit tests, the supervised
//! containerd child process and the image store (import, pull, list, remove). Interactive
//! exec and attach sessions ([`StreamSession`]) back `kubectl exec` and `kubectl attach`.

mod attach;
pub mod client;
pub mod config;
pub mod containerd;
mod containers;
pub mod cri_log;
mod exec;
mod exec_stream;
pub mod fake;
mod fifo;
pub mod images;
pub mod log_rotation;
pub mod node;
pub mod spec;
pub mod supervisor;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

pub use images::PullPolicy;

/// The containerd namespace orch keeps its images and containers in.
pub const NAMESPACE: &str = "orch";
/// The snapshotter orch unpacks images into and runs containers on.
pub const SNAPSHOTTER: &str = "overlayfs";
/// Label with the CRI log file a container writes to (so a restarted agent can resume copying).
pub const LABEL_LOG_PATH: &str = "io.orch.log-path";
/// Label with a container's cgroup path (to read its OOM-kill counter).
pub const LABEL_CGROUP: &str = "io.orch.cgroup";
/// Label on a container whose main process reads stdin: `true`, or `once` (closed after the
/// first attach session ends).
pub const LABEL_STDIN: &str = "io.orch.stdin";
/// Label set to `true` on a container whose process the OOM killer killed.
pub const LABEL_OOM_KILLED: &str = "io.orch.oom-killed";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{binary} not found in PATH: install Debian's `{package}` package (apt-get install {package})")]
    MissingBinary { binary: &'static str, package: &'static str },
    #[error("cannot connect to containerd at {socket}: {message}")]
    Connect { socket: String, message: String },
    #[error("containerd {call}: {message}")]
    Grpc { call: &'static str, code: tonic::Code, message: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("image {image}: {message}")]
    Image { image: String, message: String },
    #[error("container {id}: {message}")]
    Container { id: String, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Reference(#[from] images::reference::ReferenceError),
}

impl RuntimeError {
    pub(crate) fn io(path: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> RuntimeError {
        let path = path.to_string();
        move |source| RuntimeError::Io { path, source }
    }

    pub(crate) fn grpc(call: &'static str) -> impl FnOnce(tonic::Status) -> RuntimeError {
        move |s| RuntimeError::Grpc { call, code: s.code(), message: s.message().to_string() }
    }

    /// Whether containerd answered that the thing asked about does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RuntimeError::Grpc { code: tonic::Code::NotFound, .. })
    }

    /// Whether containerd answered that the thing to create exists already.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, RuntimeError::Grpc { code: tonic::Code::AlreadyExists, .. })
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// A host path bind-mounted into a container (prepared by the caller: volumes, /etc/hosts …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub host_path: PathBuf,
    pub container_path: String,
    pub read_only: bool,
}

/// Linux capabilities to add to or drop from the default set (names with or without `CAP_`;
/// `ALL` is allowed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

/// cgroup limits of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// cpu.shares (cgroup v1 scale; runc converts it to cpu.weight on v2).
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per `cpu_period_us`.
    pub cpu_quota_us: Option<i64>,
    pub cpu_period_us: Option<u64>,
    pub memory_limit_bytes: Option<i64>,
}

/// Everything needed to create one container of a pod.
#[derive(Debug, Clone, Default)]
pub struct ContainerConfig {
    /// containerd container id (unique on the node; the kubelet picks it).
    pub id: String,
    /// Image reference as the pod names it (normalised like `docker.io/library/busybox:latest`).
    pub image: String,
    /// Overrides the image's entrypoint (Kubernetes `command`).
    pub command: Vec<String>,
    /// Overrides the image's cmd (Kubernetes `args`).
    pub args: Vec<String>,
    /// Added to (and overriding) the image's environment, in order.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub mounts: Vec<BindMount>,
    /// Numeric uid; the image's user when unset.
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub supplemental_groups: Vec<u32>,
    pub capabilities: Capabilities,
    pub privileged: bool,
    pub read_only_root_filesystem: bool,
    /// `allowPrivilegeEscalation: false` sets no_new_privs.
    pub no_new_privileges: bool,
    pub resources: Resources,
    /// cgroup of the pod (e.g. `/orch/pod<uid>`); the container's is `<parent>/<id>`.
    pub cgroup_parent: String,
    /// Network namespace of the pod; `None` = the host's network (and UTS) namespace.
    pub netns_path: Option<PathBuf>,
    pub hostname: String,
    /// Labels kept on the containerd container (pod uid, names …) to find it again later.
    pub labels: BTreeMap<String, String>,
    /// The CRI log file stdout and stderr go to.
    pub log_path: PathBuf,
    /// The main process gets a stdin to attach to (`stdin`), closed after the first attach
    /// session when `stdin_once`; `tty` gives it a terminal (stderr merges into stdout).
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
}

/// How a container's main process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: i32,
    pub finished_at: time::OffsetDateTime,
    /// The kernel's OOM killer killed a process of the container.
    pub oom_killed: bool,
}

/// The state of a container as the runtime sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, never started (or its task is gone without an exit record).
    Created,
    Running {
        pid: u32,
    },
    Exited(ExitStatus),
}

/// A container the runtime knows, with the labels it was created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    pub state: ContainerState,
    /// The network namespace the container joined; `None`: the runtime's own.
    pub netns: Option<PathBuf>,
}

/// Output and exit code of a process run in a container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A terminal's size in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct TermSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Which streams an exec or attach session connects, and whether it has a terminal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamRequest {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// An interactive exec or attach session: chunks written to `stdin` reach the process (dropping
/// it closes the process's stdin, except on a shared attach stdin), its output arrives on
/// `stdout` and `stderr` until it closes them. Requested streams are `Some`.
pub struct StreamSession {
    pub stdin: Option<mpsc::Sender<Bytes>>,
    pub stdout: Option<mpsc::Receiver<Bytes>>,
    pub stderr: Option<mpsc::Receiver<Bytes>>,
    pub control: Box<dyn SessionControl>,
}

/// Resizing and awaiting the process of a [`StreamSession`]. Dropping an exec session's
/// control before its process exited kills the process.
#[async_trait::async_trait]
pub trait SessionControl: Send + Sync {
    /// Resizes the session's terminal (an error when it has none).
    async fn resize(&self, size: TermSize) -> Result<()>;
    /// Waits until the process ends: an exec'd process, or the attached container's main one.
    async fn wait(&self) -> Result<i32>;
}

/// An image in the node's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Full reference, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// Digest of the manifest (or index) the name points at.
    pub digest: String,
    /// Size of the manifest's config and layers (compressed, as stored).
    pub size: u64,
    /// Kept by image garbage collection (imported airgap images).
    pub pinned: bool,
}

/// Credentials for one pull (from imagePullSecrets or registries.yaml).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

/// What the kubelet needs from a container runtime. Every method is idempotent where that
/// makes sense (removing a missing container succeeds); errors carry the runtime's message.
#[async_trait::async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// Name and version of the runtime (for the Node's nodeInfo), e.g. `containerd://1.6.20`.
    async fn version(&self) -> Result<String>;
    /// Makes `image` present according to `policy`, pulling when needed; returns it.
    async fn ensure_image(&self, image: &str, policy: PullPolicy, auth: Option<&RegistryAuth>) -> Result<ImageInfo>;
    /// Creates the container (not started).
    async fn create_container(&self, config: &ContainerConfig) -> Result<()>;
    /// Starts a created container; its output goes to the config's log file.
    async fn start_container(&self, id: &str) -> Result<()>;
    /// Waits until the container's main process exits.
    async fn wait_container(&self, id: &str) -> Result<ExitStatus>;
    /// Sends `signal` (e.g. libc::SIGTERM) to every process of the container.
    async fn kill_container(&self, id: &str, signal: i32) -> Result<()>;
    /// Removes the container (killing it first if it still runs) and its snapshot.
    async fn remove_container(&self, id: &str) -> Result<()>;
    /// Runs `cmd` in the running container and collects its output (probes; at most `timeout`).
    async fn exec(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecOutput>;
    /// Starts `cmd` in the running container with the streams of `streams` connected.
    async fn exec_stream(&self, id: &str, cmd: &[String], streams: StreamRequest) -> Result<StreamSession>;
    /// Connects to the streams of the container's running main process (its stdin only when
    /// the container was created with one).
    async fn attach(&self, id: &str, streams: StreamRequest) -> Result<StreamSession>;
    /// Every container orch created on this node, with labels and state.
    async fn list_containers(&self) -> Result<Vec<ContainerInfo>>;
    /// The state of one container.
    async fn container_state(&self, id: &str) -> Result<ContainerState>;
    /// Takes over a container that runs since before this agent started (resumes copying its
    /// output into its log).
    async fn adopt(&self, _id: &str) -> Result<()> {
        Ok(())
    }
}
