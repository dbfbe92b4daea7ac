//! A pod's hostname and `/etc/hosts` as the kubelet generates them: the hostname is
//! `spec.hostname` or the pod name (at most 63 characters), with the domain
//! `<subdomain>.<namespace>.svc.<cluster-domain>` when `spec.subdomain` is set; the hosts file has
//! the usual localhost lines, the pod's own address(es) and `spec.hostAliases`. Host-network pods
//! get the node's hostname and the node's hosts file.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;

const MAX_HOSTNAME: usize = 63;

const MANAGED_HEADER: &str = "# Kubernetes-managed hosts file.\n\
127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
fe00::0\tip6-mcastprefix\n\
fe00::1\tip6-allnodes\n\
fe00::2\tip6-allrouters\n";

/// The short hostname of a pod and its DNS domain, if it has a subdomain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodHostname {
    pub hostname: String,
    pub domain: Option<String>,
}

impl PodHostname {
    /// `hostname.domain`, or the short name when there is no domain.
    pub fn fqdn(&self) -> String {
        match &self.domain {
            Some(d) => format!("{}.{d}", self.hostname),
            None => self.hostname.clone(),
        }
    }
}

/// The hostname and domain the pod's containers see (`node_hostname` for host-network pods).
pub fn pod_hostname(pod: &Pod, cluster_domain: &str, node_hostname: &str) -> PodHostname {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        return PodHostname { hostname: node_hostname.to_string(), domain: None };
    }
    let name = spec.and_then(|s| s.hostname.as_deref()).filter(|h| !h.is_empty());
    let name = name.or(pod.metadata.name.as_deref()).unwrap_or_default();
    let mut hostname: String = name.chars().take(MAX_HOSTNAME).collect();
    while hostname.ends_with(['-', '.']) {
        hostname.pop();
    }
    let domain = spec.and_then(|s| s.subdomain.as_deref()).filter(|d| !d.is_empty()).map(|sub| {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        format!("{sub}.{ns}.svc.{cluster_domain}")
    });
    PodHostname { hostname, domain }
}

/// The `/etc/hostname` content: the FQDN with `setHostnameAsFQDN`, else the short name.
pub fn hostname_file(pod: &Pod, name: &PodHostname) -> String {
    let fqdn = pod.spec.as_ref().and_then(|s| s.set_hostname_as_fqdn).unwrap_or(false);
    format!("{}\n", if fqdn { name.fqdn() } else { name.hostname.clone() })
}

/// The `/etc/hosts` content for a pod with its own network namespace and addresses `ips`, or,
/// for a host-network pod, the node's hosts file `node_hosts` plus the pod's host aliases.
pub fn hosts_file(pod: &Pod, name: &PodHostname, ips: &[IpAddr], node_hosts: &str) -> String {
    let spec = pod.spec.as_ref();
    let mut s = if spec.and_then(|s| s.host_network).unwrap_or(false) {
        let mut s = format!("# Kubernetes-managed hosts file (host network).\n{node_hosts}");
        if !s.ends_with('\n') {
            s.push('\n');
        }
        s
    } else {
        let mut s = MANAGED_HEADER.to_string();
        let names = match &name.domain {
            Some(_) => format!("{}\t{}", name.fqdn(), name.hostname),
            None => name.hostname.clone(),
        };
        for ip in ips {
            s.push_str(&format!("{ip}\t{names}\n"));
        }
        s
    };
    let aliases: Vec<_> = spec.and_then(|s| s.host_aliases.as_ref()).into_iter().flatten().collect();
    if !aliases.is_empty() {
        s.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            let names = alias.hostnames.iter().flatten().cloned().collect::<Vec<_>>().join("\t");
            s.push_str(&format!("{}\t{names}\n", alias.ip));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "shop"}, "spec": spec})).unwrap()
    }

    #[test]
    fn plain_pod() {
        let p = pod("web-7d9f", json!({}));
        let name = pod_hostname(&p, "cluster.local", "node1");
        assert_eq!(name, PodHostname { hostname: "web-7d9f".into(), domain: None });
        let hosts = hosts_file(&p, &name, &["10.42.3.5".parse().unwrap()], "");
        assert!(hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(hosts.ends_with("fe00::2\tip6-allrouters\n10.42.3.5\tweb-7d9f\n"), "{hosts}");
        assert_eq!(hostname_file(&p, &name), "web-7d9f\n");
    }

    #[test]
    fn hostname_subdomain_aliases_and_fqdn() {
        let p = pod(
            "db-0",
            json!({"hostname": "db-0", "subdomain": "db", "setHostnameAsFQDN": true,
                   "hostAliases": [{"ip": "192.0.2.7", "hostnames": ["foo.local", "bar"]}]}),
        );
        let name = pod_hostname(&p, "cluster.local", "node1");
        assert_eq!(name.fqdn(), "db-0.db.shop.svc.cluster.local");
        let hosts = hosts_file(&p, &name, &["10.42.3.6".parse().unwrap()], "");
        assert!(hosts.contains("\n10.42.3.6\tdb-0.db.shop.svc.cluster.local\tdb-0\n"), "{hosts}");
        assert!(hosts.ends_with("\n# Entries added by HostAliases.\n192.0.2.7\tfoo.local\tbar\n"), "{hosts}");
        assert_eq!(hostname_file(&p, &name), "db-0.db.shop.svc.cluster.local\n");
    }

    #[test]
    fn long_names_are_cut_at_63_without_a_trailing_dash() {
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        let name = pod_hostname(&pod(&long, json!({})), "cluster.local", "n");
        assert_eq!(name.hostname, "a".repeat(62));
    }

    #[test]
    fn host_network_pods_use_the_node() {
        let p = pod("agent", json!({"hostNetwork": true}));
        let name = pod_hostname(&p, "cluster.local", "node1");
        assert_eq!(name.hostname, "node1");
        let hosts = hosts_file(&p, &name, &[], "127.0.0.1 localhost\n192.0.2.1 node1");
        assert_eq!(hosts, "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n192.0.2.1 node1\n");
    }
}
