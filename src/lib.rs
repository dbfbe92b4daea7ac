//! orch: a single-binary, k3s-style Kubernetes distribution.
//!
//! The crate is organised as DESIGN.md §2 lays out; each module's own docs say its role.
//! Dependencies point one way: `cli → server | node → api | controllers → raft → rpc | join
//! → pki`, with `store`, `net`, `pki`, `k8s`, `host` and `tasks` as leaves.

pub mod api;
pub mod cli;
pub mod controllers;
pub mod host;
pub mod join;
pub mod k8s;
pub mod net;
pub mod node;
pub mod pki;
pub mod raft;
pub mod rpc;
pub mod server;
pub mod store;
pub mod tasks;
pub mod testkit;
