//! `orch-bench dns`: queries per second and latency of the node-local cluster DNS server
//! (`orch::net::dns`) on loopback, from one client machine (127.0.0.1) with 1 and 16 queries in
//! flight, over UDP and TCP, for cluster names drawn from 1,000 Services. The per-source rate
//! limit is raised out of the way (it would otherwise cap one client at its default rate).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use orch::net::dns::rate_limit::Limit;
use orch::net::dns::server::{serve_tcp, serve_udp, Handler};
use orch::net::dns::Records;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

use crate::harness::{self, Measurement};

/// Services in the record index.
const SERVICES: usize = 1000;

fn records() -> Records {
    let services: Vec<Service> = (0..SERVICES)
        .map(|i| {
            serde_json::from_value(json!({
                "metadata": { "name": format!("svc-{i}"), "namespace": "default" },
                "spec": { "clusterIP": format!("10.43.{}.{}", 1 + i / 250, 1 + i % 250), "ports": [{ "name": "http", "port": 80 }] },
            }))
            .expect("a valid Service")
        })
        .collect();
    Records::build("cluster.local", &services, [], [])
}

/// The wire form of an A query for Service `i`.
fn query(i: u64) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    let name = Name::from_ascii(format!("svc-{}.default.svc.cluster.local.", i % SERVICES as u64)).expect("a valid name");
    m.add_query(Query::query(name, RecordType::A));
    m.to_vec().expect("an encodable query")
}

fn answered(reply: &[u8]) -> bool {
    Message::from_vec(reply).is_ok_and(|m| m.metadata.response_code == ResponseCode::NoError && m.answers.len() == 1)
}

async fn udp_client(server: SocketAddr) -> anyhow::Result<UdpSocket> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(server).await?;
    Ok(socket)
}

async fn udp_exchange(socket: &UdpSocket, i: u64) -> bool {
    if socket.send(&query(i)).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    match tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await {
        Ok(Ok(n)) => answered(&buf[..n]),
        _ => false,
    }
}

async fn tcp_exchange(stream: &mut TcpStream, i: u64) -> bool {
    let q = query(i);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    if stream.write_all(&framed).await.is_err() {
        return false;
    }
    let Ok(len) = stream.read_u16().await else { return false };
    let mut buf = vec![0; usize::from(len)];
    stream.read_exact(&mut buf).await.is_ok() && answered(&buf)
}

/// Runs the benchmark, prints its table and returns (queries/s, p99 ms) of UDP with 16
/// queries in flight.
pub async fn run(seconds: u64) -> anyhow::Result<(f64, f64)> {
    let (_records, rx) = watch::channel(Arc::new(records()));
    let handler = Arc::new(Handler::new("cluster.local", rx, vec![], Limit { per_second: 1e12, burst: 1e12 }));
    let udp = UdpSocket::bind("127.0.0.1:0").await?;
    let server = udp.local_addr()?;
    let tcp = TcpListener::bind(server).await?;
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    tokio::spawn(serve_udp(udp, handler.clone(), cancel.clone()));
    tokio::spawn(serve_tcp(tcp, handler, cancel));
    let (warmup, measure) = (Duration::from_secs(1), Duration::from_secs(seconds));
    println!("cluster DNS benchmark: A queries for {SERVICES} Service names on loopback, {seconds} s per row");
    println!("{:<10} {:>9} | {:>9} {:>8} {:>8}", "transport", "in flight", "qps", "p50 ms", "p99 ms");
    let mut rows: Vec<(&str, usize, Measurement)> = Vec::new();
    for clients in [1, 16] {
        let mut sockets = Vec::new();
        for _ in 0..clients {
            sockets.push(udp_client(server).await?);
        }
        let sockets = Arc::new(sockets);
        let m = harness::run(clients, warmup, measure, move |c, i| {
            let sockets = sockets.clone();
            async move { udp_exchange(&sockets[c], i).await }
        })
        .await;
        rows.push(("udp", clients, m));
        let mut streams = Vec::new();
        for _ in 0..clients {
            streams.push(Mutex::new(TcpStream::connect(server).await?));
        }
        let streams = Arc::new(streams);
        let m = harness::run(clients, warmup, measure, move |c, i| {
            let streams = streams.clone();
            async move { tcp_exchange(&mut *streams[c].lock().await, i).await }
        })
        .await;
        rows.push(("tcp", clients, m));
    }
    for (transport, clients, m) in &rows {
        let errors = if m.errors > 0 { format!("  ({} errors)", m.errors) } else { String::new() };
        println!("{transport:<10} {clients:>9} | {:>9.0} {:>8.3} {:>8.3}{errors}", m.ops_per_s, m.p50_ms, m.p99_ms);
    }
    let (_, _, m) = rows.iter().find(|(t, c, _)| *t == "udp" && *c == 16).expect("the UDP row with 16 in flight ran");
    Ok((m.ops_per_s, m.p99_ms))
}
