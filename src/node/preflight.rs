//! What a node needs from its machine, checked before anything starts (k3s's `check-config`):
//! cgroup controllers, kernel modules and filesystems, containerd and runc, IP forwarding,
//! swap and free disk. Each finding says what is wrong and how to fix it; the fatal ones stop
//! `orch server`/`orch agent` at start with one line each. The machine is read through a
//! [`Machine`] root, so tests run the checks against a fake `/proc` and `/sys`.

use std::path::{Path, PathBuf};

use super::runtime::supervisor::{is_executable, search_dirs};

/// How bad a failed check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// A node on containerd cannot work without it.
    Fatal,
    /// Something works worse or a feature is missing.
    Warning,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: String,
    /// `None` when it passed; else how bad and what to do.
    pub problem: Option<(Severity, String)>,
    /// What was found (shown for passed checks too).
    pub detail: String,
}

impl Finding {
    fn pass(check: &str, detail: impl Into<String>) -> Self {
        Self { check: check.into(), problem: None, detail: detail.into() }
    }

    fn fail(check: &str, severity: Severity, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { check: check.into(), problem: Some((severity, fix.into())), detail: detail.into() }
    }

    pub fn is_fatal(&self) -> bool {
        matches!(self.problem, Some((Severity::Fatal, _)))
    }
}

/// Where the machine's facts are read: `/` on a real machine.
pub struct Machine {
    pub root: PathBuf,
    /// `PATH`, to find programs.
    pub path: String,
    /// The data dir, for the free-disk check.
    pub data_dir: PathBuf,
}

/// Free space below which the data dir is a warning, and below which it is fatal.
const LOW_DISK: u64 = 2 << 30;
const NO_DISK: u64 = 256 << 20;

impl Machine {
    /// This machine, with `data_dir` as orch's data dir.
    pub fn local(data_dir: &Path) -> Self {
        Self { root: PathBuf::from("/"), path: std::env::var("PATH").unwrap_or_default(), data_dir: data_dir.to_path_buf() }
    }

    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(path.trim_start_matches('/'))).ok()
    }

    fn exists(&self, path: &str) -> bool {
        self.root.join(path.trim_start_matches('/')).exists()
    }

    /// Every check, in the order `orch check-config` prints them.
    pub fn check(&self) -> Vec<Finding> {
        let mut out = vec![self.cgroups()];
        out.push(self.filesystem("overlay", Severity::Fatal, "containerd's overlayfs snapshotter"));
        out.push(self.module("vxlan", Severity::Warning, "the VXLAN overlay (--flannel-backend=vxlan, the default)"));
        out.push(self.module("nf_tables", Severity::Warning, "NAT for pods, hostPorts and Services"));
        out.push(self.module("br_netfilter", Severity::Warning, "filtering of bridged pod traffic"));
        out.push(self.module("wireguard", Severity::Warning, "--flannel-backend=wireguard-native"));
        for (program, package) in [("containerd", "containerd"), ("runc", "runc"), ("containerd-shim-runc-v2", "containerd")] {
            out.push(self.program(program, package));
        }
        out.push(self.ip_forward());
        out.push(self.swap());
        out.push(self.disk());
        out
    }

    /// The fatal subset of [`Machine::check`], for the start of a node on containerd.
    pub fn fatal(&self) -> Vec<Finding> {
        self.check().into_iter().filter(Finding::is_fatal).collect()
    }

    fn cgroups(&self) -> Finding {
        const NEEDED: [&str; 3] = ["cpu", "memory", "pids"];
        let (version, enabled): (&str, Vec<String>) = match self.read("/sys/fs/cgroup/cgroup.controllers") {
            Some(list) => ("v2", list.split_whitespace().map(String::from).collect()),
            None => match self.read("/proc/cgroups") {
                // v1: `#subsys_name hierarchy num_cgroups enabled`.
                Some(table) => (
                    "v1",
                    table
                        .lines()
                        .filter(|l| !l.starts_with('#'))
                        .filter_map(|l| {
                            let f: Vec<&str> = l.split_whitespace().collect();
                            (f.len() == 4 && f[3] == "1").then(|| f[0].to_string())
                        })
                        .collect(),
                ),
                None => return Finding::fail("cgroups", Severity::Fatal, "no cgroup filesystem found", "mount cgroup2 on /sys/fs/cgroup"),
            },
        };
        let missing: Vec<&str> = NEEDED.iter().copied().filter(|c| !enabled.iter().any(|e| e == c)).collect();
        if missing.is_empty() {
            return Finding::pass("cgroups", format!("{version}: {}", NEEDED.join(", ")));
        }
        let fix = if self.read("/proc/device-tree/model").is_some_and(|m| m.contains("Raspberry Pi")) {
            "add `cgroup_memory=1 cgroup_enable=memory` to the kernel command line (/boot/firmware/cmdline.txt, or /boot/cmdline.txt on older Raspberry Pi OS) and reboot".to_string()
        } else {
            format!("enable the {} cgroup controller(s) (kernel command line `cgroup_enable=memory` or your distribution's cgroup settings) and reboot", missing.join(", "))
        };
        Finding::fail("cgroups", Severity::Fatal, format!("{version}: {} missing", missing.join(", ")), fix)
    }

    fn kernel_release(&self) -> Option<String> {
        self.read("/proc/sys/kernel/osrelease").map(|r| r.trim().to_string())
    }

    /// Whether module `name` is loaded, built in or loadable; `None` when this cannot be
    /// told (no module lists for the running kernel, e.g. in a container).
    fn module_state(&self, name: &str) -> Option<&'static str> {
        if self.exists(&format!("/sys/module/{name}")) {
            return Some("loaded");
        }
        let dir = format!("/lib/modules/{}", self.kernel_release()?);
        let listed = |file: &str| {
            self.read(&format!("{dir}/{file}")).map(|text| {
                text.lines().any(|l| {
                    let path = l.split(':').next().unwrap_or_default();
                    let base = path.rsplit('/').next().unwrap_or_default();
                    base.split('.').next() == Some(name) || base.split('.').next() == Some(&name.replace('_', "-"))
                })
            })
        };
        match (listed("modules.builtin"), listed("modules.dep")) {
            (Some(true), _) => Some("built in"),
            (_, Some(true)) => Some("loadable"),
            (Some(false), Some(false)) => Some("missing"),
            _ => None,
        }
    }

    fn module(&self, name: &str, severity: Severity, used_for: &str) -> Finding {
        let check = format!("kernel module {name}");
        match self.module_state(name) {
            Some("missing") => Finding::fail(
                &check,
                severity,
                format!("not in this kernel; needed for {used_for}"),
                format!(
                    "install your distribution's kernel modules package (e.g. linux-modules-extra-$(uname -r)) so `modprobe {name}` works"
                ),
            ),
            Some(state) => Finding::pass(&check, state),
            None => Finding::pass(&check, "cannot tell (no module lists for this kernel); orch reports it at start if it is missing"),
        }
    }

    fn filesystem(&self, name: &str, severity: Severity, used_for: &str) -> Finding {
        let check = format!("filesystem {name}");
        let registered = self.read("/proc/filesystems").is_some_and(|t| t.lines().any(|l| l.split_whitespace().last() == Some(name)));
        match (registered, self.module_state(name)) {
            (true, _) => Finding::pass(&check, "available"),
            (false, Some("loadable")) => Finding::pass(&check, "loadable"),
            (false, Some("missing")) => Finding::fail(
                &check,
                severity,
                format!("not in this kernel; needed for {used_for}"),
                format!("use a kernel with {name} support"),
            ),
            (false, _) => {
                Finding::fail(&check, Severity::Warning, format!("not registered; needed for {used_for}"), format!("run `modprobe {name}`"))
            }
        }
    }

    fn program(&self, name: &str, package: &str) -> Finding {
        let check = format!("program {name}");
        // Where the node itself will look (`runtime::supervisor::find_binary`), below the root.
        let found = search_dirs(self.path.as_ref())
            .into_iter()
            .map(|d| d.join(name))
            .find(|p| is_executable(&self.root.join(p.strip_prefix("/").unwrap_or(p))));
        match found {
            Some(p) => Finding::pass(&check, p.display().to_string()),
            None => Finding::fail(
                &check,
                Severity::Fatal,
                "not found in PATH",
                format!("install the {package} package (apt install {package})"),
            ),
        }
    }

    fn ip_forward(&self) -> Finding {
        match self.read("/proc/sys/net/ipv4/ip_forward").as_deref().map(str::trim) {
            Some("1") => Finding::pass("IPv4 forwarding", "on"),
            _ => Finding::pass("IPv4 forwarding", "off now; orch turns it on when it sets up the pod network"),
        }
    }

    fn swap(&self) -> Finding {
        let devices = self.read("/proc/swaps").map(|t| t.lines().skip(1).filter(|l| !l.trim().is_empty()).count()).unwrap_or(0);
        if devices == 0 {
            Finding::pass("swap", "off")
        } else {
            Finding::fail(
                "swap",
                Severity::Warning,
                format!("{devices} swap device(s) on"),
                "memory limits of pods are not exact with swap on; `swapoff -a` (and remove swap from /etc/fstab) if that matters",
            )
        }
    }

    fn disk(&self) -> Finding {
        let mut dir = self.data_dir.as_path();
        while !dir.exists() {
            match dir.parent() {
                Some(p) => dir = p,
                None => break,
            }
        }
        let Some(free) = free_bytes(dir) else {
            return Finding::pass("free disk", format!("cannot tell for {}", self.data_dir.display()));
        };
        let detail = format!("{} MiB free for {}", free >> 20, self.data_dir.display());
        if free < NO_DISK {
            Finding::fail("free disk", Severity::Fatal, detail, "free space on that filesystem or choose another --data-dir")
        } else if free < LOW_DISK {
            Finding::fail("free disk", Severity::Warning, detail, "images and logs need room: free space or choose another --data-dir")
        } else {
            Finding::pass("free disk", detail)
        }
    }
}

/// Bytes available to unprivileged users on the filesystem of `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stat` a writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake machine root with `files` (path → content) and executables `programs` in /usr/bin.
    fn machine(files: &[(&str, &str)], programs: &[&str]) -> (tempfile::TempDir, Machine) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        for program in programs {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.path().join("usr/bin").join(program);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let m = Machine { root: dir.path().to_path_buf(), path: "/usr/bin".into(), data_dir: dir.path().join("var/lib/orch") };
        (dir, m)
    }

    const ALL_PROGRAMS: [&str; 3] = ["containerd", "runc", "containerd-shim-runc-v2"];

    fn find<'a>(findings: &'a [Finding], check: &str) -> &'a Finding {
        findings.iter().find(|f| f.check == check).unwrap_or_else(|| panic!("no check {check}"))
    }

    #[test]
    fn a_complete_machine_passes() {
        let (_d, m) = machine(
            &[
                ("/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma\n"),
                ("/proc/filesystems", "nodev\tsysfs\nnodev\toverlay\n"),
                ("/proc/swaps", "Filename Type Size Used Priority\n"),
                ("/sys/module/vxlan/x", ""),
            ],
            &ALL_PROGRAMS,
        );
        let findings = m.check();
        assert!(m.fatal().is_empty(), "{findings:#?}");
        assert_eq!(find(&findings, "cgroups").detail, "v2: cpu, memory, pids");
        assert_eq!(find(&findings, "kernel module vxlan").detail, "loaded");
    }

    #[test]
    fn a_raspberry_pi_without_the_memory_cgroup_is_told_the_kernel_command_line() {
        let (_d, m) = machine(
            &[
                ("/proc/cgroups", "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\nmemory\t0\t1\t0\npids\t2\t1\t1\n"),
                ("/proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4\0"),
                ("/proc/filesystems", "nodev\toverlay\n"),
            ],
            &ALL_PROGRAMS,
        );
        let fatal = m.fatal();
        assert_eq!(fatal.len(), 1, "{fatal:#?}");
        assert_eq!(fatal[0].detail, "v1: memory missing");
        assert!(fatal[0].problem.as_ref().unwrap().1.contains("cgroup_memory=1 cgroup_enable=memory"));
    }

    #[test]
    fn missing_programs_and_modules_name_their_fix() {
        let (_d, m) = machine(
            &[
                ("/sys/fs/cgroup/cgroup.controllers", "cpu memory pids\n"),
                ("/proc/filesystems", "nodev\toverlay\n"),
                ("/proc/sys/kernel/osrelease", "6.1.0-test\n"),
                ("/lib/modules/6.1.0-test/modules.builtin", "kernel/net/netfilter/nf_tables.ko\n"),
                ("/lib/modules/6.1.0-test/modules.dep", "kernel/drivers/net/vxlan/vxlan.ko: kernel/net/ipv4/udp_tunnel.ko\n"),
                ("/proc/swaps", "Filename Type Size Used Priority\n/swapfile file 1024 0 -2\n"),
            ],
            &["runc"],
        );
        let findings = m.check();
        let fatal: Vec<String> = m.fatal().into_iter().map(|f| f.check).collect();
        assert_eq!(fatal, ["program containerd", "program containerd-shim-runc-v2"]);
        assert!(find(&findings, "program containerd").problem.as_ref().unwrap().1.contains("apt install containerd"));
        assert_eq!(find(&findings, "kernel module nf_tables").detail, "built in");
        assert_eq!(find(&findings, "kernel module vxlan").detail, "loadable");
        let wg = find(&findings, "kernel module wireguard");
        assert_eq!(wg.problem.as_ref().unwrap().0, Severity::Warning);
        assert!(find(&findings, "swap").problem.is_some());
    }

    #[test]
    fn this_machine_can_be_checked() {
        let findings = Machine::local(Path::new("/var/lib/orch")).check();
        assert!(findings.len() >= 10);
    }
}
