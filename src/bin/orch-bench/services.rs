//! `orch-bench services`: the service proxy's rule programming time for 1,000 and 5,000
//! Services of 10 endpoints each (one nf_tables transaction into a fresh network namespace, then
//! one incremental update changing one Service's endpoints),
//! and the round-trip latency through a ClusterIP against the same pod reached directly, on a
//! two-node VXLAN [`ClusterBed`](orch::testkit::cluster::ClusterBed) (client pod on one node,
//! server pod on the other; the Service has an EndpointSlice naming the server pod).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use orch::net::netns::run_in;
use orch::testkit::node::{containers_unavailable, NodeSandbox};
use serde_json::json;

use super::net::{bed_client, bed_with_pods, round_trips};

const TARGET_PORT: u16 = 9090;

/// Programs `services` × 10 endpoints into a fresh namespace, then changes one Service's
/// endpoints; the medians of three runs in ms (whole table, one change).
fn rules_ms(services: usize) -> anyhow::Result<(f64, f64)> {
    let (mut full, mut change) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let sandbox = NodeSandbox::new("orch-sb").context("creating a namespace")?;
        let took = orch::net::proxy::program_synthetic(Some(&sandbox.netns()), services, 10)?;
        full.push(took.full.as_secs_f64() * 1e3);
        change.push(took.one_change.as_secs_f64() * 1e3);
    }
    full.sort_by(f64::total_cmp);
    change.sort_by(f64::total_cmp);
    Ok((full[1], change[1]))
}

/// Runs the proxy part of the benchmark; returns (5,000-Service programming ms, ClusterIP p99
/// overhead µs) and prints the table.
pub async fn proxy(binary: &Path) -> anyhow::Result<(f64, f64)> {
    if let Some(why) = containers_unavailable() {
        anyhow::bail!("orch-bench services {why}");
    }
    let ((ms_1000, change_1000), (ms_5000, change_5000)) = (rules_ms(1000)?, rules_ms(5000)?);
    println!(
        "rule programming, 10 endpoints each: 1,000 Services {ms_1000:.0} ms (one change after: {change_1000:.1} ms), \
         5,000 Services {ms_5000:.0} ms (one change after: {change_5000:.1} ms)"
    );

    let (bed, pods) = bed_with_pods(binary, "vxlan").await?;
    let client = bed_client(&bed).await?;
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "bench"},
        "spec": {"ports": [{"name": "rr", "port": 80, "targetPort": TARGET_PORT}]},
    }))?;
    let service = Api::<Service>::default_namespaced(client.clone()).create(&PostParams::default(), &service).await?;
    let cluster_ip: std::net::Ipv4Addr = service.spec.and_then(|s| s.cluster_ip).context("the Service got no ClusterIP")?.parse()?;
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "bench-1", "labels": {"kubernetes.io/service-name": "bench"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [pods[1].1.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "rr", "port": TARGET_PORT, "protocol": "TCP"}],
    }))?;
    Api::<EndpointSlice>::default_namespaced(client).create(&PostParams::default(), &slice).await?;

    let (client_ns, server_ns, server_ip) = (pods[0].0.clone(), pods[1].0.clone(), pods[1].1);
    let (direct, via) = tokio::task::spawn_blocking(move || -> anyhow::Result<((f64, f64), (f64, f64))> {
        let listen = || run_in(Some(&server_ns), || TcpListener::bind((server_ip, TARGET_PORT)));
        let service = SocketAddr::from((cluster_ip, 80));
        // Wait for the proxy to program the Service (a probe connection succeeds).
        let listener = listen()??;
        let until = Instant::now() + Duration::from_secs(30);
        while run_in(Some(&client_ns), || TcpStream::connect_timeout(&service, Duration::from_millis(200)))?.is_err() {
            anyhow::ensure!(Instant::now() < until, "the ClusterIP {service} did not answer within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(listener);
        let direct = round_trips(&client_ns, listen()??, SocketAddr::from((server_ip, TARGET_PORT)))?;
        let via = round_trips(&client_ns, listen()??, service)?;
        Ok((direct, via))
    })
    .await??;
    drop(bed);
    println!(
        "round trips pod -> pod (other node): direct p50 {:.1} µs p99 {:.1} µs; via ClusterIP p50 {:.1} µs p99 {:.1} µs",
        direct.0, direct.1, via.0, via.1
    );
    Ok((ms_5000, via.1 - direct.1))
}
