//! A pod's status from its containers, as the kubelet computes it: the phase (by restart
//! policy), the conditions (PodReadyToStartContainers, Initialized, ContainersReady, Ready,
//! PodScheduled) with stable transition times, addresses, start time and QoS class.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use super::container_run::{ContainerRun, RunState};

/// Whether every init container has completed successfully.
pub fn initialized(init: &[ContainerRun]) -> bool {
    init.iter().all(|c| c.exit_code() == Some(0))
}

/// An init container failed for good (restartPolicy Never).
fn init_failed(policy: &str, init: &[ContainerRun]) -> bool {
    policy == "Never" && init.iter().any(|c| c.exit_code().is_some_and(|code| code != 0))
}

/// The pod phase.
pub fn phase(policy: &str, init: &[ContainerRun], app: &[ContainerRun]) -> &'static str {
    if init_failed(policy, init) {
        return "Failed";
    }
    if !initialized(init) {
        return "Pending";
    }
    let codes: Vec<Option<i32>> = app.iter().map(ContainerRun::exit_code).collect();
    let all_exited = !codes.is_empty() && codes.iter().all(Option::is_some);
    let all_zero = codes.iter().all(|c| *c == Some(0));
    match policy {
        "Never" if all_exited => return if all_zero { "Succeeded" } else { "Failed" },
        "OnFailure" if all_exited && all_zero => return "Succeeded",
        _ => {}
    }
    let ever_ran = app.iter().any(|c| !matches!(c.state, RunState::Waiting { .. }) || c.last_state.is_some());
    if ever_ran {
        "Running"
    } else {
        "Pending"
    }
}

/// Transition times of the pod's conditions, kept across status writes.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    seen: BTreeMap<&'static str, (bool, Timestamp)>,
}

impl Conditions {
    /// The condition `kind` with `status`, keeping its transition time while it does not change.
    fn condition(&mut self, kind: &'static str, status: bool, reason: Option<&str>) -> Value {
        let entry = self.seen.entry(kind).or_insert((status, Timestamp::now()));
        if entry.0 != status {
            *entry = (status, Timestamp::now());
        }
        let mut c = json!({
            "type": kind,
            "status": if status { "True" } else { "False" },
            "lastProbeTime": null,
            "lastTransitionTime": Time(entry.1),
        });
        if let Some(r) = reason.filter(|_| !status) {
            c["reason"] = json!(r);
        }
        c
    }
}

/// Everything the status is made of.
pub struct PodFacts<'a> {
    pub restart_policy: &'a str,
    pub init: &'a [ContainerRun],
    pub app: &'a [ContainerRun],
    pub sandbox_ready: bool,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Option<Timestamp>,
    pub qos_class: &'a str,
    /// A pod-level problem (e.g. the network could not be set up).
    pub message: Option<(String, String)>,
}

/// The pod's status object.
pub fn pod_status(f: &PodFacts<'_>, conditions: &mut Conditions) -> Value {
    let phase = phase(f.restart_policy, f.init, f.app);
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let ready = !terminal && !f.app.is_empty() && f.app.iter().all(ContainerRun::ready);
    let not_ready_reason = if terminal { "PodCompleted" } else { "ContainersNotReady" };
    let inited = initialized(f.init) || (terminal && f.restart_policy != "Never");
    let conds = vec![
        conditions.condition("PodReadyToStartContainers", f.sandbox_ready && !terminal, None),
        conditions.condition("Initialized", inited, Some("ContainersNotInitialized")),
        conditions.condition("Ready", ready, Some(not_ready_reason)),
        conditions.condition("ContainersReady", ready, Some(not_ready_reason)),
        conditions.condition("PodScheduled", true, None),
    ];
    let (reason, message) = f.message.clone().map(|(r, m)| (json!(r), json!(m))).unwrap_or((Value::Null, Value::Null));
    let pod_ips: Vec<Value> = f.pod_ip.iter().map(|ip| json!({ "ip": ip })).collect();
    json!({
        "phase": phase,
        "conditions": conds,
        "hostIP": f.host_ip,
        "hostIPs": [{ "ip": f.host_ip }],
        "podIP": f.pod_ip,
        "podIPs": pod_ips,
        "startTime": f.start_time.map(Time),
        "initContainerStatuses": f.init.iter().map(ContainerRun::status).collect::<Vec<_>>(),
        "containerStatuses": f.app.iter().map(ContainerRun::status).collect::<Vec<_>>(),
        "qosClass": f.qos_class,
        "reason": reason,
        "message": message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::kubelet::container_run::Terminated;

    fn run(state: RunState) -> ContainerRun {
        let mut c = ContainerRun::new("c", "busybox");
        c.state = state;
        c
    }

    fn exited(code: i32) -> RunState {
        RunState::Terminated(Terminated {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: None,
            finished_at: Timestamp::now(),
            container_id: None,
        })
    }

    fn waiting() -> RunState {
        RunState::Waiting { reason: "ContainerCreating".into(), message: None }
    }

    #[test]
    fn phases_follow_the_restart_policy() {
        let running = RunState::Running { started_at: Timestamp::now() };
        assert_eq!(phase("Always", &[], &[run(waiting())]), "Pending");
        assert_eq!(phase("Always", &[run(exited(0))], &[run(running.clone())]), "Running");
        assert_eq!(phase("Always", &[run(running.clone())], &[run(waiting())]), "Pending");
        assert_eq!(phase("Never", &[run(exited(1))], &[run(waiting())]), "Failed");
        assert_eq!(phase("OnFailure", &[run(exited(1))], &[run(waiting())]), "Pending");
        assert_eq!(phase("Never", &[], &[run(exited(0)), run(exited(0))]), "Succeeded");
        assert_eq!(phase("Never", &[], &[run(exited(0)), run(exited(2))]), "Failed");
        assert_eq!(phase("Never", &[], &[run(exited(0)), run(running)]), "Running");
        assert_eq!(phase("OnFailure", &[], &[run(exited(0))]), "Succeeded");
        assert_eq!(phase("OnFailure", &[], &[run(exited(3))]), "Running");
        assert_eq!(phase("Always", &[], &[run(exited(0))]), "Running");
    }

    #[test]
    fn conditions_keep_their_transition_times() {
        let mut conditions = Conditions::default();
        let app = [run(RunState::Running { started_at: Timestamp::now() })];
        let facts = PodFacts {
            restart_policy: "Always",
            init: &[],
            app: &app,
            sandbox_ready: true,
            pod_ip: Some("10.42.0.2".into()),
            host_ip: "192.0.2.1".into(),
            start_time: Some(Timestamp::now()),
            qos_class: "BestEffort",
            message: None,
        };
        let first = pod_status(&facts, &mut conditions);
        assert_eq!(first["phase"], "Running");
        assert!(first["conditions"].as_array().unwrap().iter().all(|c| c["status"] == "True"));
        assert_eq!(first["podIPs"][0]["ip"], "10.42.0.2");
        std::thread::sleep(std::time::Duration::from_millis(5));
        let again = pod_status(&facts, &mut conditions);
        assert_eq!(first["conditions"], again["conditions"], "unchanged conditions keep their times");
        let done = [run(exited(0))];
        let facts = PodFacts { restart_policy: "Never", app: &done, ..facts };
        let s = pod_status(&facts, &mut conditions);
        assert_eq!(s["phase"], "Succeeded");
        let ready = s["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
        assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("PodCompleted")));
    }
}
