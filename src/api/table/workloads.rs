//! Printers of the workload kinds: deployments, replica sets, replication controllers, stateful
//! sets, daemon sets, jobs, cron jobs, controller revisions, autoscalers and disruption budgets.

use serde_json::{json, Value};

use super::cells::{
    bool_ptr, containers, human_duration, int, int_or_string, items, labels, selector, selector_or_none, since, text, timestamp,
};
use super::{col, wide, Column, AGE, CONTAINERS, IMAGES, NAME};
use crate::api::registry::Resource;

const SELECTOR_DOC: &str = "A label query over pods that should match the replica count.";

/// `spec.replicas`, defaulted to 1 as the API server does.
fn desired(o: &Value) -> i64 {
    o["spec"]["replicas"].as_i64().unwrap_or(1)
}

fn status_int(o: &Value, field: &str) -> Value {
    json!(int(&o["status"][field]))
}

/// "ready/desired", as the READY column of deployments and stateful sets shows it.
fn ready_of_desired(o: &Value) -> Value {
    json!(format!("{}/{}", int(&o["status"]["readyReplicas"]), desired(o)))
}

pub(super) fn columns(resource: &Resource) -> Option<Vec<Column>> {
    let selector_col = wide("Selector", "string", SELECTOR_DOC, |o| selector_or_none(&o["spec"]["selector"]));
    let replicated = |selector: Column| {
        vec![
            NAME,
            col("Desired", "integer", "Replicas is the number of desired replicas.", |o| json!(desired(o))),
            col("Current", "integer", "Replicas is the most recently observed number of replicas.", |o| status_int(o, "replicas")),
            col("Ready", "integer", "The number of ready replicas for this replica set.", |o| status_int(o, "readyReplicas")),
            AGE,
            CONTAINERS,
            IMAGES,
            selector,
        ]
    };
    Some(match resource.plural {
        "deployments" => vec![
            NAME,
            col("Ready", "string", "Number of the pod with ready state", ready_of_desired),
            col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec.", |o| {
                status_int(o, "updatedReplicas")
            }),
            col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.", |o| {
                status_int(o, "availableReplicas")
            }),
            AGE,
            CONTAINERS,
            IMAGES,
            wide("Selector", "string", "Label selector for pods.", |o| json!(selector(&o["spec"]["selector"]))),
        ],
        "replicasets" => replicated(selector_col),
        "replicationcontrollers" => replicated(wide("Selector", "string", SELECTOR_DOC, |o| labels(&o["spec"]["selector"]))),
        "statefulsets" => vec![NAME, col("Ready", "string", "Number of the pod with ready state", ready_of_desired), AGE, CONTAINERS, IMAGES],
        "daemonsets" => vec![
            NAME,
            col("Desired", "integer", "The total number of nodes that should be running the daemon pod.", |o| status_int(o, "desiredNumberScheduled")),
            col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.", |o| {
                status_int(o, "currentNumberScheduled")
            }),
            col("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.", |o| {
                status_int(o, "numberReady")
            }),
            col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod", |o| status_int(o, "updatedNumberScheduled")),
            col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.", |o| {
                status_int(o, "numberAvailable")
            }),
            col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node.", |o| {
                labels(&o["spec"]["template"]["spec"]["nodeSelector"])
            }),
            AGE,
            CONTAINERS,
            IMAGES,
            selector_col,
        ],
        "jobs" => vec![
            NAME,
            col("Status", "string", "Status of the job.", job_status),
            col("Completions", "string", "The number of pods which reached phase Succeeded.", job_completions),
            col("Duration", "string", "Time required to complete the job.", job_duration),
            AGE,
            CONTAINERS,
            IMAGES,
            selector_col,
        ],
        "cronjobs" => vec![
            NAME,
            col("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.", |o| json!(text(&o["spec"]["schedule"]))),
            col("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.", |o| {
                json!(o["spec"]["timeZone"].as_str().unwrap_or("<none>"))
            }),
            col("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions.", |o| bool_ptr(&o["spec"]["suspend"])),
            col("Active", "integer", "A list of pointers to currently running jobs.", |o| json!(items(&o["status"]["active"]).count())),
            col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled.", |o| {
                json!(if o["status"]["lastScheduleTime"].is_string() { since(&o["status"]["lastScheduleTime"]) } else { "<none>".into() })
            }),
            AGE,
            wide("Containers", "string", "Names of each container in the template.", |o| containers(&o["spec"]["jobTemplate"]["spec"]["template"]["spec"]).0),
            wide("Images", "string", "Images referenced by each container in the template.", |o| {
                containers(&o["spec"]["jobTemplate"]["spec"]["template"]["spec"]).1
            }),
            wide("Selector", "string", SELECTOR_DOC, |o| selector_or_none(&o["spec"]["jobTemplate"]["spec"]["selector"])),
        ],
        "controllerrevisions" => vec![
            NAME,
            col("Controller", "string", "Controller of the object", revision_controller),
            col("Revision", "string", "Revision indicates the revision of the state represented by Data.", |o| json!(int(&o["revision"]))),
            AGE,
        ],
        "horizontalpodautoscalers" => vec![
            NAME,
            col("Reference", "string", "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource.", |o| {
                json!(format!("{}/{}", text(&o["spec"]["scaleTargetRef"]["kind"]), text(&o["spec"]["scaleTargetRef"]["name"])))
            }),
            col("Targets", "string", "metrics contains the specifications for which to use to calculate the desired replica count.", hpa_targets),
            col("MinPods", "string", "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.", |o| {
                json!(o["spec"]["minReplicas"].as_i64().map_or_else(|| "<unset>".to_string(), |n| n.to_string()))
            }),
            col("MaxPods", "string", "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.", |o| json!(int(&o["spec"]["maxReplicas"]))),
            col("Replicas", "string", "currentReplicas is current number of replicas of pods managed by this autoscaler.", |o| status_int(o, "currentReplicas")),
            AGE,
        ],
        "poddisruptionbudgets" => vec![
            NAME,
            col("Min Available", "string", "The minimum number of pods that must be available.", |o| disruption_bound(&o["spec"]["minAvailable"])),
            col("Max Unavailable", "string", "The maximum number of pods that may be unavailable.", |o| disruption_bound(&o["spec"]["maxUnavailable"])),
            col("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time.", |o| status_int(o, "disruptionsAllowed")),
            AGE,
        ],
        _ => return None,
    })
}

/// Whether the job's first condition of `kind` is true (`hasJobCondition`).
fn job_condition(o: &Value, kind: &str) -> bool {
    items(&o["status"]["conditions"]).find(|c| c["type"] == kind).is_some_and(|c| c["status"] == "True")
}

fn job_status(o: &Value) -> Value {
    json!(if job_condition(o, "Complete") {
        "Complete"
    } else if job_condition(o, "Failed") {
        "Failed"
    } else if o["metadata"]["deletionTimestamp"].is_string() {
        "Terminating"
    } else if job_condition(o, "Suspended") {
        "Suspended"
    } else if job_condition(o, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    })
}

/// "succeeded/completions", or "succeeded/1 of parallelism" for work queues.
fn job_completions(o: &Value) -> Value {
    let succeeded = int(&o["status"]["succeeded"]);
    json!(match (o["spec"]["completions"].as_i64(), int(&o["spec"]["parallelism"])) {
        (Some(completions), _) => format!("{succeeded}/{completions}"),
        (None, parallelism) if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
        (None, _) => format!("{succeeded}/1"),
    })
}

fn job_duration(o: &Value) -> Value {
    let status = &o["status"];
    json!(match (timestamp(&status["startTime"]), timestamp(&status["completionTime"])) {
        (None, _) => String::new(),
        (Some(_), None) => since(&status["startTime"]),
        (Some(start), Some(end)) => human_duration((end - start).whole_seconds()),
    })
}

/// "kind.group/name" of the controlling owner, `"<none>"` without one.
fn revision_controller(o: &Value) -> Value {
    let Some(owner) = items(&o["metadata"]["ownerReferences"]).find(|r| r["controller"] == true) else {
        return json!("<none>");
    };
    let group = text(&owner["apiVersion"]).rsplit_once('/').map_or("", |(g, _)| g);
    let kind = if group.is_empty() { text(&owner["kind"]).to_string() } else { format!("{}.{group}", text(&owner["kind"])) };
    json!(format!("{}/{}", kind.to_lowercase(), text(&owner["name"])))
}

fn disruption_bound(v: &Value) -> Value {
    json!(if v.is_null() { "N/A".to_string() } else { int_or_string(v) })
}

/// `formatHPAMetrics` over autoscaling/v2 metrics (autoscaling/v1's CPU target read as one).
fn hpa_targets(o: &Value) -> Value {
    let (specs, statuses) = match o["spec"]["targetCPUUtilizationPercentage"].as_i64() {
        Some(target) if !o["spec"]["metrics"].is_array() => (
            vec![json!({"type": "Resource", "resource": {"name": "cpu", "target": {"averageUtilization": target}}})],
            o["status"]["currentCPUUtilizationPercentage"]
                .as_i64()
                .map(|c| vec![json!({"resource": {"current": {"averageUtilization": c}}})])
                .unwrap_or_default(),
        ),
        _ => (items(&o["spec"]["metrics"]).cloned().collect(), items(&o["status"]["currentMetrics"]).cloned().collect()),
    };
    if specs.is_empty() {
        return json!("<none>");
    }
    let list: Vec<String> = specs.iter().enumerate().map(|(i, spec)| hpa_metric(spec, statuses.get(i).unwrap_or(&Value::Null))).collect();
    let shown = list[..list.len().min(2)].join(", ");
    json!(if list.len() > 2 { format!("{shown} + {} more...", list.len() - 2) } else { shown })
}

fn hpa_metric(spec: &Value, status: &Value) -> String {
    let quantity = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "<unknown>".to_string(),
    };
    let percent = |v: &Value, absent: &str| v.as_i64().map_or_else(|| absent.to_string(), |n| format!("{n}%"));
    let source = match text(&spec["type"]) {
        "External" => "external",
        "Pods" => "pods",
        "Object" => "object",
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        _ => return "<unknown type>".into(),
    };
    let (target, current) = (&spec[source]["target"], &status[source]["current"]);
    match source {
        "pods" => format!("{}/{}", quantity(&current["averageValue"]), quantity(&target["averageValue"])),
        "external" | "object" if !target["averageValue"].is_null() => {
            format!("{}/{} (avg)", quantity(&current["averageValue"]), quantity(&target["averageValue"]))
        }
        "external" | "object" => format!("{}/{}", quantity(&current["value"]), quantity(&target["value"])),
        _ if !target["averageValue"].is_null() => {
            format!("{}: {}/{}", text(&spec[source]["name"]), quantity(&current["averageValue"]), quantity(&target["averageValue"]))
        }
        _ => format!(
            "{}: {}/{}",
            text(&spec[source]["name"]),
            percent(&current["averageUtilization"], "<unknown>"),
            percent(&target["averageUtilization"], "<auto>")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{header, table};
    use serde_json::json;

    #[test]
    fn workload_headers_match_kubectl() {
        for (group, version, plural, plain, all) in [
            (
                "apps",
                "v1",
                "deployments",
                "NAME|READY|UP-TO-DATE|AVAILABLE|AGE",
                "NAME|READY|UP-TO-DATE|AVAILABLE|AGE|CONTAINERS|IMAGES|SELECTOR",
            ),
            ("apps", "v1", "replicasets", "NAME|DESIRED|CURRENT|READY|AGE", "NAME|DESIRED|CURRENT|READY|AGE|CONTAINERS|IMAGES|SELECTOR"),
            (
                "",
                "v1",
                "replicationcontrollers",
                "NAME|DESIRED|CURRENT|READY|AGE",
                "NAME|DESIRED|CURRENT|READY|AGE|CONTAINERS|IMAGES|SELECTOR",
            ),
            ("apps", "v1", "statefulsets", "NAME|READY|AGE", "NAME|READY|AGE|CONTAINERS|IMAGES"),
            (
                "apps",
                "v1",
                "daemonsets",
                "NAME|DESIRED|CURRENT|READY|UP-TO-DATE|AVAILABLE|NODE SELECTOR|AGE",
                "NAME|DESIRED|CURRENT|READY|UP-TO-DATE|AVAILABLE|NODE SELECTOR|AGE|CONTAINERS|IMAGES|SELECTOR",
            ),
            (
                "batch",
                "v1",
                "jobs",
                "NAME|STATUS|COMPLETIONS|DURATION|AGE",
                "NAME|STATUS|COMPLETIONS|DURATION|AGE|CONTAINERS|IMAGES|SELECTOR",
            ),
            (
                "batch",
                "v1",
                "cronjobs",
                "NAME|SCHEDULE|TIMEZONE|SUSPEND|ACTIVE|LAST SCHEDULE|AGE",
                "NAME|SCHEDULE|TIMEZONE|SUSPEND|ACTIVE|LAST SCHEDULE|AGE|CONTAINERS|IMAGES|SELECTOR",
            ),
            (
                "policy",
                "v1",
                "poddisruptionbudgets",
                "NAME|MIN AVAILABLE|MAX UNAVAILABLE|ALLOWED DISRUPTIONS|AGE",
                "NAME|MIN AVAILABLE|MAX UNAVAILABLE|ALLOWED DISRUPTIONS|AGE",
            ),
            ("apps", "v1", "controllerrevisions", "NAME|CONTROLLER|REVISION|AGE", "NAME|CONTROLLER|REVISION|AGE"),
            (
                "autoscaling",
                "v2",
                "horizontalpodautoscalers",
                "NAME|REFERENCE|TARGETS|MINPODS|MAXPODS|REPLICAS|AGE",
                "NAME|REFERENCE|TARGETS|MINPODS|MAXPODS|REPLICAS|AGE",
            ),
        ] {
            assert_eq!(header(group, version, plural), (plain.to_string(), all.to_string()), "{plural}");
        }
    }

    #[test]
    fn deployment_cells() {
        let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "nginx:1"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 1}});
        let cells = table("apps", "v1", "deployments", d).2;
        assert_eq!(cells[1..4], [json!("2/3"), json!(3), json!(1)]);
        assert_eq!(cells[5..], [json!("a,b"), json!("busybox,nginx:1"), json!("app=web")]);
        let fresh = table("apps", "v1", "deployments", json!({"metadata": {"name": "d"}, "spec": {"replicas": 0}})).2;
        assert_eq!(fresh[1..4], [json!("0/0"), json!(0), json!(0)]);
    }

    #[test]
    fn job_cells() {
        let job = |spec: serde_json::Value, status: serde_json::Value| {
            table("batch", "v1", "jobs", json!({"metadata": {"name": "j"}, "spec": spec, "status": status})).2
        };
        let done = job(
            json!({"completions": 3, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}}}),
            json!({"succeeded": 3, "startTime": "2024-01-01T00:00:00Z", "completionTime": "2024-01-01T00:02:05Z",
                "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}),
        );
        assert_eq!(done[1..4], [json!("Complete"), json!("3/3"), json!("2m5s")]);
        assert_eq!(done[7], "batch.kubernetes.io/controller-uid=u");
        let failed = job(json!({"parallelism": 2}), json!({"conditions": [{"type": "Failed", "status": "True"}]}));
        assert_eq!(failed[1..4], [json!("Failed"), json!("0/1 of 2"), json!("")]);
        let suspended = job(json!({}), json!({"conditions": [{"type": "Suspended", "status": "True"}]}));
        assert_eq!(suspended[1..3], [json!("Suspended"), json!("0/1")]);
        let running = job(
            json!({"completions": 1}),
            json!({"startTime": "2020-01-01T00:00:00Z", "conditions": [{"type": "Complete", "status": "False"}]}),
        );
        assert_eq!(running[1], "Running");
        assert!(running[3].as_str().unwrap().contains('y'), "{}", running[3]);
        let deleting = table("batch", "v1", "jobs", json!({"metadata": {"name": "j", "deletionTimestamp": "2020-01-01T00:00:00Z"}})).2;
        assert_eq!(deleting[1], "Terminating");
    }

    #[test]
    fn other_workload_cells() {
        let sts = json!({"metadata": {"name": "db"}, "spec": {"replicas": 2}, "status": {"readyReplicas": 1}});
        assert_eq!(table("apps", "v1", "statefulsets", sts).2[1], "1/2");
        let cj = json!({"metadata": {"name": "c"}, "spec": {"schedule": "*/5 * * * *", "suspend": false}});
        assert_eq!(
            table("batch", "v1", "cronjobs", cj).2[1..6],
            [json!("*/5 * * * *"), json!("<none>"), json!("False"), json!(0), json!("<none>")]
        );
        let pdb = json!({"metadata": {"name": "p"}, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(table("policy", "v1", "poddisruptionbudgets", pdb).2[1..4], [json!("50%"), json!("N/A"), json!(1)]);
        let rev = json!({"metadata": {"name": "r", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": true}]}, "revision": 2});
        assert_eq!(table("apps", "v1", "controllerrevisions", rev).2[1..3], [json!("statefulset.apps/db"), json!(2)]);
        let rc = json!({"metadata": {"name": "rc"}, "spec": {"selector": {"app": "x"}}, "status": {"replicas": 1}});
        assert_eq!(table("", "v1", "replicationcontrollers", rc).2[1..3], [json!(1), json!(1)]);
        let hpa = json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5, "metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
            {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"averageValue": "10"}}},
            {"type": "Resource", "resource": {"name": "memory", "target": {"averageValue": "1Gi"}}}]},
            "status": {"currentReplicas": 2, "currentMetrics": [{"type": "Resource", "resource": {"current": {"averageUtilization": 12}}}]}});
        let cells = table("autoscaling", "v2", "horizontalpodautoscalers", hpa).2;
        assert_eq!(
            cells[1..6],
            [json!("Deployment/web"), json!("cpu: 12%/80%, <unknown>/10 + 1 more..."), json!("<unset>"), json!(5), json!(2)]
        );
        let v1 = json!({"metadata": {"name": "h"}, "spec": {"targetCPUUtilizationPercentage": 50, "minReplicas": 1}});
        assert_eq!(table("autoscaling", "v1", "horizontalpodautoscalers", v1).2[2..4], [json!("cpu: <unknown>/50%"), json!("1")]);
    }
}
