//! The host's upstream resolvers, read from its resolv.conf as k3s does: when it lists only
//! systemd-resolved's stub (127.0.0.53), the real servers come from
//! `/run/systemd/resolve/resolv.conf`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::net::resolv::ResolvConf;

/// systemd-resolved's stub listener, which the node's DNS must not forward to.
const RESOLVED_STUB: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 53));

/// Where the host's resolver configuration lives (injectable for tests).
#[derive(Debug, Clone)]
pub struct ResolvPaths {
    pub resolv_conf: PathBuf,
    pub systemd_resolved: PathBuf,
}

impl Default for ResolvPaths {
    fn default() -> Self {
        Self { resolv_conf: "/etc/resolv.conf".into(), systemd_resolved: "/run/systemd/resolve/resolv.conf".into() }
    }
}

fn nameservers(path: &Path) -> Vec<IpAddr> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    ResolvConf::parse(&text).nameservers.iter().filter_map(|ns| ns.parse().ok()).collect()
}

/// The upstream resolvers (port 53); empty when the host has none.
pub fn upstreams(paths: &ResolvPaths) -> Vec<SocketAddr> {
    let mut servers = nameservers(&paths.resolv_conf);
    if !servers.is_empty() && servers.iter().all(|ip| *ip == RESOLVED_STUB) {
        servers = nameservers(&paths.systemd_resolved);
    }
    servers.into_iter().filter(|ip| *ip != RESOLVED_STUB).map(|ip| SocketAddr::new(ip, 53)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(main: &str, resolved: &str) -> (tempfile::TempDir, ResolvPaths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = ResolvPaths { resolv_conf: dir.path().join("resolv.conf"), systemd_resolved: dir.path().join("resolved.conf") };
        std::fs::write(&paths.resolv_conf, main).unwrap();
        std::fs::write(&paths.systemd_resolved, resolved).unwrap();
        (dir, paths)
    }

    #[test]
    fn reads_the_hosts_resolvers() {
        let (_d, p) = paths("nameserver 192.0.2.1\nnameserver 192.0.2.2 # second\nsearch lan\n", "nameserver 198.51.100.1\n");
        assert_eq!(upstreams(&p), vec!["192.0.2.1:53".parse().unwrap(), "192.0.2.2:53".parse().unwrap()]);
    }

    #[test]
    fn follows_systemd_resolved_past_its_stub() {
        let (_d, p) = paths("nameserver 127.0.0.53\noptions edns0\n", "nameserver 198.51.100.1\n");
        assert_eq!(upstreams(&p), vec!["198.51.100.1:53".parse().unwrap()]);
    }

    #[test]
    fn no_resolv_conf_means_no_upstreams() {
        let p = ResolvPaths { resolv_conf: "/nonexistent/a".into(), systemd_resolved: "/nonexistent/b".into() };
        assert!(upstreams(&p).is_empty());
    }
}
