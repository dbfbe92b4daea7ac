//! The `kube-system/kube-dns` Service (ClusterIP: the cluster DNS address; ports dns 53/UDP,
//! dns-tcp 53/TCP, metrics 9153/TCP; CoreDNS's labels) and its EndpointSlice listing every
//! node's InternalIP, ready while the node is Ready: each node answers cluster DNS itself
//! (`net::dns`), so the nodes are the endpoints. Checked at start, every ten seconds and when
//! a node changes; missing or changed objects are put back. Off with `--disable coredns`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::endpoints::{MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
use super::kubernetes_service::ensure;
use super::Context;

const NAME: &str = "kube-dns";
const NAMESPACE: &str = "kube-system";
const PERIOD: Duration = Duration::from_secs(10);
/// Marks the EndpointSlice as ours, so the endpoints controller leaves it alone.
const MANAGED_BY: &str = "orch.io/kube-dns";

/// The Service's ports: (name, port, protocol).
const PORTS: [(&str, i32, &str); 3] = [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")];

/// The kube-dns Service with ClusterIP `ip`.
pub fn service(ip: IpAddr) -> Service {
    let ports: Vec<_> = PORTS
        .iter()
        .map(|(name, port, protocol)| json!({ "name": name, "port": port, "protocol": protocol, "targetPort": port }))
        .collect();
    serde_json::from_value(json!({
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": { "k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS", "kubernetes.io/cluster-service": "true" },
            "annotations": { "prometheus.io/port": "9153", "prometheus.io/scrape": "true" },
        },
        "spec": { "type": "ClusterIP", "clusterIP": ip.to_string(), "ports": ports },
    }))
    .expect("a valid Service")
}

/// The EndpointSlice listing `nodes`' InternalIPs (IPv4), ready when the node is Ready.
pub fn slice<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> EndpointSlice {
    let mut endpoints: Vec<Endpoint> = nodes
        .into_iter()
        .filter_map(|node| {
            let status = node.status.as_ref()?;
            let ip =
                status.addresses.iter().flatten().find(|a| a.type_ == "InternalIP" && a.address.parse::<std::net::Ipv4Addr>().is_ok())?;
            let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
            Some(Endpoint {
                addresses: vec![ip.address.clone()],
                conditions: Some(EndpointConditions { ready: Some(ready), serving: Some(ready), terminating: Some(false) }),
                node_name: node.metadata.name.clone(),
                ..Default::default()
            })
        })
        .collect();
    endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
    let labels = BTreeMap::from([
        (SERVICE_NAME_LABEL.to_string(), NAME.to_string()),
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        ("k8s-app".to_string(), "kube-dns".to_string()),
    ]);
    EndpointSlice {
        metadata: ObjectMeta { name: Some(NAME.into()), namespace: Some(NAMESPACE.into()), labels: Some(labels), ..Default::default() },
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(
            PORTS
                .iter()
                .map(|(name, port, protocol)| EndpointPort {
                    name: Some(name.to_string()),
                    port: Some(*port),
                    protocol: Some(protocol.to_string()),
                    app_protocol: None,
                })
                .collect(),
        ),
    }
}

/// Puts back the Service if it is missing and the EndpointSlice if it differs from `want`.
async fn reconcile(ctx: &Context, ip: IpAddr, want: EndpointSlice) -> Result<(), kube::Error> {
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), NAMESPACE);
    if services.get_opt(NAME).await?.is_none() {
        services.create(&PostParams::default(), &service(ip)).await?;
        tracing::info!(%ip, "created the kube-dns service");
    }
    let (eps, ports) = (want.endpoints.clone(), want.ports.clone());
    ensure(&Api::<EndpointSlice>::namespaced(ctx.client.clone(), NAMESPACE), want, |have| have.endpoints != eps || have.ports != ports)
        .await
}

/// Keeps the kube-dns Service and its EndpointSlice until `shutdown` (nothing with
/// `--disable coredns`): every ten seconds, and soon after the nodes' addresses or
/// readiness change.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let Some(ip) = ctx.settings.cluster_dns else { return };
    let informer = ctx.informers.get::<Node>();
    let Some(nodes) = informer.ready(&shutdown).await else { return };
    let mut touched = std::pin::pin!(informer.touched());
    let mut tick = tokio::time::interval(PERIOD);
    let mut written: Option<Vec<Endpoint>> = None;
    loop {
        let periodic = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => true,
            Some(_) = touched.next() => false,
        };
        let want = slice(nodes.state().iter().map(AsRef::as_ref));
        if !periodic && written.as_ref() == Some(&want.endpoints) {
            continue;
        }
        let endpoints = want.endpoints.clone();
        match reconcile(&ctx, ip, want).await {
            Ok(()) => written = Some(endpoints),
            Err(e) => tracing::warn!(error = %e, "cannot reconcile the kube-dns service; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ip: &str, ready: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": { "name": name },
            "status": {
                "addresses": [{ "type": "Hostname", "address": name }, { "type": "InternalIP", "address": ip }],
                "conditions": [{ "type": "Ready", "status": ready }],
            },
        }))
        .unwrap()
    }

    #[test]
    fn the_service_and_the_nodes_as_endpoints() {
        let svc = service("10.43.0.10".parse().unwrap());
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.43.0.10"));
        let ports: Vec<_> = spec.ports.unwrap().iter().map(|p| (p.name.clone().unwrap(), p.port, p.protocol.clone().unwrap())).collect();
        assert_eq!(ports, [("dns".into(), 53, "UDP".into()), ("dns-tcp".into(), 53, "TCP".into()), ("metrics".into(), 9153, "TCP".into())]);
        assert_eq!(svc.metadata.labels.unwrap()["kubernetes.io/name"], "CoreDNS");
        let s = slice(&[node("b", "192.0.2.12", "False"), node("a", "192.0.2.11", "True")]);
        let got: Vec<_> = s.endpoints.iter().map(|e| (e.addresses[0].as_str(), e.conditions.as_ref().unwrap().ready)).collect();
        assert_eq!(got, [("192.0.2.11", Some(true)), ("192.0.2.12", Some(false))]);
        assert_eq!(s.metadata.labels.unwrap()[SERVICE_NAME_LABEL], NAME);
    }
}
