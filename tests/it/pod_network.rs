//! The pod network of a node for real (root only): each test makes its own "host" network
//! namespace `orch-test-<random>`, builds the bridge and pod namespaces inside it, checks traffic
//! between pods and to the gateway from threads that join the pod namespaces, and removes every
//! namespace at the end, also on failure. Never touches the machine's own interfaces.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use orch::net::netlink::Netlink;
use orch::net::netns::{run_in, NetnsDir};
use orch::net::{BridgeConfig, BridgeNetwork, HostPort, PodAttachment, PodNetRequest, PodNetwork, Protocol};

pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn is_root() -> bool {
    let root = orch::host::is_root();
    if !root {
        eprintln!("skipping: the pod network tests need root (network namespaces, bind mounts)");
    }
    root
}

/// A test's private "host" namespace plus its pod namespace directory and state; everything is
/// unmounted (so the kernel destroys the namespaces and their links) when dropped.
pub(crate) struct TestHost {
    dir: tempfile::TempDir,
    hosts: NetnsDir,
    host_name: String,
}

impl TestHost {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let hosts = NetnsDir::new(dir.path().join("hosts"));
        let host_name = format!("orch-test-{:08x}", rand::random::<u32>());
        let path = hosts.create(&host_name).expect("creating the test host namespace");
        run_in(Some(&path), || ()).unwrap();
        Self { dir, hosts, host_name }
    }

    pub(crate) fn host_netns(&self) -> PathBuf {
        self.hosts.path_of(&self.host_name)
    }

    fn pods(&self) -> NetnsDir {
        NetnsDir::new(self.dir.path().join("pods"))
    }

    pub(crate) fn config(&self, pod_cidr: &str) -> BridgeConfig {
        let mut config = BridgeConfig::new(&self.dir.path().join("data"), pod_cidr.parse().unwrap(), "10.42.0.0/16".parse().unwrap());
        config.netns_dir = self.dir.path().join("pods");
        config.host_netns = Some(self.host_netns());
        config
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        for name in self.pods().list().unwrap_or_default() {
            let _ = self.pods().remove(&name);
        }
        for name in self.hosts.list().unwrap_or_default() {
            let _ = self.hosts.remove(&name);
        }
    }
}

pub(crate) fn request(id: &str) -> PodNetRequest {
    PodNetRequest { id: id.to_string(), host_ports: vec![] }
}

/// A TCP listener created inside `netns` on `ip` (any free port).
fn listen_in(netns: &Path, ip: Ipv4Addr) -> TcpListener {
    listen_on(netns, SocketAddr::from((ip, 0)))
}

pub(crate) fn listen_on(netns: &Path, addr: SocketAddr) -> TcpListener {
    run_in(Some(netns), || TcpListener::bind(addr)).unwrap().unwrap_or_else(|e| panic!("binding a listener on {addr}: {e}"))
}

/// Connects from inside `from_netns` to `listener`, sends a greeting; the listener side accepts
/// and checks it came from `expected_from`.
fn tcp_roundtrip(from_netns: &Path, listener: &TcpListener, expected_from: Ipv4Addr) {
    tcp_roundtrip_via(from_netns, listener.local_addr().unwrap(), listener, expected_from)
}

/// Like [`tcp_roundtrip`] but connecting to `to` (e.g. a hostPort that leads to `listener`).
fn tcp_roundtrip_via(from_netns: &Path, to: SocketAddr, listener: &TcpListener, expected_from: Ipv4Addr) {
    let mut conn = run_in(Some(from_netns), || TcpStream::connect_timeout(&to, TIMEOUT))
        .unwrap()
        .unwrap_or_else(|e| panic!("connecting from {} to {to}: {e}", from_netns.display()));
    conn.write_all(b"hello").unwrap();
    let (mut accepted, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip(), std::net::IpAddr::V4(expected_from), "the connection's source address");
    accepted.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut buf = [0u8; 5];
    accepted.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
}

fn udp_roundtrip(from_netns: &Path, to_netns: &Path, to_ip: Ipv4Addr, expected_from: Ipv4Addr) {
    let rx = run_in(Some(to_netns), || UdpSocket::bind((to_ip, 0))).unwrap().unwrap();
    rx.set_read_timeout(Some(TIMEOUT)).unwrap();
    let to = rx.local_addr().unwrap();
    run_in(Some(from_netns), || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).and_then(|s| s.send_to(b"ping", to))).unwrap().unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = rx.recv_from(&mut buf).unwrap_or_else(|e| panic!("no UDP datagram reached {to}: {e}"));
    assert_eq!(&buf[..n], b"ping");
    assert_eq!(from.ip(), std::net::IpAddr::V4(expected_from));
}

/// The MTU of `ifname` inside `netns` (SIOCGIFMTU on a socket of that namespace).
fn mtu_in(netns: &Path, ifname: &str) -> i32 {
    let sock = run_in(Some(netns), || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))).unwrap().unwrap();
    // SAFETY: ifreq is plain data; the name fits (checked) and the ioctl only fills ifru_mtu.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        assert!(ifname.len() < req.ifr_name.len());
        for (dst, src) in req.ifr_name.iter_mut().zip(ifname.bytes()) {
            *dst = src as libc::c_char;
        }
        assert_eq!(libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&sock), libc::SIOCGIFMTU, &mut req), 0, "SIOCGIFMTU {ifname}");
        req.ifr_ifru.ifru_mtu
    }
}

async fn assert_torn_down(host: &TestHost, net: &BridgeNetwork, att: &PodAttachment) {
    let nl = Netlink::open(Some(&host.host_netns())).unwrap();
    assert_eq!(nl.link_index(&att.host_veth).await.unwrap(), None, "veth {} is gone", att.host_veth);
    assert!(!att.netns.exists(), "{} is unmounted and removed", att.netns.display());
    assert!(net.ipam().allocations().unwrap().iter().all(|(ip, _)| *ip != att.ip), "{} is released", att.ip);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_reach_each_other_and_the_gateway_and_teardown_leaves_nothing() {
    if !is_root() {
        return;
    }
    let host = TestHost::new();
    let net = BridgeNetwork::new(host.config("10.42.7.0/24")).unwrap();
    let a = net.setup(&request("pod-a")).await.expect("setting up pod a");
    let b = net.setup(&request("pod-b")).await.expect("setting up pod b");
    assert_eq!(a.gateway, Ipv4Addr::new(10, 42, 7, 1));
    assert_ne!(a.ip, b.ip);
    assert!(a.ip.octets()[..3] == [10, 42, 7] && a.ip.octets()[3] >= 2 && a.prefix == 24);
    assert_eq!(net.setup(&request("pod-a")).await.unwrap(), a, "setup is idempotent");

    tcp_roundtrip(&b.netns, &listen_in(&a.netns, a.ip), b.ip);
    udp_roundtrip(&a.netns, &b.netns, b.ip, a.ip);
    tcp_roundtrip(&a.netns, &listen_in(&host.host_netns(), a.gateway), a.ip);

    let nl = Netlink::open(Some(&host.host_netns())).unwrap();
    assert!(nl.link_index("cni0").await.unwrap().is_some(), "the bridge exists in the test host namespace");
    assert_eq!(mtu_in(&a.netns, "eth0"), 1450);

    net.teardown("pod-a").await.unwrap();
    net.teardown("pod-a").await.expect("a second teardown is fine");
    assert_torn_down(&host, &net, &a).await;
    net.teardown("pod-b").await.unwrap();
    assert_torn_down(&host, &net, &b).await;
    assert!(host.pods().list().unwrap().is_empty());
    assert!(net.ipam().allocations().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_survive_a_restart_and_gc_frees_gone_pods() {
    if !is_root() {
        return;
    }
    let host = TestHost::new();
    let first = BridgeNetwork::new(host.config("10.42.8.0/24")).unwrap();
    let a = first.setup(&request("pod-a")).await.unwrap();
    drop(first);

    let restarted = BridgeNetwork::new(host.config("10.42.8.0/24")).unwrap();
    let b = restarted.setup(&request("pod-b")).await.unwrap();
    assert_ne!(a.ip, b.ip, "an address in use before the restart is not handed out again");
    assert_eq!(restarted.setup(&request("pod-a")).await.unwrap(), a, "pod a keeps its network");
    tcp_roundtrip(&a.netns, &listen_in(&b.netns, b.ip), a.ip);

    let gone = restarted.gc(&|id| id == "pod-b").await.unwrap();
    assert_eq!(gone, vec!["pod-a".to_string()]);
    assert_torn_down(&host, &restarted, &a).await;
    udp_roundtrip(&host.host_netns(), &b.netns, b.ip, b.gateway);
    restarted.teardown("pod-b").await.unwrap();
    assert_torn_down(&host, &restarted, &b).await;
}

/// An "outside" namespace linked to the test host: host `uplink` 192.0.2.1/24, outside `eth0` 192.0.2.2/24.
pub(crate) async fn outside(host: &TestHost) -> PathBuf {
    let path = host.hosts.create(&format!("{}-out", host.host_name)).unwrap();
    let ns_file = std::fs::File::open(&path).unwrap();
    let nl = Netlink::open(Some(&host.host_netns())).unwrap();
    nl.add_veth_into("uplink", None, "eth0", std::os::fd::AsRawFd::as_raw_fd(&ns_file), 1500).await.unwrap();
    let uplink = nl.link_index("uplink").await.unwrap().unwrap();
    nl.ensure_address(uplink, Ipv4Addr::new(192, 0, 2, 1), 24).await.unwrap();
    let out = Netlink::open(Some(&path)).unwrap();
    let eth0 = out.link_index("eth0").await.unwrap().unwrap();
    out.ensure_address(eth0, Ipv4Addr::new(192, 0, 2, 2), 24).await.unwrap();
    out.set_up(eth0).await.unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_leaving_the_cluster_is_masqueraded_and_host_ports_reach_the_pod() {
    if !is_root() {
        return;
    }
    let host = TestHost::new();
    let outside = outside(&host).await;
    let net = BridgeNetwork::new(host.config("10.42.10.0/24")).unwrap();
    let web = HostPort { protocol: Protocol::Tcp, host_ip: None, host_port: 8080, container_port: 80 };
    let pinned = HostPort { protocol: Protocol::Tcp, host_ip: Some(Ipv4Addr::new(192, 0, 2, 1)), host_port: 8443, container_port: 443 };
    let a = net.setup(&PodNetRequest { id: "pod-a".into(), host_ports: vec![web, pinned] }).await.expect("setting up pod a");

    udp_roundtrip(&a.netns, &outside, Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 1));
    let node = Ipv4Addr::new(192, 0, 2, 1);
    tcp_roundtrip_via(
        &outside,
        SocketAddr::from((node, 8080)),
        &listen_on(&a.netns, SocketAddr::from((a.ip, 80))),
        Ipv4Addr::new(192, 0, 2, 2),
    );
    tcp_roundtrip_via(
        &outside,
        SocketAddr::from((node, 8443)),
        &listen_on(&a.netns, SocketAddr::from((a.ip, 443))),
        Ipv4Addr::new(192, 0, 2, 2),
    );

    // A restarted agent rebuilds the same rules from its records.
    drop(net);
    let net = BridgeNetwork::new(host.config("10.42.10.0/24")).unwrap();
    let b = net.setup(&request("pod-b")).await.unwrap();
    tcp_roundtrip_via(
        &outside,
        SocketAddr::from((node, 8080)),
        &listen_on(&a.netns, SocketAddr::from((a.ip, 80))),
        Ipv4Addr::new(192, 0, 2, 2),
    );
    udp_roundtrip(&b.netns, &outside, Ipv4Addr::new(192, 0, 2, 2), node);
    let to_web = SocketAddr::from((node, 8080));
    tcp_roundtrip_via(&b.netns, to_web, &listen_on(&a.netns, SocketAddr::from((a.ip, 80))), a.gateway);

    net.teardown("pod-a").await.unwrap();
    let refused = run_in(Some(&outside), || TcpStream::connect_timeout(&SocketAddr::from((node, 8080)), TIMEOUT)).unwrap();
    assert!(refused.is_err(), "the hostPort is gone with its pod");
    net.teardown("pod-b").await.unwrap();
}

#[test]
fn bad_pod_ids_are_refused_before_touching_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = BridgeConfig::new(tmp.path(), "10.42.9.0/24".parse().unwrap(), "10.42.0.0/16".parse().unwrap());
    config.netns_dir = tmp.path().join("pods");
    let net = BridgeNetwork::new(config).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert!(rt.block_on(net.setup(&request("../etc"))).is_err());
    assert!(!tmp.path().join("pods").exists());
}
