//! ResourceQuota and LimitRange enforced at admission, through stock kubectl: defaults from a
//! LimitRange (and kube's annotation), min/max refusals, quota charging and kube's 403 wording
//! once a quota is full, deletes freeing room again.

use std::time::Duration;

use serde_json::Value;

use crate::support::{kubectl, ready_server, wait_for};

const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: compute, namespace: team}
spec:
  hard: {pods: "2", requests.cpu: "1", limits.memory: 1Gi}
---
apiVersion: v1
kind: LimitRange
metadata: {name: defaults, namespace: team}
spec:
  limits:
  - type: Container
    default: {cpu: 300m, memory: 128Mi}
    defaultRequest: {cpu: 200m}
    max: {cpu: "1"}
  - type: PersistentVolumeClaim
    max: {storage: 2Gi}
"#;

fn pod(name: &str, cpu: Option<&str>) -> String {
    let resources = cpu.map(|c| format!(", resources: {{requests: {{cpu: {c}}}, limits: {{cpu: {c}}}}}")).unwrap_or_default();
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: team}}\nspec:\n  containers: [{{name: c, image: busybox{resources}}}]\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_and_limit_ranges_are_enforced_at_admission() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path(), &[]).await;
    let home = dir.path().join("home");
    let (ok, out, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(MANIFEST)).await;
    assert!(ok, "{out}{err}");

    // The quota controller fills in the quota's status; until then kube refuses creates.
    wait_for(Duration::from_secs(30), "the quota's usage", || async {
        let (_, out, _) =
            kubectl(&server, &home, &["get", "quota", "compute", "-n", "team", "-o", "jsonpath={.status.used.pods}"], None).await;
        (out == "0").then_some(())
    })
    .await;

    // A pod naming nothing gets the LimitRange's defaults, noted as kube notes them.
    let (ok, out, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(&pod("a", None))).await;
    assert!(ok, "{out}{err}");
    let (_, out, _) = kubectl(&server, &home, &["get", "pod", "a", "-n", "team", "-o", "json"], None).await;
    let a: Value = serde_json::from_str(&out).unwrap();
    let resources = &a["spec"]["containers"][0]["resources"];
    assert_eq!((resources["requests"]["cpu"].as_str(), resources["limits"]["memory"].as_str()), (Some("200m"), Some("128Mi")), "{a}");
    assert_eq!(
        a["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c"
    );

    // Above the LimitRange's max: refused before the quota is charged.
    let (ok, _, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(&pod("big", Some("2")))).await;
    assert!(!ok && err.contains(r#"pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2"#), "{err}");

    // The second pod fits; the third exceeds the pod count.
    let (ok, out, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(&pod("b", Some("500m")))).await;
    assert!(ok, "{out}{err}");
    let (_, used, _) = kubectl(&server, &home, &["get", "quota", "compute", "-n", "team", "-o", "jsonpath={.status.used}"], None).await;
    let used: Value = serde_json::from_str(&used).unwrap();
    assert_eq!(used["pods"], "2", "{used}");
    assert_eq!(used["requests.cpu"], "700m", "{used}");
    let (ok, _, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(&pod("c", Some("100m")))).await;
    assert!(
        !ok && err.contains(r#"pods "c" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2"#),
        "{err}"
    );

    // A claim above the LimitRange's storage max is refused.
    let claim = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data, namespace: team}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 5Gi}}\n";
    let (ok, _, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(claim)).await;
    assert!(!ok && err.contains("maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"), "{err}");

    // Deleting a pod frees its room once the controller recounts.
    let (ok, _, err) = kubectl(&server, &home, &["delete", "pod", "a", "-n", "team", "--grace-period=0", "--force"], None).await;
    assert!(ok, "{err}");
    wait_for(Duration::from_secs(30), "room in the quota after the delete", || async {
        let (ok, _, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(&pod("c", Some("100m")))).await;
        assert!(ok || err.contains("exceeded quota"), "{err}");
        ok.then_some(())
    })
    .await;
}
