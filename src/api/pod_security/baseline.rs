//! The baseline level's checks (Pod Security Standards), each with kube's reason and detail:
//! AppArmor, capabilities beyond the default set, host namespaces, hostPath volumes, host
//! ports, privileged, procMount, SELinux options, seccomp, sysctls and Windows host processes.

use serde_json::Value;

use super::policy::Policy;
use super::view::{containers_phrase, join_quote, name, pluralize, setters, sorted, PodView, Violation};

const APPARMOR_ANNOTATION: &str = "container.apparmor.security.beta.kubernetes.io/";

fn allowed_apparmor_annotation(v: &str) -> bool {
    v.is_empty() || v == "runtime/default" || v.starts_with("localhost/")
}

pub fn app_armor(pod: &PodView<'_>, policy: &Policy) -> Option<Violation> {
    let mut bad: Vec<String> = pod.meta["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| k.starts_with(APPARMOR_ANNOTATION) && !allowed_apparmor_annotation(v.as_str().unwrap_or("")))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if policy.has(30) {
        let unconfined = |sc: &Value| sc["appArmorProfile"]["type"] == "Unconfined";
        if unconfined(pod.security_context()) {
            bad.push("pod=\"Unconfined\"".into());
        }
        for c in pod.containers().filter(|c| unconfined(&c["securityContext"])) {
            bad.push(format!("container {:?}=\"Unconfined\"", name(c)));
        }
    }
    let bad = sorted(bad);
    if bad.is_empty() {
        return None;
    }
    Violation::new(pluralize("forbidden AppArmor profile", "forbidden AppArmor profiles", bad.len()), bad.join(", "))
}

const DEFAULT_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// The capabilities a container adds.
pub fn added_capabilities(c: &Value) -> impl Iterator<Item = &str> {
    c["securityContext"]["capabilities"]["add"].as_array().into_iter().flatten().filter_map(Value::as_str)
}

pub fn capabilities(pod: &PodView<'_>, _: &Policy) -> Option<Violation> {
    let (mut containers, mut caps) = (Vec::new(), Vec::new());
    for c in pod.containers() {
        let bad: Vec<String> = added_capabilities(c).filter(|cap| !DEFAULT_CAPABILITIES.contains(cap)).map(String::from).collect();
        if !bad.is_empty() {
            containers.push(name(c));
            caps.extend(bad);
        }
    }
    if containers.is_empty() {
        return None;
    }
    let detail =
        format!("{} must not include {} in securityContext.capabilities.add", containers_phrase(&containers), join_quote(&sorted(caps)));
    Violation::new("non-default capabilities", detail)
}

pub fn host_namespaces(pod: &PodView<'_>, _: &Policy) -> Option<Violation> {
    let set: Vec<String> =
        ["hostIPC", "hostNetwork", "hostPID"].iter().filter(|f| pod.spec[**f] == true).map(|f| format!("{f}=true")).collect();
    if set.is_empty() {
        return None;
    }
    Violation::new("host namespaces", set.join(", "))
}

pub fn host_path_volumes(pod: &PodView<'_>, _: &Policy) -> Option<Violation> {
    let names: Vec<String> = pod.spec["volumes"].as_array().into_iter().flatten().filter(|v| v["hostPath"].is_object()).map(name).collect();
    if names.is_empty() {
        return None;
    }
    Violation::new("hostPath volumes", format!("{} {}", pluralize("volume", "volumes", names.len()), join_quote(&names)))
}

pub fn host_ports(pod: &PodView<'_>, _: &Policy) -> Option<Violation> {
    let (mut containers, mut ports) = (Vec::new(), Vec::new());
    for c in pod.containers() {
        let used: Vec<String> = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["hostPort"].as_i64())
            .filter(|p| *p != 0)
            .map(|p| p.to_string())
            .collect();
        if !used.is_empty() {
            containers.push(name(c));
            ports.extend(used);
        }
    }
    if containers.is_empty() {
        return None;
    }
    let ports = sorted(ports);
    let detail = format!(
        "{} {} {} {}",
        containers_phrase(&containers),
        pluralize("uses", "use", containers.len()),
        pluralize("hostPort", "hostPorts", ports.len()),
        ports.join(", ")
    );
    Violation::new("hostPort", detail)
}

pub fn privileged(pod: &PodView<'_>, _: &Policy) -> Option<Violation> {
    let names: Vec<String> = pod.containers().filter(|c| c["securityContext"]["privileged"] == true).map(name).collect();
    if names.is_empty() {
        return None;
    }
    Violation::new("privileged", format!("{} must not set securityContext.privileged=true", containers_phrase(&names)))
}

pub fn proc_mount(pod: &PodView<'_>, _: &Policy) -> Option<Violation> {
    let (mut containers, mut types) = (Vec::new(), Vec::new());
    for c in pod.containers() {
        if let Some(t) = c["securityContext"]["procMount"].as_str().filter(|t| *t != "Default") {
            containers.push(name(c));
            types.push(t.to_string());
        }
    }
    if containers.is_empty() {
        return None;
    }
    let detail = format!("{} must not set securityContext.procMount to {}", containers_phrase(&containers), join_quote(&sorted(types)));
    Violation::new("procMount", detail)
}

pub fn se_linux(pod: &PodView<'_>, _: &Policy) -> Option<Violation> {
    let (mut types, mut user, mut role) = (Vec::new(), false, false);
    let mut bad = |sc: &Value| -> bool {
        let opts = &sc["seLinuxOptions"];
        if !opts.is_object() {
            return false;
        }
        let t = opts["type"].as_str().unwrap_or("");
        let mut ok = true;
        if !matches!(t, "" | "container_t" | "container_init_t" | "container_kvm_t") {
            types.push(t.to_string());
            ok = false;
        }
        if opts["user"].as_str().is_some_and(|u| !u.is_empty()) {
            user = true;
            ok = false;
        }
        if opts["role"].as_str().is_some_and(|r| !r.is_empty()) {
            role = true;
            ok = false;
        }
        !ok
    };
    let pod_bad = bad(pod.security_context());
    let containers: Vec<String> = pod.containers().filter(|c| bad(&c["securityContext"])).map(name).collect();
    if !pod_bad && containers.is_empty() {
        return None;
    }
    let types = sorted(types);
    let mut data = Vec::new();
    if !types.is_empty() {
        data.push(format!("{} {}", pluralize("type", "types", types.len()), join_quote(&types)));
    }
    if user {
        data.push("user may not be set".to_string());
    }
    if role {
        data.push("role may not be set".to_string());
    }
    let detail = format!("{} set forbidden securityContext.seLinuxOptions: {}", setters(pod_bad, &containers), data.join("; "));
    Violation::new("seLinuxOptions", detail)
}

/// A seccomp profile type the baseline and restricted levels allow.
pub fn valid_seccomp(t: &Value) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

/// The explicit bad seccompProfile types (shared with the restricted check): who set them and
/// the message, if any.
pub fn explicit_bad_seccomp(pod: &PodView<'_>) -> Option<Violation> {
    let mut values = Vec::new();
    let mut bad = |sc: &Value| -> bool {
        let profile = &sc["seccompProfile"];
        if profile.is_object() && !valid_seccomp(&profile["type"]) {
            values.push(profile["type"].as_str().unwrap_or("").to_string());
            return true;
        }
        false
    };
    let pod_bad = bad(pod.security_context());
    let containers: Vec<String> = pod.containers().filter(|c| bad(&c["securityContext"])).map(name).collect();
    if !pod_bad && containers.is_empty() {
        return None;
    }
    let detail =
        format!("{} must not set securityContext.seccompProfile.type to {}", setters(pod_bad, &containers), join_quote(&sorted(values)));
    Violation::new("seccompProfile", detail)
}

pub fn seccomp(pod: &PodView<'_>, policy: &Policy) -> Option<Violation> {
    if !policy.has(19) {
        return None;
    }
    explicit_bad_seccomp(pod)
}

/// The sysctls the baseline level allows at a version.
fn allowed_sysctl(name: &str, policy: &Policy) -> bool {
    let since = match name {
        "kernel.shm_rmid_forced"
        | "net.ipv4.ip_local_port_range"
        | "net.ipv4.tcp_syncookies"
        | "net.ipv4.ping_group_range"
        | "net.ipv4.ip_unprivileged_port_start" => 0,
        "net.ipv4.ip_local_reserved_ports" => 27,
        "net.ipv4.tcp_keepalive_time" | "net.ipv4.tcp_fin_timeout" | "net.ipv4.tcp_keepalive_intvl" | "net.ipv4.tcp_keepalive_probes" => 29,
        "net.ipv4.tcp_rmem" | "net.ipv4.tcp_wmem" => 32,
        _ => return false,
    };
    policy.has(since)
}

pub fn sysctls(pod: &PodView<'_>, policy: &Policy) -> Option<Violation> {
    let bad: Vec<&str> = pod.security_context()["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .filter(|n| !allowed_sysctl(n, policy))
        .collect();
    if bad.is_empty() {
        return None;
    }
    Violation::new("forbidden sysctls", bad.join(", "))
}

pub fn windows_host_process(pod: &PodView<'_>, _: &Policy) -> Option<Violation> {
    let host_process = |sc: &Value| sc["windowsOptions"]["hostProcess"] == true;
    let pod_set = host_process(pod.security_context());
    let containers: Vec<String> = pod.containers().filter(|c| host_process(&c["securityContext"])).map(name).collect();
    if !pod_set && containers.is_empty() {
        return None;
    }
    Violation::new("hostProcess", format!("{} must not set securityContext.windowsOptions.hostProcess=true", setters(pod_set, &containers)))
}
