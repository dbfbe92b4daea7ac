//! IPv4 address ranges as Kubernetes flags and fields write them (`--cluster-cidr
//! 10.42.0.0/16`, a node's `podCIDR`, `--service-cidr`), on the `ipnetwork` crate: one
//! parser that insists on the prefix length and clears host bits, and the subnets node IPAM
//! hands out.

use std::net::Ipv4Addr;

pub use ipnetwork::Ipv4Network;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an IPv4 CIDR such as 10.42.3.0/24")]
pub struct CidrParseError(pub String);

/// Parses `a.b.c.d/len` (the length is required) into its canonical network (host bits cleared).
pub fn parse(s: &str) -> Result<Ipv4Network, CidrParseError> {
    let err = || CidrParseError(s.to_string());
    let s = s.trim();
    if !s.contains('/') {
        return Err(err());
    }
    let net: Ipv4Network = s.parse().map_err(|_| err())?;
    Ipv4Network::new(net.network(), net.prefix()).map_err(|_| err())
}

/// The `index`th subnet of `net` with prefix length `prefix` (a node's /24 of the cluster
/// CIDR), if there is one.
pub fn subnet(net: Ipv4Network, prefix: u8, index: u32) -> Option<Ipv4Network> {
    let step = 1u64 << (32 - u32::from(prefix.min(32)));
    let offset = u64::from(index).checked_mul(step)?;
    (prefix >= net.prefix() && offset < subnet_span(net))
        .then(|| Ipv4Network::new(Ipv4Addr::from(u32::from(net.network()) + offset as u32), prefix).expect("prefix checked"))
}

/// How many subnets of prefix length `prefix` `net` holds (0 when `prefix` is shorter).
pub fn subnet_count(net: Ipv4Network, prefix: u8) -> u64 {
    if prefix < net.prefix() || prefix > 32 {
        return 0;
    }
    subnet_span(net) >> (32 - u32::from(prefix))
}

/// The number of addresses in `net` (2^32 for /0, which `Ipv4Network::size` cannot say).
fn subnet_span(net: Ipv4Network) -> u64 {
    1u64 << (32 - u32::from(net.prefix()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_canonicalises() {
        let c = parse("10.42.3.7/24").unwrap();
        assert_eq!(c.to_string(), "10.42.3.0/24");
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 42, 3, 255));
        assert_eq!(c.mask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(c.contains(Ipv4Addr::new(10, 42, 3, 200)) && !c.contains(Ipv4Addr::new(10, 42, 4, 1)));
        for bad in ["10.42.0.0", "10.42.0.0/33", "x/24", "10.42.0.0/-1", "fd00::/64", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subnets_split_a_range() {
        let cluster = parse("10.42.0.0/16").unwrap();
        assert_eq!(subnet_count(cluster, 24), 256);
        assert_eq!(subnet(cluster, 24, 0).unwrap().to_string(), "10.42.0.0/24");
        assert_eq!(subnet(cluster, 24, 255).unwrap().to_string(), "10.42.255.0/24");
        assert_eq!(subnet(cluster, 24, 256), None);
        assert_eq!(subnet_count(parse("0.0.0.0/0").unwrap(), 8), 256);
        assert_eq!(subnet_count(parse("10.42.0.0/24").unwrap(), 16), 0);
    }
}
