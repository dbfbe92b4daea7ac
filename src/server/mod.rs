//! `orch server`'s control plane: sets up the cluster's TLS material (or receives it when
//! joining), opens the replicated store in the data dir, serves HTTPS on the server port (the
//! API, public and join endpoints, peer and store RPC for cluster members), writes the admin
//! kubeconfig, starts or joins a cluster and runs the controllers, until [`Server::stop`].
//! Set up by a plain [`Config`]; the command line builds it, owns signals and starts the
//! server's own node from the started [`Server`].

mod cluster_reset;
mod components;
mod config;
mod credentials;
mod encryption_config;
mod kubeconfig;
mod local_storage;
mod routes;
mod secrets_encrypt;
mod serving_sans;
pub mod snapshots;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use cluster_reset::cluster_reset;
pub use components::Component;
pub use config::Config;
pub use credentials::{admin_credentials, read_agent_token, read_token, tls_dir};
pub use secrets_encrypt::{CONFIG_PATH as ENCRYPT_CONFIG_PATH, STATUS_PATH as ENCRYPT_STATUS_PATH};

use crate::join::JoinError;
use crate::pki::{self, JoinToken, PkiError};
use crate::raft::{RaftSettings, RaftStore};
use crate::rpc::HttpClient;
use crate::store::{compactor, Store, StoreConfig, StoreError};
use crate::tasks::Tasks;

/// How long a joining server keeps trying to reach the cluster.
const JOIN_DEADLINE: Duration = Duration::from_secs(120);
/// How long shutdown waits for in-flight work.
const DRAIN: Duration = Duration::from_secs(5);
/// How long shutdown waits for the controllers to stop and release their lease (they get
/// 10 s to finish their reconciles).
const CONTROLLERS_DRAIN: Duration = Duration::from_secs(11);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source} (is another orch server running? pick another --https-listen-port)")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Flag(String),
    #[error("--join needs --token: use the token printed by the first server (its <data-dir>/server/token)")]
    JoinWithoutToken,
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("secrets encryption: {0}")]
    Encryption(#[from] crate::api::encryption::ConfigError),
    #[error("server I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "{store} holds this server's store but the cluster CA ({ca}) is missing: restore it from a backup \
         (a new CA would not be trusted by the cluster's members, agents and clients), or remove {store} too to start afresh"
    )]
    MissingCa { store: String, ca: String },
}

/// The embedded store's settings.
fn store_config(config: &Config) -> StoreConfig {
    StoreConfig { cache_capacity: config.store_cache_mb << 20, watch_history: config.watch_history }
}

/// The replica's settings: reached at `url`, calling peers with `peer_client`.
fn raft_settings(config: &Config, url: &str, peer_client: HttpClient) -> RaftSettings {
    RaftSettings {
        advertise_url: url.to_string(),
        peer_client,
        heartbeat: config.raft_heartbeat_interval,
        election_timeout: config.raft_election_timeout,
        snapshot_logs: config.raft_snapshot_entries,
        store: store_config(config),
    }
}

/// The address peers use to reach this server: `--advertise-address`, else the bind address,
/// else (binding to all addresses) the default route's address.
fn advertise_ip(config: &Config) -> IpAddr {
    config.advertise_address.unwrap_or(match config.bind_address {
        ip if ip.is_unspecified() => crate::host::default_route_ip().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ip => ip,
    })
}

fn https_url(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V6(v6) => format!("https://[{v6}]:{port}"),
        IpAddr::V4(v4) => format!("https://{v4}:{port}"),
    }
}

/// Host names and addresses the serving certificate covers.
fn sans(config: &Config, host: &str, advertise_ip: IpAddr) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns: Vec<String> =
        ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", host]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST), advertise_ip];
    if !config.bind_address.is_unspecified() {
        ips.push(config.bind_address);
    }
    for san in &config.tls_san {
        match san.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(san.clone()),
        }
    }
    dns.sort();
    dns.dedup();
    ips.sort();
    ips.dedup();
    (dns, ips)
}

/// A running server. [`Server::stop`] stops it.
pub struct Server {
    store: Arc<RaftStore>,
    /// Stops the controllers first, while the API and the store still serve their last
    /// writes (the lease release); a child of the token of `tasks`.
    controllers: CancellationToken,
    /// The controller manager's task (on `tasks`), when this server runs controllers.
    controller_task: Option<JoinHandle<()>>,
    /// Every task of the server: the API's background work, connections, the compactor.
    tasks: Tasks,
    port: u16,
    agent_token: JoinToken,
}

impl Server {
    /// Sets up TLS, opens the store, listens, starts or joins the cluster and starts the
    /// controllers; returns once the server answers on its port.
    pub async fn start(config: Config) -> Result<Server, ServerError> {
        let data_dir = config.data_dir.as_path();
        // The CA key, the token and the store (every Secret) live here: owner-only.
        pki::private_dir(data_dir)?;
        pki::private_dir(&data_dir.join("server"))?;
        pki::restrict_tree(&data_dir.join("server"))?;
        // Where users drop manifests to deploy (see `controllers::addons`); they may hold
        // Secrets, so owner-only like the rest of `server/`.
        pki::private_dir(&data_dir.join("server").join("manifests"))?;
        let local_storage = !config.disable.contains(&Component::LocalStorage);
        local_storage::stage(&data_dir.join("server").join("manifests"), local_storage)?;
        let net = crate::api::ServiceNetwork::parse(&config.service_cidr, &config.service_node_port_range)
            .map_err(|e| ServerError::Flag(format!("--service-cidr/--service-node-port-range: {e}")))?;
        let addr = SocketAddr::new(config.bind_address, config.https_listen_port);
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServerError::Listen { addr, source })?;
        let port = listener.local_addr()?.port();
        let advertise_ip = advertise_ip(&config);
        let url = https_url(advertise_ip, port);
        let host = crate::host::hostname();

        let raft_dir = data_dir.join("server").join("raft");
        if raft_dir.exists() && !credentials::has_ca(data_dir) {
            let ca = credentials::tls_dir(data_dir).display().to_string();
            return Err(ServerError::MissingCa { store: raft_dir.display().to_string(), ca });
        }
        let joining = config.join.as_deref().filter(|_| !credentials::has_ca(data_dir));
        if let Some(seed) = joining {
            let token = JoinToken::parse(config.token.as_deref().ok_or(ServerError::JoinWithoutToken)?)?;
            tracing::info!(%seed, "fetching the cluster CA");
            let boot = crate::join::fetch_cluster_ca(seed, &token).await?;
            credentials::store_received_ca(data_dir, &boot.ca)?;
            if let Some(received) = &boot.encryption_config {
                encryption_config::store_received(data_dir, &config, received)?;
            }
        }
        let encryption = encryption_config::load(data_dir, &config)?;
        let (dns, ips) = sans(&config, &host, advertise_ip);
        let flags = credentials::TokenFlags { server: config.token.as_deref(), agent: config.agent_token.as_deref() };
        let creds = credentials::load_or_create(data_dir, &host, &dns, &ips, flags)?;
        let kubeconfig = kubeconfig::render(&https_url(IpAddr::V4(Ipv4Addr::LOCALHOST), port), &creds.ca.pem().cert, &creds.admin);
        kubeconfig::write(&data_dir.join("orch.yaml"), &kubeconfig, config.write_kubeconfig_mode)?;
        if let Some(path) = &config.write_kubeconfig {
            kubeconfig::write(path, &kubeconfig, config.write_kubeconfig_mode)?;
        }

        let peer_client = HttpClient::new(pki::client_config(&creds.ca.pem().cert, Some(&creds.peer))?);
        let settings = raft_settings(&config, &url, peer_client);
        let store = RaftStore::open(&raft_dir, settings).await?;
        // Everything that reads or writes objects goes through the encryption; raft, the peer
        // store RPC and the compactor move the stored (encrypted) bytes as they are.
        let encrypting = encryption.map(|e| crate::api::encryption::EncryptingStore::new(store.clone(), e));
        let api_store: Arc<dyn Store> = match &encrypting {
            Some(e) => e.clone(),
            None => store.clone(),
        };

        let tasks = Tasks::default();
        let (cancel, controllers) = (tasks.cancel.clone(), tasks.cancel.child_token());
        let internal = crate::raft::router(store.clone()).merge(crate::rpc::store_router(store.clone() as Arc<dyn Store>));
        let tokens = crate::api::TokenKeys::derive(creds.ca.pem().key.as_bytes());
        let kubelet_tls = Arc::new(pki::client_config(&creds.ca.pem().cert, Some(&creds.kubelet_client))?);
        let metrics_api = !config.disable.contains(&Component::MetricsServer);
        let api = crate::api::router(api_store.clone(), net, tokens, Some(kubelet_tls), metrics_api, tasks.clone());
        let controller_client = crate::api::in_process_client(api.clone(), controller_identity(), "default");
        let api = crate::api::limit_in_flight(api, config.max_requests_inflight, config.max_mutating_requests_inflight)
            .layer(axum::Extension(crate::api::MinRequestTimeout(config.min_request_timeout)));
        let tls = Arc::new(pki::server_config(&creds.ca.pem().cert, &creds.serving)?);
        let (token, agent_token) = (creds.token.clone(), creds.agent_token.clone());
        let ca_pem = creds.ca.pem().cert.clone();
        let public = routes::public(Arc::new(routes::PublicState {
            token: creds.token,
            agent_token: creds.agent_token,
            control_plane: serving_sans::ControlPlane {
                dns_names: dns,
                ips: ips.into_iter().chain([IpAddr::V4(net.kubernetes_ip())]).collect(),
                local_node: config.local_node.clone(),
            },
            ca: creds.ca,
            store: api_store.clone(),
            encryption_config: encrypting.as_ref().map(|e| e.encryption().path().to_path_buf()),
        }));
        let encrypt = secrets_encrypt::routes(Arc::new(secrets_encrypt::EncryptState {
            store: encrypting,
            kind: config.secrets_encryption_provider,
            stage_file: encryption_config::stage_path(data_dir),
            busy: Default::default(),
            servers: Box::new({
                let store = store.clone();
                move || store.raft().metrics().borrow().membership_config.membership().nodes().count()
            }),
        }));
        let snapshots = Arc::new(snapshots::Snapshots {
            store: store.clone(),
            dir: config.snapshot_dir.clone(),
            data_dir: data_dir.to_path_buf(),
            node: config.local_node.clone().unwrap_or_else(|| host.clone()),
            token_secret: token.secret.clone(),
            busy: Default::default(),
        });
        let app = public.merge(encrypt).merge(snapshots::routes(snapshots.clone())).merge(routes::internal(internal)).merge(api);
        tasks.tracker.spawn(crate::rpc::https::serve(listener, tls, app, cancel.clone(), tasks.tracker.clone()));
        tracing::info!(%url, node_id = store.id(), "orch server listening");

        if store.is_member().await? {
            tracing::info!("data dir already belongs to a cluster; rejoining it");
        } else if let Some(seed) = &config.join {
            tracing::info!(%seed, "joining an existing cluster");
            store.join(seed, JOIN_DEADLINE).await?;
        } else {
            store.bootstrap().await?;
            eprintln!(
                "orch: new cluster created. Join other servers with:\n  orch server --join {url} --token {token}\n\
                 and agents with:\n  orch agent --join {url} --token {agent_token}"
            );
        }
        let ns_store = api_store.clone();
        tasks.spawn(async move {
            // Every server tries (creation is idempotent); retried until the cluster has a leader.
            while let Err(e) = crate::api::ensure_system_namespaces(ns_store.as_ref()).await {
                tracing::info!(error = %e.message, "system namespaces not created yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        tracing::info!(kubeconfig = %data_dir.join("orch.yaml").display(), "ready");

        let mut controller_task = None;
        if !config.disable_controllers {
            let settings = crate::controllers::Settings {
                cluster_cidr: config.cluster_cidr.clone(),
                node_monitor_grace_period: config.node_monitor_grace_period,
                kubernetes_service_ip: net.kubernetes_ip().into(),
                api_server_port: port,
                cluster_dns: config.cluster_dns,
                ca_pem,
                event_ttl: config.event_ttl,
                servicelb: !config.disable.contains(&Component::ServiceLb),
                manifests_dir: Some(data_dir.join("server").join("manifests")),
                local_storage_path: local_storage.then(|| config.default_local_storage_path.clone()),
            };
            let address = SocketAddr::new(advertise_ip, port);
            tasks.tracker.spawn(crate::controllers::apiserver_leases::run(controller_client.clone(), address, controllers.clone()));
            controller_task = Some(tasks.tracker.spawn(crate::controllers::run_all(controller_client, settings, controllers.clone())));
        }
        if let Some(schedule) = config.snapshot_schedule.clone() {
            tasks.tracker.spawn(snapshots.run_schedule(schedule, config.snapshot_retention, cancel.clone()));
        }
        let leader_store = store.clone();
        tasks.tracker.spawn(compactor::run(store.clone(), config.compaction_interval, move || leader_store.is_leader(), cancel));
        Ok(Server { store, controllers, controller_task, tasks, port, agent_token })
    }

    /// The URL this machine's own node reaches the API at (loopback).
    pub fn local_url(&self) -> String {
        https_url(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port)
    }

    /// The agent token (joins agents only).
    pub fn agent_token(&self) -> String {
        self.agent_token.to_string()
    }

    /// Stops the controllers (a leader releases its lease), then serving, waits (boundedly)
    /// for in-flight work and closes the store.
    pub async fn stop(self) {
        tracing::info!("shutting down the server");
        self.controllers.cancel();
        if let Some(task) = self.controller_task {
            if tokio::time::timeout(CONTROLLERS_DRAIN, task).await.is_err() {
                tracing::warn!("the controllers did not stop within {CONTROLLERS_DRAIN:?}");
            }
        }
        if !self.tasks.stop(DRAIN).await {
            tracing::warn!("some tasks did not stop within {DRAIN:?}");
        }
        self.store.shutdown().await;
    }
}

/// Who the controllers inside the server act as.
fn controller_identity() -> pki::Identity {
    pki::Identity { user: "system:kube-controller-manager".into(), groups: vec!["system:masters".into(), "system:authenticated".into()] }
}
