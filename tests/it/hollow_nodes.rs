//! Hollow nodes (`orch agent --runtime fake`) against a real server: registration, pod CIDRs,
//! pods reported running with addresses from their node's range, endpoints, node failure
//! (Unknown + unreachable taint) and taint-based eviction.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use orch::node::hollow::{start_many, HollowConfig, HollowNode};
use serde_json::json;

use crate::support::{kube_client, start_hollow_node, start_server, wait_for};

const WAIT: Duration = Duration::from_secs(60);

fn ready(node: &Node) -> Option<String> {
    let conditions = node.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone())
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (net, _) = cidr.split_once('/').unwrap();
    let (ip, net): (Ipv4Addr, Ipv4Addr) = (ip.parse().unwrap(), net.parse().unwrap());
    ip.octets()[..3] == net.octets()[..3]
}

fn pod(name: &str, node: &str, extra: serde_json::Value) -> Pod {
    let mut p = json!({
        "metadata": { "name": name, "labels": { "app": "web" } },
        "spec": {
            "nodeName": node,
            "containers": [{ "name": "web", "image": "nginx", "ports": [{ "name": "http", "containerPort": 8080 }] }],
            "tolerations": [{ "key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2 }],
        },
    });
    json_patch::merge(&mut p, &extra);
    serde_json::from_value(p).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_nodes_run_pods_and_fail_over() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("server"), &["--node-monitor-grace-period=5s".into()]);
    server.wait_member(Duration::from_secs(20)).await;
    let client = kube_client(&server).await;
    let fast = ["--node-lease-renew-interval=1s".to_string(), "--node-status-update-frequency=2s".to_string()];
    let mut agents: Vec<_> =
        (0..3).map(|i| start_hollow_node(&server, &dir.path().join(format!("hollow-{i}")), &format!("hollow-{i}"), &fast)).collect();

    let nodes: Api<Node> = Api::all(client.clone());
    let listed = wait_for(WAIT, "three Ready hollow nodes with distinct pod CIDRs", || async {
        let list = nodes.list(&ListParams::default().labels("type=hollow")).await.ok()?;
        let ok = list.items.len() == 3
            && list.items.iter().all(|n| ready(n).as_deref() == Some("True") && n.spec.as_ref().is_some_and(|s| s.pod_cidr.is_some()));
        ok.then_some(list.items)
    })
    .await;
    let mut cidrs: Vec<String> = listed.iter().map(|n| n.spec.as_ref().unwrap().pod_cidr.clone().unwrap()).collect();
    cidrs.sort();
    cidrs.dedup();
    assert_eq!(cidrs.len(), 3, "pod CIDRs must differ: {cidrs:?}");
    let node0 = listed.iter().find(|n| n.metadata.name.as_deref() == Some("hollow-0")).unwrap();
    assert_eq!(node0.status.as_ref().unwrap().node_info.as_ref().unwrap().container_runtime_version, "fake://orch");
    let cidr0 = node0.spec.as_ref().unwrap().pod_cidr.clone().unwrap();

    // A pod bound directly to hollow-0 runs with an address from hollow-0's range.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-0", "hollow-0", json!({}))).await.unwrap();
    let ip = wait_for(WAIT, "web-0 Running with a pod IP", || async {
        let p = pods.get("web-0").await.ok()?;
        let status = p.status?;
        (status.phase.as_deref() == Some("Running")).then_some(status.pod_ip?)
    })
    .await;
    assert!(in_cidr(&ip, &cidr0), "{ip} is not in hollow-0's {cidr0}");

    // A Service selecting it lists that address in its Endpoints and EndpointSlice.
    let service: Service = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": { "selector": { "app": "web" }, "ports": [{ "name": "http", "port": 80, "targetPort": "http" }] },
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), "default").create(&PostParams::default(), &service).await.unwrap();
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    wait_for(WAIT, "Endpoints web listing web-0's address on port 8080", || async {
        let subsets = endpoints.get("web").await.ok()?.subsets?;
        let s = subsets.first()?;
        let ok = s.addresses.as_ref()?.iter().any(|a| a.ip == ip) && s.ports.as_ref()?.iter().any(|p| p.port == 8080);
        ok.then_some(())
    })
    .await;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    wait_for(WAIT, "an EndpointSlice for web with web-0 ready", || async {
        let list = slices.list(&ListParams::default().labels("kubernetes.io/service-name=web")).await.ok()?;
        let found = list
            .items
            .iter()
            .flat_map(|s| &s.endpoints)
            .any(|e| e.addresses == [ip.clone()] && e.conditions.as_ref().is_some_and(|c| c.ready == Some(true)));
        found.then_some(())
    })
    .await;

    // Pods that run to completion succeed; deleted pods are finished by their node.
    let job = pod("job", "hollow-1", json!({ "spec": { "restartPolicy": "Never" } }));
    pods.create(&PostParams::default(), &job).await.unwrap();
    let failing = pod(
        "fails",
        "hollow-1",
        json!({ "metadata": { "annotations": { "orch.dev/fake-exit-code": "3" } }, "spec": { "restartPolicy": "Never" } }),
    );
    pods.create(&PostParams::default(), &failing).await.unwrap();
    wait_for(WAIT, "pod job Succeeded and pod fails Failed", || async {
        let job = pods.get("job").await.ok()?.status?.phase?;
        let fails = pods.get("fails").await.ok()?.status?;
        let code = fails.container_statuses?.first()?.state.clone()?.terminated?.exit_code;
        (job == "Succeeded" && fails.phase.as_deref() == Some("Failed") && code == 3).then_some(())
    })
    .await;
    pods.create(&PostParams::default(), &pod("web-1", "hollow-1", json!({}))).await.unwrap();
    wait_for(WAIT, "web-1 Running", || async { (pods.get("web-1").await.ok()?.status?.phase? == "Running").then_some(()) }).await;
    pods.delete("web-1", &DeleteParams::default()).await.unwrap();
    wait_for(WAIT, "web-1 finished by hollow-1 and gone", || async { pods.get_opt("web-1").await.ok()?.is_none().then_some(()) }).await;

    // hollow-0 vanishes: its node turns Unknown and unreachable, and web-0 is evicted after
    // its 2 s toleration.
    agents[0].kill();
    wait_for(WAIT, "hollow-0 Ready=Unknown with the unreachable NoExecute taint", || async {
        let n = nodes.get("hollow-0").await.ok()?;
        let tainted =
            n.spec.as_ref()?.taints.as_ref()?.iter().any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute");
        (ready(&n).as_deref() == Some("Unknown") && tainted).then_some(())
    })
    .await;
    wait_for(WAIT, "web-0 evicted from hollow-0", || async {
        match pods.get_opt("web-0").await.ok()? {
            None => Some(()),
            Some(p) => p.metadata.deletion_timestamp.map(|_| ()),
        }
    })
    .await;
    let others = nodes.list(&ListParams::default().labels("type=hollow")).await.unwrap();
    for n in others.items.iter().filter(|n| n.metadata.name.as_deref() != Some("hollow-0")) {
        assert_eq!(ready(n).as_deref(), Some("True"), "{:?} should stay Ready; agent log:\n{}", n.metadata.name, agents[1].log());
    }
    agents.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_service_lists_the_api_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("server"), &[]);
    server.wait_member(Duration::from_secs(20)).await;
    let client = kube_client(&server).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = wait_for(WAIT, "the kubernetes service", || async { services.get_opt("kubernetes").await.ok()? }).await;
    assert_eq!(svc.spec.unwrap().cluster_ip.as_deref(), Some("10.43.0.1"));
    let endpoints: Api<Endpoints> = Api::namespaced(client, "default");
    let ep = wait_for(WAIT, "the kubernetes endpoints", || async { endpoints.get_opt("kubernetes").await.ok()? }).await;
    let subset = &ep.subsets.unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "127.0.0.1");
    assert_eq!(subset.ports.as_ref().unwrap()[0].port, i32::from(server.port));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_hollow_nodes_share_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("server"), &[]);
    server.wait_member(Duration::from_secs(20)).await;
    let client = kube_client(&server).await;
    let (url, token) = (server.url(), server.agent_token());
    let configs = (0..20).map(|i| HollowConfig::new(&url, &token, &format!("lib-{i}"), &format!("password-of-lib-{i}"))).collect();
    let started = start_many(configs, 8).await;
    let nodes: Vec<HollowNode> = started.into_iter().map(|r| r.expect("a hollow node starts")).collect();
    let api: Api<Node> = Api::all(client);
    wait_for(WAIT, "20 Ready nodes with pod CIDRs", || async {
        let list = api.list(&ListParams::default().labels("type=hollow")).await.ok()?;
        let ok = list
            .items
            .iter()
            .filter(|n| ready(n).as_deref() == Some("True") && n.spec.as_ref().is_some_and(|s| s.pod_cidr.is_some()))
            .count()
            == 20;
        ok.then_some(())
    })
    .await;
    for node in nodes {
        node.stop().await;
    }
}

#[test]
fn agent_flags_are_checked() {
    let orch = |args: &[&str]| std::process::Command::new(crate::support::orch_binary()).args(args).output().expect("running orch");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = format!("--data-dir={}", dir.path().display());
    let containerd = orch(&["agent", &data_dir, "--token=t"]);
    assert!(!containerd.status.success());
    let expected = if orch::node::runtime::supervisor::find_binary("containerd").is_some() { "--join" } else { "apt-get install" };
    assert!(String::from_utf8_lossy(&containerd.stderr).contains(expected), "{containerd:?}");
    let bad_taint = orch(&["agent", &data_dir, "--runtime=fake", "--node-taint=k=v"]);
    assert!(!bad_taint.status.success());
    assert!(String::from_utf8_lossy(&bad_taint.stderr).contains("key=value:Effect"), "{bad_taint:?}");
    let no_join = orch(&["agent", &data_dir, "--runtime=fake"]);
    assert!(!no_join.status.success());
    assert!(String::from_utf8_lossy(&no_join.stderr).contains("--join"), "{no_join:?}");
}
