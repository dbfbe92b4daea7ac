//! Local-path storage (k3s's local-storage): the packaged default StorageClass, the
//! PersistentVolume controller, the scheduler's volume binding and the built-in provisioner.
//! On hollow nodes: a StatefulSet's claims are provisioned on the nodes its pods were scheduled
//! to and a replaced pod keeps its volume. On a real node (root): a claim waits for its first
//! consumer, a pod gets the volume provisioned on its node and writes a file, its successor
//! reads it, and deleting the claim removes the directory and the volume.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams};

use crate::kubelet::{phase, pod_where, start_real_node};
use crate::support::{kube_client, kubectl, skip_without_containers, start_hollow_node, start_server, wait_for};

const WAIT: Duration = Duration::from_secs(60);

fn claim_phase(c: &PersistentVolumeClaim) -> &str {
    c.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// The node a volume's node affinity pins it to.
fn pinned_node(pv: &PersistentVolume) -> String {
    let terms = &pv.spec.as_ref().unwrap().node_affinity.as_ref().unwrap().required.as_ref().unwrap().node_selector_terms;
    terms[0].match_expressions.as_ref().unwrap()[0].values.as_ref().unwrap()[0].clone()
}

async fn bound_claim(claims: &Api<PersistentVolumeClaim>, name: &str) -> PersistentVolumeClaim {
    wait_for(WAIT, &format!("claim {name} to be Bound"), || async { claims.get(name).await.ok().filter(|c| claim_phase(c) == "Bound") })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateful_set_volumes_are_provisioned_on_their_nodes_and_survive_pod_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("server"), &[]);
    server.wait_member(Duration::from_secs(20)).await;
    let client = kube_client(&server).await;
    let _agents: Vec<_> = (0..2).map(|i| start_hollow_node(&server, &dir.path().join(format!("h{i}")), &format!("h{i}"), &[])).collect();
    let home = dir.path().join("home");

    // The packaged class is written to the manifests dir and applied as the default.
    assert!(dir.path().join("server/server/manifests/local-storage.yaml").exists());
    wait_for(WAIT, "the default local-path StorageClass", || async {
        let (ok, out, _) = kubectl(&server, &home, &["get", "storageclass"], None).await;
        (ok && out.contains("local-path (default)") && out.contains("WaitForFirstConsumer")).then_some(())
    })
    .await;

    // A claim created without a class gets the default one at once (DefaultStorageClass admission).
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    let plain: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({"metadata": {"name": "plain"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
    .unwrap();
    let created = claims.create(&Default::default(), &plain).await.unwrap();
    assert_eq!(created.spec.unwrap().storage_class_name.as_deref(), Some("local-path"));

    let sts = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\nspec:\n  replicas: 2\n  serviceName: db\n  \
               selector:\n    matchLabels: {app: db}\n  template:\n    metadata:\n      labels: {app: db}\n    spec:\n      \
               containers:\n      - name: db\n        image: busybox\n        volumeMounts:\n        - {name: data, mountPath: /data}\n  \
               volumeClaimTemplates:\n  - metadata:\n      name: data\n    spec:\n      accessModes: [ReadWriteOnce]\n      \
               resources:\n        requests:\n          storage: 1Gi\n";
    let (ok, out, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(sts)).await;
    assert!(ok, "{out}{err}");

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let mut placed = Vec::new();
    for i in 0..2 {
        let claim = bound_claim(&claims, &format!("data-db-{i}")).await;
        let spec = claim.spec.as_ref().unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("local-path"), "the default class was assigned");
        let volume = spec.volume_name.clone().unwrap();
        assert_eq!(volume, format!("pvc-{}", claim.metadata.uid.as_deref().unwrap()));
        let annotations = claim.metadata.annotations.clone().unwrap();
        assert_eq!(annotations["pv.kubernetes.io/bind-completed"], "yes");
        assert_eq!(annotations["volume.kubernetes.io/storage-provisioner"], "rancher.io/local-path");
        let pv = volumes.get(&volume).await.unwrap();
        assert_eq!(pv.status.as_ref().unwrap().phase.as_deref(), Some("Bound"));
        assert_eq!(pv.metadata.annotations.as_ref().unwrap()["pv.kubernetes.io/provisioned-by"], "rancher.io/local-path");
        let path = &pv.spec.as_ref().unwrap().host_path.as_ref().unwrap().path;
        assert!(path.ends_with(&format!("/storage/{volume}_default_data-db-{i}")), "{path}");
        let pod = wait_for(WAIT, "the pod to be scheduled", || async {
            pods.get(&format!("db-{i}")).await.ok().filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()))
        })
        .await;
        let node = pod.spec.unwrap().node_name.unwrap();
        assert_eq!(pinned_node(&pv), node, "the volume is on the pod's node");
        assert_eq!(annotations["volume.kubernetes.io/selected-node"], node);
        placed.push((volume, node));
    }
    let (ok, out, _) = kubectl(&server, &home, &["get", "pvc", "data-db-0"], None).await;
    assert!(ok && out.contains("Bound") && out.contains("local-path"), "{out}");

    // A deleted pod's successor keeps the claim, its volume and therefore its node.
    let old_uid = pods.get("db-0").await.unwrap().metadata.uid;
    pods.delete("db-0", &DeleteParams::default().grace_period(0)).await.unwrap();
    let node = wait_for(WAIT, "db-0 to be recreated and scheduled", || async {
        let p = pods.get("db-0").await.ok().filter(|p| p.metadata.uid != old_uid)?;
        p.spec?.node_name
    })
    .await;
    assert_eq!(node, placed[0].1);
    assert_eq!(claims.get("data-db-0").await.unwrap().spec.unwrap().volume_name.as_deref(), Some(placed[0].0.as_str()));

    // A pod held to another node than its claim's volume is not scheduled, with kube's message.
    let other = if placed[0].1 == "h0" { "h1" } else { "h0" };
    let misplaced = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: misplaced\nspec:\n  nodeSelector: {{kubernetes.io/hostname: {other}}}\n  \
         containers:\n  - {{name: c, image: busybox}}\n  volumes:\n  - name: v\n    persistentVolumeClaim: {{claimName: data-db-0}}\n"
    );
    let (ok, out, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(&misplaced)).await;
    assert!(ok, "{out}{err}");
    let events: Api<Event> = Api::default_namespaced(client.clone());
    wait_for(WAIT, "FailedScheduling for the volume on another node", || async {
        let list = events.list(&ListParams::default().fields("involvedObject.name=misplaced")).await.ok()?;
        let want =
            "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had volume node affinity conflict.";
        list.items.iter().any(|e| e.message.as_deref().is_some_and(|m| m.starts_with(want))).then_some(())
    })
    .await;

    // A pod of a missing claim is unschedulable with kube's message.
    let orphan = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: orphan\nspec:\n  containers:\n  - {name: c, image: busybox}\n  \
                  volumes:\n  - name: v\n    persistentVolumeClaim: {claimName: nope}\n";
    let (ok, out, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(orphan)).await;
    assert!(ok, "{out}{err}");
    wait_for(WAIT, "FailedScheduling for the missing claim", || async {
        let list = events.list(&ListParams::default().fields("involvedObject.name=orphan")).await.ok()?;
        list.items
            .iter()
            .any(|e| e.message.as_deref().is_some_and(|m| m.contains("persistentvolumeclaim \"nope\" not found")))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_path_volume_is_made_kept_and_removed_on_a_real_node() {
    if skip_without_containers("local storage tests") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (server, client, node, _cidr) = start_real_node(dir.path(), &[]).await;
    let apply = |yaml: String| {
        let (server, home) = (&server, &home);
        async move {
            let (ok, out, err) = kubectl(server, home, &["apply", "-f", "-"], Some(&yaml)).await;
            assert!(ok, "kubectl apply failed: {out}{err}");
        }
    };
    apply(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  accessModes: [ReadWriteOnce]\n  \
           resources:\n    requests:\n      storage: 64Mi\n"
            .into(),
    )
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    let events: Api<Event> = Api::default_namespaced(client.clone());
    wait_for(WAIT, "the claim to wait for its first consumer", || async {
        let list = events.list(&ListParams::default().fields("involvedObject.name=data")).await.ok()?;
        list.items.iter().any(|e| e.reason.as_deref() == Some("WaitForFirstConsumer")).then_some(())
    })
    .await;
    assert_eq!(claim_phase(&claims.get("data").await.unwrap()), "Pending");

    let pod = |name: &str, script: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    \
             image: busybox\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", {script:?}]\n    volumeMounts:\n    \
             - {{name: data, mountPath: /data}}\n  volumes:\n  - name: data\n    persistentVolumeClaim: {{claimName: data}}\n"
        )
    };
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    apply(pod("writer", "echo kept > /data/file")).await;
    pod_where(&pods, "writer", "Succeeded", &node, |p| phase(p) == "Succeeded").await;
    let claim = bound_claim(&claims, "data").await;
    let (ok, out, _) = kubectl(&server, &home, &["get", "pvc", "data"], None).await;
    assert!(ok && out.contains("Bound"), "{out}");
    let volume = claim.spec.unwrap().volume_name.unwrap();
    let pv = Api::<PersistentVolume>::all(client.clone()).get(&volume).await.unwrap();
    assert_eq!(pinned_node(&pv), "kubelet-test");
    let path = std::path::PathBuf::from(&pv.spec.as_ref().unwrap().host_path.as_ref().unwrap().path);
    assert_eq!(path, dir.path().join("n0/storage").join(format!("{volume}_default_data")));
    assert_eq!(std::fs::read_to_string(path.join("file")).unwrap(), "kept\n");
    let list = events.list(&ListParams::default().fields("involvedObject.name=data")).await.unwrap();
    assert!(list.items.iter().any(|e| e.reason.as_deref() == Some("ProvisioningSucceeded")), "{:?}", list.items);

    // The writer's successor reads the file.
    pods.delete("writer", &DeleteParams::default().grace_period(0)).await.unwrap();
    apply(pod("reader", "cat /data/file")).await;
    pod_where(&pods, "reader", "Succeeded", &node, |p| phase(p) == "Succeeded").await;
    let (ok, out, err) = kubectl(&server, &home, &["logs", "reader"], None).await;
    assert!(ok && out.contains("kept"), "{out}{err}");

    // Deleting the claim releases the volume: its directory is removed on the node, then the volume.
    pods.delete("reader", &DeleteParams::default().grace_period(0)).await.unwrap();
    claims.delete("data", &DeleteParams::default()).await.unwrap();
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    wait_for(WAIT, "the released volume to be deleted", || async { volumes.get(&volume).await.is_err().then_some(()) }).await;
    assert!(!path.exists(), "the volume's directory is removed");
}
