//! The node's Service proxy (kube-proxy's job, nftables mode): [`model`] turns Services and
//! EndpointSlices into the Service ports this node forwards, [`program`] turns those into
//! table `ip orch-proxy`; [`ProxyRules::apply`] replaces the table in one transaction and
//! [`ProxyRules::update`] changes only what differs from the rules applied before (also in one
//! transaction).

pub mod model;
mod program;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use ipnetwork::Ipv4Network;

use crate::net::nft::{self, NftError};
pub use model::{desired, Endpoint, Proto, ProxyConfig, ServicePort};
pub use program::TABLE;

/// The rules of one node's proxy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyRules {
    pub cluster_cidr: Option<Ipv4Network>,
    pub ports: Vec<ServicePort>,
}

impl ProxyRules {
    /// Replaces table `ip orch-proxy` in the namespace at `netns` (this process's when `None`).
    pub fn apply(&self, netns: Option<&Path>) -> Result<(), NftError> {
        nft::transact(netns, self.table().full())
    }

    /// Turns table `ip orch-proxy` in the namespace at `netns`, which holds `previous` (as
    /// applied by [`Self::apply`] or [`Self::update`]), into `self`: only the Service chains,
    /// sets and map elements that differ are sent.
    pub fn update(&self, previous: &ProxyRules, netns: Option<&Path>) -> Result<(), NftError> {
        nft::transact(netns, self.table().changes(&previous.table()))
    }

    fn table(&self) -> program::Table {
        program::table(&self.ports, self.cluster_cidr)
    }

    /// Deletes table `ip orch-proxy` (if there is one) from the namespace at `netns`.
    pub fn remove(netns: Option<&Path>) -> Result<(), NftError> {
        nft::transact(netns, nft::delete_table(TABLE))
    }

    /// The UDP endpoints of `self` that `next` no longer sends to: their conntrack flows must
    /// go (see [`crate::net::conntrack`]).
    pub fn gone_udp_endpoints(&self, next: &ProxyRules) -> BTreeSet<(Ipv4Addr, u16)> {
        let udp = |r: &ProxyRules| -> BTreeSet<(Ipv4Addr, u16)> {
            r.ports
                .iter()
                .filter(|p| p.proto == Proto::Udp)
                .flat_map(|p| p.cluster.iter().chain(&p.local))
                .map(|e| (e.ip, e.port))
                .collect()
        };
        udp(self).difference(&udp(next)).copied().collect()
    }

    /// How many nf_tables messages [`Self::apply`] sends.
    pub fn size(&self) -> usize {
        self.table().full().len()
    }
}

/// How long [`program_synthetic`] took: the whole table, then one Service's endpoints changed.
#[derive(Clone, Copy, Debug)]
pub struct SyntheticTimes {
    pub full: Duration,
    pub one_change: Duration,
}

/// Benchmark hook: programs `services` ClusterIP Services of `endpoints` endpoints each into
/// the namespace at `netns` (one transaction replacing the table), then replaces the endpoints
/// of one Service (an incremental update), and returns how long each took.
pub fn program_synthetic(netns: Option<&Path>, services: usize, endpoints: usize) -> Result<SyntheticTimes, NftError> {
    let ip = |i: usize, base: u8| std::net::Ipv4Addr::new(10, base, (i >> 8) as u8, i as u8);
    let ports = (0..services)
        .map(|s| ServicePort {
            id: format!("bench/svc-{s}/tcp/"),
            proto: Proto::Tcp,
            port: 80,
            cluster_ip: Some(ip(s, 43)),
            external_ips: Vec::new(),
            node_port: None,
            cluster: (0..endpoints).map(|e| Endpoint { ip: ip(s * endpoints + e, 42), port: 8080 }).collect(),
            local: Vec::new(),
            internal_local: false,
            external_local: false,
            affinity: None,
        })
        .collect();
    let rules =
        ProxyRules { cluster_cidr: Some(Ipv4Network::new(std::net::Ipv4Addr::new(10, 42, 0, 0), 16).expect("valid prefix")), ports };
    let started = Instant::now();
    rules.apply(netns)?;
    let full = started.elapsed();
    let mut changed = rules.clone();
    if let Some(first) = changed.ports.first_mut() {
        first.cluster = vec![Endpoint { ip: std::net::Ipv4Addr::new(10, 41, 0, 1), port: 8080 }];
    }
    let started = Instant::now();
    changed.update(&rules, netns)?;
    Ok(SyntheticTimes { full, one_change: started.elapsed() })
}

#[cfg(test)]
mod tests;
