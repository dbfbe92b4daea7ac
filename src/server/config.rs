//! How a server is set up: one plain struct the command line builds from `orch server`'s flags.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::Component;

/// Everything `orch server` is told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the server keeps its state (`server/`, `orch.yaml`).
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    /// Port for the API and for peer (raft) traffic; 0 picks a free one.
    pub https_listen_port: u16,
    /// Address other servers reach this one at (default: the bind address or the default
    /// route's address).
    pub advertise_address: Option<IpAddr>,
    /// URL of a server whose cluster to join instead of starting a new one.
    pub join: Option<String>,
    /// The server token (`K10<ca-hash>::server:<secret>` or a bare secret for a new cluster).
    pub token: Option<String>,
    /// The agent token (`K10<ca-hash>::node:<secret>` or a bare secret); default: derived
    /// from the server token, and different from it.
    pub agent_token: Option<String>,
    /// The name of the node this machine runs besides the server, if any: it may carry the
    /// server's own names and addresses in its kubelet serving certificate.
    pub local_node: Option<String>,
    /// Extra host names and addresses for the serving certificate.
    pub tls_san: Vec<String>,
    /// Where the admin kubeconfig is written besides `<data-dir>/orch.yaml`.
    pub write_kubeconfig: Option<PathBuf>,
    pub write_kubeconfig_mode: u32,
    pub raft_heartbeat_interval: Duration,
    pub raft_election_timeout: Duration,
    pub raft_snapshot_entries: u64,
    /// Page cache of the embedded store, in MiB.
    pub store_cache_mb: u64,
    /// How many recent changes are kept in memory for watchers to resume from.
    pub watch_history: usize,
    pub service_cidr: String,
    pub service_node_port_range: String,
    pub compaction_interval: Duration,
    /// Address range of pod IPs; every node gets one /24 of it.
    pub cluster_cidr: String,
    /// ClusterIP of the kube-dns Service the controllers keep; `None` with `--disable coredns`.
    pub cluster_dns: Option<IpAddr>,
    pub node_monitor_grace_period: Duration,
    /// Run no controllers and no scheduler on this server.
    pub disable_controllers: bool,
    /// Read-only API requests served at once (0: no limit); more get 429.
    pub max_requests_inflight: usize,
    /// Mutating API requests served at once (0: no limit); more get 429.
    pub max_mutating_requests_inflight: usize,
    /// Shortest server-side timeout of a watch (each gets a random one between this and twice
    /// this unless the client asks for `timeoutSeconds`).
    pub min_request_timeout: Duration,
    /// How long Events are kept.
    pub event_ttl: Duration,
    /// Packaged components not to run (`--disable`).
    pub disable: BTreeSet<Component>,
    /// Encrypt Secrets at rest with a generated key (k3s's `--secrets-encryption`).
    pub secrets_encryption: bool,
    /// kube-apiserver's EncryptionConfiguration file; overrides the generated one.
    pub encryption_provider_config: Option<PathBuf>,
    /// The provider generated and rotated keys are for.
    pub secrets_encryption_provider: crate::api::encryption::k3s::ProviderKind,
    /// Where local-path volumes are made on their nodes (`--default-local-storage-path`).
    pub default_local_storage_path: PathBuf,
    /// Where snapshots are saved (`--snapshot-dir`).
    pub snapshot_dir: PathBuf,
    /// When scheduled snapshots are taken; `None` with `--disable-snapshots`.
    pub snapshot_schedule: Option<super::snapshots::cron::Schedule>,
    /// How many scheduled snapshots are kept.
    pub snapshot_retention: usize,
}
