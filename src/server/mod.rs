//! `orch server`: opens the replicated store in the data dir, serves peer and store RPC on the
//! server port, starts or joins a cluster, and runs until SIGINT/SIGTERM.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::ServerArgs;
use crate::raft::{RaftSettings, RaftStore};
use crate::store::{compactor, Store, StoreConfig, StoreError};

/// How long a joining server keeps trying to reach the cluster.
const JOIN_DEADLINE: Duration = Duration::from_secs(120);
/// How long shutdown waits for in-flight work.
const DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source} (is another orch server running? pick another --https-listen-port)")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("server I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The URL peers use to reach this server.
fn advertise_url(args: &ServerArgs, port: u16) -> String {
    let ip = args.advertise_address.unwrap_or(match args.bind_address {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    });
    match ip {
        IpAddr::V6(v6) => format!("http://[{v6}]:{port}"),
        IpAddr::V4(v4) => format!("http://{v4}:{port}"),
    }
}

pub async fn run(data_dir: &Path, args: ServerArgs) -> Result<(), ServerError> {
    let addr = SocketAddr::new(args.bind_address, args.https_listen_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { addr, source })?;
    let port = listener.local_addr()?.port();
    let url = advertise_url(&args, port);

    let settings = RaftSettings {
        advertise_url: url.clone(),
        heartbeat: args.raft_heartbeat_interval,
        election_timeout: args.raft_election_timeout,
        snapshot_logs: args.raft_snapshot_entries,
        store: StoreConfig {
            cache_capacity: args.store_cache_mb << 20,
            watch_history: args.watch_history,
        },
    };
    let store = RaftStore::open(&data_dir.join("server").join("raft"), settings).await?;

    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let app = crate::raft::router(store.clone())
        .merge(crate::rpc::store_router(store.clone() as Arc<dyn Store>));
    let serve_cancel = cancel.clone();
    tasks.spawn(async move {
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            // Raft and store RPC are small request/response messages: never wait for Nagle.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(serve_cancel.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "server stopped serving");
        }
    });
    tracing::info!(%url, node_id = store.id(), "orch server listening");

    if store.is_member().await? {
        tracing::info!("data dir already belongs to a cluster; rejoining it");
    } else if let Some(seed) = &args.join {
        tracing::info!(%seed, "joining an existing cluster");
        store.join(seed, JOIN_DEADLINE).await?;
    } else {
        store.bootstrap().await?;
    }

    let leader_store = store.clone();
    tasks.spawn(compactor::run(
        store.clone(),
        args.compaction_interval,
        move || leader_store.is_leader(),
        cancel.clone(),
    ));
    tasks.close();

    wait_for_signal().await;
    tracing::info!("shutting down");
    cancel.cancel();
    if tokio::time::timeout(DRAIN, tasks.wait()).await.is_err() {
        tracing::warn!("some tasks did not stop within {DRAIN:?}");
    }
    store.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term =
        signal(SignalKind::terminate()).expect("installing a SIGTERM handler cannot fail");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
