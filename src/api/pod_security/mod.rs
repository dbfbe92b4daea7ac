//! PodSecurity admission, as kube-apiserver ships it: the `pod-security.kubernetes.io/enforce`,
//! `audit` and `warn` labels of a namespace (with their `-version`) pick a level of the Pod
//! Security Standards. Pods that violate the enforce level are refused (403, kube's message);
//! pods and the pod templates of workload resources that violate the warn level get a
//! `Warning` header, the audit level a log line. Updates that change nothing the checks look at
//! (metadata, status, tolerations) are always allowed. A namespace given a new enforce level
//! warns about the pods already there that violate it. No exemptions.

mod baseline;
mod policy;
mod restricted;
mod view;

use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

use super::objects::{self, Scope};
use super::registry::Resource;
use super::status::{ApiError, FieldError};
use crate::store::{KeyRange, RangeRequest, Store};
use policy::{Level, Modes, Policy};
use view::{PodView, Violation};

/// One check: its level, how it runs, and from which version a restricted check replaces it
/// at the restricted level (kube's overlapping checks).
struct Check {
    level: Level,
    run: fn(&PodView<'_>, &Policy) -> Option<Violation>,
    replaced_at_restricted_since: Option<u32>,
}

const fn check(level: Level, run: fn(&PodView<'_>, &Policy) -> Option<Violation>) -> Check {
    Check { level, run, replaced_at_restricted_since: None }
}

/// Every check, in kube's order (baseline then restricted, each by check id).
const CHECKS: [Check; 17] = [
    check(Level::Baseline, baseline::app_armor),
    Check { level: Level::Baseline, run: baseline::capabilities, replaced_at_restricted_since: Some(22) },
    check(Level::Baseline, baseline::host_namespaces),
    Check { level: Level::Baseline, run: baseline::host_path_volumes, replaced_at_restricted_since: Some(0) },
    check(Level::Baseline, baseline::host_ports),
    check(Level::Baseline, baseline::privileged),
    check(Level::Baseline, baseline::proc_mount),
    check(Level::Baseline, baseline::se_linux),
    Check { level: Level::Baseline, run: baseline::seccomp, replaced_at_restricted_since: Some(19) },
    check(Level::Baseline, baseline::sysctls),
    check(Level::Baseline, baseline::windows_host_process),
    check(Level::Restricted, restricted::allow_privilege_escalation),
    check(Level::Restricted, restricted::capabilities),
    check(Level::Restricted, restricted::volume_types),
    check(Level::Restricted, restricted::run_as_non_root),
    check(Level::Restricted, restricted::run_as_user),
    check(Level::Restricted, restricted::seccomp),
];

/// How many existing pods a namespace's new enforce level is checked against (as kube).
const EXISTING_PODS_CHECKED: u64 = 3000;

/// The violations of `policy` by a pod.
fn violations(policy: &Policy, pod: &PodView<'_>) -> Vec<Violation> {
    CHECKS
        .iter()
        .filter(|c| c.level <= policy.level)
        .filter(|c| !(policy.level == Level::Restricted && c.replaced_at_restricted_since.is_some_and(|s| policy.has(s))))
        .filter_map(|c| (c.run)(pod, policy))
        .collect()
}

/// The violations of `policy` by a pod: `reason (detail)` each.
fn evaluate(policy: &Policy, pod: &PodView<'_>) -> Vec<String> {
    violations(policy, pod).into_iter().map(|v| format!("{} ({})", v.reason, v.detail)).collect()
}

/// The pod template of a workload resource.
fn template<'a>(r: &Resource, obj: &'a Value) -> Option<&'a Value> {
    match (r.group, r.kind) {
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") | ("batch", "Job") | ("", "ReplicationController") => {
            Some(&obj["spec"]["template"])
        }
        ("batch", "CronJob") => Some(&obj["spec"]["jobTemplate"]["spec"]["template"]),
        ("", "PodTemplate") => Some(&obj["template"]),
        _ => None,
    }
}

fn is_pod(r: &Resource) -> bool {
    (r.group, r.kind) == ("", "Pod")
}

/// Whether a pod update changes anything the checks look at (pod specs are immutable but for
/// images; seccomp annotations count too), as kube's isSignificantPodUpdate.
fn significant_pod_update(before: &Value, after: &Value) -> bool {
    let images = |pod: &Value| -> Vec<(Value, Value)> {
        ["initContainers", "containers"]
            .iter()
            .flat_map(|l| pod["spec"][*l].as_array().cloned().unwrap_or_default())
            .map(|c| (c["name"].clone(), c["image"].clone()))
            .collect()
    };
    let seccomp = |pod: &Value| -> Vec<(String, Value)> {
        pod["metadata"]["annotations"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.contains("seccomp.security.alpha.kubernetes.io/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    images(before) != images(after) || seccomp(before) != seccomp(after)
}

/// The PodSecurity admission of one write: the namespace's modes, its pods (for a write of
/// the namespace itself) and where warnings go.
pub struct Admission {
    namespace: String,
    modes: Modes,
    existing_pods: Vec<Value>,
    warnings: Arc<Mutex<Vec<String>>>,
}

impl Admission {
    /// The admission a write (`verb`) of `resource` (`namespace`, `name`, `subresource`) needs:
    /// `None` unless it writes a pod or a pod template in a namespace with PodSecurity labels,
    /// or updates a namespace (whose pods a new enforce level is checked against).
    pub async fn load(
        store: &dyn Store,
        net: super::services::ServiceNetwork,
        target: (&'static Resource, Option<&str>, Option<&str>, Option<&str>),
        verb: &str,
        warnings: Arc<Mutex<Vec<String>>>,
    ) -> Result<Option<Self>, ApiError> {
        let (resource, namespace, name, subresource) = target;
        if !matches!(verb, "create" | "update" | "patch") || subresource.is_some() {
            return Ok(None);
        }
        if (resource.group, resource.kind) == ("", "Namespace") {
            let Some(ns) = name.filter(|_| verb != "create") else { return Ok(None) };
            let pods = super::registry::lookup("", "v1", "pods").expect("pods are built in");
            let range = KeyRange::prefix(pods.key_prefix(Some(ns)));
            let listed = store.range(RangeRequest { range, limit: EXISTING_PODS_CHECKED, ..Default::default() }).await?;
            let existing_pods = listed.kvs.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect();
            return Ok(Some(Self { namespace: ns.to_string(), modes: Modes::default(), existing_pods, warnings }));
        }
        let Some(namespace) = namespace.filter(|_| is_pod(resource) || template(resource, &Value::Null).is_some()) else {
            return Ok(None);
        };
        let scope = Scope::new(super::registry::namespaces(), None, net);
        let labels = match objects::get(store, &scope, namespace).await {
            Ok(ns) => ns["metadata"]["labels"].clone(),
            Err(e) if e.code == http::StatusCode::NOT_FOUND => return Ok(None),
            Err(e) => return Err(e),
        };
        let (modes, _) = policy::modes(&labels);
        if modes == Modes::default() {
            return Ok(None);
        }
        Ok(Some(Self { namespace: namespace.to_string(), modes, existing_pods: Vec::new(), warnings }))
    }

    /// Warns, as kube does, when a namespace's new enforce level is violated by pods it has:
    /// one line per set of violated checks, naming a pod and how many others share it.
    fn warn_existing(&self, namespace: &Value, before: Option<&Value>) {
        let enforce = |ns: &Value| policy::modes(&ns["metadata"]["labels"]).0.enforce;
        let Some(new) = enforce(namespace).filter(|new| before.is_some_and(|b| enforce(b) != Some(*new))) else { return };
        let mut groups: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        for pod in &self.existing_pods {
            let view = PodView { meta: &pod["metadata"], spec: &pod["spec"] };
            let reasons: Vec<String> = violations(&new, &view).into_iter().map(|v| v.reason).collect();
            if reasons.is_empty() {
                continue;
            }
            let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
            match groups.iter_mut().find(|(r, _)| *r == reasons) {
                Some((_, names)) => names.push(name),
                None => groups.push((reasons, vec![name])),
            }
        }
        if groups.is_empty() {
            return;
        }
        self.warn(format!("existing pods in namespace {:?} violate the new PodSecurity enforce level {:?}", self.namespace, new.name()));
        for (reasons, names) in groups {
            let who = match names.len() - 1 {
                0 => names[0].clone(),
                others => format!("{} (and {others} other {})", names[0], view::pluralize("pod", "pods", others)),
            };
            self.warn(format!("{who}: {}", reasons.join(", ")));
        }
    }

    /// Adds a warning once (a write retried on a conflict is admitted again).
    fn warn(&self, text: String) {
        let mut warnings = self.warnings.lock();
        if !warnings.contains(&text) {
            warnings.push(text);
        }
    }

    fn check(&self, r: &Resource, obj: &Value, before: Option<&Value>) -> Result<(), ApiError> {
        if (r.group, r.kind) == ("", "Namespace") {
            self.warn_existing(obj, before);
            return Ok(());
        }
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let (meta, spec, enforce) = if is_pod(r) {
            if before.is_some_and(|b| !significant_pod_update(b, obj)) {
                return Ok(());
            }
            (&obj["metadata"], &obj["spec"], self.modes.enforce)
        } else {
            let Some(t) = template(r, obj) else { return Ok(()) };
            if before.and_then(|b| template(r, b)) == Some(t) {
                return Ok(());
            }
            // Only pods are enforced; templates get warnings and audit lines.
            (&t["metadata"], &t["spec"], None)
        };
        let pod = PodView { meta, spec };
        if let Some(policy) = enforce {
            let violations = evaluate(&policy, &pod);
            if !violations.is_empty() {
                return Err(ApiError::forbidden_message(&format!(
                    "pods \"{name}\" is forbidden: violates PodSecurity \"{}\": {}",
                    policy.name(),
                    violations.join(", ")
                )));
            }
        }
        if let Some(policy) = self.modes.audit {
            let violations = evaluate(&policy, &pod);
            if !violations.is_empty() {
                tracing::info!(namespace = %self.namespace, kind = r.kind, %name, policy = %policy.name(), violations = %violations.join(", "), "PodSecurity audit violation");
            }
        }
        if let Some(policy) = self.modes.warn.filter(|w| Some(*w) != enforce) {
            let violations = evaluate(&policy, &pod);
            if !violations.is_empty() {
                self.warn(format!("would violate PodSecurity \"{}\": {}", policy.name(), violations.join(", ")));
            }
        }
        Ok(())
    }
}

/// Admits a pod or workload about to be written (`before`: the stored version on updates)
/// under the scope's PodSecurity admission, if any.
pub fn admit(scope: &Scope<'_>, obj: &Value, before: Option<&Value>) -> Result<(), ApiError> {
    match scope.pod_security {
        Some(admission) => admission.check(scope.resource, obj, before),
        None => Ok(()),
    }
}

/// A namespace's PodSecurity labels are valid when created or changed.
pub fn validate_namespace(obj: &Value, before: Option<&Value>, errs: &mut Vec<FieldError>) {
    let ours = |ns: &Value| -> Vec<(String, Value)> {
        ns["metadata"]["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.starts_with(policy::PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    if before.is_none_or(|b| ours(b) != ours(obj)) {
        errs.extend(policy::modes(&obj["metadata"]["labels"]).1);
    }
}

#[cfg(test)]
mod tests;
