//! The scheduler inside `orch server`: pods bound to plain Node objects respecting a taint, a
//! nodeSelector, a toleration and cpu requests; a pod too big for any node stays Pending with
//! kube-scheduler's FailedScheduling event and PodScheduled=False condition.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{json, Value};

use crate::support::{start_server, wait_for};

const WAIT: Duration = Duration::from_secs(30);

async fn create_node(nodes: &Api<Node>, name: &str, labels: Value, taints: Value) {
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": labels },
        "spec": { "taints": taints },
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let status = json!({ "status": {
        "capacity": { "cpu": "2", "memory": "4Gi", "pods": "110" },
        "allocatable": { "cpu": "2", "memory": "4Gi", "pods": "110" },
        "conditions": [ { "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready" } ],
    } });
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
}

async fn create_pod(pods: &Api<Pod>, name: &str, cpu: &str, extra: Value) {
    let mut spec = json!({ "containers": [ { "name": "c", "image": "busybox", "resources": { "requests": { "cpu": cpu } } } ] });
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    let pod: Pod = serde_json::from_value(json!({ "metadata": { "name": name }, "spec": spec })).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
}

async fn bound_node(pods: &Api<Pod>, name: &str) -> String {
    wait_for(WAIT, &format!("pod {name} to be bound"), || async {
        pods.get(name).await.ok().and_then(|p| p.spec.and_then(|s| s.node_name)).filter(|n| !n.is_empty())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_pods_by_taints_selectors_and_resources() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("n0"), &["--disable-agent".to_string()]);
    server.wait_member(Duration::from_secs(20)).await;
    let kubeconfig = Kubeconfig::read_from(server.data_dir.join("orch.yaml")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_for(WAIT, "the default namespace", || async { pods.list(&ListParams::default()).await.ok() }).await;

    create_node(&nodes, "n1", json!({}), json!([{ "key": "dedicated", "value": "special", "effect": "NoSchedule" }])).await;
    create_node(&nodes, "n2", json!({ "disk": "ssd" }), json!([])).await;
    create_node(&nodes, "n3", json!({}), json!([])).await;

    create_pod(&pods, "ssd", "100m", json!({ "nodeSelector": { "disk": "ssd" } })).await;
    assert_eq!(bound_node(&pods, "ssd").await, "n2");

    let tolerant = json!({
        "tolerations": [ { "key": "dedicated", "operator": "Equal", "value": "special", "effect": "NoSchedule" } ],
        "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [
            { "matchFields": [ { "key": "metadata.name", "operator": "In", "values": ["n1"] } ] } ] } } },
    });
    create_pod(&pods, "tolerant", "100m", tolerant).await;
    assert_eq!(bound_node(&pods, "tolerant").await, "n1");

    for i in 0..4 {
        create_pod(&pods, &format!("plain-{i}"), "100m", json!({})).await;
    }
    for i in 0..4 {
        assert_ne!(bound_node(&pods, &format!("plain-{i}")).await, "n1", "plain-{i} must avoid the tainted node");
    }
    // Each of the untainted nodes has room for one 1500m pod, not two.
    create_pod(&pods, "big-a", "1500m", json!({})).await;
    create_pod(&pods, "big-b", "1500m", json!({})).await;
    let (a, b) = (bound_node(&pods, "big-a").await, bound_node(&pods, "big-b").await);
    assert!(a != b && a != "n1" && b != "n1", "big pods on {a} and {b}");

    create_pod(&pods, "too-big", "3", json!({})).await;
    let expected = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: special}, 2 Insufficient cpu. \
                    preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod..";
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let failed = wait_for(WAIT, "a FailedScheduling event for too-big", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedScheduling") && e.involved_object.name.as_deref() == Some("too-big"))
    })
    .await;
    assert_eq!(failed.message.as_deref(), Some(expected));
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    assert_eq!(failed.source.and_then(|s| s.component).as_deref(), Some("default-scheduler"));
    let condition = wait_for(WAIT, "too-big's PodScheduled=False condition", || async {
        let pod = pods.get("too-big").await.ok()?;
        pod.status?.conditions?.into_iter().find(|c| c.type_ == "PodScheduled" && c.status == "False")
    })
    .await;
    assert_eq!(condition.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(condition.message.as_deref(), Some(expected));
    let pod = pods.get("too-big").await.unwrap();
    assert!(pod.spec.and_then(|s| s.node_name).is_none(), "too-big must stay unbound");

    let scheduled = wait_for(WAIT, "a Scheduled event for ssd", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| e.reason.as_deref() == Some("Scheduled") && e.involved_object.name.as_deref() == Some("ssd"))
    })
    .await;
    assert_eq!(scheduled.message.as_deref(), Some("Successfully assigned default/ssd to n2"));

    // A fourth node with room lets the waiting pod in.
    let room: Node = serde_json::from_value(json!({ "metadata": { "name": "n4" } })).unwrap();
    nodes.create(&PostParams::default(), &room).await.unwrap();
    let status = json!({ "status": { "allocatable": { "cpu": "4", "memory": "8Gi", "pods": "110" } } });
    nodes.patch_status("n4", &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
    assert_eq!(bound_node(&pods, "too-big").await, "n4");
}
