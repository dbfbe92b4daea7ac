//! What a fake runtime reports about a pod: the few facts it keeps per pod, and the pod
//! statuses (running, terminated) it writes through the status subresource, shaped as the
//! kubelet writes them.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

/// Annotation that makes a hollow node's pod exit with this code instead of 0.
pub const EXIT_CODE_ANNOTATION: &str = "orch.dev/fake-exit-code";

/// The longest a hollow node waits before finishing a deleted pod.
const MAX_GRACE: Duration = Duration::from_secs(1);

/// What the fake runtime remembers of one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodFacts {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// (name, image) of the init containers and the containers.
    pub init_containers: Vec<(String, String)>,
    pub containers: Vec<(String, String)>,
    pub qos_class: &'static str,
    pub host_network: bool,
    /// Exit code the containers end with, for pods that run to completion (restartPolicy not
    /// Always); `None` for pods that run until deleted.
    pub exit_code: Option<i32>,
}

impl PodFacts {
    pub fn of(pod: &Pod) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let names = |cs: &[k8s_openapi::api::core::v1::Container]| -> Vec<(String, String)> {
            cs.iter().map(|c| (c.name.clone(), c.image.clone().unwrap_or_default())).collect()
        };
        let runs_to_completion = spec.restart_policy.as_deref().is_some_and(|p| p != "Always");
        let exit_code = runs_to_completion.then(|| {
            let annotations = pod.metadata.annotations.as_ref();
            annotations.and_then(|a| a.get(EXIT_CODE_ANNOTATION)).map(|v| v.trim().parse().unwrap_or(1)).unwrap_or(0)
        });
        Self {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            init_containers: names(spec.init_containers.as_deref().unwrap_or_default()),
            containers: names(&spec.containers),
            qos_class: crate::k8s::qos::of_pod(pod),
            host_network: spec.host_network == Some(true),
            exit_code,
        }
    }
}

/// How long a deleted pod takes to stop: its grace period, at most one second.
pub fn stop_delay(pod: &Pod) -> Duration {
    let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30).max(0) as u64;
    Duration::from_secs(grace).min(MAX_GRACE)
}

fn fake_id(kind: &str, text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("fake://{kind}{hex}")
}

fn condition(kind: &str, status: bool, now: &Time) -> Value {
    json!({ "type": kind, "status": if status { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": now })
}

fn container_status(facts: &PodFacts, (name, image): &(String, String), ready: bool, state: Value) -> Value {
    json!({
        "name": name,
        "image": image,
        "imageID": fake_id("sha256:", image),
        "containerID": fake_id("", &format!("{}/{}", facts.uid, name)),
        "ready": ready,
        "started": ready,
        "restartCount": 0,
        "state": state,
    })
}

fn completed(started: &Time, now: &Time, code: i32) -> Value {
    let reason = if code == 0 { "Completed" } else { "Error" };
    json!({ "terminated": { "exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now } })
}

/// The status of a pod whose containers all run.
pub fn running(facts: &PodFacts, pod_ip: &str, host_ip: &str, started: Timestamp) -> Value {
    let started = Time(started);
    let init: Vec<Value> =
        facts.init_containers.iter().map(|c| container_status(facts, c, false, completed(&started, &started, 0))).collect();
    let running = json!({ "running": { "startedAt": started } });
    let containers: Vec<Value> = facts.containers.iter().map(|c| container_status(facts, c, true, running.clone())).collect();
    let conditions: Vec<Value> = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
        .iter()
        .map(|k| condition(k, true, &started))
        .collect();
    json!({
        "phase": "Running",
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{ "ip": host_ip }],
        "podIP": pod_ip,
        "podIPs": [{ "ip": pod_ip }],
        "startTime": started,
        "initContainerStatuses": init,
        "containerStatuses": containers,
        "qosClass": facts.qos_class,
    })
}

/// The status of a pod whose containers have all exited with `code` (0 → Succeeded).
pub fn terminated(facts: &PodFacts, started: Timestamp, code: i32) -> Value {
    let (started, now) = (Time(started), Time(Timestamp::now()));
    let exited = completed(&started, &now, code);
    let containers: Vec<Value> = facts.containers.iter().map(|c| container_status(facts, c, false, exited.clone())).collect();
    let reason = json!("PodCompleted");
    let mut conditions: Vec<Value> = ["Ready", "ContainersReady"].iter().map(|k| condition(k, false, &now)).collect();
    for c in &mut conditions {
        c["reason"] = reason.clone();
    }
    conditions.extend(["PodReadyToStartContainers", "Initialized", "PodScheduled"].iter().map(|k| condition(k, true, &started)));
    json!({
        "phase": if code == 0 { "Succeeded" } else { "Failed" },
        "conditions": conditions,
        "containerStatuses": containers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn exit_codes_follow_restart_policy_and_annotation() {
        let p = |policy: &str, annotations: Value| {
            PodFacts::of(&pod(
                json!({"metadata": {"annotations": annotations}, "spec": {"restartPolicy": policy, "containers": [{"name": "c", "image": "busybox"}]}}),
            ))
        };
        assert_eq!(p("Always", json!({})).exit_code, None);
        assert_eq!(p("Never", json!({})).exit_code, Some(0));
        assert_eq!(p("OnFailure", json!({ EXIT_CODE_ANNOTATION: "3" })).exit_code, Some(3));
        assert_eq!(p("Never", json!({ EXIT_CODE_ANNOTATION: "x" })).exit_code, Some(1));
    }

    #[test]
    fn statuses_look_like_the_kubelets() {
        let facts = PodFacts::of(&pod(
            json!({"metadata": {"name": "p", "uid": "u1"}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}),
        ));
        let started = Timestamp::now();
        let s = running(&facts, "10.42.0.2", "127.0.0.1", started);
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "10.42.0.2");
        assert_eq!(s["containerStatuses"][0]["ready"], true);
        assert!(s["containerStatuses"][0]["containerID"].as_str().unwrap().starts_with("fake://"));
        assert!(s["conditions"].as_array().unwrap().iter().all(|c| c["status"] == "True"));
        let t = terminated(&facts, started, 2);
        assert_eq!(t["phase"], "Failed");
        assert_eq!(t["containerStatuses"][0]["state"]["terminated"]["exitCode"], 2);
        assert_eq!(terminated(&facts, started, 0)["containerStatuses"][0]["state"]["terminated"]["reason"], "Completed");
    }

    #[test]
    fn deleted_pods_stop_within_a_second() {
        let p = pod(json!({"metadata": {"deletionGracePeriodSeconds": 30}}));
        assert_eq!(stop_delay(&p), Duration::from_secs(1));
        let p = pod(json!({"metadata": {"deletionGracePeriodSeconds": 0}}));
        assert_eq!(stop_delay(&p), Duration::ZERO);
    }
}
