//! The command line: `orch server`, `orch agent`, `orch version`, global flags and the YAML
//! config file.

pub mod config_file;
pub mod images;
pub mod token;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// orch: a small, single-binary Kubernetes distribution.
///
/// Run `orch server` on the first machine; it starts the control plane and writes a kubeconfig.
/// Run `orch agent --join https://SERVER:6443 --token TOKEN` on every other machine.
#[derive(Debug, Parser)]
#[command(name = "orch", version, args_override_self = true, propagate_version = true)]
pub struct Cli {
    /// Where orch keeps its state [default: /var/lib/orch as root, else ~/.orch]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// YAML file of flags (keys are long flag names); flags on the command line win
    /// [default: /etc/orch/config.yaml when it exists]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log at debug level (RUST_LOG, when set, overrides this)
    #[arg(long, global = true)]
    pub debug: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a server: the replicated store and (as later releases add them) the Kubernetes API,
    /// controllers and scheduler. The first server starts a new cluster; more servers join it
    /// with --join.
    Server(ServerArgs),
    /// Run a worker node that joins a cluster and runs its pods on containerd.
    Agent(AgentArgs),
    /// Manage agent-only join tokens (run on a server)
    Token(token::TokenArgs),
    /// Manage the node's container images (import tarballs, list, remove, pull)
    Images(images::ImagesArgs),
    /// Print the orch version and the Kubernetes API version it serves.
    Version,
}

fn octal_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal file mode (use e.g. 600 or 644)"))
}

pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 250ms, 2s, 5m)"))
}

/// A positive size as a Kubernetes quantity (`10Mi`, `500k`) in bytes.
fn bytes_quantity(s: &str) -> Result<u64, String> {
    let q = k8s_openapi::apimachinery::pkg::api::resource::Quantity(s.to_string());
    crate::scheduler::quantity::value(&q)
        .filter(|b| *b > 0)
        .map(|b| b as u64)
        .ok_or_else(|| format!("{s:?}: use a positive size, e.g. 10Mi"))
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    pub bind_address: std::net::IpAddr,
    /// Port for the API and for peer (raft) traffic
    #[arg(long, default_value_t = 6443, value_name = "PORT")]
    pub https_listen_port: u16,
    /// Address other servers reach this one at [default: the bind address or, when binding to
    /// all addresses, the address of the default route's interface]
    #[arg(long, value_name = "IP")]
    pub advertise_address: Option<std::net::IpAddr>,
    /// Join the cluster of the server at this URL (e.g. https://10.0.0.1:6443) instead of
    /// starting a new one; needs --token. Ignored when this data dir already belongs to a cluster.
    #[arg(long, value_name = "URL")]
    pub join: Option<String>,
    /// Server token: K10<ca-hash>::server:<secret> as printed by the first server (stored in
    /// <data-dir>/server/token), or a bare secret to use for a new cluster
    #[arg(long, env = "ORCH_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Extra host name or IP address for the serving certificate (repeatable)
    #[arg(long, value_name = "NAME_OR_IP")]
    pub tls_san: Vec<String>,
    /// Also write the admin kubeconfig here [default: /etc/orch/orch.yaml with the default
    /// data dir]; it is always written to <data-dir>/orch.yaml
    #[arg(long, value_name = "PATH")]
    pub write_kubeconfig: Option<std::path::PathBuf>,
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
    /// Address range of pod IPs (IPv4 CIDR); every node gets one /24 of it
    #[arg(long, default_value = "10.42.0.0/16", value_name = "CIDR")]
    pub cluster_cidr: String,
    /// Address of the cluster DNS service (must lie in --service-cidr)
    #[arg(long, default_value = "10.43.0.10", value_name = "IP")]
    pub cluster_dns: std::net::Ipv4Addr,
    /// DNS domain of the cluster
    #[arg(long, default_value = "cluster.local", value_name = "DOMAIN")]
    pub cluster_domain: String,
    /// How long a node may miss heartbeats before it is marked NotReady (Unknown)
    #[arg(long, default_value = "40s", value_parser = duration, value_name = "DURATION")]
    pub node_monitor_grace_period: Duration,
    /// Run only the control plane, no local node
    #[arg(long)]
    pub disable_agent: bool,
    /// Name of the server's own node [default: the host name]
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Port of the local node's kubelet API
    #[arg(long, hide = true, default_value_t = 10250, value_name = "PORT")]
    pub kubelet_port: u16,
    /// Build the local node's pod network inside this network namespace instead of the
    /// host's (tests, benchmarks)
    #[arg(long, hide = true, value_name = "PATH")]
    pub netns: Option<std::path::PathBuf>,
    /// Do not run the controllers and the scheduler on this server
    #[arg(long)]
    pub disable_controllers: bool,
}

/// The container runtime of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    /// containerd (started and supervised by orch unless --container-runtime-endpoint is given)
    Containerd,
    /// No containers at all: a hollow node that only reports pods as running (for tests and
    /// scale benchmarks)
    Fake,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// URL of a server to join, e.g. https://10.0.0.1:6443
    #[arg(long, value_name = "URL")]
    pub join: Option<String>,
    /// Join token printed by `orch server`
    #[arg(long, env = "ORCH_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Name of this node [default: the host name]
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Address this node reports as its InternalIP [default: the address of the default
    /// route's interface; 127.0.0.1 for a fake-runtime node]
    #[arg(long, value_name = "IP")]
    pub node_ip: Option<std::net::IpAddr>,
    /// Container runtime
    #[arg(long, value_enum, default_value_t = Runtime::Containerd)]
    pub runtime: Runtime,
    /// Socket of an existing containerd to use instead of starting one under
    /// <data-dir>/agent/containerd
    #[arg(long, value_name = "SOCKET")]
    pub container_runtime_endpoint: Option<std::path::PathBuf>,
    /// Label to register the node with (repeatable)
    #[arg(long, value_parser = crate::agent::parse_label, value_name = "KEY=VALUE")]
    pub node_label: Vec<(String, String)>,
    /// Taint to register the node with (repeatable)
    #[arg(long, value_parser = crate::agent::parse_taint, value_name = "KEY=VALUE:EFFECT")]
    pub node_taint: Vec<k8s_openapi::api::core::v1::Taint>,
    /// Port of the kubelet API (container logs for `kubectl logs`); 0 serves none
    #[arg(long, default_value_t = 10250, value_name = "PORT")]
    pub kubelet_port: u16,
    /// Resources held back for Kubernetes daemons, e.g. cpu=500m,memory=256Mi
    #[arg(long, value_parser = crate::agent::kubelet::host::Reserved::parse, value_name = "RESOURCES")]
    pub kube_reserved: Option<crate::agent::kubelet::host::Reserved>,
    /// Resources held back for the operating system, e.g. cpu=500m,memory=256Mi
    #[arg(long, value_parser = crate::agent::kubelet::host::Reserved::parse, value_name = "RESOURCES")]
    pub system_reserved: Option<crate::agent::kubelet::host::Reserved>,
    /// Address range of pod IPs of the whole cluster (the server's --cluster-cidr)
    #[arg(long, default_value = "10.42.0.0/16", value_name = "CIDR")]
    pub cluster_cidr: String,
    /// Address of the cluster DNS service (the server's --cluster-dns)
    #[arg(long, default_value = "10.43.0.10", value_name = "IP")]
    pub cluster_dns: std::net::IpAddr,
    /// DNS domain of the cluster
    #[arg(long, default_value = "cluster.local", value_name = "DOMAIN")]
    pub cluster_domain: String,
    /// Build the pod network inside this network namespace instead of the host's (tests)
    #[arg(long, hide = true, value_name = "PATH")]
    pub netns: Option<std::path::PathBuf>,
    /// How often the node renews its Lease in kube-node-lease
    #[arg(long, default_value = "10s", value_parser = duration, value_name = "DURATION")]
    pub node_lease_renew_interval: Duration,
    /// How often the node posts its status even when nothing changed
    #[arg(long, default_value = "40s", value_parser = duration, value_name = "DURATION")]
    pub node_status_update_frequency: Duration,
    /// Size a container's log file may reach before it is rotated, e.g. 10Mi
    #[arg(long, default_value = "10Mi", value_parser = bytes_quantity, value_name = "QUANTITY")]
    pub container_log_max_size: u64,
    /// Log files kept per container, the current one included
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..), value_name = "N")]
    pub container_log_max_files: u16,
    /// CPU capacity a fake-runtime node reports
    #[arg(long, default_value = "4", value_name = "QUANTITY")]
    pub fake_cpu: String,
    /// Memory capacity a fake-runtime node reports
    #[arg(long, default_value = "8Gi", value_name = "QUANTITY")]
    pub fake_memory: String,
    /// Pod capacity a fake-runtime node reports
    #[arg(long, default_value_t = 110, value_name = "N")]
    pub fake_pods: u32,
    /// How long pods that run to completion (restartPolicy not Always) run on a fake-runtime
    /// node
    #[arg(long, default_value = "1s", value_parser = duration, value_name = "DURATION")]
    pub fake_job_duration: Duration,
}

/// The default data dir: `/var/lib/orch` as root, else `~/.orch`.
pub fn default_data_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        PathBuf::from("/var/lib/orch")
    } else {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".orch")
    }
}

/// Parses the process arguments, with the config file's flags merged in.
pub fn parse() -> Result<Cli, config_file::ConfigFileError> {
    let args: Vec<String> = std::env::args().collect();
    let file = match config_file::config_path(&args) {
        Some(p) => Some(PathBuf::from(p)),
        None => Some(PathBuf::from(config_file::DEFAULT_CONFIG)).filter(|p| p.exists()),
    };
    let flags = match file {
        Some(path) => config_file::flags_from_file(&path)?,
        None => Vec::new(),
    };
    Ok(Cli::parse_from(config_file::merge(args, flags)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn later_flags_override_earlier_ones() {
        let cli = Cli::try_parse_from(["orch", "server", "--https-listen-port=1", "--https-listen-port=2"]).unwrap();
        let Command::Server(s) = cli.command else { panic!("expected server") };
        assert_eq!(s.https_listen_port, 2);
    }

    #[test]
    fn bad_durations_are_explained() {
        let err = Cli::try_parse_from(["orch", "server", "--raft-heartbeat-interval=fast"]).unwrap_err().to_string();
        assert!(err.contains("use e.g. 250ms"), "{err}");
    }
}
