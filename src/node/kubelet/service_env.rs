//! The Service environment variables every container gets, as the kubelet computes them
//! (kubernetes/pkg/kubelet/envvars): `{SVC}_SERVICE_HOST`/`_PORT`/`_PORT_{NAME}` and the docker
//! link variables of the `default/kubernetes` Service always, and of the pod's namespace's
//! Services with a ClusterIP when `enableServiceLinks` is on; from a watch-fed cache of all
//! Services that the kubelet keeps.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;

use crate::tasks::Tasks;

/// The Services whose variables every pod gets, whatever its namespace and links setting.
const MASTER_SERVICES: &[&str] = &["kubernetes"];

/// How long a container start waits for the first list of Services before it is retried.
const SYNC_WAIT: Duration = Duration::from_secs(10);

/// The Services cannot be read yet (the kubelet's message: the container is retried).
#[derive(Debug, thiserror::Error)]
#[error("services have not yet been read at least once, cannot construct envvars")]
pub struct NotSynced;

/// Every Service of the cluster, kept current by a watch the kubelet's tasks run.
#[derive(Clone)]
pub struct ServiceCache(Store<Service>);

impl ServiceCache {
    /// Starts watching Services on `tasks` (watch errors are logged and retried with backoff).
    pub fn start(client: kube::Client, tasks: &Tasks) -> Self {
        let (reader, writer) = reflector::store();
        let events = reflector::reflector(writer, watcher::watcher(Api::<Service>::all(client), watcher::Config::default()));
        tasks.spawn(async move {
            let mut events = std::pin::pin!(events.default_backoff());
            while let Some(event) = events.next().await {
                if let Err(e) = event {
                    tracing::warn!(error = %e, "watching services failed; retrying");
                }
            }
        });
        Self(reader)
    }

    /// The variables of a pod in `namespace` with `enableServiceLinks` = `links`; waits up to
    /// [`SYNC_WAIT`] for the first list of Services.
    pub async fn env(&self, namespace: &str, links: bool) -> Result<BTreeMap<String, String>, NotSynced> {
        match tokio::time::timeout(SYNC_WAIT, self.0.wait_until_ready()).await {
            Ok(Ok(())) => {}
            _ => return Err(NotSynced),
        }
        let services = self.0.state();
        Ok(service_env(services.iter().map(|s| &**s), namespace, links))
    }
}

/// The variables of the `services` a pod in `namespace` sees (kubelet's getServiceEnvVarMap).
pub fn service_env<'a>(services: impl Iterator<Item = &'a Service>, namespace: &str, links: bool) -> BTreeMap<String, String> {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    let mut masters = Vec::new();
    for svc in services.filter(|s| has_cluster_ip(s)) {
        let (ns, name) = (svc.metadata.namespace.as_deref().unwrap_or_default(), svc.metadata.name.as_deref().unwrap_or_default());
        if ns == "default" && MASTER_SERVICES.contains(&name) {
            masters.push((name, svc));
        } else if ns == namespace && links {
            chosen.insert(name, svc);
        }
    }
    // The master Services win over a same-named Service of the pod's namespace.
    chosen.extend(masters);
    chosen.values().flat_map(|s| variables(s)).collect()
}

/// Whether the Service has a ClusterIP (not headless, not ExternalName).
fn has_cluster_ip(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).is_some_and(|ip| !ip.is_empty() && ip != "None")
}

/// A Service or port name as a variable name: upper case, `-` as `_`.
fn var_name(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

/// The variables of one Service with a ClusterIP (envvars.FromServices).
fn variables(svc: &Service) -> Vec<(String, String)> {
    let spec = svc.spec.as_ref().expect("a Service with a ClusterIP has a spec");
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    let ports = spec.ports.as_deref().unwrap_or_default();
    let prefix = var_name(svc.metadata.name.as_deref().unwrap_or_default());
    let Some(first) = ports.first() else { return Vec::new() };
    let mut out = vec![(format!("{prefix}_SERVICE_HOST"), ip.clone()), (format!("{prefix}_SERVICE_PORT"), first.port.to_string())];
    for p in ports {
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((format!("{prefix}_SERVICE_PORT_{}", var_name(name)), p.port.to_string()));
        }
    }
    for (i, p) in ports.iter().enumerate() {
        let protocol = p.protocol.as_deref().filter(|p| !p.is_empty()).unwrap_or("TCP");
        let proto = protocol.to_lowercase();
        let host_port = match ip.parse() {
            Ok(addr) => SocketAddr::new(addr, p.port as u16).to_string(),
            Err(_) => format!("{ip}:{}", p.port),
        };
        let url = format!("{proto}://{host_port}");
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", p.port, protocol.to_uppercase());
        out.push((format!("{port_prefix}_PROTO"), proto));
        out.push((format!("{port_prefix}_PORT"), p.port.to_string()));
        out.push((format!("{port_prefix}_ADDR"), ip.clone()));
        out.push((port_prefix, url));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ns: &str, name: &str, spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}, "spec": spec})).unwrap()
    }

    fn table() -> Vec<Service> {
        vec![
            svc("default", "kubernetes", json!({"clusterIP": "10.43.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]})),
            svc(
                "app",
                "my-web",
                json!({"clusterIP": "10.43.5.6", "ports": [{"port": 80}, {"name": "dns-udp", "port": 53, "protocol": "UDP"}]}),
            ),
            svc("app", "headless", json!({"clusterIP": "None", "ports": [{"port": 80}]})),
            svc("app", "external", json!({"type": "ExternalName", "externalName": "example.org"})),
            svc("app", "v6", json!({"clusterIP": "fd00::5", "ports": [{"port": 8080}]})),
            svc("other", "elsewhere", json!({"clusterIP": "10.43.9.9", "ports": [{"port": 80}]})),
            svc("default", "not-master", json!({"clusterIP": "10.43.7.7", "ports": [{"port": 80}]})),
        ]
    }

    fn pairs(env: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    const KUBERNETES: [(&str, &str); 8] = [
        ("KUBERNETES_PORT", "tcp://10.43.0.1:443"),
        ("KUBERNETES_PORT_443_TCP", "tcp://10.43.0.1:443"),
        ("KUBERNETES_PORT_443_TCP_ADDR", "10.43.0.1"),
        ("KUBERNETES_PORT_443_TCP_PORT", "443"),
        ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
        ("KUBERNETES_SERVICE_HOST", "10.43.0.1"),
        ("KUBERNETES_SERVICE_PORT", "443"),
        ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
    ];

    #[test]
    fn links_off_gives_only_the_kubernetes_service() {
        let services = table();
        assert_eq!(pairs(&service_env(services.iter(), "app", false)), KUBERNETES);
    }

    #[test]
    fn links_on_adds_the_namespace_services_with_a_cluster_ip() {
        let services = table();
        let env = service_env(services.iter(), "app", true);
        let mut want: Vec<(&str, &str)> = KUBERNETES.to_vec();
        want.extend([
            ("MY_WEB_PORT", "tcp://10.43.5.6:80"),
            ("MY_WEB_PORT_53_UDP", "udp://10.43.5.6:53"),
            ("MY_WEB_PORT_53_UDP_ADDR", "10.43.5.6"),
            ("MY_WEB_PORT_53_UDP_PORT", "53"),
            ("MY_WEB_PORT_53_UDP_PROTO", "udp"),
            ("MY_WEB_PORT_80_TCP", "tcp://10.43.5.6:80"),
            ("MY_WEB_PORT_80_TCP_ADDR", "10.43.5.6"),
            ("MY_WEB_PORT_80_TCP_PORT", "80"),
            ("MY_WEB_PORT_80_TCP_PROTO", "tcp"),
            ("MY_WEB_SERVICE_HOST", "10.43.5.6"),
            ("MY_WEB_SERVICE_PORT", "80"),
            ("MY_WEB_SERVICE_PORT_DNS_UDP", "53"),
            ("V6_PORT", "tcp://[fd00::5]:8080"),
            ("V6_PORT_8080_TCP", "tcp://[fd00::5]:8080"),
            ("V6_PORT_8080_TCP_ADDR", "fd00::5"),
            ("V6_PORT_8080_TCP_PORT", "8080"),
            ("V6_PORT_8080_TCP_PROTO", "tcp"),
            ("V6_SERVICE_HOST", "fd00::5"),
            ("V6_SERVICE_PORT", "8080"),
        ]);
        want.sort();
        assert_eq!(pairs(&env), want);
    }

    #[test]
    fn the_default_namespace_sees_its_own_services_and_the_master_wins_a_name_clash() {
        let mut services = table();
        services.push(svc("app", "kubernetes", json!({"clusterIP": "10.43.8.8", "ports": [{"port": 1}]})));
        let env = service_env(services.iter(), "app", true);
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.43.0.1");
        let env = service_env(services.iter(), "default", true);
        assert_eq!(env["NOT_MASTER_SERVICE_HOST"], "10.43.7.7");
        assert!(!env.contains_key("MY_WEB_SERVICE_HOST"));
    }
}
