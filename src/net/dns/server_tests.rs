//! The server and the forwarder over real sockets on loopback: UDP and TCP answers, malformed
//! packets, the rate limit, and forwarding to (and caching from) a fake upstream resolver.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::rate_limit::Limit;
use super::records::Records;
use super::server::{serve_tcp, serve_udp, Handler, Step};

const WAIT: Duration = Duration::from_secs(3);
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);

/// Endpoints of the headless Service `many`: more than a 512-byte UDP reply holds.
const MANY: usize = 60;

fn records() -> Arc<Records> {
    let web: Service = serde_json::from_value(json!({
        "metadata": { "name": "web", "namespace": "default" },
        "spec": { "clusterIP": "10.43.0.20", "ports": [{ "name": "http", "port": 80 }] },
    }))
    .unwrap();
    let many: Service =
        serde_json::from_value(json!({ "metadata": { "name": "many", "namespace": "default" }, "spec": { "clusterIP": "None" } })).unwrap();
    let endpoints: Vec<_> = (0..MANY).map(|i| json!({ "addresses": [format!("10.42.0.{}", i + 2)] })).collect();
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": { "name": "many-x", "namespace": "default", "labels": { "kubernetes.io/service-name": "many" } },
        "addressType": "IPv4",
        "endpoints": endpoints,
    }))
    .unwrap();
    Arc::new(Records::build("cluster.local", [&web, &many], [&slice], []))
}

fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

/// A fake upstream on loopback (UDP and TCP on one port) answering every A question with
/// [`UPSTREAM_ANSWER`]; names starting with `big` get a truncated UDP reply. Counts queries.
async fn fake_upstream(cancel: CancellationToken) -> (SocketAddr, Arc<AtomicUsize>) {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let reply = |packet: &[u8], truncate: bool| {
        let request = Message::from_vec(packet).unwrap();
        let mut m = Message::response(request.metadata.id, request.metadata.op_code);
        m.queries = request.queries.clone();
        if truncate && request.queries[0].name().to_ascii().starts_with("big") {
            m.metadata.truncation = true;
        } else {
            m.add_answer(Record::from_rdata(request.queries[0].name().clone(), 300, RData::A(A(UPSTREAM_ANSWER))));
        }
        m.to_vec().unwrap()
    };
    let (c, stop) = (count.clone(), cancel.clone());
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let (n, from) = tokio::select! { _ = stop.cancelled() => return, got = udp.recv_from(&mut buf) => got.unwrap() };
            c.fetch_add(1, Ordering::SeqCst);
            udp.send_to(&reply(&buf[..n], true), from).await.unwrap();
        }
    });
    let c = count.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = tokio::select! { _ = cancel.cancelled() => return, got = tcp.accept() => got.unwrap() };
            c.fetch_add(1, Ordering::SeqCst);
            let len = s.read_u16().await.unwrap();
            let mut packet = vec![0; usize::from(len)];
            s.read_exact(&mut packet).await.unwrap();
            let bytes = reply(&packet, false);
            s.write_all(&(bytes.len() as u16).to_be_bytes()).await.unwrap();
            s.write_all(&bytes).await.unwrap();
        }
    });
    (addr, count)
}

struct TestServer {
    addr: SocketAddr,
    handler: Arc<Handler>,
    cancel: CancellationToken,
    _records: watch::Sender<Arc<Records>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn start(upstreams: Vec<SocketAddr>, limit: Limit) -> TestServer {
    let (tx, rx) = watch::channel(records());
    let handler = Arc::new(Handler::new("cluster.local", rx, upstreams, limit));
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(serve_udp(udp, handler.clone(), cancel.clone()));
    tokio::spawn(serve_tcp(tcp, handler.clone(), cancel.clone()));
    TestServer { addr, handler, cancel, _records: tx }
}

async fn client(server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(server).await.unwrap();
    socket
}

/// Sends `packet` and waits for a reply; `None` when none comes within 300 ms.
async fn exchange(socket: &UdpSocket, packet: &[u8]) -> Option<Message> {
    socket.send(packet).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buf)).await.ok()?.unwrap();
    Some(Message::from_vec(&buf[..n]).unwrap())
}

fn first_a(m: &Message) -> Option<Ipv4Addr> {
    m.answers.iter().find_map(|r| match r.data {
        RData::A(A(ip)) => Some(ip),
        _ => None,
    })
}

#[tokio::test]
async fn answers_over_udp_and_survives_malformed_packets() {
    let server = start(vec![], Limit::default()).await;
    let socket = client(server.addr).await;
    let m = exchange(&socket, &query(7, "web.default.svc.cluster.local.", RecordType::A)).await.expect("a reply");
    assert_eq!((m.metadata.id, first_a(&m)), (7, Some(Ipv4Addr::new(10, 43, 0, 20))));
    assert!(exchange(&socket, b"\x01\x02junk").await.is_none(), "a packet shorter than a header gets no reply");
    let junk = exchange(&socket, b"\xab\xcd\x01\x00\x00\x05\x00\x00\x00\x00\x00\x00garbage").await.expect("FORMERR");
    assert_eq!((junk.metadata.id, junk.metadata.response_code), (0xabcd, ResponseCode::FormErr));
    let mut long = b"\x00\x09\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00".to_vec();
    for _ in 0..5 {
        long.push(50);
        long.extend_from_slice(&[b'a'; 50]);
    }
    long.extend_from_slice(b"\x00\x00\x01\x00\x01");
    let refused = exchange(&socket, &long).await.expect("a reply to a 255-byte name");
    assert_eq!((refused.metadata.id, refused.metadata.response_code), (9, ResponseCode::FormErr));
    let m = exchange(&socket, &query(8, "nope.default.svc.cluster.local.", RecordType::A)).await.expect("a reply after the junk");
    assert_eq!((m.metadata.id, m.metadata.response_code), (8, ResponseCode::NXDomain));
    let text = server.handler.metrics.render();
    assert!(text.contains("coredns_dns_requests_total{type=\"A\"} 2"), "{text}");
    assert!(text.contains("coredns_dns_responses_total{rcode=\"NXDOMAIN\"} 1"), "{text}");
    assert!(text.contains("orch_dns_dropped_total{reason=\"malformed\"} 1"), "{text}");
    assert!(text.contains("coredns_dns_request_duration_seconds_count 4"), "{text}");
}

#[tokio::test]
async fn answers_over_tcp_several_queries_per_connection() {
    let server = start(vec![], Limit::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    for id in [1u16, 2] {
        let q = query(id, "web.default.svc.cluster.local.", RecordType::A);
        stream.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
        stream.write_all(&q).await.unwrap();
        let len = tokio::time::timeout(WAIT, stream.read_u16()).await.expect("a TCP reply").unwrap();
        let mut buf = vec![0; usize::from(len)];
        stream.read_exact(&mut buf).await.unwrap();
        let m = Message::from_vec(&buf).unwrap();
        assert_eq!((m.metadata.id, first_a(&m)), (id, Some(Ipv4Addr::new(10, 43, 0, 20))));
    }
}

/// Sends `packet` over a new TCP connection and reads one reply.
async fn tcp_exchange(server: SocketAddr, packet: &[u8]) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    stream.write_all(&(packet.len() as u16).to_be_bytes()).await.unwrap();
    stream.write_all(packet).await.unwrap();
    let len = tokio::time::timeout(WAIT, stream.read_u16()).await.expect("a TCP reply").unwrap();
    let mut buf = vec![0; usize::from(len)];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let server = start(vec![], Limit::default()).await;
    let socket = client(server.addr).await;
    let q = query(5, "many.default.svc.cluster.local.", RecordType::A);
    let m = exchange(&socket, &q).await.expect("a UDP reply");
    assert!(m.metadata.truncation && m.answers.is_empty(), "{MANY} addresses do not fit 512 bytes: {m:?}");
    assert_eq!(m.queries.len(), 1);
    let m = tcp_exchange(server.addr, &q).await;
    assert_eq!((m.metadata.truncation, m.answers.len()), (false, MANY));
}

#[tokio::test]
async fn drops_a_source_over_its_rate() {
    let server = start(vec![], Limit { per_second: 1.0, burst: 3.0 }).await;
    let socket = client(server.addr).await;
    let mut answered = 0;
    for id in 0..6 {
        if exchange(&socket, &query(id, "web.default.svc.cluster.local.", RecordType::A)).await.is_some() {
            answered += 1;
        }
    }
    assert_eq!(answered, 3, "the burst of 3, then drops");
}

#[tokio::test]
async fn forwards_other_names_and_caches_the_replies() {
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let (upstream, count) = fake_upstream(cancel).await;
    let server = start(vec![upstream], Limit::default()).await;
    let socket = client(server.addr).await;
    for id in [1u16, 2] {
        let m = exchange(&socket, &query(id, "Example.ORG.", RecordType::A)).await.expect("a forwarded reply");
        assert_eq!((m.metadata.id, m.metadata.response_code, first_a(&m)), (id, ResponseCode::NoError, Some(UPSTREAM_ANSWER)));
        assert_eq!(m.queries[0].name().to_ascii(), "Example.ORG.");
    }
    assert_eq!(count.load(Ordering::SeqCst), 1, "the second answer came from the cache");
    let m = exchange(&socket, &query(3, "big.example.org.", RecordType::A)).await.expect("a reply to a truncated name");
    assert_eq!(first_a(&m), Some(UPSTREAM_ANSWER), "retried over TCP after a truncated UDP reply");
    assert_eq!(count.load(Ordering::SeqCst), 3, "UDP then TCP");
    let text = server.handler.metrics.render();
    assert!(text.contains("coredns_cache_hits_total 1") && text.contains("coredns_forward_requests_total 2"), "{text}");
}

#[tokio::test]
async fn answers_servfail_when_no_upstream_does() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = start(vec![silent.local_addr().unwrap()], Limit::default()).await;
    let socket = client(server.addr).await;
    socket.send(&query(4, "example.org.", RecordType::A)).await.unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(WAIT, socket.recv(&mut buf)).await.expect("SERVFAIL after the upstream timeout").unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!((m.metadata.id, m.metadata.response_code), (4, ResponseCode::ServFail));
}

#[test]
fn only_local_sources_get_recursion() {
    let (_tx, rx) = watch::channel(records());
    let cluster: ipnetwork::IpNetwork = "10.42.0.0/16".parse().unwrap();
    let handler = Handler::new("cluster.local", rx, vec![], Limit::default()).forwarding_only_for(vec![cluster]);
    let outside = handler.prepare(&query(7, "example.org.", RecordType::A), "192.0.2.50".parse().unwrap(), true);
    let Step::Reply(bytes) = outside else { panic!("a LAN client gets an answer, not recursion") };
    let m = Message::from_vec(&bytes).unwrap();
    assert_eq!((m.metadata.id, m.metadata.response_code), (7, ResponseCode::Refused));
    // Cluster names are still answered to anyone; pods get recursion.
    let Step::Reply(bytes) =
        handler.prepare(&query(8, "web.default.svc.cluster.local.", RecordType::A), "192.0.2.50".parse().unwrap(), true)
    else {
        panic!("cluster names are answered")
    };
    assert_eq!(Message::from_vec(&bytes).unwrap().metadata.response_code, ResponseCode::NoError);
    assert!(matches!(handler.prepare(&query(9, "example.org.", RecordType::A), "10.42.3.4".parse().unwrap(), true), Step::Forward(..)));
}
