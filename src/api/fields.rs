//! Field selectors (`?fieldSelector=spec.nodeName=n1,status.phase!=Running`): equality on the
//! fields kube-apiserver makes selectable per resource, compared in their Go string form
//! (`spec.unschedulable=false` matches a node without the field, `status.replicas=0` likewise).

use serde_json::Value;

use super::registry::Resource;

/// A selectable field: its label and the values it has on an object (one, except `status.podIPs`).
type Field = (&'static str, fn(&Value) -> Vec<String>);

/// A string field; absent reads as "".
fn string(v: &Value) -> Vec<String> {
    vec![v.as_str().unwrap_or("").to_string()]
}

/// A boolean field as Go's `strconv.FormatBool`; absent reads as "false".
fn boolean(v: &Value) -> Vec<String> {
    vec![v.as_bool().unwrap_or(false).to_string()]
}

/// An integer field as Go's `strconv.Itoa`; absent reads as "0".
fn integer(v: &Value) -> Vec<String> {
    vec![v.as_i64().unwrap_or(0).to_string()]
}

fn pod_ips(pod: &Value) -> Vec<String> {
    let ips: Vec<String> =
        pod["status"]["podIPs"].as_array().into_iter().flatten().filter_map(|ip| ip["ip"].as_str()).map(str::to_string).collect();
    if ips.is_empty() {
        string(&pod["status"]["podIP"])
    } else {
        ips
    }
}

const METADATA: &[Field] =
    &[("metadata.name", |o| string(&o["metadata"]["name"])), ("metadata.namespace", |o| string(&o["metadata"]["namespace"]))];

const PODS: &[Field] = &[
    ("spec.nodeName", |o| string(&o["spec"]["nodeName"])),
    ("spec.host", |o| string(&o["spec"]["nodeName"])),
    ("spec.restartPolicy", |o| string(&o["spec"]["restartPolicy"])),
    ("spec.schedulerName", |o| string(&o["spec"]["schedulerName"])),
    ("spec.serviceAccountName", |o| string(&o["spec"]["serviceAccountName"])),
    ("spec.hostNetwork", |o| boolean(&o["spec"]["hostNetwork"])),
    ("status.phase", |o| string(&o["status"]["phase"])),
    ("status.podIP", |o| pod_ips(o).into_iter().take(1).collect()),
    ("status.podIPs", pod_ips),
    ("status.nominatedNodeName", |o| string(&o["status"]["nominatedNodeName"])),
];

const CORE_EVENTS: &[Field] = &[
    ("involvedObject.kind", |o| string(&o["involvedObject"]["kind"])),
    ("involvedObject.namespace", |o| string(&o["involvedObject"]["namespace"])),
    ("involvedObject.name", |o| string(&o["involvedObject"]["name"])),
    ("involvedObject.uid", |o| string(&o["involvedObject"]["uid"])),
    ("involvedObject.apiVersion", |o| string(&o["involvedObject"]["apiVersion"])),
    ("involvedObject.resourceVersion", |o| string(&o["involvedObject"]["resourceVersion"])),
    ("involvedObject.fieldPath", |o| string(&o["involvedObject"]["fieldPath"])),
    ("reason", |o| string(&o["reason"])),
    ("reportingComponent", |o| string(&o["reportingComponent"])),
    ("source", |o| match o["source"]["component"].as_str() {
        Some(component) if !component.is_empty() => vec![component.to_string()],
        _ => string(&o["reportingComponent"]),
    }),
    ("type", |o| string(&o["type"])),
];

const EVENTS: &[Field] = &[
    ("regarding.kind", |o| string(&o["regarding"]["kind"])),
    ("regarding.namespace", |o| string(&o["regarding"]["namespace"])),
    ("regarding.name", |o| string(&o["regarding"]["name"])),
    ("regarding.uid", |o| string(&o["regarding"]["uid"])),
    ("regarding.apiVersion", |o| string(&o["regarding"]["apiVersion"])),
    ("regarding.resourceVersion", |o| string(&o["regarding"]["resourceVersion"])),
    ("regarding.fieldPath", |o| string(&o["regarding"]["fieldPath"])),
    ("reason", |o| string(&o["reason"])),
    ("reportingController", |o| string(&o["reportingController"])),
    ("type", |o| string(&o["type"])),
];

/// The fields of `resource` beyond `metadata.name` and `metadata.namespace`.
fn specific(resource: &Resource) -> &'static [Field] {
    match (resource.group, resource.plural) {
        ("", "pods") => PODS,
        ("", "nodes") => &[("spec.unschedulable", |o| boolean(&o["spec"]["unschedulable"]))],
        ("", "replicationcontrollers") | ("apps", "replicasets") => &[("status.replicas", |o| integer(&o["status"]["replicas"]))],
        ("batch", "jobs") => &[("status.successful", |o| integer(&o["status"]["succeeded"]))],
        ("", "secrets") => &[("type", |o| string(&o["type"]))],
        ("", "namespaces") => &[("status.phase", |o| string(&o["status"]["phase"]))],
        ("", "events") => CORE_EVENTS,
        ("events.k8s.io", "events") => EVENTS,
        _ => &[],
    }
}

#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<Term>);

#[derive(Debug, Clone)]
struct Term {
    field: &'static str,
    values: fn(&Value) -> Vec<String>,
    equal: bool,
    value: String,
}

impl FieldSelector {
    pub fn parse(resource: &Resource, raw: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, true, v)
            } else {
                return Err(format!("invalid selector: {part:?}; expected field=value or field!=value"));
            };
            let field = field.trim();
            let (name, values) = METADATA
                .iter()
                .chain(specific(resource))
                .find(|(name, _)| *name == field)
                .ok_or_else(|| format!("field label not supported: {field}"))?;
            terms.push(Term { field: name, values: *values, equal, value: value.trim().to_string() });
        }
        Ok(Self(terms))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of `field` when the selector is exactly one equality term on it.
    pub fn only(&self, field: &str) -> Option<&str> {
        match self.0.as_slice() {
            [t] if t.field == field && t.equal => Some(&t.value),
            _ => None,
        }
    }

    /// The value an equality term requires of `field`, if there is one.
    pub fn equals(&self, field: &str) -> Option<&str> {
        self.0.iter().find(|t| t.field == field && t.equal).map(|t| t.value.as_str())
    }

    /// Whether `obj` satisfies every term (`a=b`: some value of `a` is b; `a!=b`: none is).
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|t| (t.values)(obj).contains(&t.value) == t.equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn selects(group: &str, version: &str, plural: &str, selector: &str, obj: Value) -> bool {
        let resource = super::super::registry::lookup(group, version, plural).unwrap();
        FieldSelector::parse(resource, selector).unwrap().matches(&obj)
    }

    fn error(group: &str, plural: &str, selector: &str) -> String {
        FieldSelector::parse(super::super::registry::lookup(group, "v1", plural).unwrap(), selector).unwrap_err()
    }

    #[test]
    fn metadata_fields_everywhere_others_per_resource() {
        assert!(selects("", "v1", "configmaps", "metadata.name=a", json!({"metadata": {"name": "a"}})));
        assert!(selects("", "v1", "configmaps", "metadata.namespace!=kube-system", json!({"metadata": {"namespace": "default"}})));
        assert_eq!(error("", "configmaps", "data.k=v"), "field label not supported: data.k");
        assert_eq!(error("", "services", "spec.nodeName=n"), "field label not supported: spec.nodeName");
        assert!(error("", "pods", "spec.nodeName").starts_with("invalid selector"));
    }

    #[test]
    fn pod_fields() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
            "serviceAccountName": "default"}, "status": {"phase": "Running", "podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}, {"ip": "fd00::5"}]}});
        for (selector, want) in [
            ("spec.nodeName=n1", true),
            ("spec.host=n1", true),
            ("spec.nodeName!=n1", false),
            ("spec.nodeName==n2", false),
            ("spec.restartPolicy=Always,spec.schedulerName=default-scheduler,spec.serviceAccountName=default", true),
            ("spec.hostNetwork=false", true),
            ("spec.hostNetwork=true", false),
            ("status.phase!=Running", false),
            ("status.podIP=10.42.0.5", true),
            ("status.podIP=fd00::5", false),
            ("status.podIPs=fd00::5", true),
            ("status.podIPs!=10.42.0.5", false),
            ("status.nominatedNodeName=", true),
        ] {
            assert_eq!(selects("", "v1", "pods", selector, pod.clone()), want, "{selector}");
        }
        // The kubelet's selector: pods bound to this node that are not finished.
        let pending = json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Pending"}});
        assert!(selects("", "v1", "pods", "spec.nodeName=n1,status.phase!=Succeeded,status.phase!=Failed", pending));
    }

    #[test]
    fn non_string_fields_compare_in_go_form() {
        assert!(selects("", "v1", "nodes", "spec.unschedulable=false", json!({"metadata": {"name": "n"}})));
        assert!(selects("", "v1", "nodes", "spec.unschedulable=true", json!({"spec": {"unschedulable": true}})));
        assert!(selects("apps", "v1", "replicasets", "status.replicas=0", json!({"status": {}})));
        assert!(selects("", "v1", "replicationcontrollers", "status.replicas=3", json!({"status": {"replicas": 3}})));
        assert!(selects("batch", "v1", "jobs", "status.successful=1", json!({"status": {"succeeded": 1}})));
        assert!(selects("", "v1", "secrets", "type=kubernetes.io/tls", json!({"type": "kubernetes.io/tls"})));
        assert!(selects("", "v1", "namespaces", "status.phase=Active", json!({"status": {"phase": "Active"}})));
        assert_eq!(error("apps", "deployments", "status.replicas=0"), "field label not supported: status.replicas");
    }

    #[test]
    fn event_fields_of_both_groups() {
        let core =
            json!({"involvedObject": {"kind": "Pod", "name": "web", "uid": "u1"}, "type": "Normal", "reportingComponent": "kubelet"});
        assert!(selects(
            "",
            "v1",
            "events",
            "involvedObject.name=web,involvedObject.kind=Pod,involvedObject.uid=u1,type!=Warning",
            core.clone()
        ));
        assert!(selects("", "v1", "events", "source=kubelet", core.clone()));
        assert!(!selects("", "v1", "events", "involvedObject.name=db", core));
        assert_eq!(error("", "events", "involvedObject.color=red"), "field label not supported: involvedObject.color");
        let new = json!({"regarding": {"kind": "Node", "name": "n1"}, "reportingController": "kubelet", "reason": "Starting"});
        assert!(selects("events.k8s.io", "v1", "events", "regarding.name=n1,reportingController=kubelet,reason=Starting", new));
    }
}
