//! `orch server`: sets up the cluster's TLS material (or receives it when joining), opens the
//! replicated store in the data dir, serves HTTPS on the server port (public endpoints, peer
//! and store RPC for cluster members), writes the admin kubeconfig, starts or joins a cluster,
//! and runs until SIGINT/SIGTERM.

mod credentials;
pub(crate) mod https;
mod join;
mod kubeconfig;
mod local_agent;
mod routes;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use credentials::{admin_credentials, read_token};
pub use join::{join_as_agent, request_serving_cert, AgentCredentials, JoinError};
pub use routes::kube_arch;

use crate::cli::ServerArgs;
use crate::pki::{self, JoinToken, PkiError};
use crate::raft::{RaftSettings, RaftStore};
use crate::rpc::HttpClient;
use crate::store::{compactor, Store, StoreConfig, StoreError};

/// How long a joining server keeps trying to reach the cluster.
const JOIN_DEADLINE: Duration = Duration::from_secs(120);
/// How long shutdown waits for in-flight work.
const DRAIN: Duration = Duration::from_secs(5);

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
    #[error("server I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// This machine's host name (`localhost` when it has none).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The address peers use to reach this server: `--advertise-address`, else the bind address,
/// else (binding to all addresses) the address of the interface holding the default route.
fn advertise_ip(args: &ServerArgs) -> IpAddr {
    args.advertise_address.unwrap_or(match args.bind_address {
        ip if ip.is_unspecified() => default_route_ip().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ip => ip,
    })
}

/// The local address the kernel would use towards the outside world. Connecting a UDP socket
/// only selects a route; no packet is sent.
fn default_route_ip() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    socket.local_addr().ok().map(|a| a.ip()).filter(|ip| !ip.is_unspecified())
}

fn https_url(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V6(v6) => format!("https://[{v6}]:{port}"),
        IpAddr::V4(v4) => format!("https://{v4}:{port}"),
    }
}

/// Host names and addresses the serving certificate covers.
fn sans(args: &ServerArgs, host: &str) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns: Vec<String> =
        ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", host]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST), advertise_ip(args)];
    if !args.bind_address.is_unspecified() {
        ips.push(args.bind_address);
    }
    for san in &args.tls_san {
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

pub async fn run(data_dir: &Path, default_data_dir: bool, args: ServerArgs) -> Result<(), ServerError> {
    let net = crate::api::ServiceNetwork::parse(&args.service_cidr, &args.service_node_port_range)
        .map_err(|e| ServerError::Flag(format!("--service-cidr/--service-node-port-range: {e}")))?;
    let addr = SocketAddr::new(args.bind_address, args.https_listen_port);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServerError::Listen { addr, source })?;
    let port = listener.local_addr()?.port();
    let url = https_url(advertise_ip(&args), port);
    let host = hostname();

    let joining = args.join.as_deref().filter(|_| !credentials::has_ca(data_dir));
    if let Some(seed) = joining {
        let token = JoinToken::parse(args.token.as_deref().ok_or(ServerError::JoinWithoutToken)?)?;
        tracing::info!(%seed, "fetching the cluster CA");
        let ca = join::fetch_cluster_ca(seed, &token).await?;
        credentials::store_received_ca(data_dir, &ca)?;
    }
    let (dns, ips) = sans(&args, &host);
    let creds = credentials::load_or_create(data_dir, &host, &dns, &ips, args.token.as_deref())?;
    let kubeconfig = kubeconfig::render(&https_url(IpAddr::V4(Ipv4Addr::LOCALHOST), port), &creds.ca.pem().cert, &creds.admin);
    kubeconfig::write(&data_dir.join("orch.yaml"), &kubeconfig, args.write_kubeconfig_mode)?;
    let extra_kubeconfig = args.write_kubeconfig.clone().or_else(|| default_data_dir.then(|| "/etc/orch/orch.yaml".into()));
    if let Some(path) = extra_kubeconfig {
        kubeconfig::write(&path, &kubeconfig, args.write_kubeconfig_mode)?;
    }

    let peer_client = HttpClient::new(pki::client_config(&creds.ca.pem().cert, Some(&creds.peer))?);
    let settings = RaftSettings {
        advertise_url: url.clone(),
        peer_client,
        heartbeat: args.raft_heartbeat_interval,
        election_timeout: args.raft_election_timeout,
        snapshot_logs: args.raft_snapshot_entries,
        store: StoreConfig { cache_capacity: args.store_cache_mb << 20, watch_history: args.watch_history },
    };
    let store = RaftStore::open(&data_dir.join("server").join("raft"), settings).await?;

    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let internal = crate::raft::router(store.clone()).merge(crate::rpc::store_router(store.clone() as Arc<dyn Store>));
    let tokens = crate::api::TokenKeys::derive(creds.ca.pem().key.as_bytes());
    let kubelet_tls = Arc::new(pki::client_config(&creds.ca.pem().cert, Some(&creds.peer))?);
    let api = crate::api::router(store.clone() as Arc<dyn Store>, net, tokens, Some(kubelet_tls));
    let controller_client = crate::api::in_process_client(api.clone(), controller_identity(), "default");
    let tls = Arc::new(pki::server_config(&creds.ca.pem().cert, &creds.serving)?);
    let join_token = creds.token.clone();
    let ca_pem = creds.ca.pem().cert.clone();
    let public = routes::public(Arc::new(routes::PublicState { token: creds.token.clone(), ca: creds.ca, store: store.clone() }));
    let app = public.merge(routes::internal(internal)).merge(api);
    tasks.spawn(https::serve(listener, tls, app, cancel.clone(), tasks.clone()));
    tracing::info!(%url, node_id = store.id(), "orch server listening");

    if store.is_member().await? {
        tracing::info!("data dir already belongs to a cluster; rejoining it");
    } else if let Some(seed) = &args.join {
        tracing::info!(%seed, "joining an existing cluster");
        store.join(seed, JOIN_DEADLINE).await?;
    } else {
        store.bootstrap().await?;
        eprintln!("orch: new cluster created. Join other servers with:\n  orch server --join {url} --token {join_token}");
    }
    let ns_store = store.clone();
    tasks.spawn(async move {
        // Every server tries (creation is idempotent); retried until the cluster has a leader.
        while let Err(e) = crate::api::ensure_system_namespaces(ns_store.as_ref()).await {
            tracing::info!(error = %e.message, "system namespaces not created yet; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    tracing::info!(kubeconfig = %data_dir.join("orch.yaml").display(), "ready");

    if !args.disable_controllers {
        let settings = crate::controllers::Settings {
            cluster_cidr: args.cluster_cidr.clone(),
            node_monitor_grace_period: args.node_monitor_grace_period,
            kubernetes_service_ip: net.kubernetes_ip().into(),
            api_servers: vec![SocketAddr::new(advertise_ip(&args), port)],
            ca_pem,
        };
        tasks.spawn(crate::controllers::run_all(controller_client, settings, cancel.clone()));
    }
    if !args.disable_agent {
        match local_agent::config(data_dir, &args, port, &join_token.to_string()) {
            Ok(config) => drop(tasks.spawn(local_agent::run(config, cancel.clone()))),
            Err(e) => tracing::warn!(error = %e, "this server runs no local node"),
        }
    }
    let leader_store = store.clone();
    tasks.spawn(compactor::run(store.clone(), args.compaction_interval, move || leader_store.is_leader(), cancel.clone()));

    wait_for_signal().await;
    tracing::info!("shutting down");
    cancel.cancel();
    tasks.close();
    if tokio::time::timeout(DRAIN, tasks.wait()).await.is_err() {
        tracing::warn!("some tasks did not stop within {DRAIN:?}");
    }
    store.shutdown().await;
    Ok(())
}

/// Who the controllers inside the server act as.
fn controller_identity() -> pki::Identity {
    pki::Identity { user: "system:kube-controller-manager".into(), groups: vec!["system:masters".into(), "system:authenticated".into()] }
}

/// Waits for SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler cannot fail");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
