//! The answerer's naming scheme as a table: question → reply code and records.

use std::sync::LazyLock;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::answer::{answer, Outcome, TTL};
use super::records::Records;

const DOMAIN: &str = "cluster.local";

fn service(ns: &str, name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({ "metadata": { "name": name, "namespace": ns }, "spec": spec })).unwrap()
}

fn slice(ns: &str, service: &str, endpoints: serde_json::Value, ports: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": { "name": format!("{service}-abc"), "namespace": ns, "labels": { "kubernetes.io/service-name": service } },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }))
    .unwrap()
}

static RECORDS: LazyLock<Records> = LazyLock::new(|| {
    let services = vec![
        service(
            "default",
            "kubernetes",
            json!({ "clusterIP": "10.43.0.1", "ports": [{ "name": "https", "port": 443, "protocol": "TCP" }] }),
        ),
        service(
            "default",
            "web",
            json!({ "clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"], "ports": [
            { "name": "http", "port": 80, "protocol": "TCP" }, { "name": "dns", "port": 53, "protocol": "UDP" }, { "port": 9000 }] }),
        ),
        service("db", "pg", json!({ "clusterIP": "None", "ports": [{ "name": "pg", "port": 5432 }] })),
        service("db", "late", json!({ "clusterIP": "None", "publishNotReadyAddresses": true })),
        service("db", "empty", json!({ "clusterIP": "None" })),
        service("default", "ext", json!({ "type": "ExternalName", "externalName": "Example.COM." })),
    ];
    let slices = vec![
        slice(
            "db",
            "pg",
            json!([
                { "addresses": ["10.42.0.5"], "hostname": "pg-0", "conditions": { "ready": true } },
                { "addresses": ["10.42.1.6"], "hostname": "pg-1", "conditions": { "ready": true } },
                { "addresses": ["10.42.1.7"], "hostname": "pg-2", "conditions": { "ready": false } },
                { "addresses": ["10.42.1.8"], "conditions": { "ready": true } },
            ]),
            json!([{ "name": "pg", "port": 5432, "protocol": "TCP" }]),
        ),
        slice("db", "late", json!([{ "addresses": ["10.42.2.9"], "hostname": "late-0", "conditions": { "ready": false } }]), json!([])),
    ];
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": "Pi-1" },
        "status": { "addresses": [{ "type": "InternalIP", "address": "192.0.2.11" }, { "type": "Hostname", "address": "pi-1" }] },
    }))
    .unwrap();
    Records::build(DOMAIN, &services, &slices, [&node])
});

fn ask(name: &str, qtype: RecordType) -> Outcome {
    let mut request = Message::query();
    request.metadata.recursion_desired = true;
    request.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    answer(&RECORDS, DOMAIN, &request)
}

/// The reply's code and its answers as text (`A 10.43.0.20`, `SRV 0 50 80 web.default...`).
fn reply(name: &str, qtype: RecordType) -> (ResponseCode, Vec<String>, Message) {
    let Outcome::Reply(m) = ask(name, qtype) else { panic!("{name} {qtype} was forwarded") };
    let mut answers: Vec<String> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::SRV(s) => format!("SRV {} {} {} {}", s.priority, s.weight, s.port, s.target),
            other => format!("{} {other}", r.record_type()),
        })
        .collect();
    answers.sort();
    (m.metadata.response_code, answers, m)
}

#[test]
fn the_naming_scheme() {
    use RecordType::*;
    let ok = ResponseCode::NoError;
    let nx = ResponseCode::NXDomain;
    let table: &[(&str, RecordType, ResponseCode, &[&str])] = &[
        ("kubernetes.default.svc.cluster.local.", A, ok, &["A 10.43.0.1"]),
        ("web.default.svc.cluster.local.", A, ok, &["A 10.43.0.20"]),
        ("WEB.Default.SVC.cluster.LOCAL.", A, ok, &["A 10.43.0.20"]),
        ("web.default.svc.cluster.local.", AAAA, ok, &[]),
        ("web.default.svc.cluster.local.", TXT, ok, &[]),
        ("_http._tcp.web.default.svc.cluster.local.", SRV, ok, &["SRV 0 100 80 web.default.svc.cluster.local."]),
        ("_dns._udp.web.default.svc.cluster.local.", SRV, ok, &["SRV 0 100 53 web.default.svc.cluster.local."]),
        ("_http._udp.web.default.svc.cluster.local.", SRV, nx, &[]),
        (
            "web.default.svc.cluster.local.",
            SRV,
            ok,
            &["SRV 0 50 53 web.default.svc.cluster.local.", "SRV 0 50 80 web.default.svc.cluster.local."],
        ),
        ("pg.db.svc.cluster.local.", A, ok, &["A 10.42.0.5", "A 10.42.1.6", "A 10.42.1.8"]),
        ("pg-1.pg.db.svc.cluster.local.", A, ok, &["A 10.42.1.6"]),
        ("10-42-1-8.pg.db.svc.cluster.local.", A, ok, &["A 10.42.1.8"]),
        ("pg-2.pg.db.svc.cluster.local.", A, nx, &[]),
        (
            "_pg._tcp.pg.db.svc.cluster.local.",
            SRV,
            ok,
            &[
                "SRV 0 33 5432 10-42-1-8.pg.db.svc.cluster.local.",
                "SRV 0 33 5432 pg-0.pg.db.svc.cluster.local.",
                "SRV 0 33 5432 pg-1.pg.db.svc.cluster.local.",
            ],
        ),
        ("late.db.svc.cluster.local.", A, ok, &["A 10.42.2.9"]),
        ("empty.db.svc.cluster.local.", A, nx, &[]),
        ("ext.default.svc.cluster.local.", A, ok, &["CNAME example.com."]),
        ("10-42-0-5.default.pod.cluster.local.", A, ok, &["A 10.42.0.5"]),
        ("10-42-0-5.default.pod.cluster.local.", AAAA, ok, &[]),
        ("not-an-ip.default.pod.cluster.local.", A, nx, &[]),
        ("20.0.43.10.in-addr.arpa.", PTR, ok, &["PTR web.default.svc.cluster.local."]),
        ("6.1.42.10.in-addr.arpa.", PTR, ok, &["PTR pg-1.pg.db.svc.cluster.local."]),
        ("11.2.0.192.in-addr.arpa.", PTR, ok, &["PTR pi-1."]),
        ("pi-1.", A, ok, &["A 192.0.2.11"]),
        ("PI-1.", AAAA, ok, &[]),
        ("missing.default.svc.cluster.local.", A, nx, &[]),
        ("web.nons.svc.cluster.local.", A, nx, &[]),
        ("default.svc.cluster.local.", A, ok, &[]),
        ("nons.svc.cluster.local.", A, nx, &[]),
        ("svc.cluster.local.", A, ok, &[]),
        ("cluster.local.", A, ok, &[]),
        ("cluster.local.", SOA, ok, &["SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"]),
        ("web.default.svc.cluster.local.default.svc.cluster.local.", A, nx, &[]),
        ("kubernetes.default.svc.cluster.local.svc.cluster.local.", A, nx, &[]),
        ("a.b.c.d.e.f.cluster.local.", A, nx, &[]),
    ];
    for (name, qtype, code, answers) in table {
        let (got_code, got, m) = reply(name, *qtype);
        assert_eq!((got_code, got.iter().map(String::as_str).collect::<Vec<_>>().as_slice()), (*code, *answers), "{name} {qtype}");
        assert!(m.metadata.authoritative && m.metadata.recursion_available, "{name}: AA and RA set");
        assert_eq!(m.queries, vec![Query::query(Name::from_ascii(name).unwrap(), *qtype)], "{name}: the question as asked");
        assert!(m.answers.iter().all(|r| r.name.eq_case(&Name::from_ascii(name).unwrap())), "{name}: answers owned by the asked name");
        let in_zone = name.to_ascii_lowercase().ends_with("cluster.local.");
        if got.is_empty() && in_zone {
            let soa = m.authorities.first().unwrap_or_else(|| panic!("{name} {qtype}: SOA in the authority section"));
            assert_eq!((soa.record_type(), soa.ttl), (RecordType::SOA, TTL));
        }
    }
}

#[test]
fn cluster_records_have_ttl_5_and_srv_targets_come_with_addresses() {
    let (_, _, m) = reply("_pg._tcp.pg.db.svc.cluster.local.", RecordType::SRV);
    assert!(m.answers.iter().all(|r| r.ttl == TTL));
    let mut extra: Vec<String> = m.additionals.iter().map(|r| format!("{} {}", r.name, r.data)).collect();
    extra.sort();
    assert_eq!(
        extra,
        [
            "10-42-1-8.pg.db.svc.cluster.local. 10.42.1.8",
            "pg-0.pg.db.svc.cluster.local. 10.42.0.5",
            "pg-1.pg.db.svc.cluster.local. 10.42.1.6"
        ]
    );
}

#[test]
fn other_names_and_unknown_addresses_are_forwarded() {
    for (name, qtype) in
        [("example.org.", RecordType::A), ("local.", RecordType::A), ("9.9.9.9.in-addr.arpa.", RecordType::PTR), ("pi-2.", RecordType::A)]
    {
        assert_eq!(ask(name, qtype), Outcome::Forward, "{name}");
    }
}

#[test]
fn edns_queries_get_edns_replies() {
    let mut request = Message::query();
    request.add_query(Query::query(Name::from_ascii("web.default.svc.cluster.local.").unwrap(), RecordType::A));
    request.edns = Some(Edns::new());
    let Outcome::Reply(m) = answer(&RECORDS, DOMAIN, &request) else { panic!("forwarded") };
    assert!(m.edns.is_some());
    assert_eq!(m.metadata.id, request.metadata.id);
}
