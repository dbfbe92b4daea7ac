//! Where the HPA reads pods' resource usage: the `metrics.k8s.io/v1beta1` PodMetrics API
//! (metrics-server's wire format), behind a narrow trait so tests can feed usage directly.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use super::replicas::{Usage, Usages};

/// One pod's metrics as the metrics API lists them.
#[derive(Debug, Clone, Deserialize)]
pub struct PodMetrics {
    pub metadata: Metadata,
    pub timestamp: Timestamp,
    /// A Go duration (`30s`, `1m0.5s`): the interval the usage was measured over.
    #[serde(default)]
    pub window: String,
    #[serde(default)]
    pub containers: Vec<ContainerMetrics>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContainerMetrics {
    pub name: String,
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
}

#[derive(Deserialize)]
struct PodMetricsList {
    #[serde(default)]
    items: Vec<PodMetrics>,
}

/// Lists the PodMetrics of the pods `selector` selects in `namespace`; the error is what the
/// HPA reports (kube's wording for the resource metrics API).
#[async_trait::async_trait]
pub trait MetricsSource: Send + Sync {
    async fn pod_metrics(&self, namespace: &str, selector: &str) -> Result<Vec<PodMetrics>, String>;
}

/// The metrics API served through the API server.
pub struct MetricsApi(pub kube::Client);

#[async_trait::async_trait]
impl MetricsSource for MetricsApi {
    async fn pod_metrics(&self, namespace: &str, selector: &str) -> Result<Vec<PodMetrics>, String> {
        let query = form_urlencoded::Serializer::new(String::new()).append_pair("labelSelector", selector).finish();
        let path = format!("/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods?{query}");
        let request = http::Request::get(path).body(Vec::new()).map_err(|e| e.to_string())?;
        let fetched: Result<PodMetricsList, kube::Error> = self.0.request(request).await;
        fetched.map(|list| list.items).map_err(|e| {
            let why = match e {
                kube::Error::Api(status) if status.code == 404 => {
                    "the server could not find the requested resource (get pods.metrics.k8s.io)".to_string()
                }
                other => other.to_string(),
            };
            format!("unable to fetch metrics from resource metrics API: {why}")
        })
    }
}

/// Each pod's usage of `resource` (thousandths): the sum over its containers (or the one
/// `container`); pods with a container lacking the resource are left out, as kube does.
pub fn usages(items: &[PodMetrics], resource: &str, container: Option<&str>) -> Usages {
    let mut out = Usages::new();
    for pod in items {
        let window = go_duration(&pod.window).unwrap_or(SignedDuration::ZERO);
        let values: Option<Vec<i64>> = match container {
            Some(name) => pod
                .containers
                .iter()
                .find(|c| c.name == name)
                .map(|c| c.usage.get(resource).and_then(crate::k8s::quantity::milli_value).into_iter().collect::<Vec<_>>()),
            None if pod.containers.is_empty() => None,
            None => pod.containers.iter().map(|c| c.usage.get(resource).and_then(crate::k8s::quantity::milli_value)).collect(),
        };
        if let Some(values) = values.filter(|v| !v.is_empty()) {
            out.insert(pod.metadata.name.clone(), Usage { milli: values.iter().sum(), timestamp: pod.timestamp, window });
        }
    }
    out
}

/// A Go duration string (`1h2m3.5s`, `250ms`, `0s`).
fn go_duration(text: &str) -> Option<SignedDuration> {
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * seconds;
        rest = &rest[unit_end..];
    }
    SignedDuration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, containers: serde_json::Value) -> PodMetrics {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": name }, "timestamp": "2026-01-01T00:00:00Z", "window": "10.5s", "containers": containers,
        }))
        .unwrap()
    }

    #[test]
    fn usage_sums_containers_and_skips_pods_missing_one() {
        let items = [
            pod(
                "a",
                serde_json::json!([{ "name": "app", "usage": { "cpu": "250m", "memory": "10Mi" } },
                                        { "name": "side", "usage": { "cpu": "50m" } }]),
            ),
            pod("b", serde_json::json!([{ "name": "app", "usage": { "cpu": "1" } }])),
        ];
        let cpu = usages(&items, "cpu", None);
        assert_eq!(cpu["a"].milli, 300);
        assert_eq!(cpu["b"].milli, 1000);
        assert_eq!(cpu["a"].window, SignedDuration::from_millis(10_500));
        // Pod a's sidecar reports no memory, pod b none at all.
        assert!(usages(&items, "memory", None).is_empty());
        assert_eq!(usages(&items, "memory", Some("app"))["a"].milli, 10 * 1024 * 1024 * 1000);
        assert_eq!(usages(&items, "cpu", Some("side"))["a"].milli, 50);
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(go_duration("1m0.5s"), Some(SignedDuration::from_millis(60_500)));
        assert_eq!(go_duration("250ms"), Some(SignedDuration::from_millis(250)));
        assert_eq!(go_duration("5x"), None);
    }
}
