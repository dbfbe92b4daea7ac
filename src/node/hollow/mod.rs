//! Hollow nodes: a node agent with a fake container runtime. It joins with the real protocol
//! (its own `system:node:<name>` certificate), registers a Node, renews its Lease, posts
//! status heartbeats and "runs" the pods bound to it — at once, with addresses from the node's
//! podCIDR — without starting a single process. Pods that run to completion exit after the
//! configured job duration; deleted pods are finished within a second. Asked to
//! ([`HollowConfig::serve_stats`]), it serves fixed resource figures on a kubelet port of its
//! own on loopback (see `stats`), for `metrics.k8s.io` and `kubectl top`.
//!
//! Each node is one task owning its state (a few hundred bytes plus a little per pod), one
//! HTTP/2 connection and one watch filtered by `spec.nodeName`, so a thousand of them fit in
//! one process on one tokio runtime ([`start_many`]).

mod pod_ips;
pub mod pod_status;
pub mod stats;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::pod_ips::PodIps;
use self::pod_status::PodFacts;
use self::stats::RunningPod;
use crate::k8s::stats::PodReference;
use crate::node::heartbeat::{self, is_status, Heartbeat};
use crate::node::node_object::{self, NodeShape, Pressure, SystemInfo};
use crate::node::servers::ApiServers;
use crate::node::NodeError;
use crate::tasks::Tasks;

/// How a hollow node is set up.
#[derive(Debug, Clone)]
pub struct HollowConfig {
    /// URL of an API server, e.g. `https://127.0.0.1:6443`.
    pub server: String,
    /// Where the node keeps the API servers it learned (`None`: in memory only).
    pub servers_file: Option<std::path::PathBuf>,
    /// A join token (the server token or an agent bootstrap token).
    pub token: String,
    /// The node password proving this machine owns the node name (at least 8 characters).
    pub password: String,
    pub shape: NodeShape,
    /// How long pods that run to completion (restartPolicy not Always) take.
    pub job_duration: Duration,
    pub lease_renew_interval: Duration,
    pub status_update_interval: Duration,
    /// Serve `/stats/summary` and `/metrics/resource` on a loopback port of the node's own
    /// (with a serving certificate, which costs a signature at join).
    pub serve_stats: bool,
}

impl HollowConfig {
    /// A node called `name` with the defaults of `orch agent --runtime fake`.
    pub fn new(server: &str, token: &str, name: &str, password: &str) -> Self {
        Self {
            server: server.into(),
            servers_file: None,
            token: token.into(),
            password: password.into(),
            shape: NodeShape {
                name: name.into(),
                labels: [("type".to_string(), "hollow".to_string())].into(),
                taints: Vec::new(),
                capacity: node_object::resources("4", "8Gi", 110),
                allocatable: node_object::resources("4", "8Gi", 110),
                internal_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                external_ip: None,
                container_runtime: "fake://orch".into(),
                system: SystemInfo { os_image: "orch hollow node".into(), ..Default::default() },
                kubelet_port: 10250,
            },
            job_duration: Duration::from_secs(1),
            lease_renew_interval: Duration::from_secs(10),
            status_update_interval: Duration::from_secs(40),
            serve_stats: false,
        }
    }
}

/// A running hollow node; it stops when [`HollowNode::stop`] is called or it is dropped.
pub struct HollowNode {
    name: String,
    /// The node's task.
    tasks: Tasks,
}

impl HollowNode {
    /// Joins the cluster, registers the node and starts its task on the current runtime.
    pub async fn start(config: HollowConfig) -> Result<Self, NodeError> {
        let token = crate::pki::JoinToken::parse(&config.token)?;
        let name = config.shape.name.clone();
        let servers = ApiServers::new(&config.server, config.servers_file.clone())?;
        let (token, name_ref, password) = (&token, &name, &config.password);
        let creds = servers.try_in_turn(|url| async move { crate::join::join_as_agent(&url, token, name_ref, password).await }).await?;
        let (client, upkeep) = crate::node::client::node_client(&servers, &creds)?;
        let tasks = Tasks::default();
        let mut config = config;
        let stats = if config.serve_stats { Some(serve_stats(&mut config, &creds, &tasks).await?) } else { None };
        let mut agent = NodeAgent::new(client, config);
        agent.stats = stats;
        agent.register().await?;
        tasks.tracker.spawn(upkeep.run(tasks.cancel.clone()));
        tasks.tracker.spawn(agent.run(tasks.cancel.clone()));
        Ok(Self { name, tasks })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops the node's task, waiting a bounded time for it (the Node and its pods stay, as
    /// when a machine goes away).
    pub async fn stop(self) {
        crate::node::drain(&self.name, &self.tasks).await;
    }
}

impl Drop for HollowNode {
    fn drop(&mut self) {
        self.tasks.cancel.cancel();
    }
}

/// Starts the node's stats server on a loopback port (written into the node's shape) and
/// returns where the node publishes its running pods for it.
async fn serve_stats(
    config: &mut HollowConfig,
    creds: &crate::join::wire::AgentCredentials,
    tasks: &Tasks,
) -> Result<watch::Sender<Arc<Vec<RunningPod>>>, NodeError> {
    let ip = config.shape.internal_ip;
    let serving = crate::join::request_serving_cert(&config.server, creds, &[ip]).await?;
    let tls = Arc::new(crate::pki::server_config(&creds.ca, &serving)?);
    let listener =
        tokio::net::TcpListener::bind((ip, 0)).await.map_err(|source| NodeError::Io { path: format!("a port on {ip}"), source })?;
    let port = listener.local_addr().map_err(|source| NodeError::Io { path: format!("a port on {ip}"), source })?.port();
    config.shape.kubelet_port = port;
    let (tx, pods) = watch::channel(Arc::new(Vec::new()));
    let memory_capacity =
        config.shape.capacity.get("memory").and_then(|m| crate::k8s::quantity::value(&Quantity(m.clone()))).unwrap_or(0).max(0) as u64;
    let source = stats::HollowStats { node_name: config.shape.name.clone(), since: Timestamp::now(), memory_capacity, pods };
    let app = crate::node::stats::router(Arc::new(source)).layer(axum::middleware::from_fn(crate::node::kubelet::require_api_server));
    tasks.tracker.spawn(crate::rpc::https::serve(listener, tls, app, tasks.cancel.clone(), tasks.tracker.clone()));
    Ok(tx)
}

/// Starts many hollow nodes on the current runtime, `parallel` joins at a time; the results
/// are in the order of `configs`.
pub async fn start_many(configs: Vec<HollowConfig>, parallel: usize) -> Vec<Result<HollowNode, NodeError>> {
    futures::stream::iter(configs).map(HollowNode::start).buffered(parallel.max(1)).collect().await
}

/// Where a tracked pod is in its (fake) life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for an address (the node has no podCIDR yet, or the status write failed).
    Pending,
    Running,
    Exited,
    Stopping,
}

struct Tracked {
    facts: PodFacts,
    ip: Option<Ipv4Addr>,
    started: Timestamp,
    stage: Stage,
}

type PodKey = (String, String);

#[derive(Debug)]
enum Timer {
    /// A pod that runs to completion exits.
    Exit(PodKey, String),
    /// A deleted pod has stopped and is removed.
    Stop(PodKey, String),
    /// Pending pods are tried again.
    Retry,
}

/// One node's state, owned by its task.
struct NodeAgent {
    client: kube::Client,
    config: HollowConfig,
    nodes: Api<Node>,
    heartbeat: Heartbeat,
    /// When the node became Ready.
    since: Timestamp,
    ips: Option<PodIps>,
    pods: HashMap<PodKey, Tracked>,
    timers: BTreeMap<(Instant, u64), Timer>,
    next_timer: u64,
    retry_scheduled: bool,
    /// Where the running pods are published for the stats server, when it runs.
    stats: Option<watch::Sender<Arc<Vec<RunningPod>>>>,
}

impl NodeAgent {
    fn new(client: kube::Client, config: HollowConfig) -> Self {
        Self {
            nodes: Api::all(client.clone()),
            heartbeat: Heartbeat::new(client.clone(), &config.shape.name, config.lease_renew_interval),
            client,
            config,
            since: Timestamp::now(),
            ips: None,
            pods: HashMap::new(),
            timers: BTreeMap::new(),
            next_timer: 0,
            retry_scheduled: false,
            stats: None,
        }
    }

    fn name(&self) -> &str {
        &self.config.shape.name
    }

    /// Creates (or re-labels) the Node, posts its status and takes its Lease.
    async fn register(&mut self) -> Result<(), NodeError> {
        self.heartbeat.register(self.config.shape.node()).await?;
        self.post_status().await?;
        self.renew_lease().await
    }

    /// Writes the whole node status (the heartbeat), and learns the node's podCIDR.
    async fn post_status(&mut self) -> Result<(), NodeError> {
        let node = self.heartbeat.post_status(self.config.shape.status(self.since, Pressure::default())).await?;
        self.learn(&node);
        Ok(())
    }

    fn learn(&mut self, node: &Node) {
        if self.ips.is_some() {
            return;
        }
        let Some(cidr) = heartbeat::pod_cidr(node) else { return };
        match PodIps::new(&cidr) {
            Ok(ips) => {
                tracing::info!(node = self.name(), %cidr, "got a pod CIDR");
                self.ips = Some(ips);
            }
            Err(e) => tracing::warn!(node = self.name(), error = %e, "unusable pod CIDR"),
        }
    }

    async fn renew_lease(&mut self) -> Result<(), NodeError> {
        if self.heartbeat.renew_lease().await? {
            // Back after an outage: say Ready at once rather than at the next heartbeat.
            self.post_status().await?;
        }
        Ok(())
    }

    async fn run(mut self, cancel: CancellationToken) {
        let config = watcher::Config::default().fields(&format!("spec.nodeName={}", self.name()));
        let mut events = std::pin::pin!(watcher::watcher(Api::<Pod>::all(self.client.clone()), config).default_backoff());
        let jitter = |every: Duration| Instant::now() + every.mul_f64(0.5 + rand::random::<f64>() / 2.0);
        let mut lease_tick = tokio::time::interval_at(jitter(self.config.lease_renew_interval), self.config.lease_renew_interval);
        let mut status_tick = tokio::time::interval_at(jitter(self.config.status_update_interval), self.config.status_update_interval);
        lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut listed = HashSet::new();
        loop {
            let due = self.timers.first_key_value().map(|((at, _), _)| *at);
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = lease_tick.tick() => {
                    if let Err(e) = self.renew_lease().await {
                        tracing::warn!(node = self.name(), error = %e, "cannot renew the node lease; retrying in {:?}", heartbeat::LEASE_RETRY);
                        lease_tick.reset_after(heartbeat::LEASE_RETRY);
                    }
                }
                _ = status_tick.tick() => {
                    if let Err(e) = self.post_status().await {
                        tracing::warn!(node = self.name(), error = %e, "cannot post node status");
                    }
                }
                event = events.next() => match event {
                    Some(Ok(Event::Apply(pod))) => self.sync(pod).await,
                    Some(Ok(Event::Delete(pod))) => self.forget(&key_of(&pod)),
                    Some(Ok(Event::Init)) => listed.clear(),
                    Some(Ok(Event::InitApply(pod))) => {
                        listed.insert(key_of(&pod));
                        self.sync(pod).await;
                    }
                    Some(Ok(Event::InitDone)) => {
                        let gone: Vec<PodKey> = self.pods.keys().filter(|k| !listed.contains(*k)).cloned().collect();
                        gone.iter().for_each(|k| self.forget(k));
                    }
                    Some(Err(e)) => tracing::warn!(node = self.name(), error = %e, "pod watch failed; retrying"),
                    None => break,
                },
                _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => self.fire_due().await,
            }
            self.publish_stats();
        }
        tracing::info!(node = self.name(), "hollow node stopped");
    }

    /// Publishes the running pods to the stats server (if it runs and they changed).
    fn publish_stats(&self) {
        let Some(tx) = &self.stats else { return };
        let running = self.pods.values().filter(|t| t.stage == Stage::Running);
        let pods: Vec<RunningPod> = running
            .map(|t| RunningPod {
                pod_ref: PodReference { name: t.facts.name.clone(), namespace: t.facts.namespace.clone(), uid: t.facts.uid.clone() },
                containers: t.facts.containers.iter().map(|(name, _)| name.clone()).collect(),
                started: t.started,
            })
            .collect();
        tx.send_if_modified(|current| {
            let changed = current.len() != pods.len() || current.iter().zip(&pods).any(|(a, b)| a != b);
            if changed {
                *current = Arc::new(pods);
            }
            changed
        });
    }

    fn schedule(&mut self, after: Duration, timer: Timer) {
        self.next_timer += 1;
        self.timers.insert((Instant::now() + after, self.next_timer), timer);
    }

    fn schedule_retry(&mut self) {
        if !std::mem::replace(&mut self.retry_scheduled, true) {
            self.schedule(Duration::from_millis(500), Timer::Retry);
        }
    }

    async fn fire_due(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            match entry.remove() {
                Timer::Exit(key, uid) => self.exit(&key, &uid).await,
                Timer::Stop(key, uid) => self.stop(&key, &uid).await,
                Timer::Retry => {
                    self.retry_scheduled = false;
                    if self.ips.is_none() {
                        match self.nodes.get(self.name()).await {
                            Ok(node) => self.learn(&node),
                            Err(e) => tracing::debug!(node = self.name(), error = %e, "cannot read own node"),
                        }
                    }
                    let pending: Vec<PodKey> =
                        self.pods.iter().filter(|(_, t)| t.stage == Stage::Pending).map(|(k, _)| k.clone()).collect();
                    for key in pending {
                        self.start_pod(&key).await;
                    }
                }
            }
        }
    }

    /// Reacts to the current state of a pod bound to this node.
    async fn sync(&mut self, pod: Pod) {
        let key = key_of(&pod);
        let facts = PodFacts::of(&pod);
        if self.pods.get(&key).is_some_and(|t| t.facts.uid != facts.uid) {
            self.forget(&key);
        }
        if pod.metadata.deletion_timestamp.is_some() {
            let delay = pod_status::stop_delay(&pod);
            let tracked = self.pods.entry(key.clone()).or_insert_with(|| Tracked::new(facts.clone(), Stage::Exited));
            if tracked.stage != Stage::Stopping {
                if tracked.stage == Stage::Pending {
                    tracked.stage = Stage::Exited;
                }
                let stage = std::mem::replace(&mut tracked.stage, Stage::Stopping);
                // Pods that never ran have nothing to stop.
                let delay = if stage == Stage::Exited { Duration::ZERO } else { delay };
                self.schedule(delay, Timer::Stop(key, facts.uid));
            }
            return;
        }
        if self.pods.contains_key(&key) {
            return;
        }
        let status = pod.status.unwrap_or_default();
        match status.phase.as_deref() {
            Some("Succeeded" | "Failed") => {
                self.pods.insert(key, Tracked::new(facts, Stage::Exited));
            }
            Some("Running") if status.pod_ip.is_some() => {
                // Adopted after a restart of this agent: keep the pod's address.
                let ip = status.pod_ip.as_deref().and_then(|ip| ip.parse().ok());
                if let (Some(ips), Some(ip)) = (self.ips.as_mut(), ip) {
                    ips.reserve(ip);
                }
                let mut tracked = Tracked::new(facts, Stage::Running);
                tracked.ip = ip;
                if let Some(t) = status.start_time {
                    tracked.started = t.0;
                }
                if tracked.facts.exit_code.is_some() {
                    self.schedule(self.config.job_duration, Timer::Exit(key.clone(), tracked.facts.uid.clone()));
                }
                self.pods.insert(key, tracked);
            }
            _ => {
                self.pods.insert(key.clone(), Tracked::new(facts, Stage::Pending));
                self.start_pod(&key).await;
            }
        }
    }

    /// Gives a pending pod an address and reports it running.
    async fn start_pod(&mut self, key: &PodKey) {
        let host_ip = self.config.shape.internal_ip.to_string();
        let Some(tracked) = self.pods.get_mut(key) else { return };
        if tracked.stage != Stage::Pending {
            return;
        }
        let ip = match (tracked.facts.host_network, tracked.ip, self.ips.as_mut()) {
            (true, _, _) => host_ip.clone(),
            (false, Some(ip), _) => ip.to_string(),
            (false, None, Some(ips)) => match ips.allocate() {
                Some(ip) => {
                    tracked.ip = Some(ip);
                    ip.to_string()
                }
                None => {
                    tracing::warn!(node = %self.config.shape.name, pod = ?key, "no free pod address on this node");
                    return self.schedule_retry();
                }
            },
            (false, None, None) => return self.schedule_retry(),
        };
        tracked.started = Timestamp::now();
        let status = pod_status::running(&tracked.facts, &ip, &host_ip, tracked.started);
        let (uid, exit) = (tracked.facts.uid.clone(), tracked.facts.exit_code);
        match self.write_status(key, &uid, status).await {
            Ok(()) => {
                if let Some(t) = self.pods.get_mut(key) {
                    t.stage = Stage::Running;
                }
                if exit.is_some() {
                    self.schedule(self.config.job_duration, Timer::Exit(key.clone(), uid));
                }
            }
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => self.forget(key),
            Err(e) => {
                tracing::warn!(node = self.name(), pod = ?key, error = %e, "cannot report the pod running; retrying");
                self.schedule_retry();
            }
        }
    }

    /// A pod that runs to completion exits.
    async fn exit(&mut self, key: &PodKey, uid: &str) {
        let Some(tracked) = self.pods.get_mut(key).filter(|t| t.facts.uid == uid && t.stage == Stage::Running) else { return };
        let code = tracked.facts.exit_code.unwrap_or(0);
        let status = pod_status::terminated(&tracked.facts, tracked.started, code);
        tracked.stage = Stage::Exited;
        let ip = tracked.ip.take();
        self.release(ip);
        if let Err(e) = self.write_status(key, uid, status).await {
            tracing::warn!(node = self.name(), pod = ?key, error = %e, "cannot report the pod exited");
        }
    }

    /// A deleted pod has stopped: report its containers terminated, then remove it.
    async fn stop(&mut self, key: &PodKey, uid: &str) {
        let Some(tracked) = self.pods.get(key).filter(|t| t.facts.uid == uid) else { return };
        let ran = tracked.ip.is_some() || tracked.facts.host_network;
        if ran {
            let status = pod_status::terminated(&tracked.facts, tracked.started, 0);
            if let Err(e) = self.write_status(key, uid, status).await {
                tracing::debug!(node = self.name(), pod = ?key, error = %e, "cannot report the deleted pod's containers stopped");
            }
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.0);
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: Some(uid.into()), resource_version: None }),
            ..DeleteParams::default().grace_period(0)
        };
        match api.delete(&key.1, &params).await {
            Ok(_) => self.forget(key),
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => self.forget(key),
            Err(e) => {
                tracing::warn!(node = self.name(), pod = ?key, error = %e, "cannot remove the deleted pod; retrying");
                self.schedule(Duration::from_secs(1), Timer::Stop(key.clone(), uid.into()));
            }
        }
    }

    async fn write_status(&self, key: &PodKey, uid: &str, status: serde_json::Value) -> Result<(), kube::Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.0);
        let patch = json!({ "metadata": { "uid": uid }, "status": status });
        api.patch_status(&key.1, &PatchParams::default(), &Patch::Merge(patch)).await.map(|_| ())
    }

    fn forget(&mut self, key: &PodKey) {
        if let Some(t) = self.pods.remove(key) {
            self.release(t.ip);
        }
    }

    fn release(&mut self, ip: Option<Ipv4Addr>) {
        if let (Some(ips), Some(ip)) = (self.ips.as_mut(), ip) {
            ips.release(ip);
        }
    }
}

impl Tracked {
    fn new(facts: PodFacts, stage: Stage) -> Self {
        Self { facts, ip: None, started: Timestamp::now(), stage }
    }
}

fn key_of(pod: &Pod) -> PodKey {
    (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default())
}
