//! Job accounting, free of I/O: how each pod counts, the finalizer-based tracking of finished
//! pods (Kubernetes ≥ 1.26: a finished pod is first listed in status.uncountedTerminatedPods,
//! then loses its `batch.kubernetes.io/job-tracking` finalizer, then moves into the counters),
//! and the decision of which pods to create or delete and which conditions hold.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{JobSpec, JobStatus, PodFailurePolicy, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use time::OffsetDateTime;

use super::conditions::{set_condition, true_condition};
use super::failure_policy::{evaluate, PolicyAction};
use crate::k8s::time::{from_k8s, to_k8s};

/// The finalizer that keeps a Job's pod until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The annotation and label carrying an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The first delay before re-creating a failed pod; it doubles with every failure up to
/// `BACKOFF_MAX`. Kubernetes starts at 10 s; orch starts at 1 s so that small clusters and tests
/// recover quickly.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The longest re-create delay (as in Kubernetes).
pub const BACKOFF_MAX: Duration = Duration::from_secs(6 * 60);

/// How one pod of a Job counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    Active {
        ready: bool,
    },
    /// Being deleted before it finished: counted as failed.
    Terminating,
    Succeeded,
    Failed,
}

pub fn pod_state(pod: &Pod) -> PodState {
    let status = pod.status.as_ref();
    match status.and_then(|s| s.phase.as_deref()) {
        Some("Succeeded") => PodState::Succeeded,
        Some("Failed") => PodState::Failed,
        _ if pod.metadata.deletion_timestamp.is_some() => PodState::Terminating,
        _ => {
            let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or_default();
            PodState::Active { ready: conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True") }
        }
    }
}

/// An Indexed Job pod's completion index (annotation first, then label).
pub fn completion_index(pod: &Pod) -> Option<i32> {
    let from =
        |m: Option<&std::collections::BTreeMap<String, String>>| m.and_then(|m| m.get(COMPLETION_INDEX)).and_then(|v| v.parse().ok());
    from(pod.metadata.annotations.as_ref()).or_else(|| from(pod.metadata.labels.as_ref())).filter(|i| *i >= 0)
}

pub fn is_tracked(pod: &Pod) -> bool {
    pod.metadata.finalizers.as_ref().is_some_and(|f| f.iter().any(|x| x == TRACKING_FINALIZER))
}

/// Parses a compressed index list such as `1,3-5`.
pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<i32>().ok()),
        }
    }
    out
}

/// Writes an index set in the compressed form (`1,3-5`).
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut ranges: Vec<(i32, i32)> = Vec::new();
    for &i in set {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == i => *end = i,
            _ => ranges.push((i, i)),
        }
    }
    ranges.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect::<Vec<_>>().join(",")
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

/// Tracking step 1: lists finished pods that still carry the finalizer in
/// uncountedTerminatedPods (and, for Indexed Jobs, their indexes in completedIndexes). Returns
/// whether anything changed.
pub fn record_finished(status: &mut JobStatus, pods: &[Pod], spec: &Spec) -> bool {
    let uncounted = status.uncounted_terminated_pods.get_or_insert_with(UncountedTerminatedPods::default);
    let mut completed = parse_indexes(status.completed_indexes.as_deref().unwrap_or_default());
    let mut changed = false;
    for pod in pods.iter().filter(|p| is_tracked(p)) {
        let list = match pod_state(pod) {
            _ if ignored(spec, pod) => continue,
            PodState::Succeeded => uncounted.succeeded.get_or_insert_with(Vec::new),
            PodState::Failed | PodState::Terminating => uncounted.failed.get_or_insert_with(Vec::new),
            PodState::Active { .. } => continue,
        };
        if list.iter().any(|u| u == uid(pod)) {
            continue;
        }
        list.push(uid(pod).to_string());
        changed = true;
        if spec.indexed && pod_state(pod) == PodState::Succeeded {
            completed.extend(completion_index(pod).filter(|i| spec.completions.is_some_and(|c| *i < c)));
        }
    }
    if spec.indexed {
        status.completed_indexes = Some(format_indexes(&completed)).filter(|s| !s.is_empty());
    }
    changed
}

/// A failed pod whose failure the podFailurePolicy ignores: released without being counted.
fn ignored(spec: &Spec, pod: &Pod) -> bool {
    pod_state(pod) == PodState::Failed && evaluate(spec.failure_policy.as_ref(), pod) == PolicyAction::Ignore
}

/// The pods whose finalizer may come off: recorded in uncountedTerminatedPods, or failed in a
/// way the podFailurePolicy ignores.
pub fn releasable<'a>(status: &JobStatus, pods: &'a [Pod], spec: &Spec) -> Vec<&'a Pod> {
    let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let listed = |p: &&Pod| uncounted.succeeded.iter().chain(uncounted.failed.iter()).flatten().any(|u| u == uid(p)) || ignored(spec, p);
    pods.iter().filter(|p| is_tracked(p)).filter(listed).collect()
}

/// Tracking step 3: moves every uncounted pod that is no longer tracked into the counters.
pub fn fold_uncounted(status: &mut JobStatus, still_tracked: impl Fn(&str) -> bool, indexed: bool) {
    let Some(uncounted) = status.uncounted_terminated_pods.as_mut() else { return };
    let mut counted = [0, 0];
    for (list, n) in [&mut uncounted.succeeded, &mut uncounted.failed].into_iter().zip(&mut counted) {
        if let Some(uids) = list {
            let before = uids.len();
            uids.retain(|u| still_tracked(u));
            *n = (before - uids.len()) as i32;
        }
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
    }
    status.failed = Some(status.failed.unwrap_or(0) + counted[1]);
    status.succeeded = Some(if indexed {
        parse_indexes(status.completed_indexes.as_deref().unwrap_or_default()).len() as i32
    } else {
        status.succeeded.unwrap_or(0) + counted[0]
    });
}

/// The parts of a Job's spec the decision needs, with Kubernetes' defaults.
#[derive(Debug, Clone)]
pub struct Spec {
    pub parallelism: i32,
    pub completions: Option<i32>,
    pub backoff_limit: i32,
    pub active_deadline_seconds: Option<i64>,
    pub suspend: bool,
    pub indexed: bool,
    pub failure_policy: Option<PodFailurePolicy>,
}

impl Spec {
    pub fn of(spec: &JobSpec) -> Self {
        Spec {
            parallelism: spec.parallelism.unwrap_or(1).max(0),
            completions: spec.completions,
            backoff_limit: spec.backoff_limit.unwrap_or(6),
            active_deadline_seconds: spec.active_deadline_seconds,
            suspend: spec.suspend.unwrap_or(false),
            indexed: spec.completion_mode.as_deref() == Some("Indexed"),
            failure_policy: spec.pod_failure_policy.clone(),
        }
    }
}

/// What to do to a Job's pods.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// New pods to create: their completion index for Indexed Jobs.
    pub create: Vec<Option<i32>>,
    /// Names of pods to delete.
    pub delete: Vec<String>,
    /// When to look again (deadline or back-off).
    pub requeue: Option<Duration>,
}

const BACKOFF_LIMIT: (&str, &str) = ("BackoffLimitExceeded", "Job has reached the specified backoff limit");
const DEADLINE: (&str, &str) = ("DeadlineExceeded", "Job was active longer than specified deadline");
const COMPLETIONS: (&str, &str) = ("CompletionsReached", "Reached expected number of succeeded pods");

/// When a failed pod finished (its last container's finish, else its deletion).
fn failed_at(pod: &Pod) -> Option<OffsetDateTime> {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
    let finished =
        statuses.iter().filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref()).map(|t| from_k8s(&t.0)).max();
    finished.or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| from_k8s(&t.0)))
}

/// The re-create delay after `failures` failures.
pub fn backoff(failures: i32) -> Duration {
    let doublings = u32::try_from(failures.saturating_sub(1)).unwrap_or(0).min(16);
    BACKOFF_BASE.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

/// Decides the pods to create and delete and sets the status counts, startTime, conditions and
/// completionTime. `status` has already had finished pods folded in.
pub fn decide(spec: &Spec, status: &mut JobStatus, pods: &[Pod], now: OffsetDateTime) -> Plan {
    let t = to_k8s(now);
    let mut plan = Plan::default();
    let mut conditions = status.conditions.take().unwrap_or_default();
    let mut active: Vec<&Pod> = pods.iter().filter(|p| matches!(pod_state(p), PodState::Active { .. })).collect();
    let terminating = pods.iter().filter(|p| pod_state(p) == PodState::Terminating).count();
    let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let failed = status.failed.unwrap_or(0) + uncounted.failed.as_ref().map_or(0, Vec::len) as i32;
    let completed = parse_indexes(status.completed_indexes.as_deref().unwrap_or_default());
    let succeeded = if spec.indexed {
        completed.len() as i32
    } else {
        status.succeeded.unwrap_or(0) + uncounted.succeeded.as_ref().map_or(0, Vec::len) as i32
    };
    let finished = true_condition(&conditions, "Complete").is_some() || true_condition(&conditions, "Failed").is_some();

    if !finished {
        if spec.suspend {
            set_condition(&mut conditions, "Suspended", true, "JobSuspended", "Job suspended", &t);
            status.start_time = None;
        } else {
            if true_condition(&conditions, "Suspended").is_some() {
                set_condition(&mut conditions, "Suspended", false, "JobResumed", "Job resumed", &t);
            }
            status.start_time.get_or_insert_with(|| t.clone());
        }
        let started = status.start_time.as_ref().map(|s| from_k8s(&s.0));
        let deadline = started.zip(spec.active_deadline_seconds).map(|(s, d)| crate::k8s::time::shift(s, d));
        let policy_failure =
            pods.iter().filter(|p| pod_state(p) == PodState::Failed).find_map(|p| match evaluate(spec.failure_policy.as_ref(), p) {
                PolicyAction::FailJob(message) => Some(("PodFailurePolicy".to_string(), message)),
                _ => None,
            });
        let failure = match true_condition(&conditions, "FailureTarget") {
            Some(c) => Some((c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default())),
            None if policy_failure.is_some() => policy_failure,
            None if failed > spec.backoff_limit => Some((BACKOFF_LIMIT.0.into(), BACKOFF_LIMIT.1.into())),
            None if deadline.is_some_and(|d| d <= now) => Some((DEADLINE.0.into(), DEADLINE.1.into())),
            None => {
                plan.requeue = deadline.map(|d| Duration::try_from(d - now).unwrap_or_default());
                None
            }
        };
        let success = true_condition(&conditions, "SuccessCriteriaMet").is_some()
            || match spec.completions {
                Some(c) => succeeded >= c,
                None => !spec.indexed && succeeded > 0 && active.is_empty(),
            };
        if let Some((reason, message)) = failure {
            set_condition(&mut conditions, "FailureTarget", true, &reason, &message, &t);
            plan.delete = active.drain(..).map(|p| p.metadata.name.clone().unwrap_or_default()).collect();
            if plan.delete.is_empty() {
                set_condition(&mut conditions, "Failed", true, &reason, &message, &t);
            }
        } else if success {
            set_condition(&mut conditions, "SuccessCriteriaMet", true, COMPLETIONS.0, COMPLETIONS.1, &t);
            plan.delete = active.drain(..).map(|p| p.metadata.name.clone().unwrap_or_default()).collect();
            if plan.delete.is_empty() {
                set_condition(&mut conditions, "Complete", true, COMPLETIONS.0, COMPLETIONS.1, &t);
                status.completion_time = Some(t.clone());
            }
        } else if spec.suspend {
            plan.delete = active.drain(..).map(|p| p.metadata.name.clone().unwrap_or_default()).collect();
        } else {
            scale(spec, succeeded, &completed, &mut active, &mut plan);
            if !plan.create.is_empty() && failed > 0 {
                let last_failure =
                    pods.iter().filter(|p| matches!(pod_state(p), PodState::Failed | PodState::Terminating)).filter_map(failed_at).max();
                if let Some(wait) = last_failure.map(|f| f + backoff(failed) - now).filter(|w| w.is_positive()) {
                    plan.create.clear();
                    let wait = Duration::try_from(wait).unwrap_or_default();
                    plan.requeue = Some(plan.requeue.map_or(wait, |r| r.min(wait)));
                }
            }
        }
    }
    let ready = active.iter().filter(|p| pod_state(p) == PodState::Active { ready: true }).count();
    status.active = Some((active.len() + plan.create.len()) as i32);
    status.ready = Some(ready as i32);
    status.terminating = Some((terminating + plan.delete.len()) as i32);
    status.conditions = Some(conditions).filter(|c| !c.is_empty());
    plan
}

/// Chooses pods to create or delete so that the right number run (`active` keeps the survivors).
fn scale(spec: &Spec, succeeded: i32, completed: &BTreeSet<i32>, active: &mut Vec<&Pod>, plan: &mut Plan) {
    // Delete the least useful pods first: not ready, then the newest.
    active.sort_by_key(|p| {
        (pod_state(p) == PodState::Active { ready: true }, std::cmp::Reverse(p.metadata.creation_timestamp.clone().map(|t| t.0)))
    });
    let excess = |active: &mut Vec<&Pod>, delete: &mut Vec<String>, keep: usize| {
        let n = active.len().saturating_sub(keep);
        delete.extend(active.drain(..n).map(|p| p.metadata.name.clone().unwrap_or_default()));
    };
    if spec.indexed {
        let completions = spec.completions.unwrap_or(0);
        // Pods with a bad, finished or duplicated index go.
        let mut seen = BTreeSet::new();
        let (keep, drop): (Vec<&Pod>, Vec<&Pod>) = active
            .drain(..)
            .rev()
            .partition(|p| completion_index(p).is_some_and(|i| i < completions && !completed.contains(&i) && seen.insert(i)));
        plan.delete.extend(drop.iter().map(|p| p.metadata.name.clone().unwrap_or_default()));
        *active = keep.into_iter().rev().collect();
        excess(active, &mut plan.delete, spec.parallelism as usize);
        let running: BTreeSet<i32> = active.iter().filter_map(|p| completion_index(p)).collect();
        let slots = (spec.parallelism as usize).saturating_sub(active.len());
        plan.create = (0..completions).filter(|i| !completed.contains(i) && !running.contains(i)).take(slots).map(Some).collect();
    } else {
        let want = match spec.completions {
            Some(c) => spec.parallelism.min((c - succeeded).max(0)) as usize,
            None if succeeded > 0 => active.len(),
            None => spec.parallelism as usize,
        };
        excess(active, &mut plan.delete, want);
        plan.create = vec![None; want.saturating_sub(active.len())];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn pod(name: &str, phase: &str, index: Option<i32>, tracked: bool) -> Pod {
        let mut meta = json!({ "name": name, "uid": format!("uid-{name}"), "creationTimestamp": "2024-01-01T00:00:00Z" });
        if tracked {
            meta["finalizers"] = json!([TRACKING_FINALIZER]);
        }
        if let Some(i) = index {
            meta["annotations"] = json!({ COMPLETION_INDEX: i.to_string() });
        }
        serde_json::from_value(json!({ "metadata": meta, "status": { "phase": phase } })).unwrap()
    }

    fn spec(parallelism: i32, completions: Option<i32>, indexed: bool) -> Spec {
        Spec { parallelism, completions, backoff_limit: 6, active_deadline_seconds: None, suspend: false, indexed, failure_policy: None }
    }

    const NOW: OffsetDateTime = datetime!(2024-01-01 00:10 UTC);

    #[test]
    fn index_sets_round_trip() {
        let set = parse_indexes("0,2-4,7");
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [0, 2, 3, 4, 7]);
        assert_eq!(format_indexes(&set), "0,2-4,7");
        assert_eq!(format_indexes(&BTreeSet::new()), "");
    }

    #[test]
    fn finished_pods_are_recorded_released_then_counted() {
        let pods = vec![
            pod("a", "Succeeded", None, true),
            pod("b", "Failed", None, true),
            pod("c", "Running", None, true),
            pod("d", "Succeeded", None, false),
        ];
        let mut status = JobStatus::default();
        assert!(record_finished(&mut status, &pods, &spec(1, Some(3), false)));
        assert!(!record_finished(&mut status, &pods, &spec(1, Some(3), false)), "recording is idempotent");
        let uncounted = status.uncounted_terminated_pods.clone().unwrap();
        assert_eq!((uncounted.succeeded.unwrap(), uncounted.failed.unwrap()), (vec!["uid-a".to_string()], vec!["uid-b".to_string()]));
        let names: Vec<_> = releasable(&status, &pods, &spec(1, Some(3), false)).iter().map(|p| p.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, ["a", "b"]);
        // Only a's finalizer came off so far.
        fold_uncounted(&mut status, |u| u == "uid-b", false);
        assert_eq!((status.succeeded, status.failed), (Some(1), Some(0)));
        fold_uncounted(&mut status, |_| false, false);
        assert_eq!((status.succeeded, status.failed), (Some(1), Some(1)));
        assert_eq!(status.uncounted_terminated_pods.unwrap(), UncountedTerminatedPods::default());
    }

    #[test]
    fn non_indexed_jobs_run_parallelism_pods_until_completions() {
        let mut status = JobStatus::default();
        let plan = decide(&spec(2, Some(3), false), &mut status, &[], NOW);
        assert_eq!(plan.create.len(), 2);
        assert_eq!(status.active, Some(2));
        assert!(status.start_time.is_some());
        // Two succeeded: one more to go.
        let mut status = JobStatus { succeeded: Some(2), ..Default::default() };
        let plan = decide(&spec(2, Some(3), false), &mut status, &[pod("x", "Running", None, true)], NOW);
        assert_eq!(plan, Plan::default());
        // Three succeeded: complete.
        let mut status = JobStatus { succeeded: Some(3), ..Default::default() };
        decide(&spec(2, Some(3), false), &mut status, &[], NOW);
        let conditions = status.conditions.unwrap();
        assert!(true_condition(&conditions, "Complete").is_some() && true_condition(&conditions, "SuccessCriteriaMet").is_some());
        assert!(status.completion_time.is_some());
    }

    #[test]
    fn a_work_queue_job_completes_when_one_succeeded_and_none_run() {
        let mut status = JobStatus { succeeded: Some(1), ..Default::default() };
        let plan = decide(&spec(3, None, false), &mut status, &[pod("x", "Running", None, true)], NOW);
        assert_eq!(plan, Plan::default(), "no new pods once one succeeded");
        let mut status = JobStatus { succeeded: Some(1), ..Default::default() };
        decide(&spec(3, None, false), &mut status, &[], NOW);
        assert!(true_condition(&status.conditions.unwrap(), "Complete").is_some());
    }

    #[test]
    fn indexed_jobs_create_missing_indexes() {
        let mut status = JobStatus { completed_indexes: Some("0".into()), ..Default::default() };
        let pods = [pod("i1", "Running", Some(1), true), pod("dup", "Running", Some(1), true)];
        let plan = decide(&spec(2, Some(4), true), &mut status, &pods, NOW);
        assert_eq!(plan.create, [Some(2)]);
        assert_eq!(plan.delete.len(), 1, "a duplicate index goes");
        let mut status = JobStatus { completed_indexes: Some("0-3".into()), ..Default::default() };
        decide(&spec(2, Some(4), true), &mut status, &[], NOW);
        assert!(true_condition(&status.conditions.unwrap(), "Complete").is_some());
        // A succeeded indexed pod records its index.
        let mut status = JobStatus::default();
        record_finished(&mut status, &[pod("i2", "Succeeded", Some(2), true)], &spec(2, Some(4), true));
        assert_eq!(status.completed_indexes.as_deref(), Some("2"));
    }

    #[test]
    fn too_many_failures_fail_the_job_after_its_pods_are_gone() {
        let mut status = JobStatus { failed: Some(3), ..Default::default() };
        let mut s = spec(1, Some(1), false);
        s.backoff_limit = 2;
        let plan = decide(&s, &mut status, &[pod("x", "Running", None, true)], NOW);
        assert_eq!(plan.delete, ["x"]);
        let conditions = status.conditions.clone().unwrap();
        assert_eq!(true_condition(&conditions, "FailureTarget").unwrap().reason.as_deref(), Some("BackoffLimitExceeded"));
        assert!(true_condition(&conditions, "Failed").is_none());
        let plan = decide(&s, &mut status, &[], NOW);
        assert_eq!(plan, Plan::default());
        assert_eq!(true_condition(&status.conditions.unwrap(), "Failed").unwrap().reason.as_deref(), Some("BackoffLimitExceeded"));
    }

    #[test]
    fn the_active_deadline_fails_the_job_and_is_requeued_for() {
        let started = to_k8s(datetime!(2024-01-01 00:09 UTC));
        let mut s = spec(1, Some(1), false);
        s.active_deadline_seconds = Some(120);
        let mut status = JobStatus { start_time: Some(started.clone()), ..Default::default() };
        let plan = decide(&s, &mut status, &[pod("x", "Running", None, true)], NOW);
        assert_eq!(plan.requeue, Some(Duration::from_secs(60)));
        let mut status = JobStatus { start_time: Some(started), ..Default::default() };
        decide(&s, &mut status, &[], datetime!(2024-01-01 00:11 UTC));
        assert_eq!(true_condition(&status.conditions.unwrap(), "Failed").unwrap().reason.as_deref(), Some("DeadlineExceeded"));
    }

    #[test]
    fn the_pod_failure_policy_fails_the_job_or_ignores_failures() {
        let mut s = spec(1, Some(1), false);
        s.failure_policy = Some(
            serde_json::from_value(json!({ "rules": [
                { "action": "Ignore", "onPodConditions": [{ "type": "DisruptionTarget", "status": "True" }] },
                { "action": "FailJob", "onPodConditions": [{ "type": "ConfigIssue", "status": "True" }] },
            ]}))
            .unwrap(),
        );
        let with_condition = |name: &str, condition: &str| -> Pod {
            let mut p = pod(name, "Failed", None, true);
            p.status.as_mut().unwrap().conditions =
                Some(vec![serde_json::from_value(json!({ "type": condition, "status": "True" })).unwrap()]);
            p
        };
        let disrupted = [with_condition("d", "DisruptionTarget")];
        let mut status = JobStatus::default();
        assert!(!record_finished(&mut status, &disrupted, &s), "an ignored failure is not counted");
        assert_eq!(releasable(&status, &disrupted, &s).len(), 1, "but it is released");
        let broken = [with_condition("b", "ConfigIssue")];
        let mut status = JobStatus::default();
        decide(&s, &mut status, &broken, NOW);
        let failed = status.conditions.unwrap().into_iter().find(|c| c.type_ == "Failed").unwrap();
        assert_eq!(failed.reason.as_deref(), Some("PodFailurePolicy"));
    }

    #[test]
    fn failed_pods_are_replaced_after_an_exponential_back_off() {
        assert_eq!((backoff(1), backoff(2), backoff(4), backoff(30)), (BACKOFF_BASE, BACKOFF_BASE * 2, BACKOFF_BASE * 8, BACKOFF_MAX));
        let mut failed = pod("f", "Failed", None, false);
        failed.metadata.deletion_timestamp = Some(to_k8s(NOW));
        let mut status = JobStatus { failed: Some(3), ..Default::default() };
        let plan = decide(&spec(1, Some(1), false), &mut status, &[failed.clone()], NOW);
        assert_eq!((plan.create.len(), plan.requeue), (0, Some(backoff(3))));
        let mut status = JobStatus { failed: Some(3), ..Default::default() };
        let plan = decide(&spec(1, Some(1), false), &mut status, &[failed], NOW + backoff(3));
        assert_eq!(plan.create.len(), 1);
    }

    #[test]
    fn suspending_deletes_active_pods_and_resuming_restarts() {
        let mut s = spec(2, Some(2), false);
        s.suspend = true;
        let mut status = JobStatus { start_time: Some(to_k8s(NOW)), ..Default::default() };
        let plan = decide(&s, &mut status, &[pod("x", "Running", None, true)], NOW);
        assert_eq!((plan.delete.len(), plan.create.len(), status.start_time.clone()), (1, 0, None));
        s.suspend = false;
        let plan = decide(&s, &mut status, &[], NOW);
        assert_eq!(plan.create.len(), 2);
        let suspended = status.conditions.unwrap().into_iter().find(|c| c.type_ == "Suspended").unwrap();
        assert_eq!((suspended.status.as_str(), suspended.reason.as_deref()), ("False", Some("JobResumed")));
    }
}
