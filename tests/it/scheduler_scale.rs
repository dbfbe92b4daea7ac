//! The scheduler at a small scale (the full run is `make bench-scheduler`): 50 hollow nodes
//! in this process and 1,000 pods created at once all get bound, spread over the nodes and
//! reported Running.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, PostParams};
use orch::node::hollow::{start_many, HollowConfig, HollowNode};
use serde_json::json;

use crate::support::{kube_client, ready_server, wait_for};

const NODES: usize = 50;
const PODS: usize = 1000;

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": format!("p-{i:04}"), "labels": { "app": format!("a{}", i % 10) } },
        "spec": { "containers": [{ "name": "c", "image": "pause", "resources": { "requests": { "cpu": "10m", "memory": "16Mi" } } }] },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_pods_run_on_fifty_hollow_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path(), &[]).await;
    let client = kube_client(&server).await;
    let (url, token) = (server.url(), server.agent_token());
    let configs =
        (0..NODES).map(|i| HollowConfig::new(&url, &token, &format!("scale-{i:02}"), &format!("password-of-scale-{i}"))).collect();
    let nodes: Vec<HollowNode> = start_many(configs, 16).await.into_iter().map(|r| r.expect("a hollow node starts")).collect();
    let all_pods: Api<Pod> = Api::all(client.clone());

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.create(&PostParams::default(), &serde_json::from_value(json!({ "metadata": { "name": "scale" } })).unwrap()).await.unwrap();
    // Pods created before the nodes have pod CIDRs wait Pending; they must run all the same.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "scale");
    let start = Instant::now();
    let created = futures::stream::iter(0..PODS)
        .map(|i| {
            let pods = pods.clone();
            async move { pods.create(&PostParams::default(), &pod(i)).await.map(drop) }
        })
        .buffer_unordered(16)
        .filter(|r| futures::future::ready(r.is_ok()))
        .count()
        .await;
    assert_eq!(created, PODS, "every create succeeds");

    let running = wait_for(Duration::from_secs(300), "1,000 pods Running", || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        let running: Vec<Pod> =
            list.items.into_iter().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")).collect();
        (running.len() == PODS).then_some(running)
    })
    .await;
    eprintln!("{PODS} pods on {NODES} hollow nodes: all Running after {:.1} s", start.elapsed().as_secs_f64());

    let mut per_node: HashMap<String, usize> = HashMap::new();
    for p in &running {
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).expect("a running pod is bound");
        assert!(node.starts_with("scale-"), "bound to a hollow node: {node}");
        assert!(p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some(), "a running pod has an address");
        *per_node.entry(node).or_default() += 1;
    }
    assert_eq!(per_node.len(), NODES, "every node got pods: {per_node:?}");
    let (min, max) = (per_node.values().min().unwrap(), per_node.values().max().unwrap());
    assert!(*max <= 2 * *min + 10, "pods are spread over the nodes (least-allocated scoring): {min}..{max}");
    assert_eq!(all_pods.list(&ListParams::default().labels("app=a3")).await.unwrap().items.len(), PODS / 10);

    for node in nodes {
        node.stop().await;
    }
}
