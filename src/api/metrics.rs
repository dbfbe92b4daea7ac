//! `metrics.k8s.io/v1beta1`, served by the API server itself (no metrics-server pod): NodeMetrics
//! and PodMetrics built from the kubelets' `/stats/summary`, gathered from every node at most
//! once per [`RESOLUTION`] (metrics-server's scrape resolution) so `kubectl top` is fast. The
//! wire format is metrics-server's: CPU in nanocores, memory (working set) in bytes, the
//! sample's `timestamp` and the `window` the CPU rate covers; pods and nodes without figures
//! are left out of lists and are NotFound when asked for by name.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::objects::{self, Scope, Selection};
use super::registry::{self, Resource};
use super::status::ApiError;
use super::ServiceNetwork;
use crate::k8s::stats::{CpuStats, MemoryStats, Summary, SAMPLE_INTERVAL};
use crate::store::Store;

pub const GROUP: &str = "metrics.k8s.io";
const VERSION: &str = "v1beta1";
/// How long gathered figures are served before the kubelets are asked again.
const RESOLUTION: Duration = Duration::from_secs(15);
/// How long one kubelet may take to answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

const fn metrics_resource(kind: &'static str, plural: &'static str, namespaced: bool) -> Resource {
    Resource {
        group: GROUP,
        version: VERSION,
        kind,
        plural,
        singular: "",
        short_names: &[],
        categories: &[],
        namespaced,
        verbs: &["get", "list"],
        subresources: &[],
        schema: None,
        custom: None,
    }
}

/// The resources of the group, for discovery.
pub static RESOURCES: [Resource; 2] = [metrics_resource("NodeMetrics", "nodes", false), metrics_resource("PodMetrics", "pods", true)];

/// The nodes' summaries by node name, and when they were gathered.
type Gathered = (Instant, Arc<HashMap<String, Summary>>);

/// The metrics API: the kubelet client and the last gathered figures.
pub struct MetricsApi {
    tls: Option<Arc<rustls::ClientConfig>>,
    cache: tokio::sync::Mutex<Option<Gathered>>,
}

/// What a request asks for.
pub struct Query<'a> {
    pub plural: &'a str,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub query: &'a HashMap<String, String>,
}

impl MetricsApi {
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        Self { tls, cache: tokio::sync::Mutex::new(None) }
    }

    /// The figures of every node, gathered again when older than [`RESOLUTION`] (one
    /// gathering at a time; concurrent requests wait for it).
    async fn summaries(&self, store: &dyn Store, net: ServiceNetwork) -> Result<Arc<HashMap<String, Summary>>, ApiError> {
        let mut cache = self.cache.lock().await;
        if let Some((_, summaries)) = cache.as_ref().filter(|(at, _)| at.elapsed() < RESOLUTION) {
            return Ok(summaries.clone());
        }
        let tls = self.tls.as_ref().ok_or_else(|| ApiError::service_unavailable("this API server has no kubelet client credentials"))?;
        let nodes = objects::list(store, &Scope::new(nodes(), None, net), &Selection::default(), 0, None).await?.items;
        let scrapes = nodes.iter().map(|node| async move {
            let name = node["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let got = tokio::time::timeout(SCRAPE_TIMEOUT, super::node_proxy::kubelet_get(tls, node, "/stats/summary")).await;
            let summary = match got {
                Ok(Ok(body)) => serde_json::from_slice::<Summary>(&body).map_err(|e| e.to_string()),
                Ok(Err(e)) => Err(e.message),
                Err(_) => Err(format!("no answer within {SCRAPE_TIMEOUT:?}")),
            };
            match summary {
                Ok(s) => Some((name, s)),
                Err(error) => {
                    tracing::debug!(node = %name, %error, "cannot gather the node's resource figures");
                    None
                }
            }
        });
        let summaries: HashMap<String, Summary> = futures::future::join_all(scrapes).await.into_iter().flatten().collect();
        let summaries = Arc::new(summaries);
        *cache = Some((Instant::now(), summaries.clone()));
        Ok(summaries)
    }

    /// Answers a get or list of NodeMetrics or PodMetrics.
    pub async fn serve(&self, store: &dyn Store, net: ServiceNetwork, q: Query<'_>) -> Result<Value, ApiError> {
        let summaries = self.summaries(store, net).await?;
        let (objects_of, kind) = match q.plural {
            "nodes" => (nodes(), "NodeMetrics"),
            "pods" => (registry::lookup("", "v1", "pods").expect("pods are built in"), "PodMetrics"),
            other => return Err(ApiError::not_found(GROUP, other, q.name.unwrap_or_default())),
        };
        let scope = Scope::new(objects_of, q.namespace, net);
        let items: Vec<Value> = match q.name {
            Some(name) => {
                let obj = objects::get(store, &scope, name).await.ok();
                let metrics = obj.and_then(|o| metrics_of(kind, &o, &summaries));
                let shown = q.namespace.map_or(name.to_string(), |ns| format!("{ns}/{name}"));
                let metrics = metrics.ok_or_else(|| {
                    let mut e = ApiError::not_found(GROUP, q.plural, name);
                    e.message = format!("{}.{GROUP} \"{shown}\" not found", kind.to_ascii_lowercase());
                    e
                })?;
                return Ok(metrics);
            }
            None => {
                let selection = super::selection(objects_of, q.query)?;
                let listed = objects::list(store, &scope, &selection, 0, None).await?.items;
                listed.iter().filter_map(|o| metrics_of(kind, o, &summaries)).collect()
            }
        };
        Ok(json!({ "kind": format!("{kind}List"), "apiVersion": format!("{GROUP}/{VERSION}"), "metadata": {}, "items": items }))
    }
}

fn nodes() -> &'static Resource {
    registry::lookup("", "v1", "nodes").expect("nodes are built in")
}

/// The metrics object of the Node or Pod `obj`, if its node reported figures for it.
fn metrics_of(kind: &str, obj: &Value, summaries: &HashMap<String, Summary>) -> Option<Value> {
    let meta = &obj["metadata"];
    let name = meta["name"].as_str()?;
    let mut metadata = json!({ "name": name, "creationTimestamp": crate::k8s::time::now_rfc3339() });
    if !meta["labels"].is_null() {
        metadata["labels"] = meta["labels"].clone();
    }
    let mut out = json!({ "kind": kind, "apiVersion": format!("{GROUP}/{VERSION}"), "metadata": metadata });
    if kind == "NodeMetrics" {
        let node = &summaries.get(name)?.node;
        let (usage, time) = usage(&node.cpu, &node.memory)?;
        out["timestamp"] = json!(time);
        out["window"] = json!(window());
        out["usage"] = usage;
        return Some(out);
    }
    let namespace = meta["namespace"].as_str()?;
    let node = obj["spec"]["nodeName"].as_str()?;
    let pod = summaries.get(node)?.pods.iter().find(|p| p.pod_ref.namespace == namespace && p.pod_ref.name == name)?;
    let mut time = None;
    let mut containers = Vec::new();
    for c in &pod.containers {
        let (usage, at) = usage(&c.cpu, &c.memory)?;
        time = time.or(Some(at));
        containers.push(json!({ "name": c.name, "usage": usage }));
    }
    out["metadata"]["namespace"] = json!(namespace);
    out["timestamp"] = json!(time?);
    out["window"] = json!(window());
    out["containers"] = json!(containers);
    Some(out)
}

/// `{cpu, memory}` as metrics-server writes them, and the CPU sample's time; `None` until the
/// kubelet has a rate.
fn usage(cpu: &Option<CpuStats>, memory: &Option<MemoryStats>) -> Option<(Value, String)> {
    let cpu = cpu.as_ref()?;
    let nano_cores = cpu.usage_nano_cores?;
    let bytes = memory.as_ref()?.working_set_bytes?;
    let cpu_text = crate::k8s::quantity::canonical(&format!("{nano_cores}n"))?;
    // Binary SI: a whole number of KiB takes the largest binary suffix, anything else is bytes.
    let memory_text = if bytes >= 1024 && bytes % 1024 == 0 {
        crate::k8s::quantity::canonical(&format!("{}Ki", bytes / 1024))?
    } else {
        bytes.to_string()
    };
    let time = serde_json::to_value(&cpu.time).ok()?.as_str()?.to_string();
    Some((json!({ "cpu": cpu_text, "memory": memory_text }), time))
}

/// The window CPU rates cover, as a Go duration (`10s`).
fn window() -> String {
    format!("{}s", SAMPLE_INTERVAL.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::stats::{ContainerStats, NodeStats, PodReference, PodStats};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn figures(nano_cores: u64, bytes: u64) -> (Option<CpuStats>, Option<MemoryStats>) {
        let time = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap());
        let cpu = CpuStats { time: time.clone(), usage_nano_cores: Some(nano_cores), usage_core_nano_seconds: Some(1) };
        let memory = MemoryStats { time, available_bytes: None, usage_bytes: None, working_set_bytes: Some(bytes), rss_bytes: None };
        (Some(cpu), Some(memory))
    }

    #[test]
    fn objects_take_metrics_servers_shape() {
        let (cpu, memory) = figures(250_000_000, 3 << 20);
        let (ccpu, cmem) = figures(12_345, 1000);
        let summary = Summary {
            node: NodeStats { node_name: "n1".into(), start_time: None, cpu, memory },
            pods: vec![PodStats {
                pod_ref: PodReference { name: "web".into(), namespace: "default".into(), uid: "u".into() },
                start_time: None,
                containers: vec![ContainerStats { name: "app".into(), start_time: None, cpu: ccpu, memory: cmem }],
                cpu: None,
                memory: None,
            }],
        };
        let summaries = HashMap::from([("n1".to_string(), summary)]);
        let node = json!({ "metadata": { "name": "n1", "labels": { "a": "b" } } });
        let m = metrics_of("NodeMetrics", &node, &summaries).unwrap();
        assert_eq!(m["usage"], json!({ "cpu": "250m", "memory": "3Mi" }));
        assert_eq!((m["timestamp"].as_str(), m["window"].as_str()), (Some("2023-11-14T22:13:20Z"), Some("10s")));
        assert_eq!(m["metadata"]["labels"], json!({ "a": "b" }));
        let pod = json!({ "metadata": { "name": "web", "namespace": "default" }, "spec": { "nodeName": "n1" } });
        let m = metrics_of("PodMetrics", &pod, &summaries).unwrap();
        assert_eq!(m["containers"], json!([{ "name": "app", "usage": { "cpu": "12345n", "memory": "1000" } }]));
        let elsewhere = json!({ "metadata": { "name": "web", "namespace": "other" }, "spec": { "nodeName": "n1" } });
        assert!(metrics_of("PodMetrics", &elsewhere, &summaries).is_none());
    }
}
