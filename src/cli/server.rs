//! `orch server`: runs the control plane and, unless `--disable-agent`, the server's own node
//! (k3s runs one too), until SIGINT/SIGTERM.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::node_flags::NodeArgs;
use super::{duration, octal_mode};
use crate::node::{self, Node};
use crate::server::{self, Component, Server};

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    pub bind_address: IpAddr,
    /// Port for the API and for peer (raft) traffic
    #[arg(long, default_value_t = 6443, value_name = "PORT")]
    pub https_listen_port: u16,
    /// Address other servers reach this one at [default: the bind address or, when binding to
    /// all addresses, the address of the default route's interface]
    #[arg(long, value_name = "IP")]
    pub advertise_address: Option<IpAddr>,
    /// Join the cluster of the server at this URL (e.g. https://10.0.0.1:6443) instead of
    /// starting a new one; needs --token. Ignored when this data dir already belongs to a cluster.
    #[arg(long, value_name = "URL")]
    pub join: Option<String>,
    /// Server token: K10<ca-hash>::server:<secret> as printed by the first server (stored in
    /// <data-dir>/server/token), or a bare secret to use for a new cluster
    #[arg(long, env = "ORCH_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Agent token: joins agents only, never servers (stored in <data-dir>/server/agent-token);
    /// a bare secret sets it on first start. Default: derived from the server token, so every
    /// server of the cluster has the same one. Give the same value to every server if set
    #[arg(long, env = "ORCH_AGENT_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub agent_token: Option<String>,
    /// Extra host name or IP address for the serving certificate (repeatable)
    #[arg(long, value_name = "NAME_OR_IP")]
    pub tls_san: Vec<String>,
    /// Also write the admin kubeconfig here [default: /etc/orch/orch.yaml with the default
    /// data dir]; it is always written to <data-dir>/orch.yaml
    #[arg(long, value_name = "PATH")]
    pub write_kubeconfig: Option<PathBuf>,
    /// File mode of the written kubeconfig, in octal
    #[arg(long, default_value = "600", value_parser = octal_mode, value_name = "MODE")]
    pub write_kubeconfig_mode: u32,
    /// How often the raft leader sends heartbeats
    #[arg(long, default_value = "150ms", value_parser = duration, value_name = "DURATION")]
    pub raft_heartbeat_interval: Duration,
    /// How long followers wait without a heartbeat before electing a new leader (randomised
    /// up to twice this). Raise it on slow SD cards.
    #[arg(long, default_value = "600ms", value_parser = duration, value_name = "DURATION")]
    pub raft_election_timeout: Duration,
    /// Take a raft snapshot (and trim the log) after this many log entries
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub raft_snapshot_entries: u64,
    /// Page cache of the embedded store, in MiB
    #[arg(long, default_value_t = 32, value_name = "MIB")]
    pub store_cache_mb: u64,
    /// How many recent changes are kept in memory for watchers to resume from
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub watch_history: usize,
    /// Address range of Service ClusterIPs (IPv4 CIDR)
    #[arg(long, default_value = "10.43.0.0/16", value_name = "CIDR")]
    pub service_cidr: String,
    /// Port range of Service NodePorts
    #[arg(long, default_value = "30000-32767", value_name = "FROM-TO")]
    pub service_node_port_range: String,
    /// How often old revisions are compacted away (each run keeps one interval of history)
    #[arg(long, default_value = "5m", value_parser = duration, value_name = "DURATION")]
    pub compaction_interval: Duration,
    /// How long a node may miss heartbeats before it is marked NotReady (Unknown)
    #[arg(long, default_value = "40s", value_parser = duration, value_name = "DURATION")]
    pub node_monitor_grace_period: Duration,
    /// Most read-only API requests served at once (0: no limit); more are answered 429
    #[arg(long, default_value_t = 400, value_name = "N")]
    pub max_requests_inflight: usize,
    /// Most mutating API requests served at once (0: no limit); more are answered 429
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub max_mutating_requests_inflight: usize,
    /// Shortest server-side timeout of a watch; each watch ends after a random time between
    /// this and twice this, unless the client asks for timeoutSeconds
    #[arg(long, default_value = "1800s", value_parser = duration, value_name = "DURATION")]
    pub min_request_timeout: Duration,
    /// How long Events are kept
    #[arg(long, default_value = "1h", value_parser = duration, value_name = "DURATION")]
    pub event_ttl: Duration,
    /// Where local-path volumes are made on their nodes [default: <data-dir>/storage]
    #[arg(long, value_name = "PATH")]
    pub default_local_storage_path: Option<PathBuf>,
    /// Do not run the controllers and the scheduler on this server
    #[arg(long)]
    pub disable_controllers: bool,
    /// Run only the control plane, no local node
    #[arg(long)]
    pub disable_agent: bool,
    /// Encrypt Secrets at rest, with a key generated on first start in
    /// <data-dir>/server/cred/encryption-config.json (manage it with `orch secrets-encrypt`)
    #[arg(long)]
    pub secrets_encryption: bool,
    /// Provider of the generated and rotated keys: aescbc or secretbox
    #[arg(long, default_value = "aescbc", value_name = "PROVIDER")]
    pub secrets_encryption_provider: crate::api::encryption::k3s::ProviderKind,
    /// kube-apiserver's EncryptionConfiguration file (apiserver.config.k8s.io/v1): which
    /// resources are encrypted at rest and with which providers and keys; give every server
    /// the same file
    #[arg(long, value_name = "FILE")]
    pub encryption_provider_config: Option<PathBuf>,
    /// When to save a snapshot of the store, as cron's five fields in UTC (k3s's
    /// --etcd-snapshot-schedule-cron)
    #[arg(long, alias = "etcd-snapshot-schedule-cron", default_value = "0 */12 * * *", value_parser = cron_schedule, value_name = "CRON")]
    pub snapshot_schedule_cron: crate::server::snapshots::cron::Schedule,
    /// How many scheduled snapshots to keep (k3s's --etcd-snapshot-retention)
    #[arg(long, alias = "etcd-snapshot-retention", default_value_t = 5, value_name = "N")]
    pub snapshot_retention: usize,
    /// Where snapshots are saved [default: <data-dir>/server/db/snapshots]
    #[arg(long, alias = "etcd-snapshot-dir", value_name = "DIR")]
    pub snapshot_dir: Option<PathBuf>,
    /// Take no scheduled snapshots (k3s's --etcd-disable-snapshots)
    #[arg(long, alias = "etcd-disable-snapshots")]
    pub disable_snapshots: bool,
    /// Make this server's store (or, with --cluster-reset-restore-path, a snapshot) a new
    /// one-server cluster, then exit: the way back when quorum is lost for good. The old store
    /// is kept beside it; other servers re-join with an empty store
    #[arg(long)]
    pub cluster_reset: bool,
    /// The snapshot file --cluster-reset restores (on another machine, give the snapshot's
    /// cluster's server token with --token)
    #[arg(long, requires = "cluster_reset", value_name = "FILE")]
    pub cluster_reset_restore_path: Option<PathBuf>,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Parses a `--snapshot-schedule-cron` value.
fn cron_schedule(spec: &str) -> Result<crate::server::snapshots::cron::Schedule, String> {
    crate::server::snapshots::cron::Schedule::parse(spec)
}

impl ServerArgs {
    /// The control plane's config; `default_data_dir` says the data dir was not chosen, which
    /// also writes the kubeconfig to /etc/orch/orch.yaml (as k3s writes /etc/rancher/k3s/k3s.yaml).
    fn config(&self, data_dir: &Path, default_data_dir: bool) -> server::Config {
        server::Config {
            data_dir: data_dir.to_path_buf(),
            bind_address: self.bind_address,
            https_listen_port: self.https_listen_port,
            advertise_address: self.advertise_address,
            join: self.join.clone(),
            token: self.token.clone(),
            agent_token: self.agent_token.clone(),
            local_node: (!self.disable_agent).then(|| self.node.node_name.clone().unwrap_or_else(crate::host::hostname)),
            tls_san: self.tls_san.clone(),
            write_kubeconfig: self.write_kubeconfig.clone().or_else(|| default_data_dir.then(|| "/etc/orch/orch.yaml".into())),
            write_kubeconfig_mode: self.write_kubeconfig_mode,
            raft_heartbeat_interval: self.raft_heartbeat_interval,
            raft_election_timeout: self.raft_election_timeout,
            raft_snapshot_entries: self.raft_snapshot_entries,
            store_cache_mb: self.store_cache_mb,
            watch_history: self.watch_history,
            service_cidr: self.service_cidr.clone(),
            service_node_port_range: self.service_node_port_range.clone(),
            compaction_interval: self.compaction_interval,
            cluster_cidr: self.node.cluster_cidr.clone(),
            cluster_dns: (!self.node.disable.contains(&Component::CoreDns)).then_some(self.node.cluster_dns),
            node_monitor_grace_period: self.node_monitor_grace_period,
            disable_controllers: self.disable_controllers,
            max_requests_inflight: self.max_requests_inflight,
            max_mutating_requests_inflight: self.max_mutating_requests_inflight,
            min_request_timeout: self.min_request_timeout,
            event_ttl: self.event_ttl,
            disable: self.node.disable.iter().copied().collect(),
            secrets_encryption: self.secrets_encryption,
            encryption_provider_config: self.encryption_provider_config.clone(),
            secrets_encryption_provider: self.secrets_encryption_provider,
            default_local_storage_path: self.default_local_storage_path.clone().unwrap_or_else(|| data_dir.join("storage")),
            snapshot_dir: self.snapshot_dir.clone().unwrap_or_else(|| crate::server::snapshots::default_dir(data_dir)),
            snapshot_schedule: (!self.disable_snapshots).then(|| self.snapshot_schedule_cron.clone()),
            snapshot_retention: self.snapshot_retention,
        }
    }

    /// The server's own node: it joins over loopback with the agent token and carries the
    /// control-plane role labels; its InternalIP defaults to the advertised or bound address.
    fn local_node(&self, data_dir: &Path, server: &Server) -> Result<node::Config, String> {
        let default_ip = self.advertise_address.or_else(|| Some(self.bind_address).filter(|ip| !ip.is_unspecified()));
        let mut config = self.node.config(data_dir, &server.local_url(), &server.agent_token(), default_ip)?;
        for (k, v) in crate::k8s::names::CONTROL_PLANE_LABELS {
            config.labels.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
        Ok(config)
    }
}

/// Runs the server until SIGINT/SIGTERM.
pub async fn run(data_dir: &Path, default_data_dir: bool, args: ServerArgs) -> anyhow::Result<()> {
    let cancel = super::signals::shutdown_token().context("installing the signal handler")?;
    for c in args.node.disable.iter().filter(|c| !c.packaged()) {
        tracing::info!(component = %c, "--disable {c}: not packaged with orch, nothing to disable");
    }
    if args.cluster_reset {
        let done = server::cluster_reset(&args.config(data_dir, default_data_dir), args.cluster_reset_restore_path.as_deref()).await?;
        println!("{done}");
        return Ok(());
    }
    let server = Server::start(args.config(data_dir, default_data_dir)).await?;
    crate::host::notify_ready();
    let local = if args.disable_agent {
        None
    } else {
        match args.local_node(data_dir, &server) {
            Ok(config) => Some(tokio::spawn(run_local_node(config, cancel.clone()))),
            Err(e) => {
                tracing::warn!(error = %e, "this server runs no local node");
                None
            }
        }
    };
    cancel.cancelled().await;
    if let Some(node) = local {
        let _ = node.await;
    }
    server.stop().await;
    Ok(())
}

/// Runs the server's own node until `cancel`. Where a node cannot run here (not root,
/// containerd or runc missing) one warning says so and the server goes on without it.
async fn run_local_node(config: node::Config, cancel: CancellationToken) {
    if let Err(e) = node::check_runnable(&config) {
        tracing::warn!("this server runs no local node ({e}); pods need an `orch agent`, or start with --disable-agent to silence this");
        return;
    }
    if let Err(e) = Node::run(&config, &cancel).await {
        tracing::warn!(error = %e, "the local node cannot run; this server goes on without it");
    }
}
