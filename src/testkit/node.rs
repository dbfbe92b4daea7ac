//! A real node's sandbox for root-only tests and benchmarks: a short temporary dir (containerd's
//! socket paths must stay short) and a network namespace of its own for the node's pod network
//! (`--netns`), so the machine's interfaces, routes and firewall are never touched. Dropping it
//! removes whatever a node under a data dir in it left behind — pod processes, containerd and
//! its shims, pod namespaces, mounts, cgroups — also when the caller failed half way.

use std::path::{Path, PathBuf};

use crate::net::netns::NetnsDir;

/// Why real containers cannot run here, if they cannot: they need root and the containerd, runc
/// and busybox binaries.
pub fn containers_unavailable() -> Option<String> {
    if !crate::host::is_root() {
        return Some("needs root (containerd, runc, network namespaces)".into());
    }
    [("containerd", "containerd"), ("runc", "runc"), ("busybox", "busybox-static")]
        .into_iter()
        .find(|(binary, _)| crate::node::runtime::supervisor::find_binary(binary).is_none())
        .map(|(binary, package)| format!("{binary} is missing (apt-get install {package})"))
}

/// A temporary dir for one node's data and a network namespace for its pod network.
pub struct NodeSandbox {
    dir: tempfile::TempDir,
    hosts: NetnsDir,
    netns_name: String,
}

impl NodeSandbox {
    /// Creates the dir (under /tmp, named `<prefix>…`) and the namespace.
    pub fn new(prefix: &str) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp")?;
        let hosts = NetnsDir::new(dir.path().join("hosts"));
        let netns_name = format!("{prefix}-{:08x}", rand::random::<u32>());
        hosts.create(&netns_name).map_err(std::io::Error::other)?;
        Ok(Self { dir, hosts, netns_name })
    }

    /// The temporary dir; node data dirs go below it.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The node's network namespace (the value of `--netns`).
    pub fn netns(&self) -> PathBuf {
        self.hosts.path_of(&self.netns_name)
    }
}

/// The cgroups (in every hierarchy) of the pods whose directory is under `agent/pods` of `data_dir`.
fn pod_cgroups(data_dir: &Path) -> Vec<PathBuf> {
    let hierarchies: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten().map(|e| e.path()).collect();
    let pods = std::fs::read_dir(data_dir.join("agent/pods")).into_iter().flatten().flatten();
    let names: Vec<String> = pods.map(|e| format!("pod{}", e.file_name().to_string_lossy().replace('-', "_"))).collect();
    hierarchies.iter().flat_map(|h| names.iter().map(move |n| h.join("orch").join(n))).filter(|p| p.is_dir()).collect()
}

/// The sub-cgroups (one per container) of `cgroup`.
fn children(cgroup: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(cgroup).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()
}

/// Pids in the pods' cgroups.
fn pod_processes(cgroups: &[PathBuf]) -> Vec<i32> {
    let procs = cgroups.iter().flat_map(|c| children(c)).map(|c| std::fs::read_to_string(c.join("cgroup.procs")).unwrap_or_default());
    procs.flat_map(|p| p.lines().filter_map(|l| l.trim().parse().ok()).collect::<Vec<i32>>()).collect()
}

/// Removes the pods' cgroups, waiting up to 2 s for their killed processes to exit.
fn remove_cgroups(cgroups: &[PathBuf]) {
    for _ in 0..20 {
        for c in cgroups {
            children(c).iter().for_each(|child| drop(std::fs::remove_dir(child)));
            let _ = std::fs::remove_dir(c);
        }
        if cgroups.iter().all(|c| !c.exists()) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Pids of processes whose command line mentions `marker`.
fn processes_mentioning(marker: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).unwrap_or_default()).contains(marker))
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect()
}

/// Unmounts everything mounted below `root` (rootfs of killed tasks, pod namespaces), deepest first.
fn unmount_below(root: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let root = root.display().to_string();
    let mut targets: Vec<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(4)).filter(|t| t.starts_with(&root)).collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        if let Ok(c) = std::ffi::CString::new(t) {
            // SAFETY: umount2 with a NUL-terminated path we own.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

impl Drop for NodeSandbox {
    fn drop(&mut self) {
        let data_dirs: Vec<PathBuf> = std::fs::read_dir(self.root()).into_iter().flatten().flatten().map(|e| e.path()).collect();
        for data_dir in data_dirs.iter().filter(|d| d.join("agent").is_dir()) {
            // containerd and its shims first (they would restart containers), then the pods.
            let marker = data_dir.join("agent/containerd").display().to_string();
            let cgroups = pod_cgroups(data_dir);
            for pid in processes_mentioning(&marker).into_iter().chain(pod_processes(&cgroups)) {
                // SAFETY: kill(2) has no memory-safety preconditions; these are this node's processes.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            remove_cgroups(&cgroups);
            let pods = NetnsDir::new(data_dir.join("agent/netns"));
            for name in pods.list().unwrap_or_default() {
                let _ = pods.remove(&name);
            }
        }
        let _ = self.hosts.remove(&self.netns_name);
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let _ = std::fs::remove_dir(hierarchy.path().join("orch"));
        }
        unmount_below(self.root());
    }
}
