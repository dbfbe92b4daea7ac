//! The pod worker: one task per pod bound to the node, reconciling one change at a time. It
//! sets up the sandbox, runs the init containers in order and then the app containers,
//! restarts them by restart policy with back-off, runs their probes, writes the pod's status
//! when it changes, and on deletion stops everything gracefully and removes the pod.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::container_run::{ContainerRun, RunState, Terminated};
use super::downward::PodAddresses;
use super::env::{self, EnvError};
use super::events::PodEvents;
use super::file_volumes::VolumeContext;
use super::layout::{self, PodRef};
use super::objects::ApiData;
use super::probes::{self, ProbeTarget, ProbeTracker, Verdict};
use super::pull_secrets;
use super::sandbox::{self, Sandbox};
use super::status::{self, Conditions, PodFacts};
use super::token_cache::TokenCache;
use super::volumes::{self, VolumeError};
use super::{container_spec, lifecycle, NodeContext};
use crate::node::heartbeat::is_status;
use crate::node::runtime::{ContainerInfo, ContainerState, ExitStatus, PullPolicy};

/// How long to wait before trying a failed sandbox setup again.
const SANDBOX_RETRY: Duration = Duration::from_secs(2);
/// How long to wait before trying a container whose config could not be made again.
const CONFIG_RETRY: Duration = Duration::from_secs(5);
/// How often file volumes are brought up to date with their objects (the kubelet's syncFrequency).
const VOLUME_REFRESH: Duration = Duration::from_secs(60);

/// Why a container's config cannot be made (its CreateContainerConfigError message).
#[derive(Debug, thiserror::Error)]
enum ConfigError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
}

/// An exit reported by a container's waiter task.
struct Exit {
    id: String,
    status: ExitStatus,
}

/// The worker of one pod.
pub struct PodWorker {
    ctx: Arc<NodeContext>,
    pod: Pod,
    pod_ref: PodRef,
    updates: watch::Receiver<Option<Pod>>,
    exits_tx: mpsc::UnboundedSender<Exit>,
    exits: mpsc::UnboundedReceiver<Exit>,
    sandbox: Option<Sandbox>,
    sandbox_retry: Option<Instant>,
    /// When the file volumes are refreshed next.
    volumes_refresh: Option<Instant>,
    tokens: TokenCache,
    events: PodEvents,
    problem: Option<(String, String)>,
    init: Vec<ContainerRun>,
    app: Vec<ContainerRun>,
    conditions: Conditions,
    start_time: Option<Timestamp>,
    written: Option<Value>,
    /// The pod ran to completion (or failed for good): nothing is started any more.
    done: bool,
}

fn runs(containers: &[Container]) -> Vec<ContainerRun> {
    containers.iter().map(|c| ContainerRun::new(&c.name, c.image.as_deref().unwrap_or_default())).collect()
}

/// The run of container `name` (init or app).
fn find_run<'a>(init: &'a mut [ContainerRun], app: &'a mut [ContainerRun], name: &str) -> Option<&'a mut ContainerRun> {
    init.iter_mut().chain(app.iter_mut()).find(|r| r.name == name)
}

/// The spec of container `name` (init or app).
fn spec_of<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.init_containers.iter().flatten().chain(spec.containers.iter()).find(|c| c.name == name)
}

fn terminated_from(exit: &ExitStatus, started: Option<Timestamp>, id: &str, message: Option<String>) -> Terminated {
    let reason = if exit.oom_killed {
        "OOMKilled"
    } else if exit.code == 0 {
        "Completed"
    } else {
        "Error"
    };
    let finished = Timestamp::from_second(exit.finished_at.unix_timestamp()).unwrap_or_else(|_| Timestamp::now());
    Terminated {
        exit_code: exit.code,
        reason: reason.into(),
        message,
        started_at: started,
        finished_at: finished,
        container_id: Some(id.into()),
    }
}

impl PodWorker {
    /// A worker for `pod`, adopting `existing` containers of it (left by an earlier agent run).
    pub fn new(ctx: Arc<NodeContext>, updates: watch::Receiver<Option<Pod>>, pod: Pod) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let pod_ref = PodRef {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        };
        let (exits_tx, exits) = mpsc::unbounded_channel();
        let done = matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
        let events = PodEvents::new(ctx.client.clone(), pod_ref.clone());
        Self {
            ctx,
            pod_ref,
            updates,
            exits_tx,
            exits,
            sandbox: None,
            sandbox_retry: None,
            volumes_refresh: None,
            tokens: TokenCache::default(),
            events,
            problem: None,
            init: runs(spec.init_containers.as_deref().unwrap_or_default()),
            app: runs(&spec.containers),
            conditions: Conditions::default(),
            start_time: pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0),
            written: None,
            done,
            pod,
        }
    }

    fn restart_policy(&self) -> String {
        self.pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into())
    }

    /// Takes over the containers an earlier run of the agent left (their labels name the pod):
    /// the newest run of each container is adopted, running or exited; older ones are removed.
    async fn adopt(&mut self, existing: Vec<ContainerInfo>) {
        let previous = self.pod.status.clone().unwrap_or_default();
        let statuses: Vec<_> =
            previous.init_container_statuses.iter().flatten().chain(previous.container_statuses.iter().flatten()).cloned().collect();
        let mut newest: BTreeMap<String, ContainerInfo> = BTreeMap::new();
        for info in existing {
            let Some((_, name, attempt)) = layout::owner(&info).map(|(u, n, a)| (u.to_string(), n.to_string(), a)) else { continue };
            let older = match newest.get(&name) {
                Some(cur) if layout::owner(cur).map(|o| o.2).unwrap_or(0) >= attempt => Some(info),
                _ => newest.insert(name, info),
            };
            if let Some(old) = older {
                let _ = self.ctx.runtime.remove_container(&old.id).await;
            }
        }
        for (name, info) in newest {
            let status = statuses.iter().find(|s| s.name == name);
            let attempt = layout::owner(&info).map(|o| o.2).unwrap_or(0);
            let Some(run) = find_run(&mut self.init, &mut self.app, &name) else {
                let _ = self.ctx.runtime.remove_container(&info.id).await;
                continue;
            };
            run.id = Some(info.id.clone());
            run.attempt = attempt;
            run.restart_count = status.map(|s| s.restart_count).unwrap_or(attempt as i32);
            run.image_id = status.map(|s| s.image_id.clone()).unwrap_or_default();
            let started_at = status.and_then(|s| s.state.as_ref()?.running.as_ref()?.started_at.as_ref()).map(|t| t.0);
            run.last_state = status.and_then(|s| s.last_state.as_ref()?.terminated.as_ref()).map(|t| Terminated {
                exit_code: t.exit_code,
                reason: t.reason.clone().unwrap_or_default(),
                message: t.message.clone(),
                started_at: t.started_at.as_ref().map(|s| s.0),
                finished_at: t.finished_at.as_ref().map(|s| s.0).unwrap_or_else(Timestamp::now),
                container_id: t.container_id.as_ref().map(|c| c.trim_start_matches("containerd://").to_string()),
            });
            match info.state {
                ContainerState::Running { .. } => {
                    if let Err(e) = self.ctx.runtime.adopt(&info.id).await {
                        tracing::warn!(container = %info.id, error = %e, "cannot resume the container's log");
                    }
                    run.state = RunState::Running { started_at: started_at.unwrap_or_else(Timestamp::now) };
                    run.started = Some(Instant::now());
                    let was_ready = status.is_some_and(|s| s.ready);
                    let spec = spec_of(&self.pod, &name).cloned();
                    Self::arm_probes(run, spec.as_ref(), was_ready);
                    Self::watch_exit(&self.ctx, &self.exits_tx, &info.id);
                    tracing::info!(pod = %self.pod_ref.name, container = %name, "adopted a running container");
                }
                ContainerState::Exited(exit) => run.state = RunState::Terminated(terminated_from(&exit, started_at, &info.id, None)),
                ContainerState::Created => {}
            }
        }
    }

    /// Waits (on the kubelet's tracker, until it stops) for container `id` to exit and reports it.
    fn watch_exit(ctx: &Arc<NodeContext>, tx: &mpsc::UnboundedSender<Exit>, id: &str) {
        let (runtime, tx, id) = (ctx.runtime.clone(), tx.clone(), id.to_string());
        ctx.tasks.spawn(async move {
            loop {
                match runtime.wait_container(&id).await {
                    Ok(status) => return drop(tx.send(Exit { id, status })),
                    Err(e) if e.is_not_found() => return,
                    Err(e) => {
                        tracing::debug!(container = %id, error = %e, "waiting for the container failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }

    fn arm_probes(run: &mut ContainerRun, spec: Option<&Container>, ready: bool) {
        let now = Instant::now();
        let Some(spec) = spec else { return };
        run.startup = spec.startup_probe.as_ref().map(|p| ProbeTracker::new(p, now));
        run.liveness = spec.liveness_probe.as_ref().map(|p| ProbeTracker::new(p, now));
        run.readiness = spec.readiness_probe.as_ref().map(|p| ProbeTracker::new(p, now));
        if let (true, Some(r)) = (ready, run.readiness.as_mut()) {
            r.result = Some(true);
        }
        if let (true, Some(s)) = (ready, run.startup.as_mut()) {
            s.result = Some(true);
        }
    }

    /// Runs the pod until it is deleted (or gone), or the agent stops (containers stay).
    pub async fn run(mut self, existing: Vec<ContainerInfo>) {
        let cancel = self.ctx.tasks.cancel.clone();
        self.adopt(existing).await;
        loop {
            if self.pod.metadata.deletion_timestamp.is_some() {
                return self.finish(true).await;
            }
            self.sync().await;
            self.write_status().await;
            let wake = self.next_wake();
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                changed = self.updates.changed() => {
                    // The node loop says a pod is gone with `None`; a closed channel means the
                    // loop itself ended (the kubelet stops): the containers stay for the next
                    // kubelet to adopt.
                    if changed.is_err() {
                        return;
                    }
                    let next = self.updates.borrow_and_update().clone();
                    match next {
                        Some(pod) => self.pod = pod,
                        None => return self.finish(false).await,
                    }
                }
                Some(exit) = self.exits.recv() => self.exited(exit).await,
                _ = tokio::time::sleep_until(wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))) => {}
            }
        }
    }

    /// The earliest moment something is due: a probe, a restart, a sandbox retry.
    fn next_wake(&self) -> Option<Instant> {
        let runs = self.init.iter().chain(self.app.iter());
        let probes = runs.clone().filter(|r| r.is_running()).flat_map(|r| [&r.startup, &r.liveness, &r.readiness]).flatten().map(|p| p.due);
        let retries = runs.filter_map(|r| r.retry_at);
        let refresh = self.volumes_refresh.filter(|_| !self.done);
        probes.chain(retries).chain(self.sandbox_retry).chain(refresh).min()
    }

    async fn exited(&mut self, exit: Exit) {
        let message = self.termination_message(&exit);
        let Some(run) = self.init.iter_mut().chain(self.app.iter_mut()).find(|r| r.id.as_deref() == Some(exit.id.as_str())) else { return };
        let started = match &run.state {
            RunState::Running { started_at } => Some(*started_at),
            _ => None,
        };
        tracing::info!(pod = %self.pod_ref.name, container = %run.name, code = exit.status.code, "container exited");
        run.state = RunState::Terminated(terminated_from(&exit.status, started, &exit.id, message));
        run.startup = None;
        run.liveness = None;
        run.readiness = None;
    }

    /// The container's termination message file, if it wrote one (at most 4 KiB).
    fn termination_message(&self, exit: &Exit) -> Option<String> {
        let run = self.init.iter().chain(self.app.iter()).find(|r| r.id.as_deref() == Some(exit.id.as_str()))?;
        let text = std::fs::read(self.ctx.layout.termination_log(&self.pod_ref.uid, &run.name)).ok()?;
        let text = String::from_utf8_lossy(&text[..text.len().min(4096)]).into_owned();
        (!text.is_empty()).then_some(text)
    }

    /// One reconcile: sandbox, then init containers in order, then app containers and probes.
    async fn sync(&mut self) {
        if self.done {
            return;
        }
        let policy = self.restart_policy();
        self.start_time.get_or_insert_with(Timestamp::now);
        if self.sandbox.is_none() {
            if self.sandbox_retry.is_some_and(|at| at > Instant::now()) {
                return;
            }
            match sandbox::setup(&self.ctx, &self.pod, &self.tokens).await {
                Ok(s) => {
                    self.sandbox = Some(s);
                    self.sandbox_retry = None;
                    self.volumes_refresh = Some(Instant::now() + VOLUME_REFRESH);
                    self.problem = None;
                }
                Err(e) => {
                    let problem = (e.reason().to_string(), e.to_string());
                    tracing::warn!(pod = %self.pod_ref.name, reason = %problem.0, message = %problem.1, "cannot set up the pod");
                    self.events.warn(&problem.0, &problem.1).await;
                    self.problem = Some(problem);
                    self.sandbox_retry = Some(Instant::now() + SANDBOX_RETRY);
                    return;
                }
            }
        }
        if self.volumes_refresh.is_some_and(|at| at <= Instant::now()) {
            self.refresh_volumes().await;
        }
        for i in 0..self.init.len() {
            match self.init[i].exit_code() {
                Some(0) => continue,
                Some(_) if policy == "Never" => break,
                _ => {}
            }
            if !self.init[i].is_running() {
                self.start_if_due(true, i, &policy).await;
            }
            break;
        }
        if status::initialized(&self.init) {
            for i in 0..self.app.len() {
                if self.app[i].is_running() {
                    self.probe(i).await;
                } else {
                    self.start_if_due(false, i, &policy).await;
                }
            }
        }
        let phase = status::phase(&policy, &self.init, &self.app);
        if matches!(phase, "Succeeded" | "Failed") {
            self.done = true;
        }
    }

    /// Brings the file volumes up to date with their objects and renews expiring tokens.
    async fn refresh_volumes(&mut self) {
        self.volumes_refresh = Some(Instant::now() + VOLUME_REFRESH);
        let Some(sandbox) = &self.sandbox else { return };
        let addrs = PodAddresses { pod_ip: sandbox.ip.to_string(), host_ip: self.ctx.node_ip.to_string() };
        let source = ApiData { client: self.ctx.client.clone(), pod: self.pod_ref.clone() };
        let vctx = VolumeContext { pod: &self.pod, addrs: &addrs, node: self.ctx.allocatable, source: &source, tokens: &self.tokens };
        volumes::refresh(&self.ctx.layout.pod_dir(&self.pod_ref.uid).join("volumes"), &vctx).await;
    }

    /// Starts (or restarts, after its back-off) container `i` when restart policy and timing allow.
    async fn start_if_due(&mut self, init: bool, i: usize, policy: &str) {
        let now = Instant::now();
        let run = if init { &mut self.init[i] } else { &mut self.app[i] };
        if let RunState::Terminated(t) = &run.state {
            let restart = match policy {
                "Always" => !init || t.exit_code != 0,
                "OnFailure" => t.exit_code != 0,
                _ => false,
            };
            if !restart {
                return;
            }
            if run.retry_at.is_none() {
                let ran = run.started.map(|s| now.saturating_duration_since(s)).unwrap_or_default();
                let delay = run.backoff.failed(ran);
                run.retry_at = Some(now + delay);
                let last = t.clone();
                run.last_state = Some(last);
                if !delay.is_zero() {
                    let message = format!(
                        "back-off {}s restarting failed container={} pod={}_{}({})",
                        delay.as_secs(),
                        run.name,
                        self.pod_ref.name,
                        self.pod_ref.namespace,
                        self.pod_ref.uid
                    );
                    run.state = RunState::Waiting { reason: "CrashLoopBackOff".into(), message: Some(message) };
                }
            }
        }
        if run.retry_at.is_some_and(|at| at > now) {
            return;
        }
        run.retry_at = None;
        let name = run.name.clone();
        self.start(&name).await;
    }

    /// Pulls the image, builds the config and creates and starts a new run of container `name`.
    async fn start(&mut self, name: &str) {
        let Some(spec) = spec_of(&self.pod, name).cloned() else { return };
        let Some(sandbox) = self.sandbox.clone() else { return };
        let policy = PullPolicy::for_container(spec.image_pull_policy.as_deref(), spec.image.as_deref().unwrap_or_default());
        let image = spec.image.clone().unwrap_or_default();
        let auth = pull_secrets::auth_for(&self.ctx.client, &self.pod, &image).await;
        let pulled = self.ctx.runtime.ensure_image(&image, policy, auth.as_ref()).await;
        let (ctx, pod_ref) = (self.ctx.clone(), self.pod_ref.clone());
        let Some(run) = find_run(&mut self.init, &mut self.app, name) else { return };
        let now = Instant::now();
        match pulled {
            Ok(info) => run.image_id = format!("{}@{}", info.name, info.digest),
            Err(e) => {
                let delay = run.backoff.failed(Duration::ZERO).max(Duration::from_secs(1));
                let reason = if matches!(&run.state, RunState::Waiting { reason, .. } if reason == "ErrImagePull" || reason == "ImagePullBackOff")
                {
                    "ImagePullBackOff"
                } else {
                    "ErrImagePull"
                };
                tracing::warn!(pod = %pod_ref.name, container = %name, error = %e, "cannot pull the image");
                self.events.warn("Failed", &format!("Failed to pull image {image:?}: {e}")).await;
                run.state = RunState::Waiting { reason: reason.into(), message: Some(e.to_string()) };
                run.retry_at = Some(now + delay);
                return;
            }
        }
        let addrs = PodAddresses { pod_ip: sandbox.ip.to_string(), host_ip: ctx.node_ip.to_string() };
        let source = ApiData { client: ctx.client.clone(), pod: pod_ref.clone() };
        let links = self.pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
        let env = match ctx.services.env(&pod_ref.namespace, links).await {
            Ok(services) => env::resolve(&self.pod, &spec, &addrs, ctx.allocatable, &source, &services).await,
            Err(e) => Err(e.into()),
        };
        let env = env.map_err(ConfigError::from);
        let subpaths = ctx.layout.subpaths_dir(&pod_ref.uid, name);
        let mounts = env.and_then(|env| {
            let mounts = volumes::mounts(&self.pod, &spec, &sandbox.volumes, &env, &subpaths)?;
            Ok((env, mounts))
        });
        let Some(run) = find_run(&mut self.init, &mut self.app, name) else { return };
        let (env, mounts) = match mounts {
            Ok(v) => v,
            Err(e) => {
                run.state = RunState::Waiting { reason: "CreateContainerConfigError".into(), message: Some(e.to_string()) };
                run.retry_at = Some(now + CONFIG_RETRY);
                return;
            }
        };
        if let Some(old) = run.id.take() {
            if let Err(e) = ctx.runtime.remove_container(&old).await {
                tracing::warn!(container = %old, error = %e, "cannot remove the previous run of the container");
            }
        }
        let first_run = matches!(run.state, RunState::Waiting { .. }) && run.last_state.is_none() && run.attempt == 0;
        if !first_run {
            run.attempt += 1;
            run.restart_count += 1;
        }
        let log_path = ctx.layout.log_path(&pod_ref, name, run.attempt);
        if let Some(dir) = log_path.parent() {
            super::logs::prune_runs(dir, run.attempt.saturating_sub(1));
        }
        let id = layout::new_container_id();
        let termination_log = ctx.layout.termination_log(&pod_ref.uid, name);
        let _ = std::fs::create_dir_all(termination_log.parent().unwrap_or(&termination_log));
        let _ = std::fs::write(&termination_log, b"");
        let etc_dir = ctx.layout.etc_dir(&pod_ref.uid);
        let pod_sandbox =
            container_spec::PodSandbox { netns: sandbox.netns.clone(), hostname: sandbox.hostname.clone(), etc_dir: &etc_dir };
        let info = container_spec::RunInfo {
            id: id.clone(),
            env,
            mounts,
            termination_log,
            labels: layout::labels(&pod_ref, name, run.attempt),
            log_path,
        };
        let config = container_spec::config(&self.pod, &spec, &pod_sandbox, info);
        let created = ctx.runtime.create_container(&config).await;
        let started = match created {
            Ok(()) => {
                run.id = Some(id.clone());
                ctx.runtime.start_container(&id).await.map_err(|e| ("RunContainerError", e))
            }
            Err(e) => Err(("CreateContainerError", e)),
        };
        match started {
            Ok(()) => {
                tracing::info!(pod = %pod_ref.name, container = %name, %id, "container started");
                run.state = RunState::Running { started_at: Timestamp::now() };
                run.started = Some(Instant::now());
                Self::arm_probes(run, Some(&spec), false);
                Self::watch_exit(&ctx, &self.exits_tx, &id);
                let hook = spec.lifecycle.as_ref().and_then(|l| l.post_start.clone());
                if let Some(hook) = hook {
                    lifecycle::run_hook(&ctx, &id, &hook, sandbox.ip, sandbox.netns.clone(), &spec).await;
                }
            }
            Err((reason, e)) => {
                tracing::warn!(pod = %pod_ref.name, container = %name, error = %e, "cannot start the container");
                let delay = run.backoff.failed(Duration::ZERO).max(Duration::from_secs(1));
                run.state = RunState::Waiting { reason: reason.into(), message: Some(e.to_string()) };
                run.retry_at = Some(now + delay);
            }
        }
    }

    /// Runs the due probes of running app container `i`; a failed startup or liveness probe
    /// restarts it.
    async fn probe(&mut self, i: usize) {
        let now = Instant::now();
        let Some(spec) = spec_of(&self.pod, &self.app[i].name).cloned() else { return };
        let (Some(id), Some(sandbox)) = (self.app[i].id.clone(), self.sandbox.clone()) else { return };
        let target = ProbeTarget {
            runtime: self.ctx.runtime.as_ref(),
            container_id: &id,
            container: &spec,
            pod_ip: sandbox.ip,
            netns: sandbox.netns.clone(),
        };
        let run = &mut self.app[i];
        let mut kill = None;
        let startup_done = run.startup.as_ref().is_none_or(|p| p.result == Some(true));
        if let Some(p) = run.startup.as_mut().filter(|p| p.result != Some(true) && p.due <= now) {
            let result = probes::check(&p.probe, &target).await;
            if p.record(result.is_ok(), now) == Verdict::Failed {
                kill = result.err().map(|e| format!("Startup probe failed: {e}"));
            }
        }
        if startup_done {
            if let Some(p) = run.liveness.as_mut().filter(|p| p.due <= now) {
                let result = probes::check(&p.probe, &target).await;
                if p.record(result.is_ok(), now) == Verdict::Failed {
                    kill = result.err().map(|e| format!("Liveness probe failed: {e}"));
                }
            }
            if let Some(p) = run.readiness.as_mut().filter(|p| p.due <= now) {
                let result = probes::check(&p.probe, &target).await;
                p.record(result.is_ok(), now);
            }
        }
        if let Some(why) = kill {
            tracing::info!(pod = %self.pod_ref.name, container = %run.name, %why, "restarting the container");
            self.events.warn("Unhealthy", &why).await;
            run.liveness = None;
            run.startup = None;
            run.readiness = None;
            let grace = self.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
            lifecycle::stop_container(&self.ctx, &id, &spec, crate::k8s::time::wait(grace), sandbox.ip, sandbox.netns).await;
        }
    }

    async fn write_status(&mut self) {
        let policy = self.restart_policy();
        let facts = PodFacts {
            restart_policy: &policy,
            init: &self.init,
            app: &self.app,
            sandbox_ready: self.sandbox.is_some(),
            pod_ip: self.sandbox.as_ref().map(|s| s.ip.to_string()),
            host_ip: self.ctx.node_ip.to_string(),
            start_time: self.start_time,
            qos_class: crate::k8s::qos::of_pod(&self.pod),
            message: self.problem.clone(),
        };
        let status = status::pod_status(&facts, &mut self.conditions);
        if self.written.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.pod_ref.namespace);
        let patch = json!({ "metadata": { "uid": self.pod_ref.uid }, "status": status });
        match api.patch_status(&self.pod_ref.name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => self.written = Some(status),
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => self.written = Some(status),
            Err(e) => tracing::warn!(pod = %self.pod_ref.name, error = %e, "cannot write the pod status"),
        }
    }

    /// Stops every container (gracefully when `graceful`), removes them and the sandbox, and
    /// deletes the pod for good (a deleted pod's last step, as the kubelet does).
    async fn finish(mut self, graceful: bool) {
        let grace = if graceful {
            let seconds =
                self.pod.metadata.deletion_grace_period_seconds.or(self.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds));
            crate::k8s::time::wait(seconds.unwrap_or(30))
        } else {
            Duration::ZERO
        };
        let (ip, netns) = self.sandbox.as_ref().map(|s| (s.ip, s.netns.clone())).unwrap_or((self.ctx.node_ip, None));
        let running: Vec<(String, Container)> = self
            .init
            .iter()
            .chain(self.app.iter())
            .filter(|r| r.is_running())
            .filter_map(|r| Some((r.id.clone()?, spec_of(&self.pod, &r.name)?.clone())))
            .collect();
        let ctx = self.ctx.clone();
        futures::future::join_all(running.iter().map(|(id, spec)| lifecycle::stop_container(&ctx, id, spec, grace, ip, netns.clone())))
            .await;
        while let Ok(exit) = self.exits.try_recv() {
            self.exited(exit).await;
        }
        for run in self.init.iter_mut().chain(self.app.iter_mut()) {
            if let Some(id) = run.id.clone() {
                if let Ok(ContainerState::Exited(exit)) = ctx.runtime.container_state(&id).await {
                    if run.is_running() {
                        let started = match &run.state {
                            RunState::Running { started_at } => Some(*started_at),
                            _ => None,
                        };
                        run.state = RunState::Terminated(terminated_from(&exit, started, &id, None));
                    }
                }
            }
        }
        if graceful {
            self.write_status().await;
        }
        for id in self.init.iter().chain(self.app.iter()).filter_map(|r| r.id.clone()) {
            if let Err(e) = ctx.runtime.remove_container(&id).await {
                tracing::warn!(container = %id, error = %e, "cannot remove the container");
            }
        }
        sandbox::teardown(&ctx, &self.pod_ref.uid).await;
        let _ = std::fs::remove_dir_all(ctx.layout.pod_logs_dir(&self.pod_ref));
        if graceful {
            lifecycle::delete_pod(&ctx, &self.pod_ref).await;
        }
        tracing::info!(pod = %self.pod_ref.name, namespace = %self.pod_ref.namespace, "pod removed from the node");
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::watch;

    /// What [`super::PodWorker::run`] relies on: the node loop's last word (`None`, the pod is
    /// gone) is seen before the closed channel, which alone means the loop has ended.
    #[tokio::test]
    async fn a_deletion_is_seen_before_the_closed_channel() {
        let (tx, mut rx) = watch::channel(Some(1));
        rx.borrow_and_update();
        tx.send_replace(None);
        drop(tx);
        assert!(rx.changed().await.is_ok());
        assert_eq!(*rx.borrow_and_update(), None);
        assert!(rx.changed().await.is_err());
    }
}
