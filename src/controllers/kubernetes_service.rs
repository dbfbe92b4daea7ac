//! The `kubernetes` Service in `default` (ClusterIP: the first address of the service range,
//! port 443 → the API servers' port, "https"), checked at start and every ten seconds, and
//! the shape of its Endpoints and EndpointSlice listing the API servers (which every server
//! keeps itself, see `apiserver_leases`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort as CorePort, EndpointSubset, Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::endpoints::SERVICE_NAME_LABEL;
use super::Context;

const NAME: &str = "kubernetes";
pub(super) const NAMESPACE: &str = "default";
const PERIOD: Duration = Duration::from_secs(10);

fn meta(labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta { name: Some(NAME.into()), namespace: Some(NAMESPACE.into()), labels: Some(labels), ..Default::default() }
}

/// The Endpoints listing `servers` (one subset per port).
pub fn endpoints(servers: &[SocketAddr]) -> Endpoints {
    let mut by_port: BTreeMap<u16, Vec<EndpointAddress>> = BTreeMap::new();
    for s in servers {
        by_port.entry(s.port()).or_default().push(EndpointAddress { ip: s.ip().to_string(), ..Default::default() });
    }
    let subsets = by_port
        .into_iter()
        .map(|(port, addresses)| EndpointSubset {
            addresses: Some(addresses),
            not_ready_addresses: None,
            ports: Some(vec![CorePort {
                name: Some("https".into()),
                port: i32::from(port),
                protocol: Some("TCP".into()),
                app_protocol: None,
            }]),
        })
        .collect();
    Endpoints { metadata: meta(BTreeMap::new()), subsets: Some(subsets) }
}

/// The EndpointSlice listing `servers` (all on the first server's port).
pub fn slice(servers: &[SocketAddr]) -> EndpointSlice {
    let port = servers.first().map(|s| i32::from(s.port()));
    let endpoints = servers
        .iter()
        .map(|s| Endpoint {
            addresses: vec![s.ip().to_string()],
            conditions: Some(EndpointConditions { ready: Some(true), serving: Some(true), terminating: Some(false) }),
            ..Default::default()
        })
        .collect();
    let address_type = if servers.first().is_some_and(|s| s.is_ipv6()) { "IPv6" } else { "IPv4" };
    EndpointSlice {
        metadata: meta([(SERVICE_NAME_LABEL.to_string(), NAME.to_string())].into()),
        address_type: address_type.into(),
        endpoints,
        ports: Some(vec![EndpointPort { name: Some("https".into()), port, protocol: Some("TCP".into()), app_protocol: None }]),
    }
}

/// Creates `want` (named by its metadata) if missing, or replaces it when `differs(existing)`.
pub(super) async fn ensure<K>(api: &Api<K>, mut want: K, differs: impl Fn(&K) -> bool) -> Result<(), kube::Error>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = want.name_any();
    match api.get_opt(&name).await? {
        None => {
            api.create(&PostParams::default(), &want).await?;
            tracing::info!(kind = %K::kind(&Default::default()), %name, "created a service's object");
        }
        Some(have) if differs(&have) => {
            want.meta_mut().resource_version = have.resource_version();
            api.replace(&name, &PostParams::default(), &want).await?;
        }
        Some(_) => {}
    }
    Ok(())
}

async fn reconcile(ctx: &Context) -> Result<(), kube::Error> {
    let target = ctx.settings.api_server_port;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), NAMESPACE);
    if services.get_opt(NAME).await?.is_none() {
        let service: Service = serde_json::from_value(json!({
            "metadata": { "name": NAME, "namespace": NAMESPACE, "labels": { "component": "apiserver", "provider": "kubernetes" } },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": ctx.settings.kubernetes_service_ip.to_string(),
                "sessionAffinity": "None",
                "ports": [{ "name": "https", "port": 443, "protocol": "TCP", "targetPort": target }],
            },
        }))
        .expect("a valid Service");
        services.create(&PostParams::default(), &service).await?;
        tracing::info!(ip = %ctx.settings.kubernetes_service_ip, "created the kubernetes service");
    }
    Ok(())
}

/// Keeps the kubernetes service until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = reconcile(&ctx).await {
            tracing::warn!(error = %e, "cannot reconcile the kubernetes service; retrying");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_api_servers() {
        let servers: Vec<SocketAddr> = vec!["10.0.0.1:6443".parse().unwrap(), "10.0.0.2:6443".parse().unwrap()];
        let ep = endpoints(&servers);
        let subsets = ep.subsets.unwrap();
        assert_eq!(subsets.len(), 1);
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 2);
        assert_eq!(subsets[0].ports.as_ref().unwrap()[0].port, 6443);
        let s = slice(&servers);
        assert_eq!((s.address_type.as_str(), s.endpoints.len()), ("IPv4", 2));
        assert_eq!(s.metadata.labels.unwrap()[SERVICE_NAME_LABEL], "kubernetes");
        assert_eq!(s.ports.unwrap()[0].name.as_deref(), Some("https"));
    }
}
