//! The node loop of the kubelet: joins, registers and heartbeats the Node, creates the pod
//! network once the node has a podCIDR, hands each pod bound to the node to its worker, and
//! removes containers and pod networks that belong to no pod.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::api_state::KubeletApi;
use super::downward::NodeAllocatable;
use super::layout::{self, Layout};
use super::server;
use super::service_env::ServiceCache;
use super::worker::PodWorker;
use super::{host, image_gc, sandbox, stats_sampler, NodeContext};
use crate::net::etc_files::NodeEtc;
use crate::net::resolv::{DnsSettings, ResolvConf};
use crate::net::{BridgeConfig, BridgeNetwork, PodNetwork};
use crate::node::heartbeat::{self, Heartbeat};
use crate::node::node_object::{NodeShape, Pressure};
use crate::node::runtime::node::NodeRuntime;
use crate::node::runtime::{ContainerInfo, ContainerRuntime};
use crate::node::servers::{self, ApiServers};
use crate::node::{overlay, proxy, Config, NodeError};
use crate::tasks::Tasks;

/// How often containers and pod networks that belong to no pod are looked for.
const HOUSEKEEPING: Duration = Duration::from_secs(60);
/// How often the host's pressure is looked at (the status is posted when it changes).
const PRESSURE_CHECK: Duration = Duration::from_secs(10);
/// How often a node without a pod network looks for the podCIDR the IPAM controller assigns.
const POD_CIDR_CHECK: Duration = Duration::from_secs(1);

/// A running kubelet; [`Kubelet::stop`] stops it and its containerd, leaving containers running.
pub struct Kubelet {
    name: String,
    runtime: NodeRuntime,
    /// Every task of the kubelet: the node loop, pod workers and their container waiters, the
    /// kubelet API server with its connections and sessions, and image garbage collection.
    tasks: Tasks,
}

type PodKey = (String, String);

struct WorkerHandle {
    uid: String,
    updates: watch::Sender<Option<Pod>>,
}

struct NodeLoop {
    config: Config,
    ctx: Arc<NodeContext>,
    heartbeat: Heartbeat,
    shape: NodeShape,
    since: Timestamp,
    pressure: Pressure,
    network_tx: watch::Sender<Option<Arc<dyn PodNetwork>>>,
    workers: HashMap<PodKey, WorkerHandle>,
    /// Containers found at start, by pod uid, until their pod's worker takes them.
    leftovers: HashMap<String, Vec<ContainerInfo>>,
    /// Whether the overlay to other nodes was started (it is, once, with the podCIDR).
    overlay_started: bool,
    /// The pods' MTU the overlay asks for (`None`: no overlay, the bridge's default).
    pod_mtu: Option<u32>,
}

fn key_of(pod: &Pod) -> PodKey {
    (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default())
}

fn node_etc(config: &Config) -> NodeEtc {
    let host = std::fs::read_to_string("/etc/resolv.conf").map(|t| ResolvConf::parse(&t)).unwrap_or_default();
    NodeEtc {
        dns: DnsSettings { cluster_dns: config.cluster_dns.clone(), cluster_domain: config.cluster_domain.clone(), host },
        node_hostname: config.node_name.clone(),
        node_hosts: std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
    }
}

impl Kubelet {
    /// Starts containerd (or connects to `--container-runtime-endpoint`), joins the cluster,
    /// registers the node and starts running its pods.
    pub async fn start(config: Config) -> Result<Self, NodeError> {
        let runtime = NodeRuntime::start(&config.data_dir, config.container_runtime_endpoint.clone(), config.log_rotation).await?;
        let kubelet = Self { name: config.node_name.clone(), runtime, tasks: Tasks::default() };
        match kubelet.start_tasks(config).await {
            Ok(()) => Ok(kubelet),
            Err(e) => {
                kubelet.stop().await;
                Err(e)
            }
        }
    }

    /// Joins, registers the node and spawns the kubelet's tasks on its tracker.
    async fn start_tasks(&self, config: Config) -> Result<(), NodeError> {
        let runtime: Arc<dyn ContainerRuntime> = Arc::new(self.runtime.runtime.clone());
        let token = crate::pki::JoinToken::parse(&config.token)?;
        let password = crate::node::node_password(&config.data_dir)?;
        let servers = ApiServers::new(&config.server, Some(config.data_dir.join(servers::FILE)))?;
        let (token, name, password) = (&token, &config.node_name, &password);
        let creds = servers.try_in_turn(|url| async move { crate::join::join_as_agent(&url, token, name, password).await }).await?;
        let (client, upkeep) = crate::node::client::node_client(&servers, &creds)?;
        self.tasks.tracker.spawn(upkeep.run(self.tasks.cancel.clone()));
        let node_ip = config.node_ip.or_else(crate::host::default_route_ip).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let layout = Layout::new(&config.data_dir);
        if config.kubelet_port != 0 {
            let ips = [node_ip, IpAddr::V4(Ipv4Addr::LOCALHOST)];
            let (creds, ips) = (&creds, &ips);
            let serving = servers.try_in_turn(|url| async move { crate::join::request_serving_cert(&url, creds, ips).await }).await?;
            let tls = Arc::new(crate::pki::server_config(&creds.ca, &serving)?);
            let addr = std::net::SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), config.kubelet_port);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| NodeError::Io { path: format!("kubelet port {addr}"), source })?;
            let (sampler, stats) = stats_sampler::Sampler::new(runtime.clone(), &config.node_name);
            self.tasks.spawn(sampler.run(self.tasks.cancel.clone()));
            let api =
                KubeletApi { logs_dir: layout.logs_dir(), runtime: runtime.clone(), tasks: self.tasks.clone(), stats: Arc::new(stats) };
            let app = server::router(Arc::new(api));
            let (cancel, tracker) = (self.tasks.cancel.clone(), self.tasks.tracker.clone());
            self.tasks.tracker.spawn(crate::rpc::https::serve(listener, tls, app, cancel, tracker));
            tracing::info!(%addr, "kubelet API listening");
        }
        let images = image_gc::ContainerdImages { runtime: self.runtime.runtime.clone(), data_dir: config.data_dir.clone() };
        self.tasks.tracker.spawn(image_gc::ImageGc::new(images, image_gc::Thresholds::default()).run(self.tasks.cancel.clone()));
        let (capacity, allocatable) = host::resources(&config.data_dir, 110, config.reserved);
        let shape = NodeShape {
            name: config.node_name.clone(),
            labels: config.labels.clone(),
            taints: config.taints.clone(),
            capacity,
            allocatable,
            internal_ip: node_ip,
            external_ip: config.node_external_ip,
            container_runtime: runtime.version().await?,
            system: host::system_info(),
            kubelet_port: if config.kubelet_port == 0 { 10250 } else { config.kubelet_port },
        };
        let memory = host::memory().total.saturating_sub(config.reserved.memory);
        let millicpu = (host::cpu_count() as u64 * 1000).saturating_sub(config.reserved.millicpu);
        let (network_tx, network) = watch::channel(None);
        let ctx = Arc::new(NodeContext {
            client: client.clone(),
            runtime,
            network,
            layout,
            node_ip,
            host_netns: config.host_netns.clone(),
            etc: node_etc(&config),
            allocatable: NodeAllocatable { millicpu: millicpu as i64, memory: memory as i64 },
            services: ServiceCache::start(client.clone(), &self.tasks),
            tasks: self.tasks.clone(),
        });
        crate::node::cluster_dns::start(&config, client.clone(), node_ip, &self.tasks).await;
        let mut node = NodeLoop {
            heartbeat: Heartbeat::new(client, &config.node_name, config.lease_renew_interval),
            since: Timestamp::now(),
            pressure: host::pressure(&config.data_dir),
            config,
            ctx,
            shape,
            network_tx,
            workers: HashMap::new(),
            leftovers: HashMap::new(),
            overlay_started: false,
            pod_mtu: None,
        };
        node.heartbeat.register(node.shape.node()).await?;
        node.post_status().await?;
        node.heartbeat.renew_lease().await?;
        for c in node.ctx.runtime.list_containers().await? {
            if let Some((uid, _, _)) = layout::owner(&c) {
                node.leftovers.entry(uid.to_string()).or_default().push(c);
            }
        }
        self.tasks.tracker.spawn(node.run());
        Ok(())
    }

    /// Stops the node: cancels every task of the kubelet and waits a bounded time for them,
    /// then stops containerd (its pods' containers keep running; a restarted agent adopts them).
    pub async fn stop(self) {
        crate::node::drain(&self.name, &self.tasks).await;
        self.runtime.stop().await;
    }
}

impl NodeLoop {
    fn name(&self) -> &str {
        &self.config.node_name
    }

    async fn post_status(&mut self) -> Result<(), NodeError> {
        let node = self.heartbeat.post_status(self.shape.status(self.since, self.pressure)).await?;
        self.learn(&node).await;
        Ok(())
    }

    /// Creates the pod network once the node has a podCIDR: first the overlay to other nodes
    /// (which decides the pods' MTU), then the bridge.
    async fn learn(&mut self, node: &Node) {
        if self.network_tx.borrow().is_some() {
            return;
        }
        let Some(cidr) = heartbeat::pod_cidr(node) else { return };
        let cidr = match cidr.parse() {
            Ok(c) => c,
            Err(e) => return tracing::warn!(%cidr, error = ?e, "unusable pod CIDR"),
        };
        let mut bridge = BridgeConfig::new(&self.config.data_dir, cidr, self.config.cluster_cidr);
        if !std::mem::replace(&mut self.overlay_started, true) {
            let ctx = &self.ctx;
            self.pod_mtu = overlay::start(&self.config, ctx.client.clone(), ctx.node_ip, cidr, &ctx.tasks).await;
            proxy::start(&self.config, ctx.client.clone(), &ctx.tasks);
        }
        bridge.mtu = self.pod_mtu.unwrap_or(bridge.mtu);
        if let Some(ns) = &self.config.host_netns {
            // Tests: pod namespaces stay with the node's data rather than in /run/orch/netns.
            bridge.host_netns = Some(ns.clone());
            bridge.netns_dir = self.config.data_dir.join("agent").join("netns");
        }
        match BridgeNetwork::new(bridge) {
            Ok(net) => {
                tracing::info!(node = self.name(), %cidr, "pod network ready");
                self.network_tx.send_replace(Some(Arc::new(net)));
            }
            Err(e) => tracing::warn!(node = self.name(), error = %e, "cannot set up the pod network"),
        }
    }

    async fn run(mut self) {
        let config = watcher::Config::default().fields(&format!("spec.nodeName={}", self.name()));
        let api: Api<Pod> = Api::all(self.ctx.client.clone());
        let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
        let every = |d: Duration| {
            let mut i = tokio::time::interval_at(Instant::now() + d, d);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        };
        let mut lease_tick = every(self.config.lease_renew_interval);
        let mut status_tick = every(self.config.status_update_interval);
        let mut pressure_tick = every(PRESSURE_CHECK);
        let mut cidr_tick = every(POD_CIDR_CHECK);
        let mut housekeeping = every(HOUSEKEEPING);
        let mut listed = HashSet::new();
        let mut synced_once = false;
        loop {
            tokio::select! {
                _ = self.ctx.tasks.cancel.cancelled() => break,
                _ = lease_tick.tick() => match self.heartbeat.renew_lease().await {
                    Ok(true) => self.post_status_logged().await,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(node = self.name(), error = %e, "cannot renew the node lease; retrying in {:?}", heartbeat::LEASE_RETRY);
                        lease_tick.reset_after(heartbeat::LEASE_RETRY);
                    }
                },
                _ = status_tick.tick() => self.post_status_logged().await,
                _ = pressure_tick.tick() => {
                    let now = host::pressure(&self.config.data_dir);
                    if now != self.pressure {
                        self.pressure = now;
                        self.post_status_logged().await;
                    }
                }
                _ = cidr_tick.tick(), if self.network_tx.borrow().is_none() => match self.heartbeat.node().await {
                    Ok(node) => self.learn(&node).await,
                    Err(e) => tracing::debug!(node = self.name(), error = %e, "cannot read the node"),
                },
                _ = housekeeping.tick(), if synced_once => self.housekeeping().await,
                event = events.next() => match event {
                    Some(Ok(Event::Apply(pod))) => self.dispatch(pod),
                    Some(Ok(Event::Delete(pod))) => self.forget(&key_of(&pod)),
                    Some(Ok(Event::Init)) => listed.clear(),
                    Some(Ok(Event::InitApply(pod))) => {
                        listed.insert(key_of(&pod));
                        self.dispatch(pod);
                    }
                    Some(Ok(Event::InitDone)) => {
                        let gone: Vec<PodKey> = self.workers.keys().filter(|k| !listed.contains(*k)).cloned().collect();
                        gone.iter().for_each(|k| self.forget(k));
                        if !synced_once {
                            synced_once = true;
                            self.housekeeping().await;
                        }
                    }
                    Some(Err(e)) => tracing::warn!(node = self.name(), error = %e, "pod watch failed; retrying"),
                    None => break,
                },
            }
        }
        tracing::info!(node = self.name(), "kubelet stopped");
    }

    async fn post_status_logged(&mut self) {
        if let Err(e) = self.post_status().await {
            tracing::warn!(node = self.name(), error = %e, "cannot post node status");
        }
    }

    /// Hands `pod` to its worker, starting one for a pod new to the node.
    fn dispatch(&mut self, pod: Pod) {
        let key = key_of(&pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(w) = self.workers.get(&key) {
            if w.uid == uid && !w.updates.is_closed() {
                w.updates.send_replace(Some(pod));
                return;
            }
            if w.uid == uid {
                // Its worker has finished (the pod was deleted); nothing more to do.
                return;
            }
            self.forget(&key);
        }
        let existing = self.leftovers.remove(&uid).unwrap_or_default();
        let (tx, rx) = watch::channel(Some(pod.clone()));
        let worker = PodWorker::new(self.ctx.clone(), rx, pod);
        self.ctx.tasks.tracker.spawn(worker.run(existing));
        self.workers.insert(key, WorkerHandle { uid, updates: tx });
    }

    /// The pod is gone from the API: its worker removes what is left of it.
    fn forget(&mut self, key: &PodKey) {
        if let Some(w) = self.workers.remove(key) {
            w.updates.send_replace(None);
        }
    }

    /// Removes containers, directories (and their mounts) and pod networks of pods this node no
    /// longer has.
    async fn housekeeping(&mut self) {
        let alive: HashSet<String> = self.workers.values().map(|w| w.uid.clone()).collect();
        for (uid, containers) in std::mem::take(&mut self.leftovers) {
            tracing::info!(pod = %uid, count = containers.len(), "removing containers of a pod that is gone");
            for c in containers {
                if let Err(e) = self.ctx.runtime.remove_container(&c.id).await {
                    tracing::warn!(container = %c.id, error = %e, "cannot remove a leftover container");
                }
            }
            sandbox::teardown(&self.ctx, &uid).await;
        }
        let mut with_containers = HashSet::new();
        let listed = match self.ctx.runtime.list_containers().await {
            Ok(all) => {
                for c in all {
                    with_containers.extend(layout::owner(&c).map(|(uid, _, _)| uid.to_string()));
                    let orphan = layout::owner(&c).is_none_or(|(uid, _, _)| !alive.contains(uid));
                    if orphan {
                        tracing::info!(container = %c.id, "removing a container that belongs to no pod");
                        let _ = self.ctx.runtime.remove_container(&c.id).await;
                    }
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list containers");
                false
            }
        };
        // A pod's directory goes once its containers are gone (a worker still stopping them
        // owns it until then).
        let dirs = std::fs::read_dir(self.ctx.layout.pods_dir()).into_iter().flatten().flatten().filter(|_| listed);
        let names = dirs.map(|d| d.file_name().to_string_lossy().into_owned());
        for uid in names.filter(|uid| !alive.contains(uid) && !with_containers.contains(uid)) {
            tracing::info!(pod = %uid, "removing the directory of a pod that is gone");
            sandbox::teardown(&self.ctx, &uid).await;
        }
        let network = self.network_tx.borrow().clone();
        if let Some(network) = network {
            let alive = sandbox::alive(Arc::new(alive));
            match network.gc(&alive).await {
                Ok(gone) if !gone.is_empty() => tracing::info!(pods = ?gone, "removed the networks of pods that are gone"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pod network garbage collection failed"),
            }
        }
    }
}
