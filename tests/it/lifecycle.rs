//! The lifecycle controllers end to end against a real `orch server`: namespace deletion,
//! default ServiceAccounts and the root CA ConfigMap, garbage collection with each
//! propagation policy, Jobs and CronJobs.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::ResourceExt;
use orch::testkit::ServerProc;
use serde_json::json;

use crate::support::{start_server, wait_for};

const WAIT: Duration = Duration::from_secs(30);

async fn client_for(server: &ServerProc) -> kube::Client {
    server.wait_member(Duration::from_secs(20)).await;
    let kubeconfig = Kubeconfig::read_from(server.data_dir.join("orch.yaml")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    wait_for(WAIT, "the default namespace", || async { namespaces.get_opt("default").await.ok().flatten() }).await;
    client
}

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_get_defaults_and_are_emptied_when_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("n0"), &[]);
    let client = client_for(&server).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.create(&PostParams::default(), &from_json(json!({ "metadata": { "name": "doomed" } }))).await.unwrap();

    // Every namespace gets a default ServiceAccount (back when deleted) and the cluster CA.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "doomed");
    wait_for(WAIT, "the default service account", || async { accounts.get_opt("default").await.ok().flatten() }).await;
    accounts.delete("default", &DeleteParams::default()).await.unwrap();
    wait_for(WAIT, "the default service account back", || async { accounts.get_opt("default").await.ok().flatten() }).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    let root_ca = wait_for(WAIT, "kube-root-ca.crt", || async { maps.get_opt("kube-root-ca.crt").await.ok().flatten() }).await;
    assert!(root_ca.data.unwrap()["ca.crt"].contains("BEGIN CERTIFICATE"));

    maps.create(&PostParams::default(), &from_json(json!({ "metadata": { "name": "app" }, "data": { "k": "v" } }))).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "doomed");
    secrets.create(&PostParams::default(), &from_json(json!({ "metadata": { "name": "s" }, "stringData": { "k": "v" } }))).await.unwrap();
    namespaces.delete("doomed", &DeleteParams::default()).await.unwrap();
    wait_for(WAIT, "the namespace to disappear", || async { namespaces.get_opt("doomed").await.ok().filter(Option::is_none) }).await;
    assert!(maps.list(&ListParams::default()).await.map(|l| l.items.is_empty()).unwrap_or(true), "configmaps are gone");
    assert!(secrets.list(&ListParams::default()).await.map(|l| l.items.is_empty()).unwrap_or(true), "secrets are gone");

    // The namespace can be created again, empty but for its defaults.
    namespaces.create(&PostParams::default(), &from_json(json!({ "metadata": { "name": "doomed" } }))).await.unwrap();
    wait_for(WAIT, "the default service account again", || async { accounts.get_opt("default").await.ok().flatten() }).await;
    assert!(maps.get_opt("app").await.unwrap().is_none());
}

fn dependent(name: &str, owner: &ConfigMap, block: bool) -> ConfigMap {
    from_json(json!({ "metadata": { "name": name, "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": owner.name_any(), "uid": owner.uid().unwrap(), "blockOwnerDeletion": block
    }]}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_owners_propagates_to_dependents() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("n0"), &[]);
    let client = client_for(&server).await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let make = |name: &str| from_json::<ConfigMap>(json!({ "metadata": { "name": name } }));
    let gone = |name: &'static str| {
        let maps = maps.clone();
        async move { wait_for(WAIT, &format!("{name} to be deleted"), || async { maps.get_opt(name).await.ok().filter(Option::is_none) }).await }
    };

    // Background: the owner goes at once, its dependents after.
    let owner = maps.create(&PostParams::default(), &make("bg-owner")).await.unwrap();
    maps.create(&PostParams::default(), &dependent("bg-dep", &owner, false)).await.unwrap();
    maps.delete("bg-owner", &DeleteParams::background()).await.unwrap();
    gone("bg-dep").await;

    // Foreground: the owner stays until its blocking dependent is gone.
    let owner = maps.create(&PostParams::default(), &make("fg-owner")).await.unwrap();
    maps.create(&PostParams::default(), &dependent("fg-dep", &owner, true)).await.unwrap();
    let kept = maps.create(&PostParams::default(), &make("fg-hold")).await.unwrap();
    // A finalizer of our own holds the dependent, so the owner must wait for it.
    let mut held = dependent("fg-held", &owner, true);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    maps.create(&PostParams::default(), &held).await.unwrap();
    maps.delete("fg-owner", &DeleteParams::foreground()).await.unwrap();
    gone("fg-dep").await;
    let waiting = maps.get("fg-owner").await.expect("the owner waits for its blocking dependent");
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert!(waiting.finalizers().iter().any(|f| f == "foregroundDeletion"));
    maps.patch("fg-held", &Default::default(), &kube::api::Patch::Merge(json!({ "metadata": { "finalizers": null } }))).await.unwrap();
    gone("fg-held").await;
    gone("fg-owner").await;
    assert!(maps.get_opt(&kept.name_any()).await.unwrap().is_some(), "unrelated objects stay");

    // Orphan: the owner goes, the dependent stays without the reference.
    let owner = maps.create(&PostParams::default(), &make("or-owner")).await.unwrap();
    maps.create(&PostParams::default(), &dependent("or-dep", &owner, true)).await.unwrap();
    maps.delete("or-owner", &DeleteParams::orphan()).await.unwrap();
    gone("or-owner").await;
    let orphan = maps.get("or-dep").await.unwrap();
    assert!(orphan.owner_references().is_empty(), "{orphan:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_creates_tracked_pods() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("n0"), &[]);
    let client = client_for(&server).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let job = json!({ "metadata": { "name": "work" }, "spec": { "parallelism": 2, "completions": 3, "completionMode": "Indexed",
        "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "busybox" }] } } } });
    let job = jobs.create(&PostParams::default(), &from_json(job)).await.unwrap();
    let uid = job.uid().unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let selector = format!("batch.kubernetes.io/controller-uid={uid}");
    let listed = wait_for(WAIT, "two job pods", || async {
        pods.list(&ListParams::default().labels(&selector)).await.ok().filter(|l| l.items.len() == 2).map(|l| l.items)
    })
    .await;
    let mut indexes: Vec<String> = listed.iter().map(|p| p.annotations()["batch.kubernetes.io/job-completion-index"].clone()).collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1"]);
    for pod in &listed {
        assert!(pod.finalizers().iter().any(|f| f == "batch.kubernetes.io/job-tracking"));
        assert_eq!(pod.labels()["batch.kubernetes.io/job-name"], "work");
        assert_eq!(pod.owner_references()[0].uid, uid);
    }
    let status =
        wait_for(WAIT, "job status", || async { jobs.get("work").await.ok().and_then(|j| j.status).filter(|s| s.active == Some(2)) }).await;
    assert!(status.start_time.is_some());

    // Pods finishing (as a node would report) are counted, released and replaced.
    let finish = |name: String, phase: &'static str| {
        let pods = pods.clone();
        async move {
            let patch = kube::api::Patch::Merge(json!({ "status": { "phase": phase } }));
            pods.patch_status(&name, &Default::default(), &patch).await.unwrap();
        }
    };
    for pod in &listed {
        finish(pod.name_any(), "Succeeded").await;
    }
    let last = wait_for(WAIT, "the pod of index 2", || async {
        pods.list(&ListParams::default().labels(&selector))
            .await
            .ok()?
            .items
            .into_iter()
            .find(|p| p.annotations()["batch.kubernetes.io/job-completion-index"] == "2")
    })
    .await;
    finish(last.name_any(), "Succeeded").await;
    let done = wait_for(WAIT, "the job to complete", || async {
        let status = jobs.get("work").await.ok()?.status?;
        status.conditions.as_ref()?.iter().any(|c| c.type_ == "Complete" && c.status == "True").then_some(status)
    })
    .await;
    assert_eq!((done.succeeded, done.failed, done.active, done.completed_indexes.as_deref()), (Some(3), Some(0), Some(0), Some("0-2")));
    assert!(done.completion_time.is_some());
    let finished = pods.list(&ListParams::default().labels(&selector)).await.unwrap().items;
    assert!(finished.iter().all(|p| p.finalizers().is_empty()), "counted pods lose the tracking finalizer");

    // A failure beyond backoffLimit fails the Job.
    let fragile = json!({ "metadata": { "name": "fragile" }, "spec": { "backoffLimit": 0,
        "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "busybox" }] } } } });
    let fragile = jobs.create(&PostParams::default(), &from_json(fragile)).await.unwrap();
    let fragile_selector = format!("batch.kubernetes.io/controller-uid={}", fragile.uid().unwrap());
    let pod = wait_for(WAIT, "the fragile job's pod", || async {
        pods.list(&ListParams::default().labels(&fragile_selector)).await.ok()?.items.pop()
    })
    .await;
    finish(pod.name_any(), "Failed").await;
    let failed = wait_for(WAIT, "the job to fail", || async {
        let status = jobs.get("fragile").await.ok()?.status?;
        status.conditions.as_ref()?.iter().find(|c| c.type_ == "Failed" && c.status == "True").cloned()
    })
    .await;
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));

    // Deleting the Job takes its pods along (finalizers released, garbage collected).
    jobs.delete("work", &DeleteParams::background()).await.unwrap();
    wait_for(WAIT, "the job's pods to go", || async {
        pods.list(&ListParams::default().labels(&selector)).await.ok().filter(|l| l.items.iter().all(|p| p.finalizers().is_empty()))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_starts_a_job_on_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("n0"), &[]);
    let client = client_for(&server).await;
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let cj = json!({ "metadata": { "name": "tick" }, "spec": { "schedule": "*/1 * * * *", "jobTemplate": { "spec": {
        "template": { "spec": { "restartPolicy": "OnFailure", "containers": [{ "name": "c", "image": "busybox" }] } } } } } });
    let cj = cronjobs.create(&PostParams::default(), &from_json(cj)).await.unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let job = wait_for(Duration::from_secs(75), "a job from the cronjob", || async {
        jobs.list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|j| j.owner_references().iter().any(|o| Some(&o.uid) == cj.uid().as_ref()))
    })
    .await;
    let stamp = job.annotations()["batch.kubernetes.io/cronjob-scheduled-timestamp"].clone();
    let scheduled = time::OffsetDateTime::parse(&stamp, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(job.name_any(), format!("tick-{}", scheduled.unix_timestamp() / 60));
    let status = wait_for(WAIT, "cronjob status", || async {
        cronjobs.get("tick").await.ok().and_then(|c| c.status).filter(|s| s.last_schedule_time.is_some() && s.active.is_some())
    })
    .await;
    assert_eq!(status.active.unwrap()[0].name.as_deref(), Some(job.name_any().as_str()));
}

/// Starts a hollow node (`orch agent --runtime fake`) joined to `server`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_to_completion_on_hollow_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("n0"), &["--disable-agent".to_string()]);
    let client = client_for(&server).await;
    let _nodes: Vec<_> =
        ["hollow-1", "hollow-2"].iter().map(|n| crate::support::start_hollow_node(&server, &dir.path().join(n), n, &[])).collect();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let job = json!({ "metadata": { "name": "done" }, "spec": { "parallelism": 2, "completions": 4, "ttlSecondsAfterFinished": 2,
        "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "busybox" }] } } } });
    jobs.create(&PostParams::default(), &from_json(job)).await.unwrap();
    let status = wait_for(Duration::from_secs(60), "the job to complete", || async {
        let status = jobs.get("done").await.ok()?.status?;
        status.conditions.as_ref()?.iter().any(|c| c.type_ == "Complete" && c.status == "True").then_some(status)
    })
    .await;
    assert_eq!((status.succeeded, status.failed.unwrap_or(0)), (Some(4), 0));
    assert!(status.completion_time.is_some());
    wait_for(WAIT, "the finished job to expire", || async { jobs.get_opt("done").await.ok().filter(Option::is_none) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_and_quotas_report_status() {
    use k8s_openapi::api::core::v1::ResourceQuota;
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("n0"), &[]);
    let client = client_for(&server).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["p1", "p2"] {
        let pod = json!({ "metadata": { "name": name, "labels": { "app": "web" } },
            "spec": { "containers": [{ "name": "c", "image": "busybox", "resources": { "requests": { "cpu": "250m", "memory": "64Mi" } } }] } });
        pods.create(&PostParams::default(), &from_json(pod)).await.unwrap();
    }
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "default");
    let quota = json!({ "metadata": { "name": "q" }, "spec": { "hard": { "pods": "10", "requests.cpu": "2", "requests.memory": "1Gi" } } });
    quotas.create(&PostParams::default(), &from_json(quota)).await.unwrap();
    let used = wait_for(WAIT, "quota usage", || async {
        quotas.get("q").await.ok()?.status?.used.filter(|u| u.get("pods").is_some_and(|p| p.0 == "2"))
    })
    .await;
    assert_eq!((used["requests.cpu"].0.as_str(), used["requests.memory"].0.as_str()), ("500m", "128Mi"));

    // Pods without nodes are never ready: the budget allows no disruption.
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    let pdb = json!({ "metadata": { "name": "web" }, "spec": { "minAvailable": 1, "selector": { "matchLabels": { "app": "web" } } } });
    budgets.create(&PostParams::default(), &from_json(pdb)).await.unwrap();
    let status =
        wait_for(WAIT, "budget status", || async { budgets.get("web").await.ok()?.status.filter(|s| s.observed_generation.is_some()) })
            .await;
    assert_eq!((status.expected_pods, status.current_healthy, status.desired_healthy, status.disruptions_allowed), (2, 0, 1, 0));
    let condition = &status.conditions.unwrap()[0];
    assert_eq!(
        (condition.type_.as_str(), condition.status.as_str(), condition.reason.as_str()),
        ("DisruptionAllowed", "False", "InsufficientPods")
    );
}
