//! IPv4 prefixes (`10.42.3.0/24`): parsing, the network, gateway (first host) and broadcast
//! addresses of a node's podCIDR, and membership tests.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 prefix, always stored in canonical form (host bits cleared).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an IPv4 CIDR such as 10.42.3.0/24")]
pub struct CidrParseError(pub String);

impl Ipv4Cidr {
    /// The prefix containing `addr` with `prefix` bits (host bits of `addr` are cleared).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then(|| Self { network: Ipv4Addr::from(u32::from(addr) & mask(prefix)), prefix })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Number of addresses in the prefix (2^(32-prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix))
    }

    /// The first usable address: the bridge's gateway on a node (`10.42.3.1` for `10.42.3.0/24`).
    pub fn gateway(&self) -> Ipv4Addr {
        self.nth(1)
    }

    /// The address at `offset` from the network address (wrapping inside the prefix).
    pub fn nth(&self, offset: u64) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network).wrapping_add((offset % self.size()) as u32))
    }

    /// Offset of `addr` from the network address, if it lies inside the prefix.
    pub fn offset_of(&self, addr: Ipv4Addr) -> Option<u64> {
        self.contains(addr).then(|| u64::from(u32::from(addr) - u32::from(self.network)))
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == u32::from(self.network)
    }

    /// The netmask as four bytes (`255.255.255.0` for a /24).
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CidrParseError(s.to_string());
        let (addr, bits) = s.trim().split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        let prefix: u8 = bits.parse().map_err(|_| err())?;
        Self::new(addr, prefix).ok_or_else(err)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_canonicalises() {
        let c: Ipv4Cidr = "10.42.3.7/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.42.3.0/24");
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 42, 3, 1));
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 42, 3, 255));
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.size(), 256);
        assert!(c.contains(Ipv4Addr::new(10, 42, 3, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 42, 4, 1)));
        assert_eq!(c.offset_of(Ipv4Addr::new(10, 42, 3, 9)), Some(9));
        let wide: Ipv4Cidr = "10.42.0.0/16".parse().unwrap();
        assert!(wide.contains(Ipv4Addr::new(10, 42, 200, 3)));
        assert_eq!("0.0.0.0/0".parse::<Ipv4Cidr>().unwrap().size(), 1 << 32);
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["10.42.0.0", "10.42.0.0/33", "x/24", "10.42.0.0/-1", "fd00::/64", ""] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
    }
}
