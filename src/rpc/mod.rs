//! Node-to-node RPC over HTTP/2: the TLS accept loop every HTTPS port of orch serves with
//! ([`https`]), a small client, the bincode body codec, and the store service (`/store/*`)
//! that exposes any [`crate::store::Store`] to remote clients and peers.

mod client;
mod codec;
pub mod https;
pub mod limits;
pub mod rate_limit;
mod store_client;
mod store_service;

pub use client::{HttpClient, RpcError};

/// Largest request body of the node-to-node routes (`/raft/*`, `/store/*`): 64 MiB. It must
/// exceed the largest message they carry: a transaction (at most
/// [`crate::store::MAX_TXN_BYTES`], 32 MiB; the API's objects are at most 3 MiB), a raft entry
/// (a batch of transactions the proposer closes at 8 MiB, plus one more group), an
/// AppendEntries request (capped at 16 MiB unless it carries a single larger entry) and a
/// snapshot chunk (4 MiB). axum's default of 2 MiB would refuse a 3 MiB object written through
/// a follower and every snapshot chunk.
pub const MAX_BODY_BYTES: usize = 64 << 20;
pub(crate) use codec::bincode_handler;
pub use codec::{reply, request_body};
pub use store_client::RemoteStore;
pub use store_service::router as store_router;
