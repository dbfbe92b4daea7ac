//! Admission of built-in kinds: kube-apiserver's defaulting (pod and template defaults,
//! workload strategies, Job selectors, the ServiceAccount token volume, default tolerations)
//! and validation with field paths (422 with one cause per problem).

use serde_json::{json, Value};

use super::registry::Resource;
use super::status::{ApiError, FieldError};

/// Fills in what kube-apiserver defaults on create: the defaults of every write plus the
/// admission plugins' additions and the initial status.
pub fn default_on_create(r: &Resource, obj: &mut Value) {
    reset_status_on_create(r, obj);
    apply_defaults(r, obj);
    match (r.group, r.kind) {
        ("", "Pod") => {
            admit_service_account(obj);
            default_tolerations(&mut obj["spec"]);
            set(&mut obj["spec"], "priority", json!(0));
            obj["status"] = json!({ "phase": "Pending", "qosClass": crate::k8s::qos::class(&obj["spec"]) });
        }
        ("batch", "Job") => generate_job_selector(obj),
        ("", "PersistentVolumeClaim" | "PersistentVolume") => obj["status"] = json!({ "phase": "Pending" }),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => obj["status"] = super::crd::definition::initial_status(obj),
        _ => {
            if let Some(status) = r.initial_status() {
                obj["status"] = status;
            }
        }
    }
}

/// The defaults of every write (kube-apiserver defaults objects as it decodes them).
pub fn apply_defaults(r: &Resource, obj: &mut Value) {
    if let Some(custom) = r.custom {
        super::crd::schema::apply_defaults(&custom.schema, obj);
        return;
    }
    match (r.group, r.kind) {
        ("", "Pod") => default_pod_spec(&mut obj["spec"]),
        ("", "LimitRange") => super::limit_ranger::default_limit_range(obj),
        ("apps", "Deployment") => {
            set(&mut obj["spec"], "replicas", json!(1));
            set(&mut obj["spec"], "revisionHistoryLimit", json!(10));
            set(&mut obj["spec"], "progressDeadlineSeconds", json!(600));
            set(&mut obj["spec"], "strategy", json!({ "type": "RollingUpdate" }));
            if obj["spec"]["strategy"]["type"] == "RollingUpdate" {
                set(&mut obj["spec"]["strategy"], "rollingUpdate", json!({}));
                set(&mut obj["spec"]["strategy"]["rollingUpdate"], "maxSurge", json!("25%"));
                set(&mut obj["spec"]["strategy"]["rollingUpdate"], "maxUnavailable", json!("25%"));
            }
            default_template(&mut obj["spec"]["template"]);
        }
        ("apps", "ReplicaSet") | ("", "ReplicationController") => {
            set(&mut obj["spec"], "replicas", json!(1));
            if r.kind == "ReplicationController" && obj["spec"].get("selector").is_none() {
                obj["spec"]["selector"] = obj["spec"]["template"]["metadata"]["labels"].clone();
            }
            default_template(&mut obj["spec"]["template"]);
        }
        ("apps", "StatefulSet") => {
            let spec = &mut obj["spec"];
            set(spec, "replicas", json!(1));
            set(spec, "podManagementPolicy", json!("OrderedReady"));
            set(spec, "revisionHistoryLimit", json!(10));
            set(spec, "updateStrategy", json!({ "type": "RollingUpdate" }));
            if spec["updateStrategy"]["type"] == "RollingUpdate" {
                set(&mut spec["updateStrategy"], "rollingUpdate", json!({ "partition": 0 }));
            }
            set(spec, "persistentVolumeClaimRetentionPolicy", json!({ "whenDeleted": "Retain", "whenScaled": "Retain" }));
            default_template(&mut spec["template"]);
        }
        ("apps", "DaemonSet") => {
            let spec = &mut obj["spec"];
            set(spec, "revisionHistoryLimit", json!(10));
            set(spec, "updateStrategy", json!({ "type": "RollingUpdate" }));
            if spec["updateStrategy"]["type"] == "RollingUpdate" {
                set(&mut spec["updateStrategy"], "rollingUpdate", json!({ "maxUnavailable": 1, "maxSurge": 0 }));
            }
            default_template(&mut spec["template"]);
        }
        ("batch", "Job") => default_job_spec(&mut obj["spec"]),
        ("batch", "CronJob") => {
            let spec = &mut obj["spec"];
            set(spec, "concurrencyPolicy", json!("Allow"));
            set(spec, "suspend", json!(false));
            set(spec, "successfulJobsHistoryLimit", json!(3));
            set(spec, "failedJobsHistoryLimit", json!(1));
            default_job_spec(&mut spec["jobTemplate"]["spec"]);
        }
        ("", "Secret") => set(obj, "type", json!("Opaque")),
        ("", "PersistentVolumeClaim") => set(&mut obj["spec"], "volumeMode", json!("Filesystem")),
        ("", "PersistentVolume") => {
            set(&mut obj["spec"], "persistentVolumeReclaimPolicy", json!("Retain"));
            set(&mut obj["spec"], "volumeMode", json!("Filesystem"));
        }
        ("scheduling.k8s.io", "PriorityClass") => set(obj, "preemptionPolicy", json!("PreemptLowerPriority")),
        ("autoscaling", "HorizontalPodAutoscaler") if r.version == "v2" => super::hpa::apply_defaults(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => set(&mut obj["spec"], "minReplicas", json!(1)),
        ("admissionregistration.k8s.io", kind) => {
            if let Some(mutating) = super::webhook::configuration::mutating(kind) {
                super::webhook::configuration::apply_defaults(obj, mutating);
            }
        }
        _ => {}
    }
}

/// Sets `field` of `obj` to `value` when it is absent or null.
fn set(obj: &mut Value, field: &str, value: Value) {
    if !obj.is_object() {
        *obj = json!({});
    }
    if obj.get(field).is_none_or(Value::is_null) {
        obj[field] = value;
    }
}

fn default_template(template: &mut Value) {
    default_pod_spec(&mut template["spec"]);
}

/// PodSpec defaults (SetDefaults_PodSpec and friends).
fn default_pod_spec(spec: &mut Value) {
    set(spec, "restartPolicy", json!("Always"));
    set(spec, "dnsPolicy", json!("ClusterFirst"));
    set(spec, "terminationGracePeriodSeconds", json!(30));
    set(spec, "schedulerName", json!("default-scheduler"));
    set(spec, "securityContext", json!({}));
    set(spec, "enableServiceLinks", json!(true));
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            default_container(c);
        }
    }
    for v in spec["volumes"].as_array_mut().into_iter().flatten() {
        for source in ["configMap", "secret"] {
            if v.get(source).is_some() {
                set(&mut v[source], "defaultMode", json!(420));
            }
        }
        if v.get("downwardAPI").is_some() || v.get("projected").is_some() {
            let source = if v.get("projected").is_some() { "projected" } else { "downwardAPI" };
            set(&mut v[source], "defaultMode", json!(420));
        }
    }
}

fn default_container(c: &mut Value) {
    let image = c["image"].as_str().unwrap_or("");
    // No tag or `:latest` means Always, as kube-apiserver defaults it; digests pin the image.
    let last = image.rsplit('/').next().unwrap_or(image);
    let policy = if !image.contains('@') && (!last.contains(':') || last.ends_with(":latest")) { "Always" } else { "IfNotPresent" };
    set(c, "imagePullPolicy", json!(policy));
    set(c, "terminationMessagePath", json!("/dev/termination-log"));
    set(c, "terminationMessagePolicy", json!("File"));
    set(c, "resources", json!({}));
    for p in c["ports"].as_array_mut().into_iter().flatten() {
        set(p, "protocol", json!("TCP"));
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if c.get(probe).is_some_and(Value::is_object) {
            let p = &mut c[probe];
            set(p, "timeoutSeconds", json!(1));
            set(p, "periodSeconds", json!(10));
            set(p, "successThreshold", json!(1));
            set(p, "failureThreshold", json!(3));
            if p.get("httpGet").is_some() {
                set(&mut p["httpGet"], "scheme", json!("HTTP"));
                set(&mut p["httpGet"], "path", json!("/"));
            }
        }
    }
}

/// The ServiceAccount admission plugin: the account name and the projected token volume
/// mounted at /var/run/secrets/kubernetes.io/serviceaccount in every container.
fn admit_service_account(pod: &mut Value) {
    let spec = &mut pod["spec"];
    let account = spec["serviceAccountName"].as_str().or(spec["serviceAccount"].as_str()).unwrap_or("default").to_string();
    spec["serviceAccountName"] = json!(account);
    spec["serviceAccount"] = json!(account);
    if spec["automountServiceAccountToken"] == false {
        return;
    }
    let mount_path = "/var/run/secrets/kubernetes.io/serviceaccount";
    let all = |spec: &Value| -> Vec<Value> {
        ["initContainers", "containers"].iter().flat_map(|l| spec[*l].as_array().cloned().unwrap_or_default()).collect()
    };
    if all(spec).iter().any(|c| c["volumeMounts"].as_array().into_iter().flatten().any(|m| m["mountPath"] == mount_path)) {
        return;
    }
    let suffix: String = (0..5).map(|_| b"bcdfghjklmnpqrstvwxz2456789"[rand::random::<usize>() % 27] as char).collect();
    let volume_name = format!("kube-api-access-{suffix}");
    let volume = json!({
        "name": volume_name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                { "serviceAccountToken": { "expirationSeconds": 3607, "path": "token" } },
                { "configMap": { "name": "kube-root-ca.crt", "items": [{ "key": "ca.crt", "path": "ca.crt" }] } },
                { "downwardAPI": { "items": [{ "path": "namespace", "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.namespace" } }] } },
            ],
        },
    });
    match spec["volumes"].as_array_mut() {
        Some(v) => v.push(volume),
        None => spec["volumes"] = json!([volume]),
    }
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            let mount = json!({ "name": volume_name, "readOnly": true, "mountPath": mount_path });
            match c["volumeMounts"].as_array_mut() {
                Some(m) => m.push(mount),
                None => c["volumeMounts"] = json!([mount]),
            }
        }
    }
}

/// DefaultTolerationSeconds: pods tolerate a not-ready or unreachable node for 300 s.
fn default_tolerations(spec: &mut Value) {
    for key in [crate::k8s::names::TAINT_NOT_READY, crate::k8s::names::TAINT_UNREACHABLE] {
        let tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
        let covered = tolerations.iter().any(|t| {
            (t["key"] == key || (t.get("key").is_none() && t["operator"] == "Exists"))
                && (t.get("effect").is_none_or(Value::is_null) || t["effect"] == "NoExecute")
        });
        if !covered {
            let mut list = tolerations;
            list.push(json!({ "key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 }));
            spec["tolerations"] = json!(list);
        }
    }
}

/// A Job's generated selector (its uid) and the labels it matches, unless `manualSelector`.
fn generate_job_selector(job: &mut Value) {
    let uid = job["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let name = job["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let spec = &mut job["spec"];
    if spec["manualSelector"] != true && !uid.is_empty() {
        let labels = [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ];
        for (k, v) in labels {
            spec["template"]["metadata"]["labels"][k] = json!(v);
        }
        spec["selector"] = json!({ "matchLabels": { "batch.kubernetes.io/controller-uid": uid } });
    }
}

fn default_job_spec(spec: &mut Value) {
    if spec.get("completions").is_none_or(Value::is_null) && spec.get("parallelism").is_none_or(Value::is_null) {
        spec["completions"] = json!(1);
    }
    set(spec, "parallelism", json!(1));
    set(spec, "backoffLimit", json!(6));
    set(spec, "completionMode", json!("NonIndexed"));
    set(spec, "suspend", json!(false));
    set(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    default_template(&mut spec["template"]);
}

/// Validates an object about to be written; `before` is the stored version on updates.
pub fn validate(r: &Resource, obj: &Value, before: Option<&Value>) -> Result<(), ApiError> {
    let mut errs = Vec::new();
    if let Some(custom) = r.custom {
        errs = super::crd::schema::validate(&custom.schema, obj);
    }
    match (r.group, r.kind) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            errs.extend(super::crd::definition::problems(obj).into_iter().map(|(field, message)| FieldError {
                field,
                reason: "FieldValueInvalid",
                message,
            }));
        }
        ("", "Pod") => {
            validate_pod_spec(&obj["spec"], "spec", &mut errs);
            if let Some(before) = before {
                pod_spec_immutable(&before["spec"], &obj["spec"], &mut errs);
            }
        }
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") | ("", "ReplicationController") => {
            validate_workload(r, obj, before, &mut errs);
        }
        ("batch", "Job") => {
            validate_job_spec(&obj["spec"], "spec", &mut errs);
            if let Some(before) = before {
                if before["spec"]["template"] != obj["spec"]["template"] && before["spec"]["suspend"] != true {
                    errs.push(FieldError::invalid("spec.template", &obj["spec"]["template"], "field is immutable"));
                }
                if before["spec"]["selector"] != obj["spec"]["selector"] {
                    errs.push(FieldError::invalid("spec.selector", &obj["spec"]["selector"], "field is immutable"));
                }
            }
        }
        ("batch", "CronJob") => {
            if obj["spec"]["schedule"].as_str().is_none_or(str::is_empty) {
                errs.push(FieldError::required("spec.schedule"));
            }
            validate_job_spec(&obj["spec"]["jobTemplate"]["spec"], "spec.jobTemplate.spec", &mut errs);
        }
        ("", "ConfigMap") => super::volume_validation::config_map(obj, &mut errs),
        ("admissionregistration.k8s.io", kind) => {
            if let Some(mutating) = super::webhook::configuration::mutating(kind) {
                super::webhook::configuration::validate(obj, mutating, &mut errs);
            }
        }
        ("", "Namespace") => super::pod_security::validate_namespace(obj, before, &mut errs),
        ("", "Secret") => super::volume_validation::secret(obj, &mut errs),
        ("", "Node") => {
            if let Some(before) = before {
                let old_cidr = &before["spec"]["podCIDR"];
                if old_cidr.as_str().is_some_and(|c| !c.is_empty()) && obj["spec"]["podCIDR"] != *old_cidr {
                    errs.push(FieldError::forbidden("spec.podCIDR", "node updates may not change podCIDR except from \"\" to valid"));
                }
            }
        }
        _ => {}
    }
    super::ranges::validate(r, obj, &mut errs);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_fields(r.group, r.kind, obj["metadata"]["name"].as_str().unwrap_or(""), errs))
    }
}

fn validate_job_spec(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let policy = &spec["template"]["spec"]["restartPolicy"];
    if !matches!(policy.as_str(), Some("Never" | "OnFailure")) {
        errs.push(FieldError::not_supported(&format!("{path}.template.spec.restartPolicy"), policy, &["OnFailure", "Never"]));
    }
    validate_pod_spec(&spec["template"]["spec"], &format!("{path}.template.spec"), errs);
}

fn validate_workload(r: &Resource, obj: &Value, before: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = &obj["spec"];
    if spec["replicas"].as_i64().is_some_and(|n| n < 0) {
        errs.push(FieldError::invalid("spec.replicas", &spec["replicas"], "must be greater than or equal to 0"));
    }
    let labels = &spec["template"]["metadata"]["labels"];
    let selector = &spec["selector"];
    let matches = if r.kind == "ReplicationController" {
        selector.as_object().is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels[k] == *v))
    } else if selector.is_object() {
        let parsed = super::selector::LabelSelector::from_json(selector);
        match parsed {
            Ok(sel) if !sel.is_empty() => sel.matches(labels),
            Ok(_) => {
                errs.push(FieldError::invalid("spec.selector", selector, "empty selector is invalid for deployment"));
                true
            }
            Err(e) => {
                errs.push(FieldError::invalid("spec.selector", selector, &e));
                true
            }
        }
    } else {
        errs.push(FieldError::required("spec.selector"));
        true
    };
    if !matches {
        errs.push(FieldError::invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`"));
    }
    validate_pod_spec(&spec["template"]["spec"], "spec.template.spec", errs);
    if r.kind != "ReplicationController" && before.is_some_and(|b| b["spec"]["selector"] != *selector) {
        errs.push(FieldError::invalid("spec.selector", selector, "field is immutable"));
    }
}

fn validate_pod_spec(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let containers = spec["containers"].as_array();
    if containers.is_none_or(Vec::is_empty) {
        errs.push(FieldError::required(&format!("{path}.containers")));
    }
    let mut names = Vec::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            let at = format!("{path}.{list}[{i}]");
            match c["name"].as_str() {
                None | Some("") => errs.push(FieldError::required(&format!("{at}.name"))),
                Some(n) if names.contains(&n) => errs.push(FieldError::duplicate(&format!("{at}.name"), &c["name"])),
                Some(n) => {
                    if let Err(why) = check_label(n) {
                        errs.push(FieldError::invalid(&format!("{at}.name"), &c["name"], why));
                    }
                    names.push(n);
                }
            }
            if c["image"].as_str().is_none_or(|s| s.trim().is_empty()) {
                errs.push(FieldError::required(&format!("{at}.image")));
            }
        }
    }
    super::volume_validation::pod_volumes(spec, path, errs);
    if let Some(p) = spec["restartPolicy"].as_str() {
        if !matches!(p, "Always" | "OnFailure" | "Never") {
            errs.push(FieldError::not_supported(
                &format!("{path}.restartPolicy"),
                &spec["restartPolicy"],
                &["Always", "OnFailure", "Never"],
            ));
        }
    }
}

/// A DNS-1123 label (container and port names).
pub(super) fn check_label(name: &str) -> Result<(), &'static str> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character")
    }
}

/// Pod updates may change only container images, activeDeadlineSeconds, added tolerations and
/// scheduling gates, as kube-apiserver allows.
fn pod_spec_immutable(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    let strip = |spec: &Value| -> Value {
        let mut s = spec.clone();
        for list in ["initContainers", "containers"] {
            for c in s[list].as_array_mut().into_iter().flatten() {
                c["image"] = Value::Null;
            }
        }
        if let Some(m) = s.as_object_mut() {
            for mutable in ["activeDeadlineSeconds", "tolerations", "schedulingGates"] {
                m.remove(mutable);
            }
        }
        s
    };
    if strip(old) != strip(new) {
        errs.push(FieldError::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ));
    }
}

/// The status a resource with a status subresource starts with.
fn reset_status_on_create(r: &Resource, obj: &mut Value) {
    let keeps_status = matches!((r.group, r.kind), ("", "Node" | "Namespace" | "Pod" | "PersistentVolume" | "PersistentVolumeClaim"));
    if r.subresources.contains(&"status") && !keeps_status {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }
}

/// The object a write to one part (main resource or status) produces from `before` and the
/// client's `obj`: the main resource keeps the stored status, the status subresource keeps
/// everything but status.
pub fn merge_part(r: &Resource, status_write: bool, before: &Value, obj: &mut Value) {
    if !r.subresources.contains(&"status") {
        return;
    }
    if status_write {
        let status = obj.as_object_mut().and_then(|m| m.remove("status"));
        let rv = obj.get_mut("metadata").and_then(Value::as_object_mut).and_then(|m| m.remove("resourceVersion"));
        *obj = before.clone();
        match status {
            Some(s) => obj["status"] = s,
            None => {
                obj.as_object_mut().map(|m| m.remove("status"));
            }
        }
        // The client's resourceVersion still pins the write; managedFields are recomputed.
        if let Some(rv) = rv {
            obj["metadata"]["resourceVersion"] = rv;
        }
    } else {
        match before.get("status") {
            Some(s) => obj["status"] = s.clone(),
            None => {
                obj.as_object_mut().map(|m| m.remove("status"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(group: &str, plural: &str) -> &'static Resource {
        super::super::registry::lookup(group, "v1", plural).unwrap()
    }

    #[test]
    fn pods_get_kube_apiserver_defaults() {
        let mut pod = json!({ "metadata": { "name": "p" }, "spec": { "containers": [{ "name": "c", "image": "busybox" }] } });
        default_on_create(resource("", "pods"), &mut pod);
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(spec["containers"][0]["volumeMounts"][0]["mountPath"], "/var/run/secrets/kubernetes.io/serviceaccount");
        assert_eq!(spec["tolerations"].as_array().unwrap().len(), 2);
        assert_eq!(pod["status"], json!({ "phase": "Pending", "qosClass": "BestEffort" }));
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        for (image, policy) in
            [("nginx:1.25", "IfNotPresent"), ("reg:5000/app", "Always"), ("a/b:latest", "Always"), ("x@sha256:00", "IfNotPresent")]
        {
            let mut c = json!({ "name": "c", "image": image });
            default_container(&mut c);
            assert_eq!(c["imagePullPolicy"], policy, "{image}");
        }
    }

    #[test]
    fn deployments_need_a_selector_matching_the_template() {
        let deploy = super::super::registry::lookup("apps", "v1", "deployments").unwrap();
        let mut d = json!({ "metadata": { "name": "d" }, "spec": {
            "selector": { "matchLabels": { "app": "x" } },
            "template": { "metadata": { "labels": { "app": "y" } }, "spec": { "containers": [{ "name": "c", "image": "i" }] } } } });
        default_on_create(deploy, &mut d);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        let err = validate(deploy, &d, None).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(err.message.contains("spec.template.metadata.labels"), "{}", err.message);
        d["spec"]["template"]["metadata"]["labels"]["app"] = json!("x");
        validate(deploy, &d, None).unwrap();
    }

    #[test]
    fn pod_specs_are_immutable_but_images() {
        let pods = resource("", "pods");
        let old = json!({ "metadata": { "name": "p" }, "spec": { "containers": [{ "name": "c", "image": "a" }] } });
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("b");
        validate(pods, &new, Some(&old)).unwrap();
        new["spec"]["restartPolicy"] = json!("Never");
        assert_eq!(validate(pods, &new, Some(&old)).unwrap_err().code, 422);
    }
}
