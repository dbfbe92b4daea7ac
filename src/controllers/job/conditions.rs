//! Job conditions: reading whether a Job has finished and setting a condition the way
//! Kubernetes does (lastTransitionTime moves only when the status changes).

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// How a Job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishedAs {
    Complete,
    Failed,
}

/// The true condition of `type_`, if any.
pub fn true_condition<'a>(conditions: &'a [JobCondition], type_: &str) -> Option<&'a JobCondition> {
    conditions.iter().find(|c| c.type_ == type_ && c.status == "True")
}

/// Whether a Job has a true Complete or Failed condition.
pub fn finished_condition(job: &Job) -> Option<FinishedAs> {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    if true_condition(conditions, "Complete").is_some() {
        Some(FinishedAs::Complete)
    } else if true_condition(conditions, "Failed").is_some() {
        Some(FinishedAs::Failed)
    } else {
        None
    }
}

/// Sets a condition, keeping its lastTransitionTime when the status does not change.
pub fn set_condition(conditions: &mut Vec<JobCondition>, type_: &str, status: bool, reason: &str, message: &str, now: &Time) {
    let status = if status { "True" } else { "False" };
    let new = JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == status && c.reason.as_deref() == Some(reason) => {}
        Some(c) if c.status == status => *c = JobCondition { last_transition_time: c.last_transition_time.clone(), ..new },
        Some(c) => *c = new,
        None => conditions.push(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_status_changes() {
        let t1 = crate::k8s::time::to_k8s(time::macros::datetime!(2024-01-01 00:00 UTC));
        let t2 = crate::k8s::time::to_k8s(time::macros::datetime!(2024-01-01 00:05 UTC));
        let mut c = Vec::new();
        set_condition(&mut c, "Suspended", true, "JobSuspended", "Job suspended", &t1);
        set_condition(&mut c, "Suspended", true, "JobSuspended", "Job suspended", &t2);
        assert_eq!(c[0].last_transition_time, Some(t1.clone()));
        set_condition(&mut c, "Suspended", false, "JobResumed", "Job resumed", &t2);
        assert_eq!((c.len(), c[0].status.as_str(), c[0].last_transition_time.clone()), (1, "False", Some(t2)));
        assert!(true_condition(&c, "Suspended").is_none());
    }
}
