//! Facts about the machine orch runs on: its host name, architecture, default-route address
//! and whether it runs as root. The one place these are read, for the server and the node.

use std::net::{IpAddr, Ipv4Addr};

/// This machine's host name (`localhost` when it has none).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// This machine's architecture as Kubernetes (Go, OCI platforms) spells it: `amd64`, `arm64`, …
pub fn kube_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The local address the kernel would use towards the outside world (the default route's
/// source address in this network namespace). Connecting a UDP socket only selects a route;
/// no packet is sent.
pub fn default_route_ip() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    socket.local_addr().ok().map(|a| a.ip()).filter(|ip| !ip.is_unspecified())
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_well_formed() {
        assert!(!hostname().is_empty());
        assert!(!kube_arch().is_empty() && kube_arch() != "x86_64" && kube_arch() != "aarch64");
        if let Some(ip) = default_route_ip() {
            assert!(!ip.is_unspecified());
        }
    }
}
