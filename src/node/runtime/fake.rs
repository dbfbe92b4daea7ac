//! An in-memory [`ContainerRuntime`] for the kubelet's unit tests: images are names in a set,
//! containers are records whose exits the test decides ([`FakeRuntime::exit`]), exec answers
//! come from a closure (interactive sessions print it, then echo their stdin to stdout like
//! `cat`), and every call is recorded.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use super::images::{pull_decision, reference, PullDecision};
use super::{ContainerConfig, ContainerInfo, ContainerRuntime, ContainerState, ExecOutput, ExitStatus, ImageInfo};
use super::{PullPolicy, RegistryAuth, Result, RuntimeError, SessionControl, StreamRequest, StreamSession, TermSize};

type ExecFn = dyn Fn(&str, &[String]) -> ExecOutput + Send + Sync;

#[derive(Default)]
struct State {
    images: BTreeSet<String>,
    /// Images a pull can fetch (others fail like a registry's "manifest unknown").
    pullable: BTreeSet<String>,
    containers: HashMap<String, (ContainerConfig, watch::Sender<ContainerState>)>,
    calls: Vec<String>,
}

/// The fake runtime; clones share state.
#[derive(Clone, Default)]
pub struct FakeRuntime {
    state: Arc<Mutex<State>>,
    exec: Option<Arc<ExecFn>>,
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers every exec with `f(container id, cmd)` (default: exit 0, no output).
    pub fn with_exec(mut self, f: impl Fn(&str, &[String]) -> ExecOutput + Send + Sync + 'static) -> Self {
        self.exec = Some(Arc::new(f));
        self
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Makes `image` present.
    pub fn add_image(&self, image: &str) {
        self.lock().images.insert(reference::normalize(image));
    }

    /// Makes `image` available to pulls.
    pub fn add_pullable(&self, image: &str) {
        self.lock().pullable.insert(reference::normalize(image));
    }

    /// Ends a running container's process with `code`.
    pub fn exit(&self, id: &str, code: i32, oom_killed: bool) {
        if let Some((_, tx)) = self.lock().containers.get(id) {
            tx.send_replace(ContainerState::Exited(ExitStatus { code, finished_at: time::OffsetDateTime::now_utc(), oom_killed }));
        }
    }

    /// The calls made so far, like `create c1`, `start c1`, `pull docker.io/library/x:1`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// The config a container was created with.
    pub fn config(&self, id: &str) -> Option<ContainerConfig> {
        self.lock().containers.get(id).map(|(c, _)| c.clone())
    }

    fn record(&self, call: String) {
        self.lock().calls.push(call);
    }

    fn running(&self, id: &str) -> Result<()> {
        match *self.sender(id)?.borrow() {
            ContainerState::Running { .. } => Ok(()),
            _ => Err(RuntimeError::Container { id: id.into(), message: "not running".into() }),
        }
    }

    /// A session that prints `out`, then echoes stdin to stdout until stdin closes, and exits
    /// with `out.exit_code`.
    fn session(&self, id: &str, req: StreamRequest, out: ExecOutput) -> StreamSession {
        let (stdin_tx, mut stdin_rx) = mpsc::channel::<Bytes>(16);
        let (stdout_tx, stdout_rx) = mpsc::channel(16);
        let (stderr_tx, stderr_rx) = mpsc::channel(16);
        let (done_tx, done_rx) = oneshot::channel();
        let echo = req.stdin;
        tokio::spawn(async move {
            let _ = stdout_tx.send(Bytes::from(out.stdout)).await;
            let _ = stderr_tx.send(Bytes::from(out.stderr)).await;
            drop(stderr_tx);
            while let Some(chunk) = stdin_rx.recv().await.filter(|_| echo) {
                let _ = stdout_tx.send(chunk).await;
            }
            let _ = done_tx.send(out.exit_code);
        });
        let control = FakeControl { runtime: self.clone(), id: id.to_string(), done: tokio::sync::Mutex::new(Some(done_rx)) };
        StreamSession {
            stdin: req.stdin.then_some(stdin_tx),
            stdout: req.stdout.then_some(stdout_rx),
            stderr: (req.stderr && !req.tty).then_some(stderr_rx),
            control: Box::new(control),
        }
    }

    fn sender(&self, id: &str) -> Result<watch::Sender<ContainerState>> {
        let state = self.lock();
        let (_, tx) = state.containers.get(id).ok_or_else(|| RuntimeError::Container { id: id.into(), message: "not found".into() })?;
        Ok(tx.clone())
    }
}

/// The control of a fake session: resizes are recorded as calls.
struct FakeControl {
    runtime: FakeRuntime,
    id: String,
    done: tokio::sync::Mutex<Option<oneshot::Receiver<i32>>>,
}

#[async_trait::async_trait]
impl SessionControl for FakeControl {
    async fn resize(&self, size: TermSize) -> Result<()> {
        self.runtime.record(format!("resize {} {}x{}", self.id, size.width, size.height));
        Ok(())
    }

    async fn wait(&self) -> Result<i32> {
        let done = self.done.lock().await.take();
        let gone = || RuntimeError::Container { id: self.id.clone(), message: "session waited on twice".into() };
        done.ok_or_else(gone)?.await.map_err(|_| gone())
    }
}

fn info(name: &str) -> ImageInfo {
    ImageInfo { name: name.to_string(), digest: super::images::manifest::sha256_digest(name.as_bytes()), size: 0, pinned: false }
}

#[async_trait::async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn version(&self) -> Result<String> {
        Ok("fake://0.1.0".into())
    }

    async fn ensure_image(&self, image: &str, policy: PullPolicy, _auth: Option<&RegistryAuth>) -> Result<ImageInfo> {
        let name = reference::normalize(image);
        let present = self.lock().images.contains(&name);
        match pull_decision(policy, present) {
            PullDecision::UsePresent => Ok(info(&name)),
            PullDecision::NeverPullMissing => {
                Err(RuntimeError::Image { image: image.into(), message: "not present on this node and imagePullPolicy is Never".into() })
            }
            PullDecision::Pull => {
                self.record(format!("pull {name}"));
                let mut state = self.lock();
                if !state.pullable.contains(&name) {
                    return Err(RuntimeError::Image {
                        image: image.into(),
                        message: "pull failed: manifest unknown (MANIFEST_UNKNOWN)".into(),
                    });
                }
                state.images.insert(name.clone());
                Ok(info(&name))
            }
        }
    }

    async fn create_container(&self, config: &ContainerConfig) -> Result<()> {
        self.record(format!("create {}", config.id));
        let mut state = self.lock();
        if !state.images.contains(&reference::normalize(&config.image)) {
            return Err(RuntimeError::Image { image: config.image.clone(), message: "not present on this node".into() });
        }
        if state.containers.contains_key(&config.id) {
            return Err(RuntimeError::Container { id: config.id.clone(), message: "exists already".into() });
        }
        state.containers.insert(config.id.clone(), (config.clone(), watch::channel(ContainerState::Created).0));
        Ok(())
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.record(format!("start {id}"));
        self.sender(id)?.send_replace(ContainerState::Running { pid: 1 });
        Ok(())
    }

    async fn wait_container(&self, id: &str) -> Result<ExitStatus> {
        let mut rx = self.sender(id)?.subscribe();
        loop {
            if let ContainerState::Exited(status) = rx.borrow_and_update().clone() {
                return Ok(status);
            }
            rx.changed().await.map_err(|_| RuntimeError::Container { id: id.into(), message: "removed".into() })?;
        }
    }

    async fn kill_container(&self, id: &str, signal: i32) -> Result<()> {
        self.record(format!("kill {id} {signal}"));
        let tx = self.sender(id)?;
        if matches!(*tx.borrow(), ContainerState::Running { .. }) {
            tx.send_replace(ContainerState::Exited(ExitStatus {
                code: 128 + signal,
                finished_at: time::OffsetDateTime::now_utc(),
                oom_killed: false,
            }));
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        self.record(format!("remove {id}"));
        self.lock().containers.remove(id);
        Ok(())
    }

    async fn exec(&self, id: &str, cmd: &[String], _timeout: Duration) -> Result<ExecOutput> {
        self.record(format!("exec {id} {}", cmd.join(" ")));
        self.running(id)?;
        Ok(self.exec.as_ref().map(|f| f(id, cmd)).unwrap_or_default())
    }

    async fn exec_stream(&self, id: &str, cmd: &[String], streams: StreamRequest) -> Result<StreamSession> {
        self.record(format!("exec-stream {id} {}", cmd.join(" ")));
        self.running(id)?;
        let out = self.exec.as_ref().map(|f| f(id, cmd)).unwrap_or_default();
        Ok(self.session(id, streams, out))
    }

    async fn attach(&self, id: &str, streams: StreamRequest) -> Result<StreamSession> {
        self.record(format!("attach {id}"));
        self.running(id)?;
        Ok(self.session(id, streams, ExecOutput::default()))
    }

    async fn list_containers(&self) -> Result<Vec<ContainerInfo>> {
        let state = self.lock();
        let mut out: Vec<ContainerInfo> = state
            .containers
            .iter()
            .map(|(id, (c, tx))| ContainerInfo {
                id: id.clone(),
                image: c.image.clone(),
                labels: c.labels.clone(),
                state: tx.borrow().clone(),
                netns: c.netns_path.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn container_state(&self, id: &str) -> Result<ContainerState> {
        Ok(self.sender(id)?.borrow().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_fake_runs_a_container_through_its_life() {
        let rt = FakeRuntime::new().with_exec(|_, cmd| ExecOutput { exit_code: 3, stdout: cmd.join(" ").into_bytes(), stderr: vec![] });
        assert!(rt.ensure_image("busybox", PullPolicy::IfNotPresent, None).await.is_err());
        rt.add_pullable("busybox");
        rt.ensure_image("busybox", PullPolicy::IfNotPresent, None).await.unwrap();
        rt.ensure_image("busybox", PullPolicy::Never, None).await.unwrap();
        let c = ContainerConfig { id: "c1".into(), image: "busybox".into(), ..Default::default() };
        rt.create_container(&c).await.unwrap();
        rt.start_container("c1").await.unwrap();
        let out = rt.exec("c1", &["echo".into(), "hi".into()], Duration::from_secs(1)).await.unwrap();
        assert_eq!((out.exit_code, out.stdout.as_slice()), (3, &b"echo hi"[..]));
        let waiter = tokio::spawn({
            let rt = rt.clone();
            async move { rt.wait_container("c1").await.unwrap() }
        });
        rt.exit("c1", 137, true);
        let status = waiter.await.unwrap();
        assert_eq!((status.code, status.oom_killed), (137, true));
        assert_eq!(rt.list_containers().await.unwrap().len(), 1);
        rt.remove_container("c1").await.unwrap();
        assert!(rt.list_containers().await.unwrap().is_empty());
        let pull = "pull docker.io/library/busybox:latest";
        assert_eq!(rt.calls(), [pull, pull, "create c1", "start c1", "exec c1 echo hi", "remove c1"]);
    }
}
