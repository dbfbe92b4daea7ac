//! Pod addresses of one node: the usable hosts of the node's `spec.podCIDR` (a /24 by
//! default), handed out round-robin so a just-released address is not reused at once. The
//! network address, `.1` (the bridge's gateway) and the broadcast address are never given out.

use std::net::Ipv4Addr;

use crate::k8s::cidr::{self, CidrParseError};

/// At most this many addresses (a /24) are managed, whatever the prefix.
const MAX_HOSTS: u32 = 256;

/// A podCIDR a hollow node cannot hand out addresses from.
#[derive(Debug, thiserror::Error)]
pub enum CidrError {
    #[error(transparent)]
    Parse(#[from] CidrParseError),
    #[error("{0:?} has no room for pods")]
    TooSmall(String),
}

#[derive(Debug)]
pub struct PodIps {
    base: u32,
    size: u32,
    used: Vec<bool>,
    cursor: u32,
}

impl PodIps {
    /// The allocator for `cidr` (e.g. `10.42.3.0/24`); prefixes from /24 to /29 are accepted.
    pub fn new(cidr: &str) -> Result<Self, CidrError> {
        let range = cidr::parse(cidr)?;
        if range.prefix() > 29 {
            return Err(CidrError::TooSmall(cidr.to_string()));
        }
        let size = range.size().min(MAX_HOSTS);
        Ok(Self { base: u32::from(range.network()), size, used: vec![false; size as usize], cursor: 1 })
    }

    fn index(&self, ip: Ipv4Addr) -> Option<u32> {
        let i = u32::from(ip).checked_sub(self.base)?;
        (i >= 2 && i < self.size - 1).then_some(i)
    }

    /// The next free address, if any is left.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let hosts = self.size - 3;
        for step in 1..=hosts {
            let i = 2 + (self.cursor + step - 2) % hosts;
            if !self.used[i as usize] {
                self.used[i as usize] = true;
                self.cursor = i;
                return Some(Ipv4Addr::from(self.base + i));
            }
        }
        None
    }

    /// Marks `ip` (an address a pod already has) as taken; false when it is not ours to manage.
    pub fn reserve(&mut self, ip: Ipv4Addr) -> bool {
        match self.index(ip) {
            Some(i) => {
                self.used[i as usize] = true;
                true
            }
            None => false,
        }
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        if let Some(i) = self.index(ip) {
            self.used[i as usize] = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_distinct_hosts_round_robin() {
        let mut ips = PodIps::new("10.42.7.0/24").unwrap();
        let a = ips.allocate().unwrap();
        let b = ips.allocate().unwrap();
        assert_eq!((a, b), (Ipv4Addr::new(10, 42, 7, 2), Ipv4Addr::new(10, 42, 7, 3)));
        ips.release(a);
        assert_eq!(ips.allocate(), Some(Ipv4Addr::new(10, 42, 7, 4)), "a released address is not reused at once");
        assert!(ips.reserve(Ipv4Addr::new(10, 42, 7, 5)));
        assert_eq!(ips.allocate(), Some(Ipv4Addr::new(10, 42, 7, 6)));
        assert!(!ips.reserve(Ipv4Addr::new(10, 42, 8, 5)), "outside the node's range");
        assert!(!ips.reserve(Ipv4Addr::new(10, 42, 7, 1)), "the gateway");
    }

    #[test]
    fn runs_out_and_recovers() {
        let mut ips = PodIps::new("10.0.0.8/29").unwrap();
        let all: Vec<_> = std::iter::from_fn(|| ips.allocate()).collect();
        assert_eq!(all.len(), 5, "{all:?}");
        assert!(all.iter().all(|ip| ip.octets()[3] >= 10 && ip.octets()[3] <= 14));
        ips.release(all[2]);
        assert_eq!(ips.allocate(), Some(all[2]));
        assert!(PodIps::new("10.0.0.0/30").is_err());
    }
}
