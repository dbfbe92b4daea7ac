//! The command line: `orch server`, `orch agent`, `orch token`, `orch secrets-encrypt`, `orch snapshot`, `orch images`, `orch
//! check-config`, `orch certificate`, the `kubectl`/`ctr`/`crictl` wrappers, `orch version`, global flags and the
//! YAML config file. It builds the plain configs of
//! [`crate::server`] and [`crate::node`], starts them and is the only place that handles
//! SIGINT/SIGTERM.

pub mod agent;
pub mod certificate;
pub mod check_config;
pub mod config_file;
pub mod images;
pub mod node_flags;
pub mod secrets_encrypt;
pub mod server;
mod signals;
pub mod snapshot;
pub mod token;
pub mod wrappers;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

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
    /// Run a server: the replicated store, the Kubernetes API, the controllers and scheduler,
    /// and (unless --disable-agent) a local node. The first server starts a new cluster; more
    /// servers join it with --join.
    Server(server::ServerArgs),
    /// Run a worker node that joins a cluster and runs its pods on containerd.
    Agent(agent::AgentArgs),
    /// Manage agent-only join tokens (run on a server)
    Token(token::TokenArgs),
    /// Manage the node's container images (import tarballs, list, remove, pull)
    Images(images::ImagesArgs),
    /// Report or change the encryption of Secrets at rest (k3s's secrets-encrypt; run on a server)
    SecretsEncrypt(secrets_encrypt::SecretsEncryptArgs),
    /// Save, list, delete and prune snapshots of the store (k3s's etcd-snapshot); restore one
    /// with `orch server --cluster-reset --cluster-reset-restore-path FILE`
    #[command(alias = "etcd-snapshot")]
    Snapshot(snapshot::SnapshotArgs),
    /// Check or rotate the certificates in the data dir (expiry table; leaves renew at start)
    Certificate(certificate::CertificateArgs),
    /// Check this machine for what a node needs (cgroups, kernel modules, containerd, runc,
    /// swap, disk), with the fix for each problem; exits 1 when a node could not run.
    CheckConfig,
    /// Run the system's kubectl against this cluster (with the admin kubeconfig when you have
    /// none). Also what orch does when invoked as `kubectl` through a symlink.
    #[command(disable_help_flag = true)]
    Kubectl(Wrapped),
    /// Run containerd's ctr against orch's containerd, namespace `orch` (or invoke orch as `ctr`).
    #[command(disable_help_flag = true)]
    Ctr(Wrapped),
    /// crictl: says why orch's containerd has no CRI and what to use instead.
    #[command(disable_help_flag = true)]
    Crictl(Wrapped),
    /// Print the orch version and the Kubernetes API version it serves.
    Version,
}

/// The arguments of a wrapped program, passed on untouched.
#[derive(Debug, clap::Args)]
pub struct Wrapped {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<OsString>,
}

fn octal_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal file mode (use e.g. 600 or 644)"))
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 250ms, 2s, 5m)"))
}

/// A positive size as a Kubernetes quantity (`10Mi`, `500k`) in bytes.
fn bytes_quantity(s: &str) -> Result<u64, String> {
    let q = k8s_openapi::apimachinery::pkg::api::resource::Quantity(s.to_string());
    crate::k8s::quantity::value(&q).filter(|b| *b > 0).map(|b| b as u64).ok_or_else(|| format!("{s:?}: use a positive size, e.g. 10Mi"))
}

/// The default data dir: `/var/lib/orch` as root, else `~/.orch`.
pub fn default_data_dir() -> PathBuf {
    if crate::host::is_root() {
        PathBuf::from("/var/lib/orch")
    } else {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".orch")
    }
}

/// Parses the process arguments, with the config file's flags merged in.
pub fn parse() -> Result<Cli, config_file::ConfigFileError> {
    let args: Vec<String> = std::env::args().collect();
    let (main, explicit) = match config_file::config_path(&args) {
        Some(p) => (PathBuf::from(p), true),
        None => (PathBuf::from(config_file::DEFAULT_CONFIG), false),
    };
    let flags = config_file::flags_from_files(&config_file::files(&main, explicit))?;
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
    fn wrapped_commands_take_every_argument_as_is() {
        let cli = Cli::try_parse_from(["orch", "kubectl", "get", "pods", "-n", "x", "--help"]).unwrap();
        let Command::Kubectl(w) = cli.command else { panic!("expected kubectl") };
        assert_eq!(w.args, ["get", "pods", "-n", "x", "--help"]);
    }

    #[test]
    fn bad_durations_are_explained() {
        let err = Cli::try_parse_from(["orch", "server", "--raft-heartbeat-interval=fast"]).unwrap_err().to_string();
        assert!(err.contains("use e.g. 250ms"), "{err}");
    }
}
