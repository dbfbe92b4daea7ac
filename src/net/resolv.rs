//! A pod's `/etc/resolv.conf` as the kubelet writes it, from its `dnsPolicy` and `dnsConfig`:
//! `ClusterFirst` (cluster DNS, `search <ns>.svc.<domain> svc.<domain> <domain>` + the host's
//! searches, `options ndots:5`), `ClusterFirstWithHostNet`, `Default` (the host's resolv.conf)
//! and `None` (only `dnsConfig`). A `ClusterFirst` pod on the host network, or any pod when no
//! cluster DNS is configured, gets `Default`.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;

/// At most this many nameservers are honoured by the resolver (glibc's MAXNS).
const MAX_NAMESERVERS: usize = 3;
/// kube-apiserver's limit on search domains.
const MAX_SEARCHES: usize = 32;
/// Used for `Default` when the host only lists loopback resolvers a pod cannot reach (k3s does the same).
const FALLBACK_NAMESERVER: &str = "8.8.8.8";

/// The parts of a resolv.conf the kubelet cares about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    /// `name` or `name:value`, in order.
    pub options: Vec<String>,
}

/// The node's DNS settings (kubelet's `--cluster-dns`, `--cluster-domain`, `--resolv-conf`).
#[derive(Clone, Debug)]
pub struct DnsSettings {
    /// Empty when the cluster has no DNS service.
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    /// The host's resolv.conf, parsed.
    pub host: ResolvConf,
}

impl ResolvConf {
    /// Parses resolv.conf text (comments, `domain` counted as a search, last `search` wins as in glibc).
    pub fn parse(text: &str) -> Self {
        let mut out = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => out.nameservers.extend(words.next().map(str::to_string)),
                Some("search") | Some("domain") => out.searches = words.map(str::to_string).collect(),
                Some("options") => out.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        out
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for ns in &self.nameservers {
            s.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.searches.is_empty() {
            s.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        if !self.options.is_empty() {
            s.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        s
    }

    /// The host's configuration as a pod may use it: loopback resolvers (systemd-resolved's
    /// 127.0.0.53) are unreachable from a pod namespace and are dropped.
    fn for_pods(&self) -> Self {
        let mut out = self.clone();
        out.nameservers.retain(|ns| !ns.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()));
        if out.nameservers.is_empty() {
            out.nameservers.push(FALLBACK_NAMESERVER.to_string());
        }
        out
    }
}

/// The resolv.conf content for `pod`.
pub fn pod_resolv_conf(pod: &Pod, dns: &DnsSettings) -> ResolvConf {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("ClusterFirst");
    let cluster = match policy {
        "None" => None,
        "Default" => Some(false),
        "ClusterFirstWithHostNet" => Some(!dns.cluster_dns.is_empty()),
        _ => Some(!host_network && !dns.cluster_dns.is_empty()),
    };
    let mut conf = match cluster {
        None => ResolvConf::default(),
        Some(false) => dns.host.for_pods(),
        Some(true) => {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let d = &dns.cluster_domain;
            let mut searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
            searches.extend(dns.host.searches.iter().cloned());
            ResolvConf {
                nameservers: dns.cluster_dns.iter().map(IpAddr::to_string).collect(),
                searches,
                options: vec!["ndots:5".to_string()],
            }
        }
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        conf.nameservers.extend(extra.nameservers.iter().flatten().cloned());
        conf.searches.extend(extra.searches.iter().flatten().cloned());
        for opt in extra.options.iter().flatten() {
            let Some(name) = opt.name.as_deref().filter(|n| !n.is_empty()) else { continue };
            let rendered = match &opt.value {
                Some(v) => format!("{name}:{v}"),
                None => name.to_string(),
            };
            conf.options.retain(|o| o.split(':').next() != Some(name));
            conf.options.push(rendered);
        }
    }
    dedup(&mut conf.nameservers);
    conf.nameservers.truncate(MAX_NAMESERVERS);
    dedup(&mut conf.searches);
    conf.searches.truncate(MAX_SEARCHES);
    conf
}

fn dedup(v: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|s| seen.insert(s.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> DnsSettings {
        DnsSettings {
            cluster_dns: vec!["10.43.0.10".parse().unwrap()],
            cluster_domain: "cluster.local".into(),
            host: ResolvConf::parse("# generated\nnameserver 192.0.2.53\nnameserver 127.0.0.53\nsearch lan example.org\noptions edns0\n"),
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": spec})).unwrap()
    }

    #[test]
    fn parses_host_resolv_conf() {
        let host = settings().host;
        assert_eq!(host.nameservers, vec!["192.0.2.53", "127.0.0.53"]);
        assert_eq!(host.searches, vec!["lan", "example.org"]);
        assert_eq!(host.options, vec!["edns0"]);
    }

    #[test]
    fn cluster_first() {
        let conf = pod_resolv_conf(&pod(json!({"containers": []})), &settings());
        assert_eq!(
            conf.render(),
            "nameserver 10.43.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local lan example.org\noptions ndots:5\n"
        );
    }

    #[test]
    fn host_network_and_default_use_the_hosts_reachable_resolvers() {
        let expected = "nameserver 192.0.2.53\nsearch lan example.org\noptions edns0\n";
        let hostnet = pod(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirst"}));
        assert_eq!(pod_resolv_conf(&hostnet, &settings()).render(), expected);
        assert_eq!(pod_resolv_conf(&pod(json!({"dnsPolicy": "Default"})), &settings()).render(), expected);
        let with_hostnet = pod(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}));
        assert!(pod_resolv_conf(&with_hostnet, &settings()).render().starts_with("nameserver 10.43.0.10\nsearch shop.svc"));
        let mut no_dns = settings();
        no_dns.cluster_dns.clear();
        assert_eq!(pod_resolv_conf(&pod(json!({})), &no_dns).render(), expected);
        let mut only_loopback = settings();
        only_loopback.host = ResolvConf::parse("nameserver 127.0.0.53\n");
        assert_eq!(pod_resolv_conf(&pod(json!({"dnsPolicy": "Default"})), &only_loopback).nameservers, vec!["8.8.8.8"]);
    }

    #[test]
    fn none_and_dns_config() {
        let none = pod(json!({"dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["192.0.2.1", "192.0.2.1"], "searches": ["a.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "rotate"}]}}));
        assert_eq!(pod_resolv_conf(&none, &settings()).render(), "nameserver 192.0.2.1\nsearch a.example\noptions ndots:2 rotate\n");
        let merged = pod(json!({"dnsConfig": {"nameservers": ["192.0.2.9"], "options": [{"name": "ndots", "value": "1"}]}}));
        let conf = pod_resolv_conf(&merged, &settings());
        assert_eq!(conf.nameservers, vec!["10.43.0.10", "192.0.2.9"]);
        assert_eq!(conf.options, vec!["ndots:1"]);
    }
}
