//! The pod printer: READY, STATUS and RESTARTS summarised from container states exactly as
//! kube-apiserver's `printPod` does (init containers, sidecars, waiting and terminated reasons,
//! Terminating), and the wide IP / NODE / NOMINATED NODE / READINESS GATES columns.

use std::collections::HashSet;

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::cells::{human_duration, int, items, or_none, text, timestamp};
use super::{col, wide, Column, AGE, NAME};
use crate::api::registry::Resource;

pub(super) fn columns(resource: &Resource) -> Option<Vec<Column>> {
    (resource.group.is_empty() && resource.plural == "pods").then(|| {
        vec![
            NAME,
            col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic.", |o| json!(summarize(o).ready)),
            col("Status", "string", "The aggregate status of the containers in this pod.", |o| json!(summarize(o).status)),
            col(
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                |o| json!(summarize(o).restarts),
            ),
            AGE,
            wide("IP", "string", "podIP address allocated to the pod.", |o| {
                let first = &o["status"]["podIPs"][0]["ip"];
                or_none(if first.is_string() { text(first) } else { text(&o["status"]["podIP"]) })
            }),
            wide("Node", "string", "NodeName indicates in which node this pod is scheduled.", |o| or_none(text(&o["spec"]["nodeName"]))),
            wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node.", |o| {
                or_none(text(&o["status"]["nominatedNodeName"]))
            }),
            wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness.", readiness_gates),
        ]
    })
}

/// The row conditions kube-apiserver attaches to finished pods.
pub(super) fn row_conditions(resource: &Resource, pod: &Value) -> Option<Value> {
    if !resource.group.is_empty() || resource.plural != "pods" {
        return None;
    }
    let (reason, message) = match text(&pod["status"]["phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{ "type": "Completed", "status": "True", "reason": reason, "message": message }]))
}

struct Summary {
    ready: String,
    status: String,
    restarts: String,
}

fn later(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    a.max(b)
}

fn condition_true(pod: &Value, kind: &str) -> bool {
    items(&pod["status"]["conditions"]).find(|c| c["type"] == kind).is_some_and(|c| c["status"] == "True")
}

/// "ExitCode:N" or "Signal:N" for a terminated state without a reason.
fn exit(terminated: &Value) -> String {
    match int(&terminated["signal"]) {
        0 => format!("ExitCode:{}", int(&terminated["exitCode"])),
        signal => format!("Signal:{signal}"),
    }
}

fn summarize(pod: &Value) -> Summary {
    let (spec, status) = (&pod["spec"], &pod["status"]);
    let phase = text(&status["phase"]);
    let mut reason = match text(&status["reason"]) {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    if items(&status["conditions"]).any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated") {
        reason = "SchedulingGated".into();
    }
    let sidecars: HashSet<&str> =
        items(&spec["initContainers"]).filter(|c| c["restartPolicy"] == "Always").map(|c| text(&c["name"])).collect();
    let total = items(&spec["containers"]).count() + items(&spec["initContainers"]).filter(|c| c["restartPolicy"] == "Always").count();
    let init_count = items(&spec["initContainers"]).count();
    let (mut ready, mut restarts, mut sidecar_restarts) = (0, 0, 0);
    let (mut last_restart, mut last_sidecar_restart) = (None, None);
    let mut initializing = false;
    for (i, c) in items(&status["initContainerStatuses"]).enumerate() {
        let finished = timestamp(&c["lastState"]["terminated"]["finishedAt"]);
        restarts += int(&c["restartCount"]);
        last_restart = later(last_restart, finished);
        let sidecar = sidecars.contains(text(&c["name"]));
        if sidecar {
            sidecar_restarts += int(&c["restartCount"]);
            last_sidecar_restart = later(last_sidecar_restart, finished);
        }
        let (terminated, waiting) = (&c["state"]["terminated"], text(&c["state"]["waiting"]["reason"]));
        if terminated.is_object() && int(&terminated["exitCode"]) == 0 {
            continue;
        }
        if sidecar && c["started"] == true {
            ready += usize::from(c["ready"] == true);
            continue;
        }
        reason = if terminated.is_object() {
            match text(&terminated["reason"]) {
                "" => format!("Init:{}", exit(terminated)),
                r => format!("Init:{r}"),
            }
        } else if !waiting.is_empty() && waiting != "PodInitializing" {
            format!("Init:{waiting}")
        } else {
            format!("Init:{i}/{init_count}")
        };
        initializing = true;
        break;
    }
    if !initializing || condition_true(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut running = false;
        for c in items(&status["containerStatuses"]).rev() {
            restarts += int(&c["restartCount"]);
            last_restart = later(last_restart, timestamp(&c["lastState"]["terminated"]["finishedAt"]));
            let (terminated, waiting) = (&c["state"]["terminated"], text(&c["state"]["waiting"]["reason"]));
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if terminated.is_object() {
                reason = match text(&terminated["reason"]) {
                    "" => exit(terminated),
                    r => r.to_string(),
                };
            } else if c["ready"] == true && c["state"]["running"].is_object() {
                running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && running {
            reason = if condition_true(pod, "Ready") { "Running" } else { "NotReady" }.into();
        }
    }
    if pod["metadata"]["deletionTimestamp"].is_string() {
        if text(&status["reason"]) == "NodeLost" {
            reason = "Unknown".into();
        } else if !matches!(phase, "Succeeded" | "Failed") {
            reason = "Terminating".into();
        }
    }
    let restarts = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration((OffsetDateTime::now_utc() - t).whole_seconds())),
        _ => restarts.to_string(),
    };
    Summary { ready: format!("{ready}/{total}"), status: reason, restarts }
}

/// "true/all" over `spec.readinessGates`, `"<none>"` without gates.
fn readiness_gates(pod: &Value) -> Value {
    let gates: Vec<&Value> = items(&pod["spec"]["readinessGates"]).collect();
    if gates.is_empty() {
        return json!("<none>");
    }
    let met = gates.iter().filter(|g| condition_true(pod, text(&g["conditionType"]))).count();
    json!(format!("{met}/{}", gates.len()))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{header, table};
    use serde_json::{json, Value};

    fn pod(spec: Value, status: Value) -> Vec<Value> {
        table(
            "",
            "v1",
            "pods",
            json!({"metadata": {"name": "p", "creationTimestamp": "2020-01-01T00:00:00Z"}, "spec": spec, "status": status}),
        )
        .2
    }

    fn ready_status_restarts(spec: Value, status: Value) -> (String, String, String) {
        let cells = pod(spec, status);
        let s = |i: usize| cells[i].as_str().unwrap().to_string();
        (s(1), s(2), s(3))
    }

    fn two() -> Value {
        json!({"containers": [{"name": "a"}, {"name": "b"}]})
    }

    #[test]
    fn pod_header_matches_kubectl() {
        assert_eq!(
            header("", "v1", "pods"),
            ("NAME|READY|STATUS|RESTARTS|AGE".into(), "NAME|READY|STATUS|RESTARTS|AGE|IP|NODE|NOMINATED NODE|READINESS GATES".into())
        );
    }

    #[test]
    fn running_and_waiting_containers() {
        let running = json!({"running": {}});
        let status = json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": true, "state": running, "restartCount": 0},
            {"name": "b", "ready": true, "state": running, "restartCount": 0}]});
        assert_eq!(ready_status_restarts(two(), status), ("2/2".into(), "Running".into(), "0".into()));
        let status = json!({"phase": "Pending", "containerStatuses": [
            {"name": "a", "ready": false, "state": {"waiting": {"reason": "ContainerCreating"}}},
            {"name": "b", "ready": true, "state": running}]});
        assert_eq!(ready_status_restarts(two(), status), ("1/2".into(), "ContainerCreating".into(), "0".into()));
        let crash = json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2020-01-01T00:00:00Z"}}}]});
        let (ready, status, restarts) = ready_status_restarts(json!({"containers": [{"name": "a"}]}), crash);
        assert_eq!((ready.as_str(), status.as_str()), ("0/1", "CrashLoopBackOff"));
        assert!(restarts.starts_with("4 (") && restarts.ends_with(" ago)"), "{restarts}");
        assert_eq!(ready_status_restarts(two(), json!({"phase": "Pending"})), ("0/2".into(), "Pending".into(), "0".into()));
    }

    #[test]
    fn terminated_containers() {
        let done = json!({"phase": "Succeeded", "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]});
        assert_eq!(ready_status_restarts(json!({"containers": [{"name": "a"}]}), done).1, "Completed");
        let killed =
            json!({"phase": "Failed", "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]});
        assert_eq!(ready_status_restarts(json!({"containers": [{"name": "a"}]}), killed).1, "Signal:9");
        let exited = json!({"phase": "Failed", "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 2}}}]});
        assert_eq!(ready_status_restarts(json!({"containers": [{"name": "a"}]}), exited).1, "ExitCode:2");
        // One container finished, another still running: back to Running / NotReady.
        let mixed = |ready: &str| {
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": ready}], "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "b", "ready": true, "state": {"running": {}}}]})
        };
        assert_eq!(ready_status_restarts(two(), mixed("True")).1, "Running");
        assert_eq!(ready_status_restarts(two(), mixed("False")).1, "NotReady");
        let resource = crate::api::registry::lookup("", "v1", "pods").unwrap();
        let t = super::super::render(resource, &[json!({"metadata": {"name": "p"}, "status": {"phase": "Failed"}})], "1", None);
        assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Failed");
    }

    #[test]
    fn init_containers() {
        let spec = json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]});
        let status = |first: Value, second: Value| {
            json!({"phase": "Pending", "initContainerStatuses": [{"name": "i1", "state": first}, {"name": "i2", "state": second}],
                "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}]})
        };
        let waiting = json!({"waiting": {"reason": "PodInitializing"}});
        let running = json!({"running": {}});
        let ok = json!({"terminated": {"exitCode": 0}});
        assert_eq!(ready_status_restarts(spec.clone(), status(running.clone(), waiting.clone())).1, "Init:0/2");
        assert_eq!(ready_status_restarts(spec.clone(), status(ok.clone(), running)).1, "Init:1/2");
        assert_eq!(ready_status_restarts(spec.clone(), status(ok.clone(), ok.clone())).1, "PodInitializing");
        let failed = json!({"terminated": {"exitCode": 1, "reason": "Error"}});
        assert_eq!(ready_status_restarts(spec.clone(), status(failed, waiting.clone())).1, "Init:Error");
        let backoff = json!({"waiting": {"reason": "CrashLoopBackOff"}});
        assert_eq!(ready_status_restarts(spec.clone(), status(ok, backoff)).1, "Init:CrashLoopBackOff");
        // A started sidecar counts towards READY and does not hold the pod in Init.
        let sidecar = json!({"initContainers": [{"name": "s", "restartPolicy": "Always"}], "containers": [{"name": "a"}]});
        let status = json!({"phase": "Running", "initContainerStatuses": [{"name": "s", "started": true, "ready": true, "restartCount": 2, "state": {"running": {}}}],
            "containerStatuses": [{"name": "a", "ready": true, "state": {"running": {}}, "restartCount": 1}]});
        assert_eq!(ready_status_restarts(sidecar, status), ("2/2".into(), "Running".into(), "3".into()));
    }

    #[test]
    fn deleted_pods_and_wide_cells() {
        let obj = json!({"metadata": {"name": "p", "deletionTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"nodeName": "n1", "readinessGates": [{"conditionType": "x"}, {"conditionType": "y"}]},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.42.0.7"}], "conditions": [{"type": "x", "status": "True"}]}});
        let cells = table("", "v1", "pods", obj).2;
        assert_eq!(cells[2], "Terminating");
        assert_eq!(cells[5..], [json!("10.42.0.7"), json!("n1"), json!("<none>"), json!("1/2")]);
        let lost = json!({"metadata": {"name": "p", "deletionTimestamp": "2020-01-01T00:00:00Z"}, "status": {"phase": "Running", "reason": "NodeLost"}});
        assert_eq!(table("", "v1", "pods", lost).2[2], "Unknown");
        let done = json!({"metadata": {"name": "p", "deletionTimestamp": "2020-01-01T00:00:00Z"}, "status": {"phase": "Succeeded"}});
        assert_eq!(table("", "v1", "pods", done).2[2], "Succeeded");
        let gated = pod(json!({}), json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "reason": "SchedulingGated"}]}));
        assert_eq!(gated[2], "SchedulingGated");
        assert_eq!(gated[5..], [json!("<none>"), json!("<none>"), json!("<none>"), json!("<none>")]);
    }
}
