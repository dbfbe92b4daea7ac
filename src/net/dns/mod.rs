//! The node-local cluster DNS (CoreDNS's `kubernetes` plugin as k3s configures it): the record
//! index built from Services, EndpointSlices and Nodes ([`records`]), the pure answerer
//! ([`answer`]), the forwarder to the host's resolvers with its cache ([`forward`],
//! [`cache`], [`upstream`]), the UDP+TCP server with a per-source rate limit ([`server`],
//! [`rate_limit`]), its Prometheus counters ([`metrics`]) and the dummy interface that
//! carries the cluster DNS address on every node ([`iface`]).

pub mod answer;
pub mod cache;
pub mod forward;
pub mod iface;
pub mod metrics;
pub mod rate_limit;
pub mod records;
pub mod server;
pub mod upstream;

#[cfg(test)]
mod answer_tests;
#[cfg(test)]
mod server_tests;

pub use records::Records;
