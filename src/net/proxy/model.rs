//! The proxy's desired state, computed from Services and EndpointSlices the way kube-proxy does:
//! one [`ServicePort`] per port of each Service with a ClusterIP, external IPs, load-balancer
//! IPs or a NodePort, with the endpoints it may send to (ready ones; when none is ready, the
//! serving and terminating ones), all of them and those on this node.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnetwork::Ipv4Network;
use k8s_openapi::api::core::v1::{Service, ServicePort as SpecPort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `sessionAffinityConfig.clientIP.timeoutSeconds` when unset (3 hours, as Kubernetes).
const DEFAULT_AFFINITY_SECONDS: u64 = 10800;

/// What the proxy of one node needs to know about the node and the cluster.
#[derive(Clone, Debug, Default)]
pub struct ProxyConfig {
    /// This node's name (EndpointSlice endpoints' `nodeName`).
    pub node_name: String,
    /// Traffic to a ClusterIP from outside it is masqueraded; without it, all such traffic is.
    pub cluster_cidr: Option<Ipv4Network>,
    /// ClusterIPs something on the node serves itself (a node-local DNS): such Services are skipped.
    pub served_locally: Vec<Ipv4Addr>,
}

/// A transport protocol of a Service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    fn parse(s: Option<&str>) -> Option<Self> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Sctp => 132,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

/// One address and port traffic of a Service port is sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// One port of a Service as the proxy programs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// `namespace/name/protocol/port-name` (unique, used in chain names).
    pub id: String,
    pub proto: Proto,
    pub port: u16,
    pub cluster_ip: Option<Ipv4Addr>,
    /// `spec.externalIPs` and `status.loadBalancer.ingress[].ip`.
    pub external_ips: Vec<Ipv4Addr>,
    pub node_port: Option<u16>,
    /// Usable endpoints anywhere in the cluster.
    pub cluster: Vec<Endpoint>,
    /// Usable endpoints on this node.
    pub local: Vec<Endpoint>,
    /// `internalTrafficPolicy: Local`: ClusterIP traffic goes to local endpoints only.
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local`: NodePort and external traffic goes to local endpoints
    /// only and keeps its source address.
    pub external_local: bool,
    /// `sessionAffinity: ClientIP`: how long a client stays with the endpoint it was sent to.
    pub affinity: Option<Duration>,
}

impl ServicePort {
    /// The endpoints ClusterIP traffic may go to.
    pub fn internal(&self) -> &[Endpoint] {
        if self.internal_local {
            &self.local
        } else {
            &self.cluster
        }
    }

    /// Whether traffic can reach this port other than by its ClusterIP.
    pub fn has_external(&self) -> bool {
        !self.external_ips.is_empty() || self.node_port.is_some()
    }
}

/// An endpoint of an EndpointSlice with its conditions, for one Service port.
struct Candidate {
    endpoint: Endpoint,
    local: bool,
    ready: bool,
    serving_terminating: bool,
}

/// The Service ports of `services` with their endpoints from `slices`, sorted by id.
pub fn desired(config: &ProxyConfig, services: &[Service], slices: &[EndpointSlice]) -> Vec<ServicePort> {
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices.iter().filter(|s| s.address_type == "IPv4") {
        let name = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL));
        if let (Some(ns), Some(name)) = (&slice.metadata.namespace, name) {
            by_service.entry((ns.clone(), name.clone())).or_default().push(slice);
        }
    }
    let mut out = Vec::new();
    for svc in services {
        let (Some(ns), Some(name), Some(spec)) = (&svc.metadata.namespace, &svc.metadata.name, &svc.spec) else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let cluster_ip = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        if cluster_ip.is_some_and(|ip| config.served_locally.contains(&ip)) {
            continue;
        }
        let mut external_ips: Vec<Ipv4Addr> = spec.external_ips.iter().flatten().filter_map(|ip| ip.parse().ok()).collect();
        let ingress = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
        external_ips.extend(ingress.into_iter().flatten().filter_map(|i| i.ip.as_deref()?.parse::<Ipv4Addr>().ok()));
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            let config = spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref()).and_then(|c| c.timeout_seconds);
            Duration::from_secs(config.and_then(|s| u64::try_from(s).ok()).filter(|s| *s > 0).unwrap_or(DEFAULT_AFFINITY_SECONDS))
        });
        let with_node_port = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        let slices = by_service.get(&(ns.clone(), name.clone())).map_or(&[][..], |v| &v[..]);
        for sp in spec.ports.iter().flatten() {
            let Some(proto) = Proto::parse(sp.protocol.as_deref()) else { continue };
            let node_port = sp.node_port.filter(|_| with_node_port).and_then(|p| u16::try_from(p).ok());
            if cluster_ip.is_none() && external_ips.is_empty() && node_port.is_none() {
                continue;
            }
            let candidates = candidates(config, slices, sp, proto);
            out.push(ServicePort {
                id: format!("{ns}/{name}/{}/{}", proto.name(), sp.name.as_deref().unwrap_or("")),
                proto,
                port: u16::try_from(sp.port).unwrap_or(0),
                cluster_ip,
                external_ips: external_ips.clone(),
                node_port,
                cluster: usable(candidates.iter()),
                local: usable(candidates.iter().filter(|c| c.local)),
                internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
                external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
                affinity,
            });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// The endpoints of `slices` for Service port `sp` (matched by port name and protocol: the
/// EndpointSlice port carries the resolved targetPort).
fn candidates(config: &ProxyConfig, slices: &[&EndpointSlice], sp: &SpecPort, proto: Proto) -> Vec<Candidate> {
    let mut out = Vec::new();
    for slice in slices {
        let port = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == sp.name.as_deref().unwrap_or("") && Proto::parse(p.protocol.as_deref()) == Some(proto)
        });
        let Some(port) = port.and_then(|p| p.port).and_then(|p| u16::try_from(p).ok()) else { continue };
        for ep in &slice.endpoints {
            let cond = ep.conditions.clone().unwrap_or_default();
            let ready = cond.ready != Some(false);
            let serving = cond.serving.unwrap_or(ready);
            let local = ep.node_name.as_deref() == Some(config.node_name.as_str());
            for ip in ep.addresses.iter().filter_map(|a| a.parse::<Ipv4Addr>().ok()) {
                let serving_terminating = serving && cond.terminating == Some(true);
                out.push(Candidate { endpoint: Endpoint { ip, port }, local, ready, serving_terminating });
            }
        }
    }
    out
}

/// The ready endpoints, or when there are none the serving terminating ones; sorted, unique.
fn usable<'a>(candidates: impl Iterator<Item = &'a Candidate> + Clone) -> Vec<Endpoint> {
    let mut ready: Vec<Endpoint> = candidates.clone().filter(|c| c.ready).map(|c| c.endpoint).collect();
    if ready.is_empty() {
        ready = candidates.filter(|c| c.serving_terminating).map(|c| c.endpoint).collect();
    }
    ready.sort();
    ready.dedup();
    ready
}
