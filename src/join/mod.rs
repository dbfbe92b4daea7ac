//! The join protocol between a cluster and a machine joining it: the wire types and paths
//! both sides use ([`wire`]) and the joining side ([`client`]): fetch the CA without trusting
//! anyone yet and check it against the token's hash, then obtain the CA's key (a server) or a
//! node client certificate (an agent), and later a kubelet serving certificate.

pub mod client;
pub mod wire;

pub use client::{fetch_cluster_ca, join_as_agent, request_serving_cert, JoinError};
pub use wire::AgentCredentials;
