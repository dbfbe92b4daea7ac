//! The answerer: one question in, one answer out, as CoreDNS answers with the `hosts`
//! (NodeHosts) and `kubernetes` plugins in k3s's Corefile. Pure: no sockets, no clock, so the
//! whole naming scheme is tested as a table. Names outside the cluster go to the forwarder.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::records::{Endpoint, Port, Records, ServiceKind, ServiceRecords};

/// TTL of the cluster's records (CoreDNS's `kubernetes` default).
pub const TTL: u32 = 5;
/// TTL of node names (k3s's `hosts /etc/coredns/NodeHosts { ttl 60 }`).
const NODE_TTL: u32 = 60;
/// The UDP payload size offered to EDNS clients.
const EDNS_PAYLOAD: u16 = 1232;

/// What to do with a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send this reply.
    Reply(Message),
    /// Not ours: ask the upstream resolvers.
    Forward,
}

/// What a name lookup inside the cluster found.
enum Found {
    /// Answer records (owner: the question's name) and additional records.
    Records(Vec<RData>, Vec<Record>),
    NoData,
    NxDomain,
}

/// Answers `request`, which carries exactly one question, for cluster domain `domain`
/// (lowercase, no trailing dot).
pub fn answer(records: &Records, domain: &str, request: &Message) -> Outcome {
    let Some(question) = request.queries.first() else { return Outcome::Reply(reply(request, ResponseCode::FormErr)) };
    let text = question.name().to_lowercase().to_ascii();
    let name = text.trim_end_matches('.');
    let qtype = question.query_type();
    if let Some(ips) = records.nodes.get(name) {
        let found = addresses(ips.iter().copied(), qtype);
        return Outcome::Reply(build(request, domain, found, NODE_TTL, false));
    }
    if qtype == RecordType::PTR {
        if let Some(found) = reverse(records, name) {
            return Outcome::Reply(build(request, domain, found, TTL, true));
        }
    }
    let labels: Vec<&str> = if name == domain {
        vec![]
    } else if let Some(inner) = name.strip_suffix(domain).and_then(|n| n.strip_suffix('.')) {
        inner.split('.').collect()
    } else {
        return Outcome::Forward;
    };
    let found = cluster(records, domain, &labels, qtype);
    Outcome::Reply(build(request, domain, found, TTL, true))
}

/// A reply to `request` with its question and `code`, and nothing else.
fn reply(request: &Message, code: ResponseCode) -> Message {
    let mut m = Message::response(request.metadata.id, request.metadata.op_code);
    m.metadata.recursion_desired = request.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.response_code = code;
    m.queries = request.queries.clone();
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        m.edns = Some(edns);
    }
    m
}

fn build(request: &Message, domain: &str, found: Found, ttl: u32, with_soa: bool) -> Message {
    let owner = request.queries[0].name().clone();
    let code = if matches!(found, Found::NxDomain) { ResponseCode::NXDomain } else { ResponseCode::NoError };
    let mut m = reply(request, code);
    m.metadata.authoritative = true;
    match found {
        Found::Records(answers, additionals) => {
            m.answers = answers.into_iter().map(|data| Record::from_rdata(owner.clone(), ttl, data)).collect();
            m.additionals = additionals;
        }
        Found::NoData | Found::NxDomain if with_soa => m.authorities.push(soa(domain)),
        Found::NoData | Found::NxDomain => {}
    }
    m
}

/// A fully qualified name from lowercase text without the trailing dot.
fn fqdn(text: &str) -> Name {
    Name::from_ascii(format!("{text}.")).unwrap_or_else(|_| Name::root())
}

/// The zone's SOA record, as CoreDNS writes it.
fn soa(domain: &str) -> Record {
    let data = SOA::new(fqdn(&format!("ns.dns.{domain}")), fqdn(&format!("hostmaster.{domain}")), 1, 7200, 1800, 86400, TTL);
    Record::from_rdata(fqdn(domain), TTL, RData::SOA(data))
}

/// The address records of `ips` that `qtype` asks for.
fn addresses(ips: impl Iterator<Item = IpAddr>, qtype: RecordType) -> Found {
    let data: Vec<RData> = ips
        .filter_map(|ip| match (ip, qtype) {
            (IpAddr::V4(v4), RecordType::A) => Some(RData::A(A(v4))),
            (IpAddr::V6(v6), RecordType::AAAA) => Some(RData::AAAA(AAAA(v6))),
            _ => None,
        })
        .collect();
    if data.is_empty() {
        Found::NoData
    } else {
        Found::Records(data, vec![])
    }
}

/// A PTR answer for a reverse name of a known address; `None` for anything else (forwarded,
/// as k3s's `fallthrough in-addr.arpa ip6.arpa`).
fn reverse(records: &Records, name: &str) -> Option<Found> {
    let ip = fqdn(name).parse_arpa_name().ok().filter(|net| net.prefix_len() == net.max_prefix_len())?.addr();
    let mut targets: Vec<String> = records.reverse.get(&ip).cloned().unwrap_or_default();
    targets.extend(records.nodes.iter().filter(|(_, ips)| ips.contains(&ip)).map(|(node, _)| node.clone()));
    if targets.is_empty() {
        return None;
    }
    Some(Found::Records(targets.iter().map(|t| RData::PTR(PTR(fqdn(t)))).collect(), vec![]))
}

/// A name under the cluster domain, given by its labels before the domain.
fn cluster(records: &Records, domain: &str, labels: &[&str], qtype: RecordType) -> Found {
    match labels {
        [] => match qtype {
            RecordType::SOA => Found::Records(vec![soa(domain).data], vec![]),
            RecordType::NS => Found::Records(vec![RData::NS(NS(fqdn(&format!("ns.dns.{domain}"))))], vec![]),
            _ => Found::NoData,
        },
        ["svc"] | ["pod"] => Found::NoData,
        [ns, "svc"] if records.namespaces.contains(*ns) => Found::NoData,
        [name, ns, "svc"] => match records.services.get(&(ns.to_string(), name.to_string())) {
            Some(svc) => service(svc, &format!("{name}.{ns}.svc.{domain}"), qtype),
            None => Found::NxDomain,
        },
        [label, name, ns, "svc"] => {
            let svc = records.services.get(&(ns.to_string(), name.to_string()));
            let ips = svc.iter().flat_map(|s| &s.endpoints).filter(|e| e.label == *label).map(|e| e.ip).collect::<Vec<_>>();
            if ips.is_empty() {
                Found::NxDomain
            } else {
                addresses(ips.into_iter(), qtype)
            }
        }
        [port, proto, name, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
            let Some(svc) = records.services.get(&(ns.to_string(), name.to_string())) else { return Found::NxDomain };
            let (port, proto) = (&port[1..], &proto[1..]);
            let ports: Vec<_> = svc.ports.iter().filter(|p| p.name == port && p.protocol == proto).collect();
            if ports.is_empty() {
                return Found::NxDomain;
            }
            match qtype {
                RecordType::SRV => srv(svc, &ports, &format!("{name}.{ns}.svc.{domain}")),
                _ => Found::NoData,
            }
        }
        [ip, _ns, "pod"] => match ip.replace('-', ".").parse::<std::net::Ipv4Addr>() {
            Ok(v4) => addresses(std::iter::once(IpAddr::V4(v4)), qtype),
            Err(_) => Found::NxDomain,
        },
        _ => Found::NxDomain,
    }
}

/// A Service name `fqdn` asked for `qtype`.
fn service(svc: &ServiceRecords, fqdn_text: &str, qtype: RecordType) -> Found {
    match &svc.kind {
        ServiceKind::ExternalName(target) => Found::Records(vec![RData::CNAME(CNAME(fqdn(target)))], vec![]),
        _ if qtype == RecordType::SRV => srv(svc, &svc.ports.iter().collect::<Vec<_>>(), fqdn_text),
        ServiceKind::ClusterIp(ips) => addresses(ips.iter().copied(), qtype),
        ServiceKind::Headless if svc.endpoints.is_empty() => Found::NxDomain,
        ServiceKind::Headless => addresses(svc.endpoints.iter().map(|e| e.ip), qtype),
    }
}

/// SRV records for `ports` of a Service: one per port pointing at the Service's name, or for a
/// headless Service one per port and endpoint pointing at the endpoint's name; the targets'
/// addresses go in the additional section.
fn srv(svc: &ServiceRecords, ports: &[&Port], fqdn_text: &str) -> Found {
    let targets: Vec<(String, Vec<IpAddr>)> = match &svc.kind {
        ServiceKind::ClusterIp(ips) => vec![(fqdn_text.to_string(), ips.clone())],
        ServiceKind::Headless => svc.endpoints.iter().map(|Endpoint { ip, label }| (format!("{label}.{fqdn_text}"), vec![*ip])).collect(),
        ServiceKind::ExternalName(_) => vec![],
    };
    let count = (ports.len() * targets.len()) as u16;
    if count == 0 {
        return Found::NoData;
    }
    let weight = 100 / count.max(1);
    let mut answers = Vec::new();
    for port in ports {
        for (target, _) in &targets {
            answers.push(RData::SRV(SRV::new(0, weight, port.port, fqdn(target))));
        }
    }
    let additionals = targets
        .iter()
        .flat_map(|(target, ips)| {
            ips.iter().map(move |ip| {
                let data = match ip {
                    IpAddr::V4(v4) => RData::A(A(*v4)),
                    IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
                };
                Record::from_rdata(fqdn(target), TTL, data)
            })
        })
        .collect();
    Found::Records(answers, additionals)
}
