//! The cluster's PKI: one CA that signs serving certificates, peer and admin client
//! certificates; the join token; TLS configurations built from them; and the identity a
//! client certificate carries (CN = user, O = groups).

mod ca;
mod durable;
pub mod expiry;
mod identity;
mod private;
mod tls;
mod token;

pub use ca::{write_private, CertSpec, ClusterCa, PemPair};
pub use durable::{sync_parent, write_durably, write_durably_with};
pub use identity::{Identity, Peer};
pub use private::{private_dir, restrict_tree};
pub use tls::{client_config, insecure_client_config, roots_client_config, server_config, system_roots};
pub use token::{ca_hash, constant_time_eq, derived_agent_secret, hex, is_bootstrap, new_bootstrap, JoinToken};

/// Group of the certificates orch servers use towards each other (raft, store RPC).
pub const SERVERS_GROUP: &str = "system:orch-servers";
/// Group of the client certificate API servers present to kubelets (the node proxy): the
/// kubelet API admits it; the API and the server-internal routes grant it nothing.
pub const KUBELET_CLIENTS_GROUP: &str = "system:orch-kubelet-clients";
/// Kubernetes' superuser group.
pub const MASTERS_GROUP: &str = "system:masters";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("invalid PEM in {what}: {reason}")]
    Pem { what: String, reason: String },
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("invalid join token: {0}")]
    Token(String),
    #[error("{0}: only one of the CA's certificate and key is there; restore both from a backup (a new CA would lock out every member, node and client)")]
    CaIncomplete(String),
}
