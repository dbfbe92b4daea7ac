//! The CronJob controller (batch/v1): creates a Job named `<cronjob>-<scheduled minute since
//! the epoch>` at each schedule time in the CronJob's time zone, honouring suspend,
//! concurrencyPolicy, startingDeadlineSeconds and the history limits, keeps status.active,
//! lastScheduleTime and lastSuccessfulTime, and requeues itself for the next schedule time.

mod schedule;
mod tz;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use self::schedule::Schedule;
use self::tz::TimeZone;
use super::common::{backoff, ok_if_gone};
use super::job::conditions::{finished_condition, FinishedAs};
use super::Context;
use crate::k8s::time::{from_k8s, to_k8s};

/// The annotation recording which schedule time a Job was created for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed start times than this and Kubernetes reports the CronJob as stuck.
const MAX_MISSED: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("cronjob has no namespace")]
    NoNamespace,
}

struct State {
    client: kube::Client,
    recorder: Recorder,
}

pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let state = Arc::new(State {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), Reporter { controller: "cronjob-controller".into(), instance: None }),
    });
    let controller = Controller::new(Api::<CronJob>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Job>::all(client), watcher::Config::default())
        .graceful_shutdown_on(shutdown.cancelled_owned());
    backoff::run(controller, reconcile, state).await;
}

/// When a CronJob is due: the most recent unmet schedule time up to now, how many were
/// missed, and the next one after now.
#[derive(Debug, PartialEq)]
pub struct Due {
    pub most_recent: Option<OffsetDateTime>,
    pub missed: usize,
    pub next: Option<OffsetDateTime>,
}

/// The schedule times after `earliest` (exclusive) up to `now`, and the next one after `now`.
pub fn due(schedule: &Schedule, tz: &TimeZone, earliest: OffsetDateTime, now: OffsetDateTime) -> Due {
    let mut times = schedule.times_from(tz.to_local(earliest)).filter_map(|local| tz.from_local(local)).filter(|t| *t > earliest);
    let mut out = Due { most_recent: None, missed: 0, next: None };
    for t in times.by_ref() {
        if t > now {
            out.next = Some(t);
            break;
        }
        out.most_recent = Some(t);
        out.missed += 1;
    }
    out
}

/// The name of the Job for a schedule time: the CronJob's name and the minutes since the epoch.
pub fn job_name(cronjob: &str, scheduled: OffsetDateTime) -> String {
    format!("{cronjob}-{}", scheduled.unix_timestamp().div_euclid(60))
}

async fn warn(state: &State, cj: &CronJob, reason: &str, note: String) {
    tracing::warn!(cronjob = %cj.name_any(), reason, "{note}");
    let event = Event { type_: EventType::Warning, reason: reason.into(), note: Some(note), action: "Schedule".into(), secondary: None };
    if let Err(e) = state.recorder.publish(&event, &cj.object_ref(&())).await {
        tracing::debug!(error = %e, "could not record an event");
    }
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference { resource_version: None, field_path: None, ..job.object_ref(&()) }
}

async fn reconcile(cj: Arc<CronJob>, state: Arc<State>) -> Result<Action, Error> {
    let ns = cj.namespace().ok_or(Error::NoNamespace)?;
    let name = cj.name_any();
    let cronjobs: Api<CronJob> = Api::namespaced(state.client.clone(), &ns);
    let jobs: Api<Job> = Api::namespaced(state.client.clone(), &ns);
    let uid = cj.uid().unwrap_or_default();
    let owned: Vec<Job> = jobs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| j.owner_references().iter().any(|r| r.controller == Some(true) && r.uid == uid))
        .collect();
    let status = cj.status.clone().unwrap_or_default();
    let spec = cj.spec.clone().unwrap_or_default();

    // Bring status.active and lastSuccessfulTime up to date with the Jobs.
    let mut last_successful = status.last_successful_time.clone();
    let mut active: Vec<ObjectReference> = Vec::new();
    for job in &owned {
        match finished_condition(job) {
            None if job.metadata.deletion_timestamp.is_none() => active.push(job_ref(job)),
            Some(FinishedAs::Complete) => {
                let done = job.status.as_ref().and_then(|s| s.completion_time.clone());
                if done.as_ref().is_some_and(|d| last_successful.as_ref().is_none_or(|l| d.0 > l.0)) {
                    last_successful = done;
                }
            }
            _ => {}
        }
    }
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    cleanup_history(&jobs, &spec, &owned).await?;

    let mut last_schedule = status.last_schedule_time.clone();
    let action = if spec.suspend == Some(true) {
        Action::await_change()
    } else {
        match schedule_next(&state, &cj, &spec, &jobs, &mut active, &mut last_schedule).await? {
            Some(next) => Action::requeue(next),
            None => Action::await_change(),
        }
    };
    let new_status = json!({ "status": {
        "active": if active.is_empty() { None } else { Some(&active) },
        "lastScheduleTime": last_schedule,
        "lastSuccessfulTime": last_successful,
    }});
    let old_status = json!({ "status": {
        "active": status.active.as_ref().filter(|a| !a.is_empty()),
        "lastScheduleTime": status.last_schedule_time,
        "lastSuccessfulTime": status.last_successful_time,
    }});
    if new_status != old_status {
        cronjobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(new_status)).await?;
    }
    Ok(action)
}

/// Starts the Job for the most recent missed schedule time if it is due; returns how long until
/// the next schedule time (`None`: the schedule is unusable or never fires again).
async fn schedule_next(
    state: &State,
    cj: &CronJob,
    spec: &CronJobSpec,
    jobs: &Api<Job>,
    active: &mut Vec<ObjectReference>,
    last_schedule: &mut Option<Time>,
) -> Result<Option<Duration>, Error> {
    let tz = match spec.time_zone.as_deref() {
        None | Some("") | Some("UTC") | Some("Etc/UTC") => TimeZone::utc(),
        Some(name) => match TimeZone::load(name) {
            Ok(tz) => tz,
            Err(e) => {
                warn(state, cj, "UnknownTimeZone", format!("invalid timeZone {name:?}: {e}")).await;
                return Ok(None);
            }
        },
    };
    let schedule: Schedule = match spec.schedule.parse() {
        Ok(s) => s,
        Err(e) => {
            warn(state, cj, "UnparseableSchedule", e.to_string()).await;
            return Ok(None);
        }
    };
    let now = OffsetDateTime::now_utc();
    let created = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| from_k8s(&t.0));
    let mut earliest = last_schedule.as_ref().map_or(created, |t| from_k8s(&t.0));
    if let Some(deadline) = spec.starting_deadline_seconds {
        earliest = earliest.max(crate::k8s::time::shift(now, -deadline.max(0)));
    }
    let due = due(&schedule, &tz, earliest, now);
    let until_next = due.next.map(|n| Duration::try_from(n - now).unwrap_or_default() + Duration::from_millis(100));
    let Some(scheduled) = due.most_recent else { return Ok(until_next) };
    if due.missed > MAX_MISSED {
        let note = format!("too many missed start times ({}); check clock skew or set startingDeadlineSeconds", due.missed);
        warn(state, cj, "TooManyMissedTimes", note).await;
    }
    if spec.starting_deadline_seconds.is_some_and(|d| scheduled < crate::k8s::time::shift(now, -d.max(0))) {
        warn(state, cj, "MissSchedule", format!("missed the scheduled time {scheduled} by more than startingDeadlineSeconds")).await;
        return Ok(until_next);
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            tracing::debug!(cronjob = %cj.name_any(), "an earlier job is still running; skipping this run");
            return Ok(until_next);
        }
        Some("Replace") => {
            for old in active.drain(..) {
                let name = old.name.unwrap_or_default();
                ok_if_gone(jobs.delete(&name, &DeleteParams::background()).await)?;
            }
        }
        _ => {}
    }
    let job = job_for(cj, spec, scheduled, &tz);
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let created = match jobs.create(&PostParams::default(), &job).await {
        Ok(created) => Some(created),
        Err(kube::Error::Api(s)) if s.code == 409 => jobs.get_opt(&job_name).await?,
        Err(e) => return Err(e.into()),
    };
    if let Some(created) = created.filter(|j| finished_condition(j).is_none()) {
        if !active.iter().any(|r| r.uid == created.metadata.uid) {
            active.push(job_ref(&created));
        }
    }
    tracing::info!(cronjob = %cj.name_any(), job = %job_name, "started a scheduled job");
    *last_schedule = Some(to_k8s(scheduled));
    Ok(until_next)
}

/// The Job a CronJob starts for a schedule time.
fn job_for(cj: &CronJob, spec: &CronJobSpec, scheduled: OffsetDateTime, tz: &TimeZone) -> Job {
    let template = &spec.job_template;
    let local = tz.to_local(scheduled);
    let offset =
        time::UtcOffset::from_whole_seconds((local.assume_utc() - scheduled).whole_seconds() as i32).unwrap_or(time::UtcOffset::UTC);
    let stamp = local.assume_offset(offset).format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let meta = template.metadata.clone().unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), stamp);
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cj.name_any(), scheduled)),
            namespace: cj.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: cj.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Deletes the oldest finished Jobs beyond successfulJobsHistoryLimit (3) and
/// failedJobsHistoryLimit (1).
async fn cleanup_history(jobs: &Api<Job>, spec: &CronJobSpec, owned: &[Job]) -> Result<(), Error> {
    for (kind, limit) in [
        (FinishedAs::Complete, spec.successful_jobs_history_limit.unwrap_or(3)),
        (FinishedAs::Failed, spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let mut finished: Vec<&Job> =
            owned.iter().filter(|j| finished_condition(j) == Some(kind) && j.metadata.deletion_timestamp.is_none()).collect();
        let start = |j: &Job| j.status.as_ref().and_then(|s| s.start_time.clone()).or(j.metadata.creation_timestamp.clone()).map(|t| t.0);
        finished.sort_by_key(|j| start(j));
        let excess = finished.len().saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
        for old in &finished[..excess] {
            tracing::debug!(job = %old.name_any(), "deleting a job beyond the history limit");
            ok_if_gone(jobs.delete(&old.name_any(), &DeleteParams::background()).await)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn due_counts_missed_times_and_finds_the_next() {
        let every_minute: Schedule = "*/1 * * * *".parse().unwrap();
        let d = due(&every_minute, &TimeZone::utc(), datetime!(2024-01-01 10:00:30 UTC), datetime!(2024-01-01 10:03:10 UTC));
        assert_eq!(d, Due { most_recent: Some(datetime!(2024-01-01 10:03 UTC)), missed: 3, next: Some(datetime!(2024-01-01 10:04 UTC)) });
        let d = due(&every_minute, &TimeZone::utc(), datetime!(2024-01-01 10:00 UTC), datetime!(2024-01-01 10:00:59 UTC));
        assert_eq!(d, Due { most_recent: None, missed: 0, next: Some(datetime!(2024-01-01 10:01 UTC)) });
        let d = due(&every_minute, &TimeZone::utc(), datetime!(2024-01-01 00:00 UTC), datetime!(2024-01-02 00:00 UTC));
        assert!(d.missed > MAX_MISSED);
    }

    #[test]
    fn due_in_a_time_zone_across_daylight_saving() {
        let tz = TimeZone::load("America/New_York").expect("tzdata is installed");
        let nine: Schedule = "0 9 * * *".parse().unwrap();
        // 09:00 EST is 14:00 UTC; after the spring change 09:00 EDT is 13:00 UTC.
        let d = due(&nine, &tz, datetime!(2024-03-09 12:00 UTC), datetime!(2024-03-09 20:00 UTC));
        assert_eq!(d.most_recent, Some(datetime!(2024-03-09 14:00 UTC)));
        assert_eq!(d.next, Some(datetime!(2024-03-10 13:00 UTC)));
        // 02:30 does not exist on 2024-03-10 in New York: that run is skipped.
        let half_past_two: Schedule = "30 2 * * *".parse().unwrap();
        let d = due(&half_past_two, &tz, datetime!(2024-03-09 08:00 UTC), datetime!(2024-03-09 08:00 UTC));
        assert_eq!(d.next, Some(datetime!(2024-03-11 06:30 UTC)));
    }

    #[test]
    fn job_names_count_minutes_since_the_epoch() {
        assert_eq!(job_name("hello", datetime!(2024-01-01 00:01 UTC)), "hello-28401121");
    }

    #[test]
    fn the_job_carries_the_scheduled_time_in_the_cronjob_time_zone() {
        let cj: CronJob = serde_json::from_value(json!({
            "metadata": { "name": "nightly", "namespace": "ns", "uid": "u1" },
            "spec": { "schedule": "0 9 * * *", "jobTemplate": { "metadata": { "labels": { "a": "b" } }, "spec": { "template": {} } } }
        }))
        .unwrap();
        let tz = TimeZone::load("Europe/Berlin").expect("tzdata is installed");
        let job = job_for(&cj, cj.spec.as_ref().unwrap(), datetime!(2024-07-01 07:00 UTC), &tz);
        assert_eq!(job.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP], "2024-07-01T09:00:00+02:00");
        assert_eq!(job.metadata.labels.unwrap()["a"], "b");
        let owner = &job.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("CronJob", "u1", Some(true)));
    }
}
