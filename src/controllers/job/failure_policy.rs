//! A Job's podFailurePolicy: the first rule a failed pod matches (by container exit codes or
//! pod conditions) and what it asks for — fail the Job at once, ignore the failure (it does not
//! count towards backoffLimit), or count it as usual.

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule};
use k8s_openapi::api::core::v1::Pod;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyAction {
    /// Fail the Job, with the message Kubernetes writes.
    FailJob(String),
    Ignore,
    Count,
}

fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or_default(), pod.metadata.name.as_deref().unwrap_or_default())
}

/// The first container whose exit code matches, as (container, exit code).
fn exit_code_match(req: &PodFailurePolicyOnExitCodesRequirement, pod: &Pod) -> Option<(String, i32)> {
    let status = pod.status.as_ref()?;
    let containers = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
    containers
        .filter(|c| req.container_name.as_ref().is_none_or(|n| *n == c.name))
        .filter_map(|c| Some((c.name.clone(), c.state.as_ref()?.terminated.as_ref()?.exit_code)))
        .find(|(_, code)| match req.operator.as_str() {
            "In" => req.values.contains(code),
            "NotIn" => *code != 0 && !req.values.contains(code),
            _ => false,
        })
}

fn rule_message(rule: &PodFailurePolicyRule, index: usize, pod: &Pod) -> Option<String> {
    if let Some(req) = &rule.on_exit_codes {
        let (container, code) = exit_code_match(req, pod)?;
        return Some(format!(
            "Container {container} for pod {} failed with exit code {code} matching {} rule at index {index}",
            pod_key(pod),
            rule.action
        ));
    }
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    let pattern =
        rule.on_pod_conditions.iter().flatten().find(|p| conditions.iter().any(|c| c.type_ == p.type_ && c.status == p.status))?;
    Some(format!("Pod {} has condition {} matching {} rule at index {index}", pod_key(pod), pattern.type_, rule.action))
}

/// What the policy says about a failed pod (`Count` without a policy or a matching rule).
pub fn evaluate(policy: Option<&PodFailurePolicy>, pod: &Pod) -> PolicyAction {
    let Some(policy) = policy else { return PolicyAction::Count };
    for (index, rule) in policy.rules.iter().enumerate() {
        if let Some(message) = rule_message(rule, index, pod) {
            return match rule.action.as_str() {
                "FailJob" => PolicyAction::FailJob(message),
                "Ignore" => PolicyAction::Ignore,
                _ => PolicyAction::Count,
            };
        }
    }
    PolicyAction::Count
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failed_pod(exit_code: i32, condition: Option<&str>) -> Pod {
        let conditions: Vec<_> = condition.into_iter().map(|c| json!({ "type": c, "status": "True" })).collect();
        serde_json::from_value(
            json!({ "metadata": { "name": "p", "namespace": "ns" }, "status": { "phase": "Failed", "conditions": conditions,
            "containerStatuses": [{ "name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": { "terminated": { "exitCode": exit_code } } }] } }),
        )
        .unwrap()
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let policy: PodFailurePolicy = serde_json::from_value(json!({ "rules": [
            { "action": "FailJob", "onExitCodes": { "containerName": "main", "operator": "In", "values": [42] } },
            { "action": "Ignore", "onPodConditions": [{ "type": "DisruptionTarget", "status": "True" }] },
            { "action": "Count", "onExitCodes": { "operator": "NotIn", "values": [1] } },
        ]}))
        .unwrap();
        assert_eq!(
            evaluate(Some(&policy), &failed_pod(42, None)),
            PolicyAction::FailJob("Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 0".into())
        );
        assert_eq!(evaluate(Some(&policy), &failed_pod(1, Some("DisruptionTarget"))), PolicyAction::Ignore);
        assert_eq!(evaluate(Some(&policy), &failed_pod(1, None)), PolicyAction::Count);
        assert_eq!(evaluate(None, &failed_pod(42, None)), PolicyAction::Count);
    }
}
