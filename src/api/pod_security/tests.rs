//! The checks' messages against kube's, level by level.

use serde_json::json;

use super::*;

fn violations(level: &str, version: &str, pod: &Value) -> Vec<String> {
    let labels = json!({ "pod-security.kubernetes.io/enforce": level, "pod-security.kubernetes.io/enforce-version": version });
    let Some(policy) = policy::modes(&labels).0.enforce else { return Vec::new() };
    evaluate(&policy, &PodView { meta: &pod["metadata"], spec: &pod["spec"] })
}

#[test]
fn baseline_refuses_host_access() {
    let pod = json!({ "metadata": {}, "spec": {
        "hostNetwork": true, "hostPID": true,
        "securityContext": { "sysctls": [{ "name": "kernel.msgmax", "value": "1" }, { "name": "net.ipv4.tcp_syncookies", "value": "1" }] },
        "containers": [
            { "name": "a", "securityContext": { "privileged": true, "capabilities": { "add": ["NET_ADMIN", "CHOWN", "SYS_ADMIN"] } },
              "ports": [{ "containerPort": 80, "hostPort": 8080 }] },
            { "name": "b", "securityContext": { "privileged": true, "procMount": "Unmasked", "seccompProfile": { "type": "Unconfined" } } }
        ],
        "volumes": [{ "name": "root", "hostPath": { "path": "/" } }]
    }});
    assert_eq!(
        violations("baseline", "latest", &pod),
        vec![
            "non-default capabilities (container \"a\" must not include \"NET_ADMIN\", \"SYS_ADMIN\" in securityContext.capabilities.add)",
            "host namespaces (hostNetwork=true, hostPID=true)",
            "hostPath volumes (volume \"root\")",
            "hostPort (container \"a\" uses hostPort 8080)",
            "privileged (containers \"a\", \"b\" must not set securityContext.privileged=true)",
            "procMount (container \"b\" must not set securityContext.procMount to \"Unmasked\")",
            "seccompProfile (container \"b\" must not set securityContext.seccompProfile.type to \"Unconfined\")",
            "forbidden sysctls (kernel.msgmax)",
        ]
    );
    assert!(violations("privileged", "latest", &pod).is_empty());
}

#[test]
fn restricted_needs_the_hardened_settings() {
    let pod = json!({ "metadata": {}, "spec": {
        "containers": [{ "name": "app" }],
        "volumes": [{ "name": "h", "hostPath": { "path": "/x" } }, { "name": "cfg", "configMap": { "name": "c" } }]
    }});
    assert_eq!(
        violations("restricted", "latest", &pod),
        vec![
            "allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false)",
            "unrestricted capabilities (container \"app\" must set securityContext.capabilities.drop=[\"ALL\"])",
            "restricted volume types (volume \"h\" uses restricted volume type \"hostPath\")",
            "runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true)",
            "seccompProfile (pod or container \"app\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
        ]
    );
    let hardened = json!({ "metadata": {}, "spec": {
        "securityContext": { "runAsNonRoot": true, "seccompProfile": { "type": "RuntimeDefault" } },
        "containers": [{ "name": "app", "securityContext": {
            "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"], "add": ["NET_BIND_SERVICE"] } } }],
        "volumes": [{ "name": "cfg", "configMap": { "name": "c" } }, { "name": "tmp", "emptyDir": {} }]
    }});
    assert!(violations("restricted", "latest", &hardened).is_empty());
    let mut root = hardened.clone();
    root["spec"]["securityContext"]["runAsUser"] = json!(0);
    assert_eq!(violations("restricted", "latest", &root), vec!["runAsUser=0 (pod must not set runAsUser=0)"]);
    assert!(violations("restricted", "v1.22", &root).is_empty(), "runAsUser is checked from v1.23");
    let mut old = pod.clone();
    old["spec"]["containers"][0]["securityContext"] = json!({ "allowPrivilegeEscalation": false });
    old["spec"]["securityContext"] = json!({ "runAsNonRoot": true, "seccompProfile": { "type": "RuntimeDefault" } });
    old["spec"]["volumes"] = json!([]);
    assert!(violations("restricted", "v1.21", &old).is_empty(), "capabilities are restricted from v1.22");
}

#[test]
fn pod_updates_that_change_nothing_checked_are_allowed() {
    let pod = json!({ "metadata": { "name": "p", "labels": {} }, "spec": { "hostNetwork": true, "containers": [{ "name": "c", "image": "a" }] } });
    let mut relabelled = pod.clone();
    relabelled["metadata"]["labels"]["x"] = json!("y");
    assert!(!significant_pod_update(&pod, &relabelled));
    let mut new_image = pod.clone();
    new_image["spec"]["containers"][0]["image"] = json!("b");
    assert!(significant_pod_update(&pod, &new_image));
}

#[test]
fn namespace_labels_are_validated_when_they_change() {
    let ns = json!({ "metadata": { "name": "n", "labels": { "pod-security.kubernetes.io/enforce": "nope", "other": "x" } } });
    let mut errs = Vec::new();
    validate_namespace(&ns, None, &mut errs);
    assert_eq!(errs.len(), 1);
    let mut errs = Vec::new();
    let mut relabelled = ns.clone();
    relabelled["metadata"]["labels"]["other"] = json!("z");
    validate_namespace(&relabelled, Some(&ns), &mut errs);
    assert!(errs.is_empty(), "unchanged PodSecurity labels are left alone");
}
