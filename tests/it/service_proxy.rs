//! The Service proxy for real (root only): in a test "host" namespace with the pod bridge and
//! pod namespaces (see `pod_network`), table `ip orch-proxy` sends a ClusterIP to both of its
//! endpoints keeping the pod's source address, lets a pod reach itself (hairpin), serves the
//! NodePort to an outside namespace and refuses a port without endpoints at once; a UDP flow to
//! an endpoint that is gone stays on it until its conntrack entry is deleted; ClientIP affinity
//! keeps a client on one endpoint.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use orch::net::conntrack::delete_udp_flows_from;
use orch::net::netns::run_in;
use orch::net::proxy::{program_synthetic, Endpoint, Proto, ProxyRules, ServicePort};
use orch::net::{BridgeNetwork, PodNetwork};

use super::pod_network::{is_root, listen_on, outside, request, TestHost, TIMEOUT};

const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 50);
const EMPTY_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 51);
const NODE_PORT: u16 = 30080;

fn port(id: &str, cluster_ip: Ipv4Addr, node_port: Option<u16>, endpoints: Vec<Endpoint>) -> ServicePort {
    ServicePort {
        id: id.into(),
        proto: Proto::Tcp,
        port: 80,
        cluster_ip: Some(cluster_ip),
        external_ips: vec![],
        node_port,
        cluster: endpoints,
        local: vec![],
        internal_local: false,
        external_local: false,
        affinity: None,
    }
}

/// Connects from `from` to `to` and returns which of `listeners` accepted and the peer address.
fn connect(from: &Path, to: SocketAddr, listeners: &[&TcpListener]) -> (usize, Ipv4Addr) {
    let _conn = run_in(Some(from), || TcpStream::connect_timeout(&to, TIMEOUT))
        .unwrap()
        .unwrap_or_else(|e| panic!("connecting from {} to {to}: {e}", from.display()));
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        for (i, l) in listeners.iter().enumerate() {
            match l.accept() {
                Ok((_, SocketAddr::V4(peer))) => return (i, *peer.ip()),
                Ok(_) => unreachable!("IPv4 only"),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("accepting: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no endpoint accepted the connection to {to}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ip_node_port_hairpin_and_no_endpoints() {
    if !is_root() {
        return;
    }
    let host = TestHost::new();
    let outside = outside(&host).await;
    let net = BridgeNetwork::new(host.config("10.42.20.0/24")).unwrap();
    let a = net.setup(&request("pod-a")).await.unwrap();
    let b = net.setup(&request("pod-b")).await.unwrap();
    let c = net.setup(&request("pod-c")).await.unwrap();
    let listeners = [listen_on(&a.netns, SocketAddr::from((a.ip, 8080))), listen_on(&b.netns, SocketAddr::from((b.ip, 8080)))];
    for l in &listeners {
        l.set_nonblocking(true).unwrap();
    }
    let ls: Vec<&TcpListener> = listeners.iter().collect();
    let endpoints = vec![Endpoint { ip: a.ip, port: 8080 }, Endpoint { ip: b.ip, port: 8080 }];
    let rules = ProxyRules {
        cluster_cidr: Some("10.42.0.0/16".parse().unwrap()),
        ports: vec![port("default/web/tcp/", CLUSTER_IP, Some(NODE_PORT), endpoints), port("default/empty/tcp/", EMPTY_IP, None, vec![])],
    };
    rules.apply(Some(&host.host_netns())).expect("programming the proxy table");

    let service = SocketAddr::from((CLUSTER_IP, 80));
    let mut hits = [0; 2];
    for _ in 0..20 {
        let (i, peer) = connect(&c.netns, service, &ls);
        hits[i] += 1;
        assert_eq!(peer, c.ip, "a pod's source address is kept");
    }
    assert!(hits[0] > 0 && hits[1] > 0, "connections spread over both endpoints: {hits:?}");

    // Pod a through its own Service: when it lands on itself, the source is the bridge's.
    let mut hairpins = 0;
    for _ in 0..30 {
        match connect(&a.netns, service, &ls) {
            (0, peer) => {
                assert_eq!(peer, a.gateway, "hairpin traffic is masqueraded");
                hairpins += 1;
            }
            (_, peer) => assert_eq!(peer, a.ip),
        }
    }
    assert!(hairpins > 0, "pod a reached itself through the Service");

    let node_port = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), NODE_PORT));
    let (_, peer) = connect(&outside, node_port, &ls);
    assert_eq!(peer, a.gateway, "NodePort traffic from outside is masqueraded");

    let started = Instant::now();
    let refused = run_in(Some(&c.netns), || TcpStream::connect_timeout(&SocketAddr::from((EMPTY_IP, 80)), TIMEOUT)).unwrap();
    assert_eq!(refused.map_err(|e| e.kind()).err(), Some(ErrorKind::ConnectionRefused));
    assert!(started.elapsed() < Duration::from_secs(1), "refused at once, not timed out");

    // Incremental updates: the Service goes (its chains and map elements are deleted), comes
    // back, and loses an endpoint.
    let none = ProxyRules { cluster_cidr: rules.cluster_cidr, ports: vec![] };
    none.update(&rules, Some(&host.host_netns())).expect("removing the Service");
    let gone = run_in(Some(&c.netns), || TcpStream::connect_timeout(&service, Duration::from_millis(500))).unwrap();
    assert!(gone.is_err(), "a removed Service no longer forwards");
    rules.update(&none, Some(&host.host_netns())).expect("adding the Service back");
    connect(&c.netns, service, &ls);
    let only_b = ProxyRules {
        cluster_cidr: rules.cluster_cidr,
        ports: vec![port("default/web/tcp/", CLUSTER_IP, Some(NODE_PORT), vec![Endpoint { ip: b.ip, port: 8080 }]), rules.ports[1].clone()],
    };
    only_b.update(&rules, Some(&host.host_netns())).expect("dropping an endpoint");
    for _ in 0..10 {
        assert_eq!(connect(&c.netns, service, &ls).0, 1, "only the remaining endpoint is used");
    }
    rules.apply(Some(&host.host_netns())).unwrap();
    connect(&c.netns, service, &ls);
    ProxyRules::remove(Some(&host.host_netns())).expect("removing the table");
    ProxyRules::remove(Some(&host.host_netns())).expect("removing a table that is not there");
    let removed = run_in(Some(&c.netns), || TcpStream::connect_timeout(&service, Duration::from_millis(500))).unwrap();
    assert!(removed.is_err(), "without the table nothing forwards");
    for id in ["pod-a", "pod-b", "pod-c"] {
        net.teardown(id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_affinity_keeps_a_client_on_one_endpoint() {
    if !is_root() {
        return;
    }
    let host = TestHost::new();
    let net = BridgeNetwork::new(host.config("10.42.22.0/24")).unwrap();
    let (a, b, c) = (
        net.setup(&request("pod-a")).await.unwrap(),
        net.setup(&request("pod-b")).await.unwrap(),
        net.setup(&request("pod-c")).await.unwrap(),
    );
    let listeners = [listen_on(&a.netns, SocketAddr::from((a.ip, 8080))), listen_on(&b.netns, SocketAddr::from((b.ip, 8080)))];
    for l in &listeners {
        l.set_nonblocking(true).unwrap();
    }
    let ls: Vec<&TcpListener> = listeners.iter().collect();
    let endpoints = vec![Endpoint { ip: a.ip, port: 8080 }, Endpoint { ip: b.ip, port: 8080 }];
    let sticky = ServicePort { affinity: Some(Duration::from_secs(60)), ..port("default/sticky/tcp/", CLUSTER_IP, None, endpoints) };
    let rules = ProxyRules { cluster_cidr: Some("10.42.0.0/16".parse().unwrap()), ports: vec![sticky] };
    rules.apply(Some(&host.host_netns())).expect("programming the proxy table");
    let service = SocketAddr::from((CLUSTER_IP, 80));
    let (first, _) = connect(&c.netns, service, &ls);
    for _ in 0..20 {
        assert_eq!(connect(&c.netns, service, &ls).0, first, "the client stays with its endpoint");
    }
    for id in ["pod-a", "pod-b", "pod-c"] {
        net.teardown(id).await.unwrap();
    }
}

/// Whether `rx` receives `what` within a second.
fn receives(rx: &UdpSocket, what: &[u8]) -> bool {
    rx.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 16];
    matches!(rx.recv_from(&mut buf), Ok((n, _)) if &buf[..n] == what)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flows_to_a_gone_endpoint_are_deleted() {
    if !is_root() {
        return;
    }
    let host = TestHost::new();
    let net = BridgeNetwork::new(host.config("10.42.21.0/24")).unwrap();
    let (a, b, c) = (
        net.setup(&request("pod-a")).await.unwrap(),
        net.setup(&request("pod-b")).await.unwrap(),
        net.setup(&request("pod-c")).await.unwrap(),
    );
    let rx_a = run_in(Some(&a.netns), || UdpSocket::bind((a.ip, 5353))).unwrap().unwrap();
    let rx_b = run_in(Some(&b.netns), || UdpSocket::bind((b.ip, 5353))).unwrap().unwrap();
    let client = run_in(Some(&c.netns), || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))).unwrap().unwrap();
    let dns = Ipv4Addr::new(10, 43, 0, 60);
    let with = |ep: Ipv4Addr| ProxyRules {
        cluster_cidr: Some("10.42.0.0/16".parse().unwrap()),
        ports: vec![ServicePort {
            proto: Proto::Udp,
            port: 53,
            ..port("default/dns/udp/", dns, None, vec![Endpoint { ip: ep, port: 5353 }])
        }],
    };
    let (before, after) = (with(a.ip), with(b.ip));
    before.apply(Some(&host.host_netns())).unwrap();
    client.send_to(b"one", (dns, 53)).unwrap();
    assert!(receives(&rx_a, b"one"), "the first endpoint gets the datagram");

    after.update(&before, Some(&host.host_netns())).unwrap();
    client.send_to(b"two", (dns, 53)).unwrap();
    assert!(receives(&rx_a, b"two"), "the flow's conntrack entry still leads to the old endpoint");
    let gone = before.gone_udp_endpoints(&after);
    assert_eq!(gone.iter().copied().collect::<Vec<_>>(), [(a.ip, 5353)]);
    let deleted = delete_udp_flows_from(Some(&host.host_netns()), &gone).expect("deleting the flows");
    assert_eq!(deleted, 1);
    client.send_to(b"three", (dns, 53)).unwrap();
    assert!(receives(&rx_b, b"three"), "with the entry gone the flow goes to the new endpoint");
    for id in ["pod-a", "pod-b", "pod-c"] {
        net.teardown(id).await.unwrap();
    }
}

#[test]
fn thousands_of_services_program_in_one_transaction() {
    if !is_root() {
        return;
    }
    let host = TestHost::new();
    for (services, endpoints) in [(1000, 10), (5000, 10)] {
        let took = program_synthetic(Some(&host.host_netns()), services, endpoints).expect("programming the services");
        eprintln!(
            "service proxy: {services} Services x {endpoints} endpoints programmed in {:?}, one Service changed after in {:?}",
            took.full, took.one_change
        );
    }
}
