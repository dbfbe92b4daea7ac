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
pub(crate) use codec::bincode_handler;
pub use codec::{reply, request_body};
pub use store_client::RemoteStore;
pub use store_service::router as store_router;
