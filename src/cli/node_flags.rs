//! The node flags `orch agent` and `orch server` (for the server's own node) share, declared
//! once, and the one place a [`node::Config`] is built from them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use k8s_openapi::api::core::v1::Taint;

use super::{bytes_quantity, duration};
use crate::k8s::labels::{parse_label, parse_taint};
use crate::node::kubelet::host::Reserved;
use crate::node::runtime::log_rotation::LogRotation;
use crate::node::{self, Flannel, FlannelBackend, HollowShape, RuntimeKind};
use crate::server::Component;

/// The container runtime of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    /// containerd (started and supervised by orch unless --container-runtime-endpoint is given)
    Containerd,
    /// No containers at all: a hollow node that only reports pods as running (for tests and
    /// scale benchmarks)
    Fake,
}

/// k3s's `--flannel-backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FlannelBackendArg {
    /// VXLAN overlay flannel.1 (VNI 1, UDP 8472), flannel's default
    Vxlan,
    /// Routes via the other nodes' addresses; every node on one L2 segment
    HostGw,
    /// Encrypted WireGuard overlay (UDP 51820): not supported yet
    WireguardNative,
    /// No pod networking between nodes (left to the user)
    None,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Node")]
pub struct NodeArgs {
    /// Name of this node [default: the host name]
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Address this node reports as its InternalIP [default: the address of the default
    /// route's interface; on a server, --advertise-address or --bind-address when set]
    #[arg(long, value_name = "IP")]
    pub node_ip: Option<IpAddr>,
    /// Address this node reports as its ExternalIP
    #[arg(long, value_name = "IP")]
    pub node_external_ip: Option<IpAddr>,
    /// How pods reach pods on other nodes (k3s's --flannel-backend)
    #[arg(long, value_enum, default_value_t = FlannelBackendArg::Vxlan, value_name = "BACKEND")]
    pub flannel_backend: FlannelBackendArg,
    /// Interface the overlay uses [default: the interface of --node-ip, else the default
    /// route's]
    #[arg(long, value_name = "NAME")]
    pub flannel_iface: Option<String>,
    /// Use --node-external-ip as the overlay's tunnel end (nodes that reach each other only
    /// through public addresses)
    #[arg(long)]
    pub flannel_external_ip: bool,
    /// Run no Service proxy on this node (k3s's flag; something else must carry Service traffic)
    #[arg(long)]
    pub disable_kube_proxy: bool,
    /// Label to register the node with (repeatable)
    #[arg(long, value_parser = parse_label, value_name = "KEY=VALUE")]
    pub node_label: Vec<(String, String)>,
    /// Taint to register the node with (repeatable)
    #[arg(long, value_parser = parse_taint, value_name = "KEY=VALUE:EFFECT")]
    pub node_taint: Vec<Taint>,
    /// Container runtime
    #[arg(long, value_enum, default_value_t = Runtime::Containerd)]
    pub runtime: Runtime,
    /// Socket of an existing containerd to use instead of starting one under
    /// <data-dir>/agent/containerd
    #[arg(long, value_name = "SOCKET")]
    pub container_runtime_endpoint: Option<PathBuf>,
    /// Port of the kubelet API (logs, exec, attach, port-forward); 0 serves none
    #[arg(long, default_value_t = 10250, value_name = "PORT")]
    pub kubelet_port: u16,
    /// Resources held back for Kubernetes daemons, e.g. cpu=500m,memory=256Mi
    #[arg(long, value_parser = Reserved::parse, value_name = "RESOURCES")]
    pub kube_reserved: Option<Reserved>,
    /// Resources held back for the operating system, e.g. cpu=500m,memory=256Mi
    #[arg(long, value_parser = Reserved::parse, value_name = "RESOURCES")]
    pub system_reserved: Option<Reserved>,
    /// Address range of pod IPs of the whole cluster (IPv4 CIDR); every node gets one /24 of it
    #[arg(long, default_value = "10.42.0.0/16", value_name = "CIDR")]
    pub cluster_cidr: String,
    /// Address of the cluster DNS service (must lie in the server's --service-cidr)
    #[arg(long, default_value = "10.43.0.10", value_name = "IP")]
    pub cluster_dns: IpAddr,
    /// DNS domain of the cluster
    #[arg(long, default_value = "cluster.local", value_name = "DOMAIN")]
    pub cluster_domain: String,
    /// Do not run these packaged components (repeatable or comma-separated; k3s's --disable):
    /// `coredns` stops this node answering DNS on --cluster-dns and, on a server, keeping the
    /// kube-dns Service (give it to every node of a cluster that brings its own DNS);
    /// `servicelb` stops a server's ServiceLB; `local-storage` stops a server's local-path
    /// StorageClass and provisioner; k3s's traefik and metrics-server are accepted and, as
    /// orch does not package them, change nothing
    #[arg(long, value_delimiter = ',', value_name = "COMPONENT")]
    pub disable: Vec<Component>,
    /// Build the pod network inside this network namespace instead of the host's (tests,
    /// benchmarks)
    #[arg(long, hide = true, value_name = "PATH")]
    pub netns: Option<PathBuf>,
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

impl NodeArgs {
    /// The node's config: it joins the API at `server` with `token`; `default_ip` is its
    /// InternalIP when `--node-ip` is not given.
    pub fn config(&self, data_dir: &Path, server: &str, token: &str, default_ip: Option<IpAddr>) -> Result<node::Config, String> {
        let cluster_cidr = crate::k8s::cidr::parse(&self.cluster_cidr).map_err(|e| format!("--cluster-cidr: {e}"))?;
        let backend = match self.flannel_backend {
            FlannelBackendArg::Vxlan => FlannelBackend::Vxlan,
            FlannelBackendArg::HostGw => FlannelBackend::HostGw,
            FlannelBackendArg::None => FlannelBackend::None,
            FlannelBackendArg::WireguardNative => {
                return Err("--flannel-backend=wireguard-native is not supported yet; use vxlan (the default) or host-gw".into())
            }
        };
        if self.flannel_external_ip && self.node_external_ip.is_none() {
            return Err("--flannel-external-ip needs --node-external-ip".into());
        }
        Ok(node::Config {
            server: server.into(),
            token: token.into(),
            node_name: self.node_name.clone().unwrap_or_else(crate::host::hostname),
            data_dir: data_dir.to_path_buf(),
            node_ip: self.node_ip.or(default_ip),
            node_external_ip: self.node_external_ip,
            flannel: Flannel { backend, iface: self.flannel_iface.clone(), use_external_ip: self.flannel_external_ip },
            service_proxy: !self.disable_kube_proxy,
            labels: self.node_label.iter().cloned().collect(),
            taints: self.node_taint.clone(),
            runtime: match self.runtime {
                Runtime::Containerd => RuntimeKind::Containerd,
                Runtime::Fake => RuntimeKind::Fake,
            },
            container_runtime_endpoint: self.container_runtime_endpoint.clone(),
            reserved: self.kube_reserved.unwrap_or_default().plus(self.system_reserved.unwrap_or_default()),
            kubelet_port: self.kubelet_port,
            cluster_cidr,
            cluster_dns: vec![self.cluster_dns],
            cluster_domain: self.cluster_domain.clone(),
            dns_server: !self.disable.contains(&Component::CoreDns),
            host_netns: self.netns.clone(),
            lease_renew_interval: self.node_lease_renew_interval,
            status_update_interval: self.node_status_update_frequency,
            log_rotation: LogRotation { max_size: self.container_log_max_size, max_files: self.container_log_max_files.into() },
            hollow: HollowShape {
                cpu: self.fake_cpu.clone(),
                memory: self.fake_memory.clone(),
                pods: self.fake_pods,
                job_duration: self.fake_job_duration,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{config_file, Cli, Command};
    use crate::node::FlannelBackend;

    fn node_args(args: &[&str], yaml: &str) -> super::NodeArgs {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let flags = config_file::flags_from_yaml(yaml, "config.yaml").unwrap();
        match Cli::try_parse_from(config_file::merge(args, flags)).unwrap().command {
            Command::Server(s) => s.node,
            Command::Agent(a) => a.node,
            _ => panic!("expected server or agent"),
        }
    }

    fn config(args: &super::NodeArgs) -> Result<crate::node::Config, String> {
        args.config(std::path::Path::new("/tmp/x"), "https://s:6443", "t", None)
    }

    #[test]
    fn flannel_flags_on_both_commands_and_in_the_config_file() {
        let server = config(&node_args(&["orch", "server"], "")).unwrap();
        assert_eq!((server.flannel.backend, server.flannel.iface), (FlannelBackend::Vxlan, None), "k3s's default");
        let yaml = "flannel-backend: host-gw\nflannel-iface: eth1\nnode-external-ip: 203.0.113.4\nflannel-external-ip: true\n";
        let agent = config(&node_args(&["orch", "agent"], yaml)).unwrap();
        assert_eq!(agent.flannel.backend, FlannelBackend::HostGw);
        assert_eq!(agent.flannel.iface.as_deref(), Some("eth1"));
        assert!(agent.flannel.use_external_ip);
        assert_eq!(agent.node_external_ip, Some("203.0.113.4".parse().unwrap()));
        let none = config(&node_args(&["orch", "agent", "--flannel-backend=none"], yaml)).unwrap();
        assert_eq!(none.flannel.backend, FlannelBackend::None, "the command line wins over the file");
    }

    #[test]
    fn the_service_proxy_runs_unless_disabled() {
        assert!(config(&node_args(&["orch", "server"], "")).unwrap().service_proxy);
        assert!(!config(&node_args(&["orch", "agent", "--disable-kube-proxy"], "")).unwrap().service_proxy);
        assert!(!config(&node_args(&["orch", "server"], "disable-kube-proxy: true\n")).unwrap().service_proxy);
    }

    #[test]
    fn unsupported_or_incomplete_flannel_flags_are_refused() {
        let wg = config(&node_args(&["orch", "agent", "--flannel-backend=wireguard-native"], "")).unwrap_err();
        assert!(wg.contains("not supported yet"), "{wg}");
        let ext = config(&node_args(&["orch", "server", "--flannel-external-ip"], "")).unwrap_err();
        assert!(ext.contains("--node-external-ip"), "{ext}");
    }

    #[test]
    fn disable_coredns_turns_off_the_node_dns_on_both_commands_and_in_the_config_file() {
        assert!(config(&node_args(&["orch", "agent"], "")).unwrap().dns_server, "on by default");
        let flags = config(&node_args(&["orch", "server", "--disable=traefik,coredns"], "")).unwrap();
        assert!(!flags.dns_server);
        let file = config(&node_args(&["orch", "agent"], "disable:\n  - servicelb\n  - coredns\n")).unwrap();
        assert!(!file.dns_server);
        let other = config(&node_args(&["orch", "agent", "--disable", "metrics-server"], "")).unwrap();
        assert!(other.dns_server, "other components leave the DNS on");
    }
}
