//! Facts about the machine orch runs on: its host name, architecture, default-route address
//! and whether it runs as root (the one place these are read, for the server and the node),
//! and the readiness notification to systemd.

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

/// Tells systemd the service is up (`sd_notify(READY=1)` for `Type=notify` units). Nothing
/// happens outside systemd.
pub fn notify_ready() {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else { return };
    if let Err(e) = notify(&socket, b"READY=1\n") {
        tracing::warn!(socket = ?socket, error = %e, "cannot tell systemd the service is ready");
    }
}

/// Sends `message` to systemd's notification socket `socket` (a path, or an abstract name
/// after `@`).
fn notify(socket: &std::ffi::OsStr, message: &[u8]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let addr = match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(std::path::Path::new(socket))?,
    };
    UnixDatagram::unbound()?.send_to_addr(message, &addr)?;
    Ok(())
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

    #[test]
    fn systemd_gets_ready_on_a_path_or_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        notify(path.as_os_str(), b"READY=1\n").unwrap();
        let mut buf = [0u8; 32];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
        let name = format!("orch-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
        notify(format!("@{name}").as_ref(), b"READY=1\n").unwrap();
        assert_eq!(listener.recv(&mut buf).unwrap(), 8);
    }
}
