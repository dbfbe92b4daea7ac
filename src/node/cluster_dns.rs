//! The node's cluster DNS: puts the `--cluster-dns` address on a local interface (`orch-dns`,
//! see [`iface`]) in the node's network namespace, serves DNS there over UDP and TCP (and on the node IP, for
//! the kube-dns EndpointSlice, when it can), serves the counters on port 9153 `/metrics`, and
//! keeps the records current from Service, EndpointSlice and Node watches.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::Api;
use tokio::sync::{watch, Notify};

use super::Config;
use crate::controllers::cache::reflect;
use crate::net::dns::rate_limit::Limit;
use crate::net::dns::server::{serve_tcp, serve_udp, Handler};
use crate::net::dns::upstream::{upstreams, ResolvPaths};
use crate::net::dns::{iface, Records};
use crate::net::netns;
use crate::tasks::Tasks;

/// The DNS port.
const DNS_PORT: u16 = 53;
/// CoreDNS's metrics port.
const METRICS_PORT: u16 = 9153;
/// How long a burst of watch events is gathered before the records are rebuilt.
const SETTLE: Duration = Duration::from_millis(50);

/// Starts the node's cluster DNS unless it is disabled; a setup error is logged as one line
/// and leaves the node without it.
pub async fn start(config: &Config, client: kube::Client, node_ip: IpAddr, tasks: &Tasks) {
    if !config.dns_server {
        return tracing::info!("--disable coredns: this node answers no cluster DNS");
    }
    let Some(address) = config.cluster_dns.iter().find_map(|ip| match ip {
        IpAddr::V4(v4) => Some(*v4),
        IpAddr::V6(_) => None,
    }) else {
        return tracing::warn!(cluster_dns = ?config.cluster_dns, "no cluster DNS on this node: --cluster-dns has no IPv4 address");
    };
    let netns = config.host_netns.as_deref();
    match iface::ensure(netns, address).await {
        Ok(device) => tracing::info!(%address, device, "the cluster DNS address is on this node"),
        Err(e) => return tracing::error!("no cluster DNS on this node: cannot put {address} on an interface: {e}"),
    }
    let (records_tx, records_rx) = watch::channel(Arc::new(Records::default()));
    let servers = upstreams(&ResolvPaths::default());
    if servers.is_empty() {
        tracing::warn!("the host's resolv.conf lists no usable resolver: only cluster names will resolve");
    }
    // Recursion for pods, this node and loopback only: the node IP is reachable from the LAN.
    let mut local: Vec<ipnetwork::IpNetwork> = vec![
        ipnetwork::IpNetwork::V4(config.cluster_cidr),
        ipnetwork::IpNetwork::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8).expect("a valid prefix"),
        ipnetwork::IpNetwork::new(IpAddr::V4(address), 32).expect("a valid prefix"),
    ];
    local.push(ipnetwork::IpNetwork::new(node_ip, if node_ip.is_ipv4() { 32 } else { 128 }).expect("a valid prefix"));
    let handler = Arc::new(Handler::new(&config.cluster_domain, records_rx, servers, Limit::default()).forwarding_only_for(local));
    let mut addresses = vec![IpAddr::V4(address)];
    if node_ip != IpAddr::V4(address) {
        addresses.push(node_ip);
    }
    for ip in addresses {
        match listen(netns, ip) {
            Ok((udp, tcp, metrics)) => {
                tasks.spawn(serve_udp(udp, handler.clone(), tasks.cancel.clone()));
                tasks.spawn(serve_tcp(tcp, handler.clone(), tasks.cancel.clone()));
                tasks.spawn(serve_metrics(metrics, handler.clone()));
                tracing::info!(%ip, "cluster DNS listening");
            }
            Err(e) if ip == IpAddr::V4(address) => return tracing::error!("no cluster DNS on this node: {e}"),
            Err(e) => tracing::warn!("cluster DNS not served on the node IP (the kube-dns endpoints list it): {e}"),
        }
    }
    tasks.spawn(follow(client, config.cluster_domain.clone(), records_tx));
}

/// The UDP and TCP DNS sockets and the metrics listener on `ip`, made in the namespace `netns`.
fn listen(netns: Option<&Path>, ip: IpAddr) -> Result<(tokio::net::UdpSocket, tokio::net::TcpListener, tokio::net::TcpListener), String> {
    let bind = || -> std::io::Result<_> {
        let udp = std::net::UdpSocket::bind((ip, DNS_PORT))?;
        let tcp = std::net::TcpListener::bind((ip, DNS_PORT))?;
        let metrics = std::net::TcpListener::bind((ip, METRICS_PORT))?;
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        metrics.set_nonblocking(true)?;
        Ok((udp, tcp, metrics))
    };
    let failed = |e: std::io::Error| format!("binding {ip} ports {DNS_PORT} and {METRICS_PORT}: {e}");
    let (udp, tcp, metrics) = netns::run_in(netns, bind).map_err(|e| e.to_string())?.map_err(failed)?;
    let converted = (|| {
        Ok((tokio::net::UdpSocket::from_std(udp)?, tokio::net::TcpListener::from_std(tcp)?, tokio::net::TcpListener::from_std(metrics)?))
    })();
    converted.map_err(failed)
}

/// Serves the DNS counters at `/metrics` in Prometheus's text format.
async fn serve_metrics(listener: tokio::net::TcpListener, handler: Arc<Handler>) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handler = handler.clone();
            async move { ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], handler.metrics.render()) }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(error = %e, "the cluster DNS metrics listener failed");
    }
}

/// Follows Services, EndpointSlices and Nodes and publishes the records they make, first once
/// all three are listed, then after every change.
async fn follow(client: kube::Client, domain: String, tx: watch::Sender<Arc<Records>>) {
    let changed = Notify::new();
    let (services, service_events) = reflect(Api::<Service>::all(client.clone()), watcher::Config::default());
    let (slices, slice_events) = reflect(Api::<EndpointSlice>::all(client.clone()), watcher::Config::default());
    let (nodes, node_events) = reflect(Api::<Node>::all(client), watcher::Config::default());
    let publish = async {
        let ready = futures::future::join3(services.wait_until_ready(), slices.wait_until_ready(), nodes.wait_until_ready()).await;
        if let (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) = ready {
            return tracing::warn!(error = %e, "cluster DNS: a watch ended before it listed everything");
        }
        loop {
            let records = build(&domain, &services, &slices, &nodes);
            tx.send_if_modified(|current| {
                let differs = **current != records;
                if differs {
                    *current = Arc::new(records);
                }
                differs
            });
            changed.notified().await;
            tokio::time::sleep(SETTLE).await;
        }
    };
    tokio::join!(drain(service_events, &changed), drain(slice_events, &changed), drain(node_events, &changed), publish);
}

/// Polls a reflector's `events` (which keeps its cache current), waking `changed` on each.
async fn drain(events: impl futures::Stream, changed: &Notify) {
    let mut events = std::pin::pin!(events);
    while events.next().await.is_some() {
        changed.notify_one();
    }
}

fn build(domain: &str, services: &Store<Service>, slices: &Store<EndpointSlice>, nodes: &Store<Node>) -> Records {
    let (services, slices, nodes) = (services.state(), slices.state(), nodes.state());
    Records::build(domain, services.iter().map(AsRef::as_ref), slices.iter().map(AsRef::as_ref), nodes.iter().map(AsRef::as_ref))
}
