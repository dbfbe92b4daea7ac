//! The API of workloads as controllers, schedulers and node agents use it: pod defaults,
//! the status, scale, binding and eviction subresources, graceful pod deletion, namespace
//! termination and the node-indexed pod watch.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

use crate::support::{kube_client, kubectl, ServerProc};

/// The API alone, without controllers acting on the objects these tests create.
async fn ready_server(dir: &std::path::Path) -> ServerProc {
    crate::support::ready_server(dir, &["--disable-controllers".to_string()]).await
}

fn pod(name: &str, labels: serde_json::Value) -> Pod {
    serde_json::from_value(json!({ "metadata": { "name": name, "labels": labels },
        "spec": { "containers": [{ "name": "c", "image": "busybox:1.36" }] } }))
    .unwrap()
}

fn api_code<T: std::fmt::Debug>(result: kube::Result<T>) -> u16 {
    match result {
        Err(kube::Error::Api(status)) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_defaulted_bound_once_and_deleted_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path()).await;
    let pods: Api<Pod> = Api::namespaced(kube_client(&server).await, "default");

    let created = pods.create(&PostParams::default(), &pod("p", json!({ "app": "a" }))).await.unwrap();
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    assert_eq!(spec.containers[0].image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(created.status.as_ref().unwrap().phase.as_deref(), Some("Pending"));

    // Invalid pods are refused with field causes.
    let bad: Pod = serde_json::from_value(json!({ "metadata": { "name": "bad" }, "spec": { "containers": [{ "name": "c" }] } })).unwrap();
    assert_eq!(api_code(pods.create(&PostParams::default(), &bad).await), 422);

    // The main resource ignores status; the status subresource changes only status.
    let mut changed = created.clone();
    changed.status.as_mut().unwrap().phase = Some("Running".into());
    let replaced = pods.replace("p", &PostParams::default(), &changed).await.unwrap();
    assert_eq!(replaced.status.unwrap().phase.as_deref(), Some("Pending"));
    let patched = pods
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "phase": "Running" }, "metadata": { "labels": { "x": "y" } } })),
        )
        .await
        .unwrap();
    assert_eq!(patched.status.unwrap().phase.as_deref(), Some("Running"));
    assert!(!patched.metadata.labels.unwrap().contains_key("x"));

    // Binding assigns the node once.
    let binding = json!({ "apiVersion": "v1", "kind": "Binding", "metadata": { "name": "p" }, "target": { "kind": "Node", "name": "n1" } });
    pods.create_subresource::<_, serde_json::Value>("binding", "p", &PostParams::default(), &binding).await.unwrap();
    let bound = pods.get("p").await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("n1"));
    assert!(bound.status.unwrap().conditions.unwrap().iter().any(|c| c.type_ == "PodScheduled" && c.status == "True"));
    assert_eq!(api_code(pods.create_subresource::<_, serde_json::Value>("binding", "p", &PostParams::default(), &binding).await), 409);

    // A bound pod is deleted gracefully: it stays, terminating, until a grace-0 delete.
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    let terminating = pods.get("p").await.unwrap();
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    assert!(terminating.metadata.deletion_timestamp.is_some());
    pods.delete("p", &DeleteParams::default().grace_period(0)).await.unwrap();
    assert_eq!(api_code(pods.get("p").await), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_eviction_and_namespace_termination() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path()).await;
    let home = dir.path().join("home");
    let client = kube_client(&server).await;

    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx}]}\n";
    let (ok, out, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(deployment)).await;
    assert!(ok, "{out}{err}");
    let (ok, out, err) = kubectl(&server, &home, &["scale", "deployment/web", "--replicas=3"], None).await;
    assert!(ok && out.contains("scaled"), "{out}{err}");
    let web = Api::<Deployment>::namespaced(client.clone(), "default").get("web").await.unwrap();
    let spec = web.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.revision_history_limit, Some(10));
    assert_eq!(web.metadata.generation, Some(2));

    // Eviction honours a budget that allows no disruption.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("guarded", json!({ "app": "db" }))).await.unwrap();
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    let pdb = serde_json::from_value(
        json!({ "metadata": { "name": "db" }, "spec": { "minAvailable": 1, "selector": { "matchLabels": { "app": "db" } } } }),
    )
    .unwrap();
    budgets.create(&PostParams::default(), &pdb).await.unwrap();
    // Raw requests: kube-rs retries 429 answers by itself.
    let admin = server.admin_client().unwrap();
    let evict = || async {
        let eviction = json!({ "apiVersion": "policy/v1", "kind": "Eviction", "metadata": { "name": "guarded" } }).to_string();
        let request = http::Request::post(format!("{}/api/v1/namespaces/default/pods/guarded/eviction", server.url()))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(eviction)))
            .unwrap();
        admin.fetch(request, Duration::from_secs(10)).await.unwrap().0.as_u16()
    };
    assert_eq!(evict().await, 429);
    budgets
        .patch_status(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "disruptionsAllowed": 1, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1 } })),
        )
        .await
        .unwrap();
    assert_eq!(evict().await, 201);
    assert_eq!(api_code(pods.get("guarded").await), 404);

    // A deleted namespace terminates: new content is refused until it is finalized.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.create(&PostParams::default(), &serde_json::from_value(json!({ "metadata": { "name": "tmp" } })).unwrap()).await.unwrap();
    namespaces.delete("tmp", &DeleteParams::default()).await.unwrap();
    let ns = namespaces.get("tmp").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "tmp");
    assert_eq!(
        api_code(cms.create(&PostParams::default(), &serde_json::from_value(json!({ "metadata": { "name": "x" } })).unwrap()).await),
        403
    );
    let mut finalized = ns_without_finalizers(namespaces.get("tmp").await.unwrap());
    finalized.metadata.managed_fields = None;
    namespaces.replace_subresource("finalize", "tmp", &PostParams::default(), &finalized).await.unwrap();
    assert_eq!(api_code(namespaces.get("tmp").await), 404);
}

fn ns_without_finalizers(mut ns: Namespace) -> Namespace {
    ns.spec = Some(Default::default());
    ns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_watchers_see_only_their_pods() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path()).await;
    let pods: Api<Pod> = Api::namespaced(kube_client(&server).await, "default");
    let params = WatchParams::default().fields("spec.nodeName=n2").timeout(20);
    let mut events = pods.watch(&params, "0").await.unwrap().boxed();
    for (name, node) in [("a", "n1"), ("b", "n2"), ("c", "n2")] {
        pods.create(&PostParams::default(), &pod(name, json!({}))).await.unwrap();
        let binding = json!({ "apiVersion": "v1", "kind": "Binding", "metadata": { "name": name }, "target": { "name": node } });
        pods.create_subresource::<_, serde_json::Value>("binding", name, &PostParams::default(), &binding).await.unwrap();
    }
    pods.delete("b", &DeleteParams::default().grace_period(0)).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event =
            tokio::time::timeout(Duration::from_secs(15), events.try_next()).await.expect("watch stalled").unwrap().expect("watch ended");
        match event {
            WatchEvent::Added(p) => seen.push(("added", p.metadata.name.unwrap())),
            WatchEvent::Modified(p) => seen.push(("modified", p.metadata.name.unwrap())),
            WatchEvent::Deleted(p) => seen.push(("deleted", p.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    // Binding moves a pod into the selection: ADDED; the pod on n1 never shows.
    assert_eq!(seen, [("added", "b".to_string()), ("added", "c".to_string()), ("deleted", "b".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_workloads_in_protobuf() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path()).await;
    let home = dir.path().join("home");
    for args in [
        &["create", "deployment", "web", "--image=nginx:1.25", "--replicas=2", "--port=80"][..],
        &["create", "job", "once", "--image=busybox", "--", "echo", "hi"],
        &["create", "cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *", "--", "date"],
    ] {
        let (ok, out, err) = kubectl(&server, &home, args, None).await;
        assert!(ok && out.contains("created"), "{args:?}: {out}{err}");
    }
    let (_, out, _) = kubectl(
        &server,
        &home,
        &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].ports[0].containerPort}"],
        None,
    )
    .await;
    assert_eq!(out, "2 80");
    let (_, out, _) =
        kubectl(&server, &home, &["get", "job", "once", "-o", "jsonpath={.spec.template.spec.containers[0].command}"], None).await;
    assert_eq!(out, r#"["echo","hi"]"#);
}
