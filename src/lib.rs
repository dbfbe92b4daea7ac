//! orch: a single-binary, k3s-style Kubernetes distribution.
//!
//! The crate is organised as DESIGN.md §2 lays out; each module's own docs say its role.

pub mod agent;
pub mod api;
pub mod cli;
pub mod controllers;
pub mod net;
pub mod pki;
pub mod raft;
pub mod rpc;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod testkit;
pub mod version;
