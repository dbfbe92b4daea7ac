//! Server-side Table columns and field selectors as the real kubectl shows them: pods, deployments,
//! replica sets, nodes and jobs with hand-written status, `kubectl get ... -o wide` headers exactly
//! as against a kube-apiserver, and cells computed by the printers.

use std::collections::HashMap;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::support::{kubectl, start_server, wait_for};

/// One printed table: the column names and each row's cells, cut at the header's column starts.
struct Printed {
    header: Vec<String>,
    rows: Vec<HashMap<String, String>>,
}

/// Splits kubectl's output (one table per kind, separated by blank lines) into tables.
fn printed(out: &str) -> Vec<Printed> {
    out.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut lines = block.lines();
            let header_line = lines.next().unwrap_or("");
            let header: Vec<String> = header_line.split("   ").map(str::trim).filter(|h| !h.is_empty()).map(str::to_string).collect();
            let mut from = 0;
            let starts: Vec<usize> = header
                .iter()
                .map(|h| {
                    let start = from + header_line[from..].find(h.as_str()).unwrap();
                    from = start + h.len();
                    start
                })
                .collect();
            let rows = lines
                .map(|line| {
                    let cut = |i: usize| {
                        let end = starts.get(i + 1).copied().unwrap_or(line.len()).min(line.len());
                        line.get(starts[i].min(end)..end).unwrap_or("").trim().to_string()
                    };
                    header.iter().enumerate().map(|(i, h)| (h.clone(), cut(i))).collect()
                })
                .collect();
            Printed { header, rows }
        })
        .collect()
}

fn row<'a>(table: &'a Printed, name: &str) -> &'a HashMap<String, String> {
    table.rows.iter().find(|r| r["NAME"] == name).unwrap_or_else(|| panic!("no row {name} in {:?}", table.header))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0).unwrap().format(&Rfc3339).unwrap()
}

async fn create<T>(api: &Api<T>, obj: Value, status: Value) -> T
where
    T: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    api.create(&PostParams::default(), &serde_json::from_value(obj).unwrap()).await.unwrap_or_else(|e| panic!("creating {name}: {e}"));
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({ "status": status })))
        .await
        .unwrap_or_else(|e| panic!("status of {name}: {e}"))
}

fn template(app: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": app, "image": "busybox"}, {"name": "side", "image": "nginx:1"}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_prints_kube_apiserver_columns() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("n0"), &["--disable-agent".into(), "--disable-controllers".into()]);
    server.wait_member(Duration::from_secs(20)).await;
    let home = dir.path().join("home");
    let kubeconfig = Kubeconfig::read_from(server.data_dir.join("orch.yaml")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_for(Duration::from_secs(20), "the default namespace", || async { pods.list(&Default::default()).await.ok() }).await;
    let now = OffsetDateTime::now_utc();

    let nodes: Api<Node> = Api::all(client.clone());
    let node = json!({"metadata": {"name": "edge-1", "labels": {"node-role.kubernetes.io/control-plane": "true"}}});
    let node_status = json!({"conditions": [{"type": "Ready", "status": "True"}], "addresses": [{"type": "InternalIP", "address": "192.0.2.10"}],
        "nodeInfo": {"kubeletVersion": "v1.33.0+orch", "osImage": "Debian GNU/Linux 12", "kernelVersion": "6.1.0", "containerRuntimeVersion": "containerd://1.6.20",
            "machineID": "", "systemUUID": "", "bootID": "", "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"}});
    create(&nodes, node, node_status).await;
    create(
        &nodes,
        json!({"metadata": {"name": "edge-2"}, "spec": {"unschedulable": true}}),
        json!({"conditions": [{"type": "Ready", "status": "False"}]}),
    )
    .await;

    let running = json!({"phase": "Running", "podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}], "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {"name": "web", "image": "busybox", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": rfc3339(now)}}},
            {"name": "side", "image": "nginx:1", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": rfc3339(now)}}}]});
    create(
        &pods,
        json!({"metadata": {"name": "web"}, "spec": {"nodeName": "edge-1", "containers": template("web")["spec"]["containers"]}}),
        running,
    )
    .await;
    let crashing = json!({"phase": "Running", "containerStatuses": [{"name": "app", "image": "busybox", "imageID": "", "ready": false, "restartCount": 3,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": rfc3339(now - Duration::from_secs(300))}}}]});
    create(&pods, json!({"metadata": {"name": "crash"}, "spec": {"containers": [{"name": "app", "image": "busybox"}]}}), crashing).await;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deployment = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template("web")}});
    create(&deployments, deployment, json!({"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2})).await;
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let replicaset = json!({"metadata": {"name": "web-5d9"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template("web")}});
    create(&replicasets, replicaset, json!({"replicas": 3, "readyReplicas": 2})).await;

    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let job_template = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "once", "image": "busybox"}]}});
    let done = json!({"succeeded": 1, "startTime": rfc3339(now - Duration::from_secs(65)), "completionTime": rfc3339(now),
        "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]});
    create(&jobs, json!({"metadata": {"name": "once"}, "spec": {"template": job_template}}), done).await;

    let (ok, out, err) = kubectl(&server, &home, &["get", "pods,deploy,rs,nodes,jobs", "-o", "wide"], None).await;
    assert!(ok, "{out}{err}");
    let tables = printed(&out);
    let headers: Vec<String> = tables.iter().map(|t| t.header.join("|")).collect();
    assert_eq!(
        headers,
        [
            "NAME|READY|STATUS|RESTARTS|AGE|IP|NODE|NOMINATED NODE|READINESS GATES",
            "NAME|READY|UP-TO-DATE|AVAILABLE|AGE|CONTAINERS|IMAGES|SELECTOR",
            "NAME|DESIRED|CURRENT|READY|AGE|CONTAINERS|IMAGES|SELECTOR",
            "NAME|STATUS|ROLES|AGE|VERSION|INTERNAL-IP|EXTERNAL-IP|OS-IMAGE|KERNEL-VERSION|CONTAINER-RUNTIME",
            "NAME|STATUS|COMPLETIONS|DURATION|AGE|CONTAINERS|IMAGES|SELECTOR",
        ],
        "{out}"
    );
    let web = row(&tables[0], "pod/web");
    assert_eq!((web["READY"].as_str(), web["STATUS"].as_str(), web["RESTARTS"].as_str()), ("2/2", "Running", "0"), "{out}");
    assert_eq!((web["IP"].as_str(), web["NODE"].as_str(), web["NOMINATED NODE"].as_str()), ("10.42.0.5", "edge-1", "<none>"), "{out}");
    let crash = row(&tables[0], "pod/crash");
    assert_eq!((crash["READY"].as_str(), crash["STATUS"].as_str()), ("0/1", "CrashLoopBackOff"), "{out}");
    assert!(crash["RESTARTS"].starts_with("3 (5m") && crash["RESTARTS"].ends_with("ago)"), "{out}");
    let deploy = row(&tables[1], "deployment.apps/web");
    assert_eq!((deploy["READY"].as_str(), deploy["UP-TO-DATE"].as_str(), deploy["AVAILABLE"].as_str()), ("2/3", "3", "2"), "{out}");
    assert_eq!(
        (deploy["CONTAINERS"].as_str(), deploy["IMAGES"].as_str(), deploy["SELECTOR"].as_str()),
        ("web,side", "busybox,nginx:1", "app=web")
    );
    let rs = row(&tables[2], "replicaset.apps/web-5d9");
    assert_eq!((rs["DESIRED"].as_str(), rs["CURRENT"].as_str(), rs["READY"].as_str()), ("3", "3", "2"), "{out}");
    let edge = row(&tables[3], "node/edge-1");
    assert_eq!(
        (edge["STATUS"].as_str(), edge["ROLES"].as_str(), edge["VERSION"].as_str()),
        ("Ready", "control-plane", "v1.33.0+orch"),
        "{out}"
    );
    assert_eq!(
        (edge["INTERNAL-IP"].as_str(), edge["EXTERNAL-IP"].as_str(), edge["CONTAINER-RUNTIME"].as_str()),
        ("192.0.2.10", "<none>", "containerd://1.6.20")
    );
    let cordoned = row(&tables[3], "node/edge-2");
    assert_eq!((cordoned["STATUS"].as_str(), cordoned["ROLES"].as_str()), ("NotReady,SchedulingDisabled", "<none>"), "{out}");
    let job = row(&tables[4], "job.batch/once");
    assert_eq!((job["STATUS"].as_str(), job["COMPLETIONS"].as_str(), job["DURATION"].as_str()), ("Complete", "1/1", "65s"), "{out}");

    // Without -o wide, only the priority-0 columns.
    let (_, out, _) = kubectl(&server, &home, &["get", "pods"], None).await;
    assert_eq!(printed(&out)[0].header.join("|"), "NAME|READY|STATUS|RESTARTS|AGE", "{out}");

    // Field selectors kube-apiserver supports, non-string values in their Go form.
    for (args, want) in [
        (vec!["get", "pods", "--field-selector", "status.phase=Running,spec.nodeName=edge-1", "-o", "name"], "pod/web"),
        (vec!["get", "pods", "--field-selector", "spec.nodeName=", "-o", "name"], "pod/crash"),
        (vec!["get", "nodes", "--field-selector", "spec.unschedulable=false", "-o", "name"], "node/edge-1"),
        (vec!["get", "rs", "--field-selector", "status.replicas=3", "-o", "name"], "replicaset.apps/web-5d9"),
        (vec!["get", "jobs", "--field-selector", "status.successful=1", "-o", "name"], "job.batch/once"),
    ] {
        let (ok, out, err) = kubectl(&server, &home, &args, None).await;
        assert!(ok, "{args:?}: {err}");
        assert_eq!(out.trim(), want, "{args:?}");
    }
    let (ok, _, err) = kubectl(&server, &home, &["get", "deploy", "--field-selector", "status.replicas=3"], None).await;
    assert!(!ok && err.contains("field label not supported: status.replicas"), "{err}");
}
