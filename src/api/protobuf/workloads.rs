//! Protobuf bodies of workloads (`kubectl create deployment|job|cronjob` send them): Deployment,
//! Job and CronJob with their pod templates, turned into JSON. The pod template covers the
//! fields kubectl's generators and typical typed clients set (containers with image, command,
//! args, env, ports, resources, probes-free), the scheduling basics and the restart policy.

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::core::v1 as core;
use prost::Message;
use serde_json::{json, Map, Value};

use super::meta::{bad, int_or_string, label_selector, object_meta, set};
use crate::api::status::ApiError;

/// Decodes the protobuf `raw` of a Deployment, Job or CronJob into `obj` (which already
/// has apiVersion and kind); `None` for other kinds.
pub fn decode(plural: &str, raw: &[u8], obj: &mut Map<String, Value>) -> Option<Result<(), ApiError>> {
    let result = match plural {
        "deployments" => apps::Deployment::decode(raw).map(|d| {
            obj.insert("metadata".into(), object_meta(d.metadata));
            obj.insert("spec".into(), deployment_spec(d.spec.unwrap_or_default()));
        }),
        "jobs" => batch::Job::decode(raw).map(|j| {
            obj.insert("metadata".into(), object_meta(j.metadata));
            obj.insert("spec".into(), job_spec(j.spec.unwrap_or_default()));
        }),
        "cronjobs" => batch::CronJob::decode(raw).map(|c| {
            obj.insert("metadata".into(), object_meta(c.metadata));
            let spec = c.spec.unwrap_or_default();
            let mut out = Map::new();
            set(&mut out, "schedule", json!(spec.schedule));
            set(&mut out, "timeZone", json!(spec.time_zone));
            set(&mut out, "startingDeadlineSeconds", json!(spec.starting_deadline_seconds));
            set(&mut out, "concurrencyPolicy", json!(spec.concurrency_policy));
            set(&mut out, "suspend", json!(spec.suspend));
            set(&mut out, "successfulJobsHistoryLimit", json!(spec.successful_jobs_history_limit));
            set(&mut out, "failedJobsHistoryLimit", json!(spec.failed_jobs_history_limit));
            let template = spec.job_template.unwrap_or_default();
            out.insert(
                "jobTemplate".into(),
                json!({ "metadata": object_meta(template.metadata), "spec": job_spec(template.spec.unwrap_or_default()) }),
            );
            obj.insert("spec".into(), Value::Object(out));
        }),
        _ => return None,
    };
    Some(result.map_err(bad))
}

fn deployment_spec(spec: apps::DeploymentSpec) -> Value {
    let mut out = Map::new();
    set(&mut out, "replicas", json!(spec.replicas));
    set(&mut out, "selector", label_selector(spec.selector));
    out.insert("template".into(), pod_template(spec.template.unwrap_or_default()));
    if let Some(strategy) = spec.strategy {
        let mut s = Map::new();
        set(&mut s, "type", json!(strategy.r#type));
        if let Some(r) = strategy.rolling_update {
            let mut ru = Map::new();
            set(&mut ru, "maxSurge", int_or_string(r.max_surge));
            set(&mut ru, "maxUnavailable", int_or_string(r.max_unavailable));
            s.insert("rollingUpdate".into(), Value::Object(ru));
        }
        out.insert("strategy".into(), Value::Object(s));
    }
    set(&mut out, "minReadySeconds", json!(spec.min_ready_seconds));
    set(&mut out, "revisionHistoryLimit", json!(spec.revision_history_limit));
    set(&mut out, "paused", json!(spec.paused));
    set(&mut out, "progressDeadlineSeconds", json!(spec.progress_deadline_seconds));
    Value::Object(out)
}

fn job_spec(spec: batch::JobSpec) -> Value {
    let mut out = Map::new();
    set(&mut out, "parallelism", json!(spec.parallelism));
    set(&mut out, "completions", json!(spec.completions));
    set(&mut out, "activeDeadlineSeconds", json!(spec.active_deadline_seconds));
    set(&mut out, "backoffLimit", json!(spec.backoff_limit));
    set(&mut out, "selector", label_selector(spec.selector));
    set(&mut out, "manualSelector", json!(spec.manual_selector));
    set(&mut out, "ttlSecondsAfterFinished", json!(spec.ttl_seconds_after_finished));
    set(&mut out, "completionMode", json!(spec.completion_mode));
    set(&mut out, "suspend", json!(spec.suspend));
    out.insert("template".into(), pod_template(spec.template.unwrap_or_default()));
    Value::Object(out)
}

fn pod_template(t: core::PodTemplateSpec) -> Value {
    json!({ "metadata": object_meta(t.metadata), "spec": pod_spec(t.spec.unwrap_or_default()) })
}

fn pod_spec(spec: core::PodSpec) -> Value {
    let mut out = Map::new();
    set(&mut out, "initContainers", Value::Array(spec.init_containers.into_iter().map(container).collect()));
    out.insert("containers".into(), Value::Array(spec.containers.into_iter().map(container).collect()));
    set(&mut out, "restartPolicy", json!(spec.restart_policy));
    set(&mut out, "terminationGracePeriodSeconds", json!(spec.termination_grace_period_seconds));
    set(&mut out, "activeDeadlineSeconds", json!(spec.active_deadline_seconds));
    set(&mut out, "dnsPolicy", json!(spec.dns_policy));
    set(&mut out, "nodeSelector", json!(spec.node_selector));
    set(&mut out, "serviceAccountName", json!(spec.service_account_name));
    set(&mut out, "automountServiceAccountToken", json!(spec.automount_service_account_token));
    set(&mut out, "nodeName", json!(spec.node_name));
    set(&mut out, "hostNetwork", json!(spec.host_network));
    set(&mut out, "hostname", json!(spec.hostname));
    set(&mut out, "subdomain", json!(spec.subdomain));
    set(&mut out, "schedulerName", json!(spec.scheduler_name));
    set(&mut out, "priorityClassName", json!(spec.priority_class_name));
    let pulls: Vec<Value> = spec.image_pull_secrets.into_iter().map(|r| json!({ "name": r.name })).collect();
    set(&mut out, "imagePullSecrets", json!(pulls));
    let tolerations: Vec<Value> = spec
        .tolerations
        .into_iter()
        .map(|t| {
            let mut o = Map::new();
            set(&mut o, "key", json!(t.key));
            set(&mut o, "operator", json!(t.operator));
            set(&mut o, "value", json!(t.value));
            set(&mut o, "effect", json!(t.effect));
            set(&mut o, "tolerationSeconds", json!(t.toleration_seconds));
            Value::Object(o)
        })
        .collect();
    set(&mut out, "tolerations", json!(tolerations));
    Value::Object(out)
}

fn container(c: core::Container) -> Value {
    let mut out = Map::new();
    set(&mut out, "name", json!(c.name));
    set(&mut out, "image", json!(c.image));
    set(&mut out, "command", json!(c.command));
    set(&mut out, "args", json!(c.args));
    set(&mut out, "workingDir", json!(c.working_dir));
    let ports: Vec<Value> = c
        .ports
        .into_iter()
        .map(|p| {
            let mut o = Map::new();
            set(&mut o, "name", json!(p.name));
            set(&mut o, "containerPort", json!(p.container_port));
            set(&mut o, "hostPort", json!(p.host_port.filter(|h| *h != 0)));
            set(&mut o, "protocol", json!(p.protocol));
            Value::Object(o)
        })
        .collect();
    set(&mut out, "ports", json!(ports));
    let env: Vec<Value> = c
        .env
        .into_iter()
        .map(|e| {
            let mut o = Map::new();
            set(&mut o, "name", json!(e.name));
            set(&mut o, "value", json!(e.value));
            Value::Object(o)
        })
        .collect();
    set(&mut out, "env", json!(env));
    if let Some(r) = c.resources {
        let quantities = |m: std::collections::BTreeMap<String, k8s_pb::apimachinery::pkg::api::resource::Quantity>| -> Value {
            Value::Object(m.into_iter().map(|(k, q)| (k, json!(q.string))).collect())
        };
        let mut o = Map::new();
        set(&mut o, "limits", quantities(r.limits));
        set(&mut o, "requests", quantities(r.requests));
        out.insert("resources".into(), Value::Object(o));
    }
    set(&mut out, "imagePullPolicy", json!(c.image_pull_policy));
    set(&mut out, "terminationMessagePath", json!(c.termination_message_path));
    set(&mut out, "terminationMessagePolicy", json!(c.termination_message_policy));
    set(&mut out, "stdin", json!(c.stdin));
    set(&mut out, "tty", json!(c.tty));
    Value::Object(out)
}
