//! The per-pod `hosts`, `resolv.conf` and `hostname` files, generated into a directory the
//! kubelet bind-mounts over the containers' `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

use super::hosts::{hostname_file, hosts_file, pod_hostname};
use super::resolv::{pod_resolv_conf, DnsSettings};

/// What the node contributes to every pod's files.
#[derive(Clone, Debug)]
pub struct NodeEtc {
    pub dns: DnsSettings,
    pub node_hostname: String,
    /// The node's `/etc/hosts` (used for host-network pods).
    pub node_hosts: String,
}

/// The three files of one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcFiles {
    pub hosts: String,
    pub resolv_conf: String,
    pub hostname: String,
}

impl EtcFiles {
    /// The files for `pod` with addresses `ips` (empty for host-network pods).
    pub fn for_pod(pod: &Pod, ips: &[IpAddr], node: &NodeEtc) -> Self {
        let name = pod_hostname(pod, &node.dns.cluster_domain, &node.node_hostname);
        EtcFiles {
            hosts: hosts_file(pod, &name, ips, &node.node_hosts),
            resolv_conf: pod_resolv_conf(pod, &node.dns).render(),
            hostname: hostname_file(pod, &name),
        }
    }

    /// Writes `hosts`, `resolv.conf` and `hostname` into `dir` (created if needed), each
    /// replaced atomically so a container never reads half a file.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        fs::create_dir_all(dir)?;
        for (name, content) in [("hosts", &self.hosts), ("resolv.conf", &self.resolv_conf), ("hostname", &self.hostname)] {
            let target = dir.join(name);
            let tmp: PathBuf = dir.join(format!(".{name}.tmp"));
            let mut f = fs::File::create(&tmp)?;
            f.write_all(content.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &target)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::resolv::ResolvConf;
    use serde_json::json;

    #[test]
    fn writes_the_three_files() {
        let node = NodeEtc {
            dns: DnsSettings {
                cluster_dns: vec!["10.43.0.10".parse().unwrap()],
                cluster_domain: "cluster.local".into(),
                host: ResolvConf::parse("nameserver 192.0.2.53\n"),
            },
            node_hostname: "node1".into(),
            node_hosts: "127.0.0.1 localhost\n".into(),
        };
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {}})).unwrap();
        let files = EtcFiles::for_pod(&pod, &["10.42.0.9".parse().unwrap()], &node);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pods/uid-1/etc");
        files.write_to(&dir).unwrap();
        files.write_to(&dir).unwrap();
        assert_eq!(fs::read_to_string(dir.join("hostname")).unwrap(), "web\n");
        assert!(fs::read_to_string(dir.join("hosts")).unwrap().ends_with("10.42.0.9\tweb\n"));
        assert_eq!(
            fs::read_to_string(dir.join("resolv.conf")).unwrap(),
            "nameserver 10.43.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
        let mut names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, vec!["hostname", "hosts", "resolv.conf"]);
    }
}
