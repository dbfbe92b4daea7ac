//! What the scheduler benchmark creates: Deployments, ReplicaSets or bare pods, as JSON bodies
//! for the API, all in one namespace.

use clap::ValueEnum;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// apps/v1 Deployments (needs the Deployment and ReplicaSet controllers)
    Deployments,
    /// apps/v1 ReplicaSets (needs the ReplicaSet controller)
    Replicasets,
    /// Bare pods, `replicas` per "deployment" (needs no workload controller)
    Pods,
}

/// The pod template every workload uses: one container with small requests.
fn pod_spec() -> Value {
    json!({
        "containers": [{
            "name": "pause",
            "image": "registry.k8s.io/pause:3.10",
            "resources": { "requests": { "cpu": "10m", "memory": "16Mi" } },
        }],
    })
}

impl Workload {
    /// The collection URL path (under the API root) objects are POSTed to.
    pub fn path(self, namespace: &str) -> String {
        match self {
            Workload::Deployments => format!("/apis/apps/v1/namespaces/{namespace}/deployments"),
            Workload::Replicasets => format!("/apis/apps/v1/namespaces/{namespace}/replicasets"),
            Workload::Pods => format!("/api/v1/namespaces/{namespace}/pods"),
        }
    }

    /// The bodies to create for deployment number `d` of `replicas` pods.
    pub fn bodies(self, d: usize, replicas: usize) -> Vec<String> {
        let app = format!("app-{d:03}");
        let template = json!({ "metadata": { "labels": { "app": app } }, "spec": pod_spec() });
        let controller = |kind: &str| {
            json!({
                "apiVersion": "apps/v1",
                "kind": kind,
                "metadata": { "name": app },
                "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": app } }, "template": template },
            })
        };
        match self {
            Workload::Deployments => vec![controller("Deployment").to_string()],
            Workload::Replicasets => vec![controller("ReplicaSet").to_string()],
            Workload::Pods => (0..replicas)
                .map(|r| {
                    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": format!("{app}-{r:03}"), "labels": { "app": app } },
                        "spec": pod_spec() })
                    .to_string()
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_valid_objects() {
        let d: Value = serde_json::from_str(&Workload::Deployments.bodies(7, 100)[0]).unwrap();
        assert_eq!(d["spec"]["replicas"], 100);
        assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "app-007");
        assert_eq!(d["spec"]["template"]["metadata"]["labels"]["app"], "app-007");
        let pods = Workload::Pods.bodies(7, 3);
        assert_eq!(pods.len(), 3);
        let p: Value = serde_json::from_str(&pods[2]).unwrap();
        assert_eq!(p["metadata"]["name"], "app-007-002");
        assert_eq!(Workload::Replicasets.path("b"), "/apis/apps/v1/namespaces/b/replicasets");
    }
}
