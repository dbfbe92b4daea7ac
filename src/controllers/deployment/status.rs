//! Deployment status and conditions (`sync.go`/`progress.go`): counts summed over its
//! ReplicaSets, Available (MinimumReplicasAvailable / MinimumReplicasUnavailable) and
//! Progressing (NewReplicaSetCreated, FoundNewReplicaSet, ReplicaSetUpdated,
//! NewReplicaSetAvailable, ProgressDeadlineExceeded, DeploymentPaused/Resumed).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::revisions::replicas_of;
use super::rollout::max_unavailable;
use crate::controllers::common::Error;

pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";

/// A condition stamped `now`.
pub fn condition(type_: &str, status: &str, reason: &str, message: String, now: Timestamp) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

pub fn get<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.iter().flatten().find(|c| c.type_ == type_)
}

/// `SetDeploymentCondition`: no-op when status and reason are unchanged; keeps the
/// transition time when only the reason changed.
pub fn set(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(current) = get(status, &cond.type_) {
        if current.status == cond.status && current.reason == cond.reason {
            return;
        }
        if current.status == cond.status {
            cond.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove(status, &cond.type_.clone());
    status.conditions.get_or_insert_with(Vec::new).push(cond);
}

pub fn remove(status: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = status.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
    }
}

/// The progress deadline, unless there is none.
pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).filter(|s| *s != i32::MAX)
}

fn sum(sets: &[&ReplicaSet], f: impl Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>) -> i32 {
    sets.iter().filter_map(|rs| rs.status.as_ref().and_then(&f)).sum()
}

/// `calculateStatus`: counts over `all` sets (including `new`) and the Available condition.
pub fn calculate(d: &Deployment, all: &[&ReplicaSet], new: Option<&ReplicaSet>, now: Timestamp) -> Result<DeploymentStatus, Error> {
    let available = sum(all, |s| s.available_replicas);
    let total: i32 = all.iter().map(|rs| super::rollout::spec_replicas(rs)).sum();
    let current = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(sum(all, |s| Some(s.replicas))),
        updated_replicas: Some(new.map_or(0, |n| sum(&[n], |s| Some(s.replicas)))),
        ready_replicas: Some(sum(all, |s| s.ready_replicas)),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: current.collision_count,
        conditions: current.conditions.clone(),
        terminating_replicas: None,
    };
    if available >= replicas_of(d) - max_unavailable(d)? {
        set(&mut status, condition(AVAILABLE, "True", "MinimumReplicasAvailable", "Deployment has minimum availability.".into(), now));
    } else {
        set(
            &mut status,
            condition(AVAILABLE, "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.".into(), now),
        );
    }
    Ok(status)
}

/// `DeploymentComplete`: every replica updated and available, and the spec observed.
pub fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let want = replicas_of(d);
    s.updated_replicas == Some(want)
        && s.replicas == Some(want)
        && s.available_replicas == Some(want)
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// `DeploymentProgressing`: the new status moved forward from the recorded one.
fn progressing(d: &Deployment, s: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    n(s.updated_replicas) > n(old.updated_replicas)
        || n(s.replicas) - n(s.updated_replicas) < n(old.replicas) - n(old.updated_replicas)
        || n(s.ready_replicas) > n(old.ready_replicas)
        || n(s.available_replicas) > n(old.available_replicas)
}

/// Seconds left before the Progressing condition in `s` times out; `None` if it cannot.
pub fn deadline_left(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> Option<i64> {
    let deadline = progress_deadline(d)?;
    let cond = get(s, PROGRESSING)?;
    if matches!(cond.reason.as_deref(), Some(NEW_RS_AVAILABLE) | Some(TIMED_OUT)) {
        return None;
    }
    let from = cond.last_update_time.as_ref()?.0;
    Some(from.as_second() + i64::from(deadline) - now.as_second())
}

/// `syncRolloutStatus`'s condition logic applied to a freshly calculated status.
pub fn rollout_conditions(d: &Deployment, s: &mut DeploymentStatus, new: Option<&ReplicaSet>, now: Timestamp) {
    if progress_deadline(d).is_none() {
        remove(s, PROGRESSING);
        return;
    }
    let current = d.status.as_ref().and_then(|st| get(st, PROGRESSING)).cloned();
    let finished = s.replicas == s.updated_replicas && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
    if finished {
        return;
    }
    let name = new.and_then(|n| n.metadata.name.clone());
    if complete(d, s) {
        let msg = match &name {
            Some(n) => format!("ReplicaSet \"{n}\" has successfully progressed."),
            None => format!("Deployment \"{}\" has successfully progressed.", d.metadata.name.as_deref().unwrap_or_default()),
        };
        set(s, condition(PROGRESSING, "True", NEW_RS_AVAILABLE, msg, now));
    } else if progressing(d, s) {
        let mut cond =
            condition(PROGRESSING, "True", RS_UPDATED, format!("ReplicaSet \"{}\" is progressing.", name.unwrap_or_default()), now);
        if let Some(c) = &current {
            if c.status == "True" {
                cond.last_transition_time = c.last_transition_time.clone();
            }
            remove(s, PROGRESSING);
        }
        s.conditions.get_or_insert_with(Vec::new).push(cond);
    } else if deadline_left(d, s, now).is_some_and(|left| left < 0)
        || get(s, PROGRESSING).and_then(|c| c.reason.as_deref()) == Some(TIMED_OUT)
    {
        let msg = format!("ReplicaSet \"{}\" has timed out progressing.", name.unwrap_or_default());
        set(s, condition(PROGRESSING, "False", TIMED_OUT, msg, now));
    }
}

/// `checkPausedConditions`: the Progressing condition for a paused or resumed Deployment;
/// `true` if the status changed.
pub fn paused_conditions(d: &Deployment, s: &mut DeploymentStatus, now: Timestamp) -> bool {
    if progress_deadline(d).is_none() {
        return false;
    }
    let reason = get(s, PROGRESSING).and_then(|c| c.reason.clone());
    if reason.as_deref() == Some(TIMED_OUT) {
        return false;
    }
    let paused = d.spec.as_ref().and_then(|sp| sp.paused).unwrap_or(false);
    let paused_cond = reason.as_deref() == Some(PAUSED);
    if paused && !paused_cond {
        set(s, condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused".into(), now));
        true
    } else if !paused && paused_cond {
        set(s, condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed".into(), now));
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "d", "generation": 2},
            "spec": {"replicas": 2, "selector": {}, "template": {}, "progressDeadlineSeconds": 600},
            "status": status
        }))
        .unwrap()
    }

    fn rs(name: &str, replicas: i32, ready: i32, available: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {}},
            "status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": available}
        }))
        .unwrap()
    }

    #[test]
    fn counts_and_availability() {
        let d = deployment(json!({}));
        let (old, new) = (rs("old", 1, 1, 1), rs("new", 2, 1, 0));
        let s = calculate(&d, &[&old, &new], Some(&new), Timestamp::now()).unwrap();
        assert_eq!(
            (s.replicas, s.updated_replicas, s.ready_replicas, s.available_replicas, s.unavailable_replicas),
            (Some(3), Some(2), Some(2), Some(1), Some(2))
        );
        assert_eq!(s.observed_generation, Some(2));
        // maxUnavailable 25% of 2 = 0 → need 2 available.
        assert_eq!(get(&s, AVAILABLE).unwrap().reason.as_deref(), Some("MinimumReplicasUnavailable"));
    }

    #[test]
    fn progressing_reasons_follow_the_rollout() {
        let now = Timestamp::now();
        let d = deployment(json!({"replicas": 1, "updatedReplicas": 0, "conditions": [
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated", "lastUpdateTime": "2024-01-01T00:00:00Z", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}));
        let new = rs("new", 2, 1, 1);
        let mut s = calculate(&d, &[&new], Some(&new), now).unwrap();
        rollout_conditions(&d, &mut s, Some(&new), now);
        let c = get(&s, PROGRESSING).unwrap();
        assert_eq!(c.reason.as_deref(), Some(RS_UPDATED));
        assert_eq!(c.last_transition_time.as_ref().unwrap().0.to_string(), "2024-01-01T00:00:00Z", "still True: transition time kept");

        let done = rs("new", 2, 2, 2);
        let mut s = calculate(&d, &[&done], Some(&done), now).unwrap();
        rollout_conditions(&d, &mut s, Some(&done), now);
        assert_eq!(get(&s, PROGRESSING).unwrap().reason.as_deref(), Some(NEW_RS_AVAILABLE));
        assert!(complete(&d, &s));
    }

    #[test]
    fn a_stalled_rollout_times_out() {
        let now = Timestamp::now();
        let d = deployment(json!({"replicas": 2, "updatedReplicas": 2, "readyReplicas": 0, "availableReplicas": 0, "conditions": [
            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "lastUpdateTime": "2024-01-01T00:00:00Z", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}));
        let new = rs("new", 2, 0, 0);
        let mut s = calculate(&d, &[&new], Some(&new), now).unwrap();
        rollout_conditions(&d, &mut s, Some(&new), now);
        let c = get(&s, PROGRESSING).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_deref()), ("False", Some(TIMED_OUT)));
    }

    #[test]
    fn pause_and_resume_set_progressing_unknown() {
        let now = Timestamp::now();
        let mut d = deployment(json!({}));
        d.spec.as_mut().unwrap().paused = Some(true);
        let mut s = DeploymentStatus::default();
        assert!(paused_conditions(&d, &mut s, now));
        assert_eq!(get(&s, PROGRESSING).unwrap().reason.as_deref(), Some(PAUSED));
        assert!(!paused_conditions(&d, &mut s, now));
        d.spec.as_mut().unwrap().paused = Some(false);
        assert!(paused_conditions(&d, &mut s, now));
        assert_eq!(get(&s, PROGRESSING).unwrap().reason.as_deref(), Some(RESUMED));
    }
}
