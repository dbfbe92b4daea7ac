//! The restricted level's checks on top of baseline (Pod Security Standards), each with kube's
//! reason and detail: allowPrivilegeEscalation=false, capabilities drop ALL (only
//! NET_BIND_SERVICE added), volume types, runAsNonRoot, runAsUser≠0 and a RuntimeDefault or
//! Localhost seccomp profile.

use serde_json::Value;

use super::baseline::{added_capabilities, explicit_bad_seccomp, valid_seccomp};
use super::policy::Policy;
use super::view::{containers_phrase, join_quote, name, pluralize, setters, sorted, PodView, Violation};

/// Checks that do not apply to Windows pods from v1.25 on.
fn skips_windows(pod: &PodView<'_>, policy: &Policy) -> bool {
    pod.is_windows() && policy.has(25)
}

pub fn allow_privilege_escalation(pod: &PodView<'_>, policy: &Policy) -> Option<Violation> {
    if !policy.has(8) || skips_windows(pod, policy) {
        return None;
    }
    let names: Vec<String> = pod.containers().filter(|c| c["securityContext"]["allowPrivilegeEscalation"] != false).map(name).collect();
    if names.is_empty() {
        return None;
    }
    Violation::new(
        "allowPrivilegeEscalation != false",
        format!("{} must set securityContext.allowPrivilegeEscalation=false", containers_phrase(&names)),
    )
}

pub fn capabilities(pod: &PodView<'_>, policy: &Policy) -> Option<Violation> {
    if !policy.has(22) || skips_windows(pod, policy) {
        return None;
    }
    let (mut missing_drop, mut adding, mut caps) = (Vec::new(), Vec::new(), Vec::new());
    for c in pod.containers() {
        let drops = c["securityContext"]["capabilities"]["drop"].as_array();
        if !drops.into_iter().flatten().any(|d| d == "ALL") {
            missing_drop.push(name(c));
        }
        let bad: Vec<String> = added_capabilities(c).filter(|cap| *cap != "NET_BIND_SERVICE").map(String::from).collect();
        if !bad.is_empty() {
            adding.push(name(c));
            caps.extend(bad);
        }
    }
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!("{} must set securityContext.capabilities.drop=[\"ALL\"]", containers_phrase(&missing_drop)));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quote(&sorted(caps))
        ));
    }
    if details.is_empty() {
        return None;
    }
    Violation::new("unrestricted capabilities", details.join("; "))
}

const ALLOWED_VOLUMES: [&str; 8] =
    ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];

pub fn volume_types(pod: &PodView<'_>, _: &Policy) -> Option<Violation> {
    let (mut names, mut types) = (Vec::new(), Vec::new());
    for v in pod.spec["volumes"].as_array().into_iter().flatten() {
        let source: Vec<&String> = v.as_object().into_iter().flatten().map(|(k, _)| k).filter(|k| *k != "name").collect();
        if source.iter().any(|k| ALLOWED_VOLUMES.contains(&k.as_str())) {
            continue;
        }
        names.push(name(v));
        types.extend(source.into_iter().cloned());
        if v.as_object().is_some_and(|m| m.len() <= 1) {
            types.push("unknown".into());
        }
    }
    if names.is_empty() {
        return None;
    }
    let types = sorted(types);
    let detail = format!(
        "{} {} {} {} {}",
        pluralize("volume", "volumes", names.len()),
        join_quote(&names),
        pluralize("uses", "use", names.len()),
        pluralize("restricted volume type", "restricted volume types", types.len()),
        join_quote(&types)
    );
    Violation::new("restricted volume types", detail)
}

pub fn run_as_non_root(pod: &PodView<'_>, _: &Policy) -> Option<Violation> {
    let pod_value = &pod.security_context()["runAsNonRoot"];
    let pod_bad = *pod_value == false;
    let pod_ok = *pod_value == true;
    let (mut explicit, mut implicit) = (Vec::new(), Vec::new());
    for c in pod.containers() {
        match c["securityContext"]["runAsNonRoot"].as_bool() {
            Some(false) => explicit.push(name(c)),
            Some(true) => {}
            None if !pod_ok => implicit.push(name(c)),
            None => {}
        }
    }
    if pod_bad || !explicit.is_empty() {
        return Violation::new(
            "runAsNonRoot != true",
            format!("{} must not set securityContext.runAsNonRoot=false", setters(pod_bad, &explicit)),
        );
    }
    if !implicit.is_empty() {
        return Violation::new(
            "runAsNonRoot != true",
            format!("pod or {} must set securityContext.runAsNonRoot=true", containers_phrase(&implicit)),
        );
    }
    None
}

pub fn run_as_user(pod: &PodView<'_>, policy: &Policy) -> Option<Violation> {
    if !policy.has(23) {
        return None;
    }
    let root = |sc: &Value| sc["runAsUser"] == 0;
    let pod_root = root(pod.security_context());
    let containers: Vec<String> = pod.containers().filter(|c| root(&c["securityContext"])).map(name).collect();
    if !pod_root && containers.is_empty() {
        return None;
    }
    Violation::new("runAsUser=0", format!("{} must not set runAsUser=0", setters(pod_root, &containers)))
}

pub fn seccomp(pod: &PodView<'_>, policy: &Policy) -> Option<Violation> {
    if !policy.has(19) || skips_windows(pod, policy) {
        return None;
    }
    if let Some(explicit) = explicit_bad_seccomp(pod) {
        return Some(explicit);
    }
    let pod_set = valid_seccomp(&pod.security_context()["seccompProfile"]["type"]);
    let implicit: Vec<String> =
        pod.containers().filter(|c| !pod_set && !c["securityContext"]["seccompProfile"].is_object()).map(name).collect();
    if implicit.is_empty() {
        return None;
    }
    Violation::new(
        "seccompProfile",
        format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            containers_phrase(&implicit)
        ),
    )
}
