//! The OCI runtime spec of a container: containerd's default Linux spec (namespaces, the
//! standard mounts, default capabilities, masked and read-only paths, rlimits) with the
//! container's process, image config, mounts, security settings, cgroup and namespaces applied.

use serde_json::{json, Value};

use super::images::manifest::RunConfig;
use super::ContainerConfig;

/// containerd's and Docker's default capabilities.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability runc knows (for privileged containers and `add: [ALL]`).
const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn cap_name(c: &str) -> String {
    let upper = c.to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// The capability set after `add` and `drop`, as containerd's CRI plugin applies them: `ALL`
/// in add, then `ALL` in drop, then the single additions, then the single drops.
pub fn capabilities(config: &ContainerConfig) -> Vec<String> {
    let all = || ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    if config.privileged {
        return all();
    }
    let caps = &config.capabilities;
    let is_all = |c: &String| c.eq_ignore_ascii_case("ALL");
    let mut set: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    if caps.add.iter().any(is_all) {
        set = all();
    }
    if caps.drop.iter().any(is_all) {
        set.clear();
    }
    for c in caps.add.iter().filter(|c| !is_all(c)).map(|c| cap_name(c)) {
        if !set.contains(&c) {
            set.push(c);
        }
    }
    let dropped: Vec<String> = caps.drop.iter().map(|c| cap_name(c)).collect();
    set.retain(|c| !dropped.contains(c));
    set
}

/// The process's argv: Kubernetes `command` replaces the image's entrypoint (and drops its
/// cmd), `args` replaces the cmd.
pub fn argv(config: &ContainerConfig, image: &RunConfig) -> Vec<String> {
    let entrypoint = image.entrypoint.clone().unwrap_or_default();
    let cmd = image.cmd.clone().unwrap_or_default();
    match (config.command.is_empty(), config.args.is_empty()) {
        (false, _) => config.command.iter().chain(&config.args).cloned().collect(),
        (true, false) => entrypoint.into_iter().chain(config.args.iter().cloned()).collect(),
        (true, true) => entrypoint.into_iter().chain(cmd).collect(),
    }
}

/// The image's environment with the container's on top (same names replaced in place).
pub fn environment(config: &ContainerConfig, image: &RunConfig) -> Vec<String> {
    let mut env: Vec<String> = image.env.clone().unwrap_or_else(|| vec![DEFAULT_PATH.to_string()]);
    for (k, v) in &config.env {
        let entry = format!("{k}={v}");
        match env.iter_mut().find(|e| e.split_once('=').map(|(n, _)| n) == Some(k.as_str())) {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
    }
    env
}

/// uid and gid: the container's, else the image's numeric `User` (`uid[:gid]`), else root.
fn user(config: &ContainerConfig, image: &RunConfig) -> (u32, u32) {
    let (image_uid, image_gid) = match image.user.as_deref().filter(|u| !u.is_empty()) {
        Some(u) => {
            let (uid, gid) = u.split_once(':').map(|(a, b)| (a, Some(b))).unwrap_or((u, None));
            (uid.parse().unwrap_or(0), gid.and_then(|g| g.parse().ok()))
        }
        None => (0, None),
    };
    let uid = config.run_as_user.unwrap_or(image_uid);
    (uid, config.run_as_group.or(image_gid).unwrap_or(0))
}

fn default_mounts(read_only_sys: bool) -> Vec<Value> {
    let sys_opts = if read_only_sys { vec!["nosuid", "noexec", "nodev", "ro"] } else { vec!["nosuid", "noexec", "nodev", "rw"] };
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts}),
    ]
}

/// The full runtime spec of `config` run from an image whose run config is `image`.
pub fn runtime_spec(config: &ContainerConfig, image: &RunConfig) -> Value {
    let (uid, gid) = user(config, image);
    let caps = capabilities(config);
    let cwd = config.working_dir.clone().or_else(|| image.working_dir.clone()).filter(|d| !d.is_empty()).unwrap_or_else(|| "/".into());
    let mut mounts = default_mounts(!config.privileged);
    for m in &config.mounts {
        let mode = if m.read_only { "ro" } else { "rw" };
        mounts
            .push(json!({"destination": m.container_path, "type": "bind", "source": m.host_path, "options": ["rbind", "rprivate", mode]}));
    }
    let mut namespaces = vec![json!({"type": "pid"}), json!({"type": "ipc"}), json!({"type": "mount"})];
    match &config.netns_path {
        Some(path) => {
            namespaces.push(json!({"type": "network", "path": path}));
            namespaces.push(json!({"type": "uts"}));
        }
        None => {}
    }
    let mut resources = json!({"devices": [{"allow": config.privileged, "access": "rwm"}]});
    let r = &config.resources;
    let mut cpu = serde_json::Map::new();
    if let Some(s) = r.cpu_shares {
        cpu.insert("shares".into(), json!(s));
    }
    if let Some(q) = r.cpu_quota_us {
        cpu.insert("quota".into(), json!(q));
    }
    if let Some(p) = r.cpu_period_us {
        cpu.insert("period".into(), json!(p));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(m) = r.memory_limit_bytes {
        resources["memory"] = json!({"limit": m});
    }
    let cgroups_path = format!("{}/{}", config.cgroup_parent.trim_end_matches('/'), config.id);
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": cgroups_path,
    });
    if !config.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    let mut spec = json!({
        "ociVersion": "1.0.2-dev",
        "root": {"path": "rootfs", "readonly": config.read_only_root_filesystem},
        "process": {
            "terminal": config.tty,
            "user": {"uid": uid, "gid": gid, "additionalGids": config.supplemental_groups},
            "args": argv(config, image),
            "env": environment(config, image),
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": config.no_new_privileges && !config.privileged,
        },
        "mounts": mounts,
        "linux": linux,
    });
    if config.netns_path.is_some() && !config.hostname.is_empty() {
        spec["hostname"] = json!(config.hostname);
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::runtime::{BindMount, Capabilities, Resources};

    fn image() -> RunConfig {
        RunConfig {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["serve".into()]),
            env: Some(vec!["PATH=/bin".into(), "A=image".into()]),
            user: Some("1000:2000".into()),
            working_dir: Some("/app".into()),
        }
    }

    #[test]
    fn command_and_args_override_the_image_like_kubernetes() {
        let mut c = ContainerConfig::default();
        assert_eq!(argv(&c, &image()), ["/entry", "serve"]);
        c.args = vec!["x".into()];
        assert_eq!(argv(&c, &image()), ["/entry", "x"]);
        c.command = vec!["/bin/sh".into()];
        assert_eq!(argv(&c, &image()), ["/bin/sh", "x"]);
        c.args.clear();
        assert_eq!(argv(&c, &image()), ["/bin/sh"]);
    }

    #[test]
    fn the_spec_carries_the_container_settings() {
        let c = ContainerConfig {
            id: "c1".into(),
            env: vec![("A".into(), "pod".into()), ("B".into(), "b".into())],
            mounts: vec![BindMount { host_path: "/h".into(), container_path: "/data".into(), read_only: true }],
            run_as_user: Some(7),
            capabilities: Capabilities { add: vec!["NET_ADMIN".into()], drop: vec!["CAP_KILL".into()] },
            resources: Resources { memory_limit_bytes: Some(1 << 20), cpu_shares: Some(512), ..Default::default() },
            cgroup_parent: "/orch/podx/".into(),
            netns_path: Some("/var/run/netns/p".into()),
            hostname: "web-0".into(),
            read_only_root_filesystem: true,
            no_new_privileges: true,
            ..Default::default()
        };
        let s = runtime_spec(&c, &image());
        assert_eq!(s["process"]["env"], json!(["PATH=/bin", "A=pod", "B=b"]));
        assert_eq!(s["process"]["user"]["uid"], 7);
        assert_eq!(s["process"]["user"]["gid"], 2000);
        assert_eq!(s["process"]["cwd"], "/app");
        assert_eq!(s["process"]["noNewPrivileges"], true);
        let caps = s["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert!(caps.contains(&json!("CAP_NET_ADMIN")) && !caps.contains(&json!("CAP_KILL")));
        assert_eq!(s["linux"]["cgroupsPath"], "/orch/podx/c1");
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 1 << 20);
        assert_eq!(s["linux"]["resources"]["cpu"]["shares"], 512);
        assert!(s["linux"]["namespaces"].as_array().unwrap().contains(&json!({"type": "network", "path": "/var/run/netns/p"})));
        assert_eq!(s["hostname"], "web-0");
        assert_eq!(s["root"]["readonly"], true);
        assert!(s["mounts"].as_array().unwrap().iter().any(|m| m["destination"] == "/data" && m["options"][2] == "ro"));
        assert!(s["linux"]["maskedPaths"].as_array().unwrap().contains(&json!("/proc/kcore")));
    }

    #[test]
    fn privileged_and_host_network_containers() {
        let c = ContainerConfig {
            id: "p".into(),
            privileged: true,
            capabilities: Capabilities { drop: vec!["ALL".into()], add: vec![] },
            ..Default::default()
        };
        let s = runtime_spec(&c, &RunConfig::default());
        assert_eq!(s["process"]["capabilities"]["bounding"].as_array().unwrap().len(), ALL_CAPABILITIES.len());
        assert!(s["linux"].get("maskedPaths").is_none());
        assert!(!s["linux"]["namespaces"].as_array().unwrap().iter().any(|n| n["type"] == "network"));
        assert!(s.get("hostname").is_none());
        assert_eq!(s["process"]["env"], json!([DEFAULT_PATH]));
        let c =
            ContainerConfig { capabilities: Capabilities { drop: vec!["all".into()], add: vec!["chown".into()] }, ..Default::default() };
        assert_eq!(capabilities(&c), ["CAP_CHOWN"]);
    }
}
