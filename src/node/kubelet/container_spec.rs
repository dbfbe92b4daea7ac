//! From a pod's container to the runtime's [`ContainerConfig`]: command and args (with `$(VAR)`
//! expansion), environment, working dir, mounts (volumes, the pod's hosts/resolv.conf/hostname
//! files, the termination log), the security context (pod defaults under container settings),
//! and resources as cgroup limits the way the kubelet converts them.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::env::expand;
use crate::k8s::quantity::{milli_value, value};
use crate::node::runtime::{BindMount, Capabilities, ContainerConfig, Resources};

/// CFS period the kubelet uses.
const CPU_PERIOD_US: u64 = 100_000;
/// Smallest cpu.shares value (cgroup v1 minimum).
const MIN_SHARES: u64 = 2;

/// The cgroup all of a pod's containers live under.
pub fn pod_cgroup(uid: &str) -> String {
    format!("/orch/pod{}", uid.replace('-', "_"))
}

/// cgroup settings from a container's requests and limits.
pub fn resources(container: &Container) -> Resources {
    let res = container.resources.clone().unwrap_or_default();
    let limits = res.limits.unwrap_or_default();
    let requests = res.requests.unwrap_or_default();
    let cpu_limit = limits.get("cpu").and_then(milli_value).filter(|m| *m > 0);
    let cpu_request = requests.get("cpu").and_then(milli_value).or(cpu_limit);
    Resources {
        cpu_shares: Some(cpu_request.map(|m| (m as u64 * 1024 / 1000).max(MIN_SHARES)).unwrap_or(MIN_SHARES)),
        cpu_quota_us: cpu_limit.map(|m| (m * CPU_PERIOD_US as i64 / 1000).max(1000)),
        cpu_period_us: cpu_limit.map(|_| CPU_PERIOD_US),
        memory_limit_bytes: limits.get("memory").and_then(value).filter(|b| *b > 0),
    }
}

/// Where the pod's network and files are.
pub struct PodSandbox<'a> {
    /// The pod's network namespace; `None` for the host's network.
    pub netns: Option<PathBuf>,
    pub hostname: String,
    /// Directory with `hosts`, `resolv.conf` and `hostname`.
    pub etc_dir: &'a Path,
}

/// Everything a container needs that is decided per run.
pub struct RunInfo {
    pub id: String,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<BindMount>,
    pub termination_log: PathBuf,
    pub labels: std::collections::BTreeMap<String, String>,
    pub log_path: PathBuf,
}

/// The runtime config of `container` of `pod`.
pub fn config(pod: &Pod, container: &Container, sandbox: &PodSandbox<'_>, run: RunInfo) -> ContainerConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let pod_sc = spec.security_context.clone().unwrap_or_default();
    let sc = container.security_context.clone().unwrap_or_default();
    let vars = run.env.iter().cloned().collect();
    let expand_all = |v: &Option<Vec<String>>| v.iter().flatten().map(|s| expand(s, &vars)).collect::<Vec<_>>();
    let mut mounts = run.mounts;
    let has = |mounts: &[BindMount], path: &str| mounts.iter().any(|m| m.container_path == path);
    for (file, target) in [("hosts", "/etc/hosts"), ("resolv.conf", "/etc/resolv.conf"), ("hostname", "/etc/hostname")] {
        if !has(&mounts, target) {
            mounts.push(BindMount { host_path: sandbox.etc_dir.join(file), container_path: target.into(), read_only: false });
        }
    }
    let message_path = container.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into());
    if !has(&mounts, &message_path) {
        mounts.push(BindMount { host_path: run.termination_log, container_path: message_path, read_only: false });
    }
    let caps = sc.capabilities.clone().unwrap_or_default();
    ContainerConfig {
        id: run.id,
        image: container.image.clone().unwrap_or_default(),
        command: expand_all(&container.command),
        args: expand_all(&container.args),
        env: run.env,
        working_dir: container.working_dir.clone().filter(|d| !d.is_empty()),
        mounts,
        run_as_user: sc.run_as_user.or(pod_sc.run_as_user).and_then(|u| u32::try_from(u).ok()),
        run_as_group: sc.run_as_group.or(pod_sc.run_as_group).and_then(|g| u32::try_from(g).ok()),
        supplemental_groups: pod_sc.supplemental_groups.iter().flatten().filter_map(|g| u32::try_from(*g).ok()).collect(),
        capabilities: Capabilities { add: caps.add.unwrap_or_default(), drop: caps.drop.unwrap_or_default() },
        privileged: sc.privileged.unwrap_or(false),
        read_only_root_filesystem: sc.read_only_root_filesystem.unwrap_or(false),
        no_new_privileges: sc.allow_privilege_escalation == Some(false),
        resources: resources(container),
        cgroup_parent: pod_cgroup(pod.metadata.uid.as_deref().unwrap_or_default()),
        netns_path: sandbox.netns.clone(),
        hostname: sandbox.hostname.clone(),
        labels: run.labels,
        log_path: run.log_path,
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_container_becomes_a_runtime_config() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "uid": "ab-cd"},
            "spec": {
                "securityContext": {"runAsUser": 1000, "supplementalGroups": [5]},
                "containers": [{
                    "name": "c", "image": "busybox", "command": ["sh", "-c"], "args": ["echo $(GREETING) $$HOME"],
                    "workingDir": "/tmp",
                    "securityContext": {"runAsUser": 7, "allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_ADMIN"]}},
                    "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}
                }]
            }
        }))
        .unwrap();
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let etc = Path::new("/pods/u/etc");
        let sandbox = PodSandbox { netns: Some("/run/orch/netns/u".into()), hostname: "p".into(), etc_dir: etc };
        let run = RunInfo {
            id: "id1".into(),
            env: vec![("GREETING".into(), "hi".into())],
            mounts: vec![],
            termination_log: "/pods/u/tl".into(),
            labels: Default::default(),
            log_path: "/logs/0.log".into(),
        };
        let cfg = config(&pod, c, &sandbox, run);
        assert_eq!(cfg.command, ["sh", "-c"]);
        assert_eq!(cfg.args, ["echo hi $HOME"]);
        assert_eq!((cfg.run_as_user, cfg.supplemental_groups.as_slice()), (Some(7), &[5u32][..]));
        assert!(cfg.no_new_privileges);
        assert_eq!(cfg.capabilities.add, ["NET_ADMIN"]);
        assert_eq!(
            cfg.resources,
            Resources {
                cpu_shares: Some(256),
                cpu_quota_us: Some(50_000),
                cpu_period_us: Some(100_000),
                memory_limit_bytes: Some(64 << 20)
            }
        );
        assert_eq!(cfg.cgroup_parent, "/orch/podab_cd");
        let targets: Vec<&str> = cfg.mounts.iter().map(|m| m.container_path.as_str()).collect();
        assert_eq!(targets, ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/dev/termination-log"]);
        assert_eq!(cfg.working_dir.as_deref(), Some("/tmp"));
    }
}
