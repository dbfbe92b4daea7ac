//! Child-process clusters for integration tests and benchmarks: `orch server` and `orch agent`
//! processes on 127.0.0.1 with fresh ports, killed when dropped, and waits that explain their
//! timeouts; [`cluster`] puts real nodes in network namespaces of their own.

pub mod cluster;
pub mod images;
pub mod node;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::rpc::{HttpClient, RemoteStore};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` until it returns `Some`, failing with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < until, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An `orch server` child process on 127.0.0.1, killed on drop. Unless started with
/// [`ServerProc::start_with_node`] it runs no local node (`--disable-agent`): run as root, that
/// node would put real containers and the bridge `cni0` on the machine's own network.
pub struct ServerProc {
    binary: PathBuf,
    pub port: u16,
    pub data_dir: PathBuf,
    extra: Vec<String>,
    local_node: bool,
    child: Option<Child>,
}

impl ServerProc {
    /// Starts `binary` as a server in `data_dir` on a fresh port; `extra` are more flags
    /// (e.g. `--join`).
    pub fn start(binary: &Path, data_dir: &Path, extra: &[String]) -> Self {
        Self::spawn(binary, data_dir, extra, false)
    }

    /// Starts a server with its local node; `extra` must confine the node (`--netns` of a
    /// [`node::NodeSandbox`], a free `--kubelet-port`).
    pub fn start_with_node(binary: &Path, data_dir: &Path, extra: &[String]) -> Self {
        Self::spawn(binary, data_dir, extra, true)
    }

    /// A server not started yet (its port chosen): [`Self::restart`] starts it.
    pub fn stopped(binary: &Path, data_dir: &Path, extra: &[String]) -> Self {
        let (binary, data_dir, extra) = (binary.to_path_buf(), data_dir.to_path_buf(), extra.to_vec());
        Self { binary, port: free_port(), data_dir, extra, local_node: false, child: None }
    }

    fn spawn(binary: &Path, data_dir: &Path, extra: &[String], local_node: bool) -> Self {
        let mut s = Self::stopped(binary, data_dir, extra);
        s.local_node = local_node;
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// A client with this server's admin certificate (`system:masters`), once the server has
    /// written its credentials.
    pub fn admin_client(&self) -> Option<HttpClient> {
        let (ca, admin) = crate::server::admin_credentials(&self.data_dir).ok()?;
        Some(HttpClient::new(crate::pki::client_config(&ca, Some(&admin)).ok()?))
    }

    /// The store RPC of this server, as its admin.
    pub fn store(&self) -> RemoteStore {
        RemoteStore::new(self.url(), self.admin_client().expect("server credentials exist once it started"))
    }

    /// The server token of this server's cluster (joins servers; also agents).
    pub fn token(&self) -> String {
        crate::server::read_token(&self.data_dir).expect("server token exists once it started")
    }

    /// The agent token of this server's cluster (joins agents only).
    pub fn agent_token(&self) -> String {
        crate::server::read_agent_token(&self.data_dir).expect("agent token exists once it started")
    }

    /// (Re)starts the process with the same data dir, port and flags.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "server already running");
        std::fs::create_dir_all(&self.data_dir).expect("creating the server's data dir");
        let mut command = Command::new(&self.binary);
        command
            .arg("server")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--https-listen-port={}", self.port))
            .args((!self.local_node).then_some("--disable-agent"))
            .args(&self.extra);
        self.child = Some(spawn_logged(&mut command, &self.data_dir.with_extension("log"), "info,openraft=error", "orch server"));
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit; returns its exit code
    /// (`None` if it had to be killed).
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        terminate(self.child.take()?, timeout)
    }

    /// SIGKILLs the process (no graceful shutdown) and reaps it.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The node's own view of the cluster, from `/raft/status`.
    pub async fn status(&self) -> Option<serde_json::Value> {
        use http_body_util::BodyExt;
        let req = http::Request::get(format!("{}/raft/status", self.url())).body(http_body_util::Full::default()).ok()?;
        let resp = self.admin_client()?.send(req, Duration::from_secs(2)).await.ok()?;
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice(&body).ok()
    }

    /// Waits until this node knows a leader and is a voter, returning the leader's id.
    pub async fn wait_member(&self, timeout: Duration) -> u64 {
        let check = async {
            loop {
                if let Some(st) = self.status().await {
                    let id = st["id"].as_u64();
                    let voter = st["members"].as_array().is_some_and(|ms| ms.iter().any(|m| m["id"].as_u64() == id && m["voter"] == true));
                    if let (true, Some(leader)) = (voter, st["leader"].as_u64()) {
                        return leader;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        match tokio::time::timeout(timeout, check).await {
            Ok(leader) => leader,
            Err(_) => panic!(
                "timed out after {timeout:?} waiting for server on port {} to be a voter with a leader; status {:?}; log:\n{}",
                self.port,
                self.status().await,
                self.log()
            ),
        }
    }

    pub async fn node_id(&self) -> u64 {
        wait_for(Duration::from_secs(10), "node id", || async { self.status().await?["id"].as_u64() }).await
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns `command` with its stderr appended to `log` and `RUST_LOG` from `ORCH_TEST_LOG`
/// (else `default_log`).
fn spawn_logged(command: &mut Command, log: &Path, default_log: &str, what: &str) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    command
        .env("RUST_LOG", std::env::var("ORCH_TEST_LOG").unwrap_or_else(|_| default_log.into()))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {what}: {e}"))
}

/// SIGKILLs a child, if running, and reaps it.
fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Sends SIGTERM to `child` and waits up to `timeout` for it to exit; returns its exit code
/// (`None` if it had to be killed).
fn terminate(mut child: Child, timeout: Duration) -> Option<i32> {
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let until = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < until {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// An `orch agent` child process (e.g. a hollow node with `--runtime fake`), killed on drop.
/// Its log is `<data_dir>.log`.
pub struct AgentProc {
    pub name: String,
    pub data_dir: PathBuf,
    command: Vec<std::ffi::OsString>,
    token: String,
    child: Option<Child>,
}

impl AgentProc {
    /// Starts `binary` as an agent named `name` joining `server_url` with `token`, keeping its
    /// state in `data_dir`; `extra` are more flags (e.g. `--runtime=fake`).
    pub fn start(binary: &Path, server_url: &str, token: &str, data_dir: &Path, name: &str, extra: &[String]) -> Self {
        let mut command: Vec<std::ffi::OsString> = vec![binary.into(), "agent".into(), "--data-dir".into(), data_dir.into()];
        command.push(format!("--join={server_url}").into());
        command.push(format!("--node-name={name}").into());
        command.extend(extra.iter().map(Into::into));
        let mut agent = Self { name: name.into(), data_dir: data_dir.to_path_buf(), command, token: token.into(), child: None };
        agent.restart();
        agent
    }

    /// (Re)starts the process with the same flags.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "agent already running");
        std::fs::create_dir_all(&self.data_dir).expect("creating the agent's data dir");
        let mut command = Command::new(&self.command[0]);
        command.args(&self.command[1..]).env("ORCH_TOKEN", &self.token);
        self.child = Some(spawn_logged(&mut command, &self.data_dir.with_extension("log"), "info", "orch agent"));
    }

    /// Stops the process with SIGTERM (a graceful shutdown), waiting up to `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        terminate(self.child.take()?, timeout)
    }

    /// SIGKILLs the process (the node just vanishes) and reaps it.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// The agent's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a cluster of `n` servers under `root`, the first bootstrapping and the rest joining.
pub async fn start_cluster(binary: &Path, root: &Path, n: usize, extra: &[String]) -> Vec<ServerProc> {
    let first = ServerProc::start(binary, &root.join("n0"), extra);
    first.wait_member(Duration::from_secs(20)).await;
    let mut nodes = vec![first];
    for i in 1..n {
        let mut flags = extra.to_vec();
        flags.push(format!("--join={}", nodes[0].url()));
        flags.push(format!("--token={}", nodes[0].token()));
        let node = ServerProc::start(binary, &root.join(format!("n{i}")), &flags);
        node.wait_member(Duration::from_secs(30)).await;
        nodes.push(node);
    }
    nodes
}
