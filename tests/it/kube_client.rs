//! The core flows through kube-rs: over HTTPS with the kubeconfig `orch server` writes, and
//! in-process through the API router with an identity of its own.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use orch::pki::{Identity, MASTERS_GROUP};
use orch::store::{LocalStore, Store, StoreConfig};
use serde_json::json;

use crate::support::start_server;

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({ "metadata": { "name": name, "labels": { "app": "kube" } }, "data": { "k": value } })).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("n0"), &[]);
    server.wait_member(Duration::from_secs(20)).await;
    let kubeconfig = Kubeconfig::read_from(server.data_dir.join("orch.yaml")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    crate::support::wait_for(Duration::from_secs(20), "the default namespace", || async {
        namespaces.get_opt("default").await.ok().flatten()
    })
    .await;

    let created = api.create(&PostParams::default(), &config_map("a", "1")).await.unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    // Only this test's objects: the controllers add ConfigMaps of their own (kube-root-ca.crt).
    let mut events = api.watch(&WatchParams::default().labels("app=kube").timeout(10), &rv).await.unwrap().boxed();

    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({ "data": { "k": "2" } }))).await.unwrap();
    let applied = api.patch("b", &PatchParams::apply("kube-test").force(), &Patch::Apply(config_map("b", "x"))).await.unwrap();
    assert_eq!(applied.data.unwrap()["k"], "x");
    let listed = api.list(&ListParams::default().labels("app=kube")).await.unwrap();
    assert_eq!(listed.items.len(), 2);
    api.delete("a", &DeleteParams::default()).await.unwrap();

    let mut seen = Vec::new();
    while seen.len() < 3 {
        match events.try_next().await.unwrap().expect("watch ended early") {
            WatchEvent::Added(o) => seen.push(("added", o.metadata.name.unwrap())),
            WatchEvent::Modified(o) => seen.push(("modified", o.metadata.name.unwrap())),
            WatchEvent::Deleted(o) => seen.push(("deleted", o.metadata.name.unwrap())),
            other => panic!("unexpected watch event {other:?}"),
        }
    }
    assert_eq!(seen, [("modified", "a".to_string()), ("added", "b".to_string()), ("deleted", "a".to_string())]);
}

/// The API router over a fresh store in `dir`, with the system namespaces, for in-process
/// clients.
async fn in_process_api(dir: &std::path::Path) -> axum::Router {
    let store: Arc<dyn Store> = Arc::new(LocalStore::open(dir, &StoreConfig::default()).unwrap());
    orch::api::ensure_system_namespaces(store.as_ref()).await.unwrap();
    orch::api::router(store, orch::api::ServiceNetwork::default(), orch::api::TokenKeys::derive(b"test"), None, false, Default::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_client_goes_through_authorisation() {
    let dir = tempfile::tempdir().unwrap();
    let router = in_process_api(dir.path()).await;

    let controller = Identity { user: "system:orch-controller-manager".into(), groups: vec![MASTERS_GROUP.into()] };
    let api: Api<ConfigMap> = Api::default_namespaced(orch::api::in_process_client(router.clone(), controller, "default"));
    api.create(&PostParams::default(), &config_map("inproc", "1")).await.unwrap();
    assert_eq!(api.get("inproc").await.unwrap().data.unwrap()["k"], "1");

    let stranger = Identity { user: "nobody".into(), groups: vec![] };
    let denied: Api<ConfigMap> = Api::default_namespaced(orch::api::in_process_client(router, stranger, "default"));
    match denied.get("inproc").await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_change_only_their_own_objects() {
    use k8s_openapi::api::core::v1::{Node, Pod};
    let dir = tempfile::tempdir().unwrap();
    let router = in_process_api(dir.path()).await;
    let node_client = |name: &str| {
        let identity = Identity { user: format!("system:node:{name}"), groups: vec!["system:nodes".into()] };
        orch::api::in_process_client(router.clone(), identity, "default")
    };
    let admin =
        orch::api::in_process_client(router.clone(), Identity { user: "admin".into(), groups: vec![MASTERS_GROUP.into()] }, "default");
    let node = |name: &str| -> Node { serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap() };
    let code = |r: kube::Result<Node>| match r {
        Err(kube::Error::Api(s)) => s.code,
        Ok(_) => 200,
        Err(e) => panic!("{e}"),
    };

    let n1: Api<Node> = Api::all(node_client("n1"));
    assert_eq!(code(n1.create(&PostParams::default(), &node("n1")).await), 200);
    assert_eq!(code(n1.create(&PostParams::default(), &node("n2")).await), 403, "a node cannot register another");
    Api::<Node>::all(admin.clone()).create(&PostParams::default(), &node("n2")).await.unwrap();
    let status = Patch::Merge(json!({ "status": { "phase": "Running" } }));
    assert_eq!(code(n1.patch_status("n1", &PatchParams::default(), &status).await), 200);
    assert_eq!(code(n1.patch_status("n2", &PatchParams::default(), &status).await), 403);

    // Pods: a node updates the status of pods bound to it only, and cannot create pods.
    let pods: Api<Pod> = Api::namespaced(admin, "default");
    for (name, bound) in [("mine", "n1"), ("theirs", "n2")] {
        let pod =
            json!({ "metadata": { "name": name }, "spec": { "nodeName": bound, "containers": [{ "name": "c", "image": "busybox" }] } });
        pods.create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await.unwrap();
    }
    let node_pods: Api<Pod> = Api::namespaced(node_client("n1"), "default");
    let running = Patch::Merge(json!({ "status": { "phase": "Running" } }));
    node_pods.patch_status("mine", &PatchParams::default(), &running).await.unwrap();
    match node_pods.patch_status("theirs", &PatchParams::default(), &running).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403),
        other => panic!("expected 403, got {other:?}"),
    }
    match node_pods.delete("theirs", &DeleteParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403),
        other => panic!("expected 403, got {other:?}"),
    }
    let mut pod = pods.get("mine").await.unwrap();
    pod.metadata.name = Some("new".into());
    pod.metadata.resource_version = None;
    pod.metadata.uid = None;
    match node_pods.create(&PostParams::default(), &pod).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403),
        other => panic!("expected 403, got {other:?}"),
    }
}
