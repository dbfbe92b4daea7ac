//! The cluster's DNS records as CoreDNS's `kubernetes` and `hosts` plugins see them: an index
//! built from Services, EndpointSlices and Nodes, looked up by lowercase names.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What a Service name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// A ClusterIP (or NodePort / LoadBalancer) Service: its cluster IPs.
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: the addresses of its endpoints.
    Headless,
    /// `type: ExternalName`: a CNAME to this name (lowercase, no trailing dot).
    ExternalName(String),
}

/// A named port of a Service or of its endpoints, for SRV records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub name: String,
    /// Lowercase: `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub port: u16,
}

/// An endpoint a headless Service's names resolve to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    /// Its label under the Service: the endpoint's `hostname`, else its dashed address.
    pub label: String,
}

/// One Service's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecords {
    pub kind: ServiceKind,
    /// The Service's ports (ClusterIP) or its endpoints' ports (headless).
    pub ports: Vec<Port>,
    /// Endpoints answered for a headless Service (ready ones; all with
    /// `publishNotReadyAddresses`); also named by `<label>.<svc>.<ns>.svc.<domain>`.
    pub endpoints: Vec<Endpoint>,
}

/// The whole index; rebuilt from the watched objects whenever one changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    /// By (namespace, name).
    pub services: HashMap<(String, String), ServiceRecords>,
    /// Namespaces that hold at least one Service (their `<ns>.svc.<domain>` exists).
    pub namespaces: HashSet<String>,
    /// Reverse names: address → the fully qualified names (no trailing dot) it belongs to.
    pub reverse: HashMap<IpAddr, Vec<String>>,
    /// Node names (lowercase) → their InternalIPs (k3s's NodeHosts).
    pub nodes: HashMap<String, Vec<IpAddr>>,
}

/// The dashed form of an address, as used in pod and endpoint names (`10-42-0-5`).
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

impl Records {
    /// Builds the index of `domain` (e.g. `cluster.local`) from the cluster's objects.
    pub fn build<'a>(
        domain: &str,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        nodes: impl IntoIterator<Item = &'a Node>,
    ) -> Self {
        let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
        for slice in slices {
            let service = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let (Some(ns), Some(service)) = (slice.metadata.namespace.clone(), service) {
                by_service.entry((ns, service.clone())).or_default().push(slice);
            }
        }
        let mut records = Records::default();
        for service in services {
            let (Some(ns), Some(name)) = (service.metadata.namespace.clone(), service.metadata.name.clone()) else { continue };
            let key = (ns.to_ascii_lowercase(), name.to_ascii_lowercase());
            let slices = by_service.get(&(ns, name)).map(Vec::as_slice).unwrap_or_default();
            let svc = service_records(service, slices);
            let fqdn = format!("{}.{}.svc.{domain}", key.1, key.0);
            if let ServiceKind::ClusterIp(ips) = &svc.kind {
                for ip in ips {
                    records.reverse.entry(*ip).or_default().push(fqdn.clone());
                }
            }
            for ep in &svc.endpoints {
                records.reverse.entry(ep.ip).or_default().push(format!("{}.{fqdn}", ep.label));
            }
            records.namespaces.insert(key.0.clone());
            records.services.insert(key, svc);
        }
        for node in nodes {
            let Some(name) = node.metadata.name.as_deref() else { continue };
            let ips: Vec<IpAddr> = node
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .into_iter()
                .flatten()
                .filter(|a| a.type_ == "InternalIP")
                .filter_map(|a| a.address.parse().ok())
                .collect();
            if !ips.is_empty() {
                records.nodes.insert(name.to_ascii_lowercase(), ips);
            }
        }
        records
    }
}

fn service_records(service: &Service, slices: &[&EndpointSlice]) -> ServiceRecords {
    let spec = service.spec.clone().unwrap_or_default();
    if spec.type_.as_deref() == Some("ExternalName") {
        let target = spec.external_name.unwrap_or_default().trim_end_matches('.').to_ascii_lowercase();
        return ServiceRecords { kind: ServiceKind::ExternalName(target), ports: vec![], endpoints: vec![] };
    }
    let cluster_ips: Vec<String> = match spec.cluster_ips.filter(|ips| !ips.is_empty()) {
        Some(ips) => ips,
        None => spec.cluster_ip.into_iter().collect(),
    };
    let headless = cluster_ips.iter().any(|ip| ip == "None");
    if !headless {
        let ports = spec.ports.unwrap_or_default().iter().filter_map(|p| port(p.name.as_deref(), p.protocol.as_deref(), p.port)).collect();
        let ips = cluster_ips.iter().filter_map(|ip| ip.parse().ok()).collect();
        return ServiceRecords { kind: ServiceKind::ClusterIp(ips), ports, endpoints: vec![] };
    }
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let mut ports = Vec::new();
    let mut endpoints = Vec::new();
    for slice in slices {
        for p in slice.ports.iter().flatten() {
            if let Some(p) = p.port.and_then(|n| port(p.name.as_deref(), p.protocol.as_deref(), n)) {
                if !ports.contains(&p) {
                    ports.push(p);
                }
            }
        }
        for ep in &slice.endpoints {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready && !publish_not_ready {
                continue;
            }
            for ip in ep.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                let label = ep.hostname.as_deref().map(str::to_ascii_lowercase).unwrap_or_else(|| dashed(ip));
                endpoints.push(Endpoint { ip, label });
            }
        }
    }
    ServiceRecords { kind: ServiceKind::Headless, ports, endpoints }
}

/// A named port (unnamed ports have no SRV record).
fn port(name: Option<&str>, protocol: Option<&str>, number: i32) -> Option<Port> {
    let name = name.filter(|n| !n.is_empty())?.to_ascii_lowercase();
    let protocol = protocol.unwrap_or("TCP").to_ascii_lowercase();
    Some(Port { name, protocol, port: u16::try_from(number).ok()? })
}
