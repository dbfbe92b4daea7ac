//! Resource usage as the kernel counts it, read from files: a cgroup's cumulative CPU time and
//! memory (cgroup v2: `cpu.stat` `usage_usec`, `memory.current`, `memory.stat`; v1: `cpuacct.usage`,
//! `memory.usage_in_bytes`, `memory.stat`'s `total_*`), and the whole node's from `/proc/stat`
//! and `/proc/meminfo`. The roots are parameters so tests read a tree of their own.

use std::path::{Path, PathBuf};

/// Nanoseconds per USER_HZ tick of `/proc/stat` (USER_HZ is 100 on every Linux ABI).
const NANOS_PER_TICK: u64 = 10_000_000;

/// Memory of a cgroup or the node, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    pub usage: u64,
    /// Usage minus inactive file pages (never below zero).
    pub working_set: u64,
    /// Anonymous memory (and swap cache).
    pub rss: u64,
    /// For the node only: what could still be allocated.
    pub available: Option<u64>,
}

/// One reading of a cgroup or of the node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Cumulative CPU time, in nanoseconds.
    pub cpu_ns: Option<u64>,
    pub memory: Option<MemoryUsage>,
}

/// The cgroup file system (`/sys/fs/cgroup`), unified (v2) or split by controller (v1).
#[derive(Debug, Clone)]
pub struct CgroupFs {
    root: PathBuf,
    unified: bool,
}

impl CgroupFs {
    /// The host's, its version told by the presence of the unified `cgroup.controllers`.
    pub fn host() -> Self {
        Self::at(Path::new("/sys/fs/cgroup"))
    }

    pub fn at(root: &Path) -> Self {
        Self { root: root.to_path_buf(), unified: root.join("cgroup.controllers").exists() }
    }

    /// The usage of the cgroup at `path` (as runc's `cgroupsPath`, e.g. `/orch/pod<uid>/<id>`);
    /// figures that cannot be read are `None`.
    pub fn read(&self, path: &str) -> Usage {
        let rel = path.trim_start_matches('/');
        if self.unified {
            let dir = self.root.join(rel);
            let cpu_ns = read(&dir.join("cpu.stat")).and_then(|t| field(&t, "usage_usec")).map(|us| us * 1000);
            let memory = read(&dir.join("memory.current")).and_then(|t| t.trim().parse().ok()).map(|usage| {
                let stat = read(&dir.join("memory.stat")).unwrap_or_default();
                memory(usage, field(&stat, "inactive_file"), field(&stat, "anon"))
            });
            return Usage { cpu_ns, memory };
        }
        let cpu = ["cpuacct", "cpu,cpuacct", "cpuacct,cpu"].iter().map(|c| self.root.join(c).join(rel).join("cpuacct.usage"));
        let cpu_ns = cpu.into_iter().find_map(|f| read(&f)).and_then(|t| t.trim().parse().ok());
        let dir = self.root.join("memory").join(rel);
        let memory = read(&dir.join("memory.usage_in_bytes")).and_then(|t| t.trim().parse().ok()).map(|usage| {
            let stat = read(&dir.join("memory.stat")).unwrap_or_default();
            memory(usage, field(&stat, "total_inactive_file"), field(&stat, "total_rss"))
        });
        Usage { cpu_ns, memory }
    }
}

/// The node's usage from `<proc>/stat` (every CPU's time but idle and iowait) and
/// `<proc>/meminfo`.
pub fn node(proc: &Path) -> Usage {
    let cpu_ns = read(&proc.join("stat")).and_then(|t| {
        let line = t.lines().find(|l| l.starts_with("cpu "))?;
        let ticks: Vec<u64> = line.split_whitespace().skip(1).map_while(|v| v.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let busy: u64 = ticks.iter().take(8).enumerate().filter(|(i, _)| !matches!(i, 3 | 4)).map(|(_, v)| v).sum();
        Some(busy * NANOS_PER_TICK)
    });
    let memory = read(&proc.join("meminfo")).map(|t| {
        let kib = |name: &str| {
            t.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.split_whitespace().next()?.parse::<u64>().ok()).unwrap_or(0)
                * 1024
        };
        let usage = kib("MemTotal").saturating_sub(kib("MemFree"));
        MemoryUsage { available: Some(kib("MemAvailable")), ..memory(usage, Some(kib("Inactive(file)")), Some(kib("AnonPages"))) }
    });
    Usage { cpu_ns, memory }
}

fn memory(usage: u64, inactive_file: Option<u64>, rss: Option<u64>) -> MemoryUsage {
    MemoryUsage { usage, working_set: usage.saturating_sub(inactive_file.unwrap_or(0)), rss: rss.unwrap_or(0), available: None }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The value of `name` in a `key value` per line file (`cpu.stat`, `memory.stat`).
fn field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn cgroup_v2_usage() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "cgroup.controllers", "cpu memory pids\n");
        write(dir.path(), "orch/podx/c1/cpu.stat", "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n");
        write(dir.path(), "orch/podx/c1/memory.current", "10485760\n");
        write(dir.path(), "orch/podx/c1/memory.stat", "anon 4194304\nfile 6291456\nactive_file 2097152\ninactive_file 4194304\n");
        let usage = CgroupFs::at(dir.path()).read("/orch/podx/c1");
        assert_eq!(usage.cpu_ns, Some(2_500_000));
        let m = usage.memory.unwrap();
        assert_eq!((m.usage, m.working_set, m.rss), (10 << 20, 6 << 20, 4 << 20));
        assert_eq!(CgroupFs::at(dir.path()).read("/orch/gone"), Usage::default());
    }

    #[test]
    fn cgroup_v1_usage_takes_the_hierarchical_totals() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "cpu,cpuacct/orch/podx/cpuacct.usage", "123456789\n");
        write(dir.path(), "memory/orch/podx/memory.usage_in_bytes", "8388608\n");
        write(dir.path(), "memory/orch/podx/memory.stat", "inactive_file 0\nrss 0\ntotal_rss 1048576\ntotal_inactive_file 2097152\n");
        let usage = CgroupFs::at(dir.path()).read("/orch/podx");
        assert_eq!(usage.cpu_ns, Some(123_456_789));
        let m = usage.memory.unwrap();
        assert_eq!((m.usage, m.working_set, m.rss), (8 << 20, 6 << 20, 1 << 20));
    }

    #[test]
    fn node_usage_from_proc() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "stat", "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n");
        write(
            dir.path(),
            "meminfo",
            "MemTotal: 1000 kB\nMemFree: 200 kB\nMemAvailable: 600 kB\nAnonPages: 300 kB\nInactive(file): 100 kB\n",
        );
        let usage = node(dir.path());
        assert_eq!(usage.cpu_ns, Some(160 * NANOS_PER_TICK));
        let m = usage.memory.unwrap();
        assert_eq!((m.usage, m.working_set, m.rss, m.available), (800 * 1024, 700 * 1024, 300 * 1024, Some(600 * 1024)));
    }
}
