//! What the kubelet knows about one container of a pod across its restarts: the current
//! containerd container, its state (waiting with a reason, running, terminated), the last
//! termination, the restart count and back-off, readiness and probes — and its entry in the
//! pod's `containerStatuses`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::probes::ProbeTracker;

/// How a run of the container ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Terminated {
    pub exit_code: i32,
    /// Completed, Error, OOMKilled …
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
    pub container_id: Option<String>,
}

impl Terminated {
    pub fn to_json(&self) -> Value {
        let mut t = json!({
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started_at.map(Time),
            "finishedAt": Time(self.finished_at),
        });
        if let Some(m) = &self.message {
            t["message"] = json!(m);
        }
        if let Some(id) = &self.container_id {
            t["containerID"] = json!(format!("containerd://{id}"));
        }
        json!({ "terminated": t })
    }
}

/// The state of the container now.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    /// Not running: never started, or waiting to be restarted (reason and message).
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated(Terminated),
}

/// One container of a pod.
#[derive(Debug, Clone)]
pub struct ContainerRun {
    pub name: String,
    pub image: String,
    pub image_id: String,
    /// The containerd id of the current (or last) run.
    pub id: Option<String>,
    /// The number of the current (or next) run; names its log file.
    pub attempt: u32,
    pub restart_count: i32,
    pub state: RunState,
    pub last_state: Option<Terminated>,
    pub backoff: Backoff,
    /// When a waiting container may be started (again); `None`: now.
    pub retry_at: Option<Instant>,
    /// When the current run started (for probes and the back-off reset).
    pub started: Option<Instant>,
    pub startup: Option<ProbeTracker>,
    pub liveness: Option<ProbeTracker>,
    pub readiness: Option<ProbeTracker>,
}

impl ContainerRun {
    pub fn new(name: &str, image: &str) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            image_id: String::new(),
            id: None,
            attempt: 0,
            restart_count: 0,
            state: RunState::Waiting { reason: "ContainerCreating".into(), message: None },
            last_state: None,
            backoff: Backoff::default(),
            retry_at: None,
            started: None,
            startup: None,
            liveness: None,
            readiness: None,
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, RunState::Running { .. })
    }

    /// The exit code of a terminated container.
    pub fn exit_code(&self) -> Option<i32> {
        match &self.state {
            RunState::Terminated(t) => Some(t.exit_code),
            _ => None,
        }
    }

    /// Started: running and past its startup probe.
    pub fn started(&self) -> bool {
        self.is_running() && self.startup.as_ref().is_none_or(|p| p.result == Some(true))
    }

    /// Ready: started and passing its readiness probe (or having none).
    pub fn ready(&self) -> bool {
        self.started() && self.readiness.as_ref().is_none_or(|p| p.result == Some(true))
    }

    /// The container's entry in `containerStatuses`.
    pub fn status(&self) -> Value {
        let state = match &self.state {
            RunState::Waiting { reason, message } => {
                let mut w = json!({ "reason": reason });
                if let Some(m) = message {
                    w["message"] = json!(m);
                }
                json!({ "waiting": w })
            }
            RunState::Running { started_at } => json!({ "running": { "startedAt": Time(*started_at) } }),
            RunState::Terminated(t) => t.to_json(),
        };
        let mut s = json!({
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "ready": self.ready(),
            "started": self.started(),
            "restartCount": self.restart_count,
            "state": state,
            "lastState": self.last_state.as_ref().map(Terminated::to_json).unwrap_or_else(|| json!({})),
        });
        if let Some(id) = &self.id {
            s["containerID"] = json!(format!("containerd://{id}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_like_the_kubelets() {
        let mut c = ContainerRun::new("app", "busybox");
        assert_eq!(c.status()["state"]["waiting"]["reason"], "ContainerCreating");
        assert!(c.status().get("containerID").is_none());
        c.id = Some("abc".into());
        c.state = RunState::Running { started_at: Timestamp::now() };
        assert_eq!(c.status()["ready"], true);
        assert_eq!(c.status()["containerID"], "containerd://abc");
        c.last_state = Some(Terminated {
            exit_code: 1,
            reason: "Error".into(),
            message: None,
            started_at: None,
            finished_at: Timestamp::now(),
            container_id: Some("old".into()),
        });
        c.state = RunState::Waiting { reason: "CrashLoopBackOff".into(), message: Some("back-off 10s".into()) };
        let s = c.status();
        assert_eq!(s["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(s["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(s["ready"], false);
    }
}
