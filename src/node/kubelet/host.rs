//! Facts about the machine a real node reports: cpu count, memory (/proc/meminfo), the data
//! dir's file system (statvfs), OS image (/etc/os-release), kernel (uname), machine and boot
//! ids, and the pressure conditions derived from them.

use std::collections::BTreeMap;
use std::path::Path;

use crate::k8s::quantity::{milli_value, value};
use crate::node::node_object::{Pressure, SystemInfo};

fn non_negative(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

/// MemoryPressure when less than this is available.
const MEMORY_PRESSURE_BYTES: u64 = 100 << 20;
/// DiskPressure when less than this share of the data dir's file system is free.
const DISK_PRESSURE_FREE: f64 = 0.10;
/// PIDPressure when more than this share of pid_max is in use.
const PID_PRESSURE_USED: f64 = 0.90;

/// Memory figures from /proc/meminfo, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub total: u64,
    pub available: u64,
}

/// Parses /proc/meminfo text.
pub fn parse_meminfo(text: &str) -> Memory {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(':')))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .unwrap_or(0)
    };
    Memory { total: field("MemTotal"), available: field("MemAvailable") }
}

pub fn memory() -> Memory {
    std::fs::read_to_string("/proc/meminfo").map(|t| parse_meminfo(&t)).unwrap_or_default()
}

/// Size and free space (for unprivileged users) of the file system holding `path`, in bytes.
pub fn filesystem(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let block = st.f_frsize as u64;
    Some((st.f_blocks as u64 * block, st.f_bavail as u64 * block))
}

pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// `PRETTY_NAME` of an os-release file.
pub fn parse_os_release(text: &str) -> Option<String> {
    let value = text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME="))?;
    Some(value.trim().trim_matches('"').to_string())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// OS image, kernel release and the machine's ids.
pub fn system_info() -> SystemInfo {
    let os_image = ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok().and_then(|t| parse_os_release(&t)))
        .unwrap_or_else(|| "Linux".into());
    SystemInfo {
        os_image,
        kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
        machine_id: read_trimmed("/etc/machine-id"),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
    }
}

/// Bytes as a Kubernetes quantity in Ki.
pub fn kibibytes(bytes: u64) -> String {
    format!("{}Ki", bytes / 1024)
}

/// Reserved amounts (`--kube-reserved`/`--system-reserved`, e.g. `cpu=500m,memory=256Mi`) in
/// millicores and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reserved {
    pub millicpu: u64,
    pub memory: u64,
    pub ephemeral_storage: u64,
}

/// A `--kube-reserved`/`--system-reserved` value that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum ReservedError {
    #[error("{0:?}: use name=quantity, e.g. cpu=500m,memory=256Mi")]
    Pair(String),
    #[error("{0:?} is not a quantity")]
    Quantity(String),
    #[error("cannot reserve {0:?}; only cpu, memory and ephemeral-storage")]
    Resource(String),
}

impl Reserved {
    /// Parses `name=quantity` pairs separated by commas.
    pub fn parse(s: &str) -> Result<Self, ReservedError> {
        let mut r = Reserved::default();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| ReservedError::Pair(pair.to_string()))?;
            let q = k8s_openapi::apimachinery::pkg::api::resource::Quantity(v.to_string());
            let bad = || ReservedError::Quantity(v.to_string());
            match k {
                "cpu" => r.millicpu += non_negative(milli_value(&q)).ok_or_else(bad)?,
                "memory" => r.memory += non_negative(value(&q)).ok_or_else(bad)?,
                "ephemeral-storage" => r.ephemeral_storage += non_negative(value(&q)).ok_or_else(bad)?,
                other => return Err(ReservedError::Resource(other.to_string())),
            }
        }
        Ok(r)
    }

    pub fn plus(self, o: Reserved) -> Reserved {
        Reserved {
            millicpu: self.millicpu + o.millicpu,
            memory: self.memory + o.memory,
            ephemeral_storage: self.ephemeral_storage + o.ephemeral_storage,
        }
    }
}

/// Capacity and allocatable of this machine with `data_dir`'s file system and `reserved` held back.
pub fn resources(data_dir: &Path, pods: u32, reserved: Reserved) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let cpus = cpu_count() as u64;
    let mem = memory().total;
    let disk = filesystem(data_dir).map(|(size, _)| size).unwrap_or(0);
    let map = |cpu: String, mem: u64, disk: u64| -> BTreeMap<String, String> {
        [("cpu", cpu), ("memory", kibibytes(mem)), ("pods", pods.to_string()), ("ephemeral-storage", kibibytes(disk))]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    };
    let cpu_alloc = (cpus * 1000).saturating_sub(reserved.millicpu);
    let cpu_alloc = if cpu_alloc % 1000 == 0 { (cpu_alloc / 1000).to_string() } else { format!("{cpu_alloc}m") };
    (map(cpus.to_string(), mem, disk), map(cpu_alloc, mem.saturating_sub(reserved.memory), disk.saturating_sub(reserved.ephemeral_storage)))
}

/// Pressure from the host's figures now.
pub fn pressure(data_dir: &Path) -> Pressure {
    let mem = memory();
    let disk = filesystem(data_dir).is_some_and(|(size, free)| size > 0 && (free as f64) < size as f64 * DISK_PRESSURE_FREE);
    let pid_max: f64 = read_trimmed("/proc/sys/kernel/pid_max").parse().unwrap_or(0.0);
    let procs = std::fs::read_dir("/proc").map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok()).count());
    Pressure {
        memory: mem.total > 0 && mem.available < MEMORY_PRESSURE_BYTES,
        disk,
        pid: pid_max > 0.0 && procs.is_ok_and(|n| n as f64 > pid_max * PID_PRESSURE_USED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_files_parse() {
        let m = parse_meminfo("MemTotal:        8000000 kB\nMemFree:  100 kB\nMemAvailable:    4000000 kB\n");
        assert_eq!(m, Memory { total: 8_000_000 * 1024, available: 4_000_000 * 1024 });
        assert_eq!(
            parse_os_release("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").unwrap(),
            "Debian GNU/Linux 12 (bookworm)"
        );
    }

    #[test]
    fn reserved_amounts_shrink_allocatable() {
        let r = Reserved::parse("cpu=500m,memory=256Mi").unwrap().plus(Reserved::parse("memory=1Gi").unwrap());
        assert_eq!(r, Reserved { millicpu: 500, memory: (256 << 20) + (1 << 30), ephemeral_storage: 0 });
        assert!(Reserved::parse("gpu=1").is_err());
        assert!(Reserved::parse("cpu").is_err());
        let dir = tempfile::tempdir().unwrap();
        let (cap, alloc) = resources(dir.path(), 110, Reserved { millicpu: 500, ..Default::default() });
        assert_eq!(cap["pods"], "110");
        assert!(alloc["cpu"].ends_with("500m"), "{alloc:?}");
        assert!(cap["memory"].ends_with("Ki") && cap["ephemeral-storage"] != "0Ki");
    }
}
