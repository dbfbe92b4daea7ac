//! Adversarial tests: volumes (see mod.rs). A namespace admin tries to make the kubelet write
//! outside a volume (ConfigMap/Secret keys, item paths, subPath) and to run pods the
//! namespace's PodSecurity level forbids.

use serde_json::{json, Value};

use super::{assert_alive, make_namespace_admin, Caller};
use crate::support::{kubectl, ready_server};

fn pod(name: &str, spec: Value) -> String {
    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name }, "spec": spec }).to_string()
}

fn busybox() -> Value {
    json!({ "name": "c", "image": "busybox" })
}

#[tokio::test]
async fn keys_and_paths_that_leave_the_volume_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path(), &[]).await;
    let home = dir.path().join("home");
    let tenant = make_namespace_admin(&server, &home, "team", "mallory").await;
    let base = "/api/v1/namespaces/team";

    let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "evil" }, "data": { "../../etc/x": "owned" } });
    let answer = tenant.send("POST", &format!("{base}/configmaps"), "application/json", cm.to_string()).await;
    assert_eq!(answer.code, 422, "{}", answer.text);
    assert_eq!(
        answer.body["message"],
        "ConfigMap \"evil\" is invalid: [data[../../etc/x]: Invalid value: \"../../etc/x\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+'), data[../../etc/x]: Invalid value: \"../../etc/x\": must not start with '..']"
    );
    assert_eq!(tenant.get(&format!("{base}/configmaps/evil")).await.code, 404, "nothing stored");

    let secret =
        json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "evil" }, "data": { "..": "eA==", "..data": "eA==" } });
    let answer = tenant.send("POST", &format!("{base}/secrets"), "application/json", secret.to_string()).await;
    assert_eq!(answer.code, 422, "{}", answer.text);
    assert!(answer.text.contains("data[..]: Invalid value: \\\"..\\\": must not be '..'"), "{}", answer.text);
    assert!(answer.text.contains("must not start with '..'"), "{}", answer.text);
    assert_eq!(tenant.get(&format!("{base}/secrets/evil")).await.code, 404, "nothing stored");

    // A key fine on its own, made to escape by the pod's item path or subPath.
    let good = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "good" }, "data": { "k": "v" } });
    assert_eq!(tenant.send("POST", &format!("{base}/configmaps"), "application/json", good.to_string()).await.code, 201);
    let escaping_item = pod(
        "item",
        json!({ "containers": [busybox()], "volumes": [{ "name": "v", "configMap": { "name": "good", "items": [{ "key": "k", "path": "../x" }] } }] }),
    );
    let answer = tenant.send("POST", &format!("{base}/pods"), "application/json", escaping_item).await;
    assert_eq!(answer.code, 422, "{}", answer.text);
    assert_eq!(
        answer.body["message"],
        "Pod \"item\" is invalid: spec.volumes[0].configMap.items[0].path: Invalid value: \"../x\": must not contain '..'"
    );
    assert_eq!(tenant.get(&format!("{base}/pods/item")).await.code, 404, "nothing stored");

    let mut c = busybox();
    c["volumeMounts"] = json!([{ "name": "v", "mountPath": "/m", "subPath": "../../../../etc" }]);
    let escaping_sub_path = pod("sub", json!({ "containers": [c], "volumes": [{ "name": "v", "emptyDir": {} }] }));
    let answer = tenant.send("POST", &format!("{base}/pods"), "application/json", escaping_sub_path).await;
    assert_eq!(answer.code, 422, "{}", answer.text);
    assert!(answer.text.contains("spec.containers[0].volumeMounts[0].subPath: Invalid value"), "{}", answer.text);
    assert_eq!(tenant.get(&format!("{base}/pods/sub")).await.code, 404, "nothing stored");

    // The same through a workload's template.
    let deploy = json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "d" }, "spec": {
        "selector": { "matchLabels": { "app": "d" } },
        "template": { "metadata": { "labels": { "app": "d" } }, "spec": { "containers": [busybox()],
            "volumes": [{ "name": "v", "secret": { "secretName": "s", "items": [{ "key": "k", "path": "/etc/shadow" }] } }] } } } });
    let answer = tenant.send("POST", "/apis/apps/v1/namespaces/team/deployments", "application/json", deploy.to_string()).await;
    assert_eq!(answer.code, 422, "{}", answer.text);
    assert!(
        answer
            .text
            .contains("spec.template.spec.volumes[0].secret.items[0].path: Invalid value: \\\"/etc/shadow\\\": must be a relative path"),
        "{}",
        answer.text
    );
    assert_alive(&server).await;
}

fn label(ns: &str, labels: &[&str]) -> Vec<String> {
    let mut args = vec!["label".to_string(), "--overwrite".into(), "namespace".into(), ns.into()];
    args.extend(labels.iter().map(|l| l.to_string()));
    args
}

#[tokio::test]
async fn pod_security_levels_are_enforced_and_warned() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path(), &[]).await;
    let home = dir.path().join("home");
    let tenant = make_namespace_admin(&server, &home, "team", "mallory").await;
    let admin = Caller::admin(&server);

    // A pod admitted before the namespace got its level stays editable (metadata, status).
    let early = pod("early", json!({ "hostNetwork": true, "containers": [busybox()] }));
    assert_eq!(tenant.send("POST", "/api/v1/namespaces/team/pods", "application/json", early).await.code, 201);

    let args = label("team", &["pod-security.kubernetes.io/enforce=baseline"]);
    let (ok, out, err) = kubectl(&server, &home, &args.iter().map(String::as_str).collect::<Vec<_>>(), None).await;
    assert!(ok, "{out}{err}");
    assert!(
        err.contains("Warning: existing pods in namespace \"team\" violate the new PodSecurity enforce level \"baseline:latest\""),
        "{err}"
    );
    assert!(err.contains("Warning: early: host namespaces"), "{err}");

    let mut privileged = busybox();
    privileged["securityContext"] = json!({ "privileged": true });
    let hostile = pod("hostile", json!({ "hostNetwork": true, "containers": [privileged] }));
    let answer = tenant.send("POST", "/api/v1/namespaces/team/pods", "application/json", hostile).await;
    assert_eq!(answer.code, 403, "{}", answer.text);
    assert_eq!(
        answer.body["message"],
        "pods \"hostile\" is forbidden: violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true), privileged (container \"c\" must not set securityContext.privileged=true)"
    );
    assert_eq!(answer.body["reason"], "Forbidden");
    assert_eq!(tenant.get("/api/v1/namespaces/team/pods/hostile").await.code, 404, "nothing stored");

    let host_path = pod("hostpath", json!({ "containers": [busybox()], "volumes": [{ "name": "root", "hostPath": { "path": "/" } }] }));
    let answer = tenant.send("POST", "/api/v1/namespaces/team/pods", "application/json", host_path).await;
    assert_eq!(answer.code, 403, "{}", answer.text);
    assert!(answer.text.contains("hostPath volumes (volume \\\"root\\\")"), "{}", answer.text);

    let plain = pod("plain", json!({ "containers": [busybox()] }));
    assert_eq!(
        tenant.send("POST", "/api/v1/namespaces/team/pods", "application/json", plain).await.code,
        201,
        "baseline allows plain pods"
    );
    let relabel = json!({ "metadata": { "labels": { "touched": "yes" } } }).to_string();
    let answer = admin.send("PATCH", "/api/v1/namespaces/team/pods/early", "application/merge-patch+json", relabel).await;
    assert_eq!(answer.code, 200, "metadata-only updates of existing pods pass: {}", answer.text);

    // The tenant cannot lift the level: namespaces are not theirs.
    let lift = json!({ "metadata": { "labels": { "pod-security.kubernetes.io/enforce": "privileged" } } }).to_string();
    let answer = tenant.send("PATCH", "/api/v1/namespaces/team", "application/merge-patch+json", lift).await;
    assert_eq!(answer.code, 403, "{}", answer.text);

    // Invalid levels are refused on the namespace, as kube does.
    let args = label("team", &["pod-security.kubernetes.io/enforce=lax"]);
    let (ok, _, err) = kubectl(&server, &home, &args.iter().map(String::as_str).collect::<Vec<_>>(), None).await;
    assert!(!ok && err.contains("must be one of privileged, baseline, restricted"), "{err}");

    // warn: kubectl prints the Warning header, the pod and a Deployment are still created.
    for args in [vec!["create", "namespace", "warned"]] {
        let (ok, out, err) = kubectl(&server, &home, &args, None).await;
        assert!(ok, "{out}{err}");
    }
    let args = label("warned", &["pod-security.kubernetes.io/warn=restricted"]);
    let (ok, out, err) = kubectl(&server, &home, &args.iter().map(String::as_str).collect::<Vec<_>>(), None).await;
    assert!(ok, "{out}{err}");
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: loose\n  namespace: warned\nspec:\n  containers:\n  - name: app\n    image: busybox\n";
    let (ok, out, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(manifest)).await;
    assert!(ok, "{out}{err}");
    assert!(err.contains("Warning: would violate PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false)"), "{err}");
    assert!(err.contains("runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true)"), "{err}");
    let (ok, out, err) = kubectl(&server, &home, &["create", "deployment", "web", "-n", "warned", "--image=busybox"], None).await;
    assert!(ok, "{out}{err}");
    assert!(err.contains("Warning: would violate PodSecurity \"restricted:latest\""), "a template warns too: {err}");

    // restricted enforce: only hardened pods.
    let (ok, out, err) = kubectl(&server, &home, &["create", "namespace", "strict"], None).await;
    assert!(ok, "{out}{err}");
    let args = label("strict", &["pod-security.kubernetes.io/enforce=restricted"]);
    let (ok, out, err) = kubectl(&server, &home, &args.iter().map(String::as_str).collect::<Vec<_>>(), None).await;
    assert!(ok, "{out}{err}");
    let loose = pod("loose", json!({ "containers": [busybox()] }));
    let answer = admin.send("POST", "/api/v1/namespaces/strict/pods", "application/json", loose).await;
    assert_eq!(answer.code, 403, "{}", answer.text);
    assert!(answer.text.contains("violates PodSecurity \\\"restricted:latest\\\""), "{}", answer.text);
    assert!(answer.text.contains("runAsNonRoot != true"), "{}", answer.text);
    let hardened = pod(
        "hardened",
        json!({
            "securityContext": { "runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": { "type": "RuntimeDefault" } },
            "containers": [{ "name": "c", "image": "busybox", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } } }]
        }),
    );
    let answer = admin.send("POST", "/api/v1/namespaces/strict/pods", "application/json", hardened).await;
    assert_eq!(answer.code, 201, "{}", answer.text);
    assert_alive(&server).await;
}
