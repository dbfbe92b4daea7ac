//! Workload controllers and controller-manager leader election against real `orch server`
//! processes: ReplicaSets keep their pod count (no nodes, so pods stay Pending), Deployments
//! own hashed ReplicaSets with revisions, StatefulSets name their pods by ordinal, DaemonSets
//! follow nodes (created as API objects; nothing schedules the pods), and one server of a
//! cluster holds the controller-manager lease until it dies. The kubectl rollout test marks
//! pods Running and Ready itself, standing in for nodes.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::support::{kube_client, kubectl, start_cluster, start_hollow_node, start_server, wait_for, ServerProc};

const WAIT: Duration = Duration::from_secs(30);

/// A server without its own node (pods stay Pending) and a client once pods can be listed.
async fn ready_server(dir: &Path) -> (ServerProc, kube::Client) {
    let server = start_server(&dir.join("n0"), &["--disable-agent".to_string()]);
    server.wait_member(Duration::from_secs(20)).await;
    let client = kube_client(&server).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    wait_for(Duration::from_secs(20), "the default namespace and pods", || async { pods.list(&ListParams::default()).await.ok() }).await;
    (server, client)
}

fn pod_template(app: &str, image: &str) -> serde_json::Value {
    json!({ "metadata": { "labels": { "app": app } }, "spec": { "containers": [{ "name": "c", "image": image }] } })
}

/// Names of the active (not terminating) pods labelled `app=<app>`.
async fn active_pods(pods: &Api<Pod>, app: &str) -> Vec<String> {
    let list = pods.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap();
    list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).filter_map(|p| p.metadata.name).collect()
}

async fn wait_pod_count(pods: &Api<Pod>, app: &str, n: usize) -> Vec<String> {
    wait_for(WAIT, &format!("{n} pods of {app}"), || async {
        let names = active_pods(pods, app).await;
        (names.len() == n).then_some(names)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_keeps_its_pod_count() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, client) = ready_server(dir.path()).await;
    let sets: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client);
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": { "replicas": 3, "selector": { "matchLabels": { "app": "web" } }, "template": pod_template("web", "nginx") }
    }))
    .unwrap();
    sets.create(&PostParams::default(), &rs).await.unwrap();
    let names = wait_pod_count(&pods, "web", 3).await;
    assert!(names.iter().all(|n| n.starts_with("web-")), "{names:?}");
    let pod = pods.get(&names[0]).await.unwrap();
    let owner = &pod.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller, owner.block_owner_deletion),
        ("ReplicaSet", "web", Some(true), Some(true))
    );
    wait_for(WAIT, "status.replicas 3", || async {
        let s = sets.get("web").await.ok()?.status?;
        (s.replicas == 3 && s.fully_labeled_replicas == Some(3) && s.observed_generation == Some(1)).then_some(())
    })
    .await;

    // A deleted pod is replaced.
    pods.delete(&names[0], &DeleteParams::default()).await.unwrap();
    let replaced = wait_for(WAIT, "a replacement pod", || async {
        let now = active_pods(&pods, "web").await;
        (now.len() == 3 && !now.contains(&names[0])).then_some(now)
    })
    .await;
    assert_eq!(replaced.len(), 3);

    // Scale up and down quickly: never more pods than asked for once it settles.
    for replicas in [8, 1, 6] {
        sets.patch("web", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": replicas } }))).await.unwrap();
    }
    wait_pod_count(&pods, "web", 6).await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(active_pods(&pods, "web").await.len(), 6, "over- or under-creation after settling");
    }
    sets.patch("web", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 2 } }))).await.unwrap();
    wait_pod_count(&pods, "web", 2).await;

    // An orphan matching the selector is adopted (and a surplus one deleted).
    let orphan: Pod = serde_json::from_value(
        json!({ "metadata": { "name": "stray", "labels": { "app": "web" } }, "spec": pod_template("web", "nginx")["spec"] }),
    )
    .unwrap();
    pods.create(&PostParams::default(), &orphan).await.unwrap();
    wait_pod_count(&pods, "web", 2).await;
    // Un-labelling a pod releases it and a replacement appears.
    let kept = active_pods(&pods, "web").await;
    pods.patch(&kept[0], &PatchParams::default(), &Patch::Merge(json!({ "metadata": { "labels": { "app": "elsewhere" } } })))
        .await
        .unwrap();
    wait_for(WAIT, "the released pod to lose its owner", || async {
        pods.get(&kept[0]).await.ok()?.metadata.owner_references.is_none_or(|r| r.is_empty()).then_some(())
    })
    .await;
    wait_pod_count(&pods, "web", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_owns_hashed_replicasets_with_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, client) = ready_server(dir.path()).await;
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let sets: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "api" },
        "spec": { "replicas": 2, "selector": { "matchLabels": { "app": "api" } }, "template": pod_template("api", "nginx:1") }
    }))
    .unwrap();
    deployments.create(&PostParams::default(), &d).await.unwrap();
    let first =
        wait_for(WAIT, "the first replica set", || async { sets.list(&ListParams::default()).await.ok()?.items.into_iter().next() }).await;
    let hash = first.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(first.metadata.name.as_deref(), Some(format!("api-{hash}").as_str()));
    assert_eq!(first.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"], "1");
    assert_eq!(first.spec.as_ref().unwrap().selector.match_labels.as_ref().unwrap()["pod-template-hash"], hash);
    let names = wait_pod_count(&pods, "api", 2).await;
    assert!(names.iter().all(|n| n.starts_with(&format!("api-{hash}-"))), "{names:?}");
    wait_for(WAIT, "deployment status", || async {
        let d = deployments.get("api").await.ok()?;
        let s = d.status?;
        let progressing = s.conditions.iter().flatten().any(|c| c.type_ == "Progressing" && c.status == "True");
        let revision = d.metadata.annotations?.get("deployment.kubernetes.io/revision").cloned();
        (s.replicas == Some(2)
            && s.updated_replicas == Some(2)
            && s.observed_generation == Some(1)
            && progressing
            && revision.as_deref() == Some("1"))
        .then_some(())
    })
    .await;

    // A template change makes a second replica set with revision 2.
    deployments
        .patch("api", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "template": pod_template("api", "nginx:2") } })))
        .await
        .unwrap();
    let second = wait_for(WAIT, "a second replica set", || async {
        sets.list(&ListParams::default()).await.ok()?.items.into_iter().find(|rs| rs.metadata.name != first.metadata.name)
    })
    .await;
    assert_eq!(second.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"], "2");
    assert_ne!(second.metadata.labels.as_ref().unwrap()["pod-template-hash"], hash);
    // No pod becomes available without nodes: the rollout surges one pod and stops there.
    wait_for(WAIT, "one surge pod of the new set", || async {
        let rs = sets.get(second.metadata.name.as_deref().unwrap()).await.ok()?;
        (rs.spec?.replicas == Some(1)).then_some(())
    })
    .await;
    assert_eq!(
        sets.get(first.metadata.name.as_deref().unwrap()).await.unwrap().spec.unwrap().replicas,
        Some(2),
        "maxUnavailable 25% of 2 is 0"
    );

    // Scaling down to zero empties both sets.
    deployments.patch("api", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 0 } }))).await.unwrap();
    wait_pod_count(&pods, "api", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_parallel_creates_ordinal_pods() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, client) = ready_server(dir.path()).await;
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client);
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": { "name": "db" },
        "spec": { "replicas": 3, "serviceName": "db", "podManagementPolicy": "Parallel",
                  "selector": { "matchLabels": { "app": "db" } }, "template": pod_template("db", "postgres") }
    }))
    .unwrap();
    sets.create(&PostParams::default(), &sts).await.unwrap();
    let mut names = wait_pod_count(&pods, "db", 3).await;
    names.sort();
    assert_eq!(names, ["db-0", "db-1", "db-2"]);
    let pod = pods.get("db-1").await.unwrap();
    let labels = pod.metadata.labels.unwrap();
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "db-1");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "1");
    assert!(labels["controller-revision-hash"].starts_with("db-"));
    let spec = pod.spec.unwrap();
    assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some("db-1"), Some("db")));
    wait_for(WAIT, "statefulset status", || async {
        let s = sets.get("db").await.ok()?.status?;
        (s.replicas == 3 && s.update_revision.is_some() && s.current_revision == s.update_revision).then_some(())
    })
    .await;
    sets.patch("db", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 1 } }))).await.unwrap();
    let names = wait_pod_count(&pods, "db", 1).await;
    assert_eq!(names, ["db-0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_follows_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, client) = ready_server(dir.path()).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let sets: Api<DaemonSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client);
    let node = |name: &str, taints: serde_json::Value| -> Node {
        serde_json::from_value(
            json!({ "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name } }, "spec": { "taints": taints } }),
        )
        .unwrap()
    };
    nodes.create(&PostParams::default(), &node("a", json!([]))).await.unwrap();
    nodes
        .create(&PostParams::default(), &node("gpu", json!([{ "key": "dedicated", "value": "gpu", "effect": "NoSchedule" }])))
        .await
        .unwrap();
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": { "name": "agent" },
        "spec": { "selector": { "matchLabels": { "app": "agent" } }, "template": pod_template("agent", "busybox") }
    }))
    .unwrap();
    sets.create(&PostParams::default(), &ds).await.unwrap();
    let target = |p: &Pod| placement_of(p);
    let names = wait_pod_count(&pods, "agent", 1).await;
    let pod = pods.get(&names[0]).await.unwrap();
    assert_eq!(target(&pod).as_deref(), Some("a"), "pinned to the untainted node");
    let tolerations = pod.spec.as_ref().unwrap().tolerations.clone().unwrap();
    assert!(tolerations
        .iter()
        .any(|t| t.key.as_deref() == Some("node.kubernetes.io/unreachable") && t.effect.as_deref() == Some("NoExecute")));
    assert!(pod.metadata.labels.as_ref().unwrap().contains_key("controller-revision-hash"));

    nodes.create(&PostParams::default(), &node("b", json!([]))).await.unwrap();
    wait_pod_count(&pods, "agent", 2).await;
    wait_for(WAIT, "daemonset status", || async {
        let s = sets.get("agent").await.ok()?.status?;
        (s.desired_number_scheduled == 2 && s.current_number_scheduled == 2 && s.number_misscheduled == 0).then_some(())
    })
    .await;
    nodes.delete("a", &DeleteParams::default()).await.unwrap();
    let left = wait_pod_count(&pods, "agent", 1).await;
    assert_eq!(target(&pods.get(&left[0]).await.unwrap()).as_deref(), Some("b"));
}

/// The node a daemon pod is pinned to by its required node affinity.
fn placement_of(pod: &Pod) -> Option<String> {
    let affinity = pod.spec.as_ref()?.affinity.as_ref()?.node_affinity.as_ref()?;
    let term = affinity.required_during_scheduling_ignored_during_execution.as_ref()?.node_selector_terms.first()?;
    term.match_fields.as_ref()?.first()?.values.as_ref()?.first().cloned()
}

async fn lease_holder(client: &kube::Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let lease = tokio::time::timeout(Duration::from_secs(2), leases.get("orch-controller-manager")).await.ok()?.ok()?;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

/// The server whose log says it acquired the lease as `holder`.
fn server_holding(servers: &[ServerProc], holder: &str) -> Option<usize> {
    servers.iter().position(|s| s.log().lines().any(|l| l.contains("acquired the controller-manager lease") && l.contains(holder)))
}

/// Waits for a holder other than `previous` and returns it with its server's index.
async fn new_holder(servers: &[ServerProc], via: usize, previous: Option<&str>, within: Duration) -> (String, usize) {
    let client = kube_client(&servers[via]).await;
    let holder = wait_for(within, "a (new) controller-manager lease holder", || async {
        lease_holder(&client).await.filter(|h| Some(h.as_str()) != previous)
    })
    .await;
    let index = wait_for(WAIT, "the holder's log line", || async { server_holding(servers, &holder) }).await;
    (holder, index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_leads_the_controllers_and_another_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = start_cluster(dir.path(), 3, &[]).await;
    let (holder, leader) = new_holder(&servers, 0, None, WAIT).await;
    let acquisitions = |s: &ServerProc| s.log().matches("acquired the controller-manager lease").count();
    let leaders: Vec<usize> = servers.iter().map(acquisitions).collect();
    assert_eq!(leaders.iter().sum::<usize>(), 1, "exactly one server leads: {leaders:?}");

    // A graceful stop releases the lease: a successor takes over without waiting it out.
    servers[leader].terminate(Duration::from_secs(15));
    assert!(servers[leader].log().contains("released the controller-manager lease"), "{}", servers[leader].log());
    let via = (leader + 1) % 3;
    let (holder, second) = new_holder(&servers, via, Some(&holder), Duration::from_secs(8)).await;
    assert_ne!(second, leader);

    // Back to three servers, then a crash: the lease expires and another server takes over.
    servers[leader].restart();
    servers[leader].wait_member(WAIT).await;
    servers[second].kill();
    let via = (0..3).find(|i| *i != second).unwrap();
    let (_, third) = new_holder(&servers, via, Some(&holder), Duration::from_secs(25)).await;
    assert_ne!(third, second);
}

/// Full rollouts driven by kubectl on three hollow nodes (scheduler and node agents for real):
/// status, set image, history, undo, pause/resume, restart; then an OrderedReady StatefulSet
/// comes up in order, and a node that stops has its pods recreated on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollouts() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("n0"), &["--disable-agent".to_string(), "--node-monitor-grace-period=4s".to_string()]);
    server.wait_member(Duration::from_secs(20)).await;
    let client = kube_client(&server).await;
    let lease = ["--node-lease-renew-interval=1s".to_string()];
    let mut nodes: Vec<_> =
        (1..=3).map(|i| start_hollow_node(&server, &dir.path().join(format!("h{i}")), &format!("hollow-{i}"), &lease)).collect();
    let home = dir.path().join("home");
    let k = |args: &'static [&'static str]| {
        let (server, home) = (&server, &home);
        async move {
            let (ok, out, err) = kubectl(server, home, args, None).await;
            assert!(ok, "kubectl {args:?} failed: {err}\n{out}");
            out
        }
    };
    let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: roll}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: roll}}\n  template:\n    metadata: {labels: {app: roll}}\n    spec: {containers: [{name: busybox, image: 'busybox:1'}]}\n";
    let (ok, _, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(manifest)).await;
    assert!(ok, "kubectl apply: {err}");
    k(&["rollout", "status", "deployment/roll", "--timeout=25s"]).await;
    k(&["set", "image", "deployment/roll", "busybox=busybox:2"]).await;
    k(&["rollout", "status", "deployment/roll", "--timeout=25s"]).await;
    let history = k(&["rollout", "history", "deployment/roll"]).await;
    assert!(history.contains("1 ") && history.contains("2 "), "{history}");
    k(&["rollout", "undo", "deployment/roll"]).await;
    k(&["rollout", "status", "deployment/roll", "--timeout=25s"]).await;
    let revision = k(&["get", "deployment/roll", "-o", "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}"]).await;
    assert_eq!(revision, "3", "the rolled-back set gets the next revision");
    // Pods of the old set may still be finishing their graceful deletion on their nodes.
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let live = pods.list(&ListParams::default().labels("app=roll")).await.unwrap().items;
    let images: Vec<String> = live
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.spec.as_ref().unwrap().containers[0].image.clone().unwrap_or_default())
        .collect();
    assert!(images.len() == 3 && images.iter().all(|i| i == "busybox:1"), "{images:?}");
    k(&["rollout", "pause", "deployment/roll"]).await;
    k(&["set", "image", "deployment/roll", "busybox=busybox:4"]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sets = k(&["get", "rs", "-o", "name"]).await;
    assert_eq!(sets.lines().count(), 2, "a paused deployment starts no rollout: {sets}");
    k(&["rollout", "resume", "deployment/roll"]).await;
    k(&["rollout", "status", "deployment/roll", "--timeout=25s"]).await;
    k(&["rollout", "restart", "deployment/roll"]).await;
    k(&["rollout", "status", "deployment/roll", "--timeout=25s"]).await;
    let sets = k(&["get", "rs", "-o", "name"]).await;
    assert_eq!(sets.lines().count(), 4, "{sets}");
    let status =
        k(&["get", "deployment/roll", "-o", "jsonpath={.status.replicas}/{.status.updatedReplicas}/{.status.availableReplicas}"]).await;
    assert_eq!(status, "3/3/3");

    // OrderedReady: each ordinal is created once the one before it is Running and Ready.
    let sts = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  replicas: 3\n  serviceName: db\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec: {containers: [{name: db, image: 'busybox:1'}]}\n";
    let (ok, _, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(sts)).await;
    assert!(ok, "{err}");
    k(&["rollout", "status", "statefulset/db", "--timeout=30s"]).await;
    let mut created: Vec<(String, String)> = pods
        .list(&ListParams::default().labels("app=db"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| (p.metadata.creation_timestamp.unwrap().0.to_string(), p.metadata.name.unwrap()))
        .collect();
    created.sort();
    let order: Vec<&str> = created.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(order, ["db-0", "db-1", "db-2"]);

    // A node that stops: NotReady, its pods evicted (short toleration) and recreated elsewhere.
    let tolerations = r#"{"spec":{"template":{"spec":{"tolerations":[{"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":2}]}}}}"#;
    let (ok, _, err) = kubectl(&server, &home, &["patch", "deployment/roll", "-p", tolerations], None).await;
    assert!(ok, "{err}");
    k(&["rollout", "status", "deployment/roll", "--timeout=30s"]).await;
    let on_node = |pods: &[Pod], node: &str| pods.iter().filter(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some(node)).count();
    let before = pods.list(&ListParams::default().labels("app=roll")).await.unwrap().items;
    let victim = (1..=3).map(|i| format!("hollow-{i}")).max_by_key(|n| on_node(&before, n)).unwrap();
    let index: usize = victim.trim_start_matches("hollow-").parse().unwrap();
    nodes[index - 1].kill();
    wait_for(Duration::from_secs(60), "the roll pods to run on the remaining nodes", || async {
        let now = pods.list(&ListParams::default().labels("app=roll")).await.ok()?.items;
        let running = now
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter(|p| p.spec.as_ref().unwrap().node_name.as_deref() != Some(victim.as_str()))
            .count();
        (running == 3).then_some(())
    })
    .await;
}
