//! The addresses Nodes report (`status.addresses` of type InternalIP or ExternalIP), read from
//! the store for the server's kubelet serving-certificate endpoint: a node's certificate may
//! carry its own addresses, never another node's.

use std::collections::HashMap;
use std::net::IpAddr;

use serde_json::Value;

use super::objects::{self, Scope, Selection};
use super::{registry, ApiError, ServiceNetwork};
use crate::store::Store;

/// The IP addresses of one Node object.
pub fn of(node: &Value) -> Vec<IpAddr> {
    let addresses = node["status"]["addresses"].as_array().into_iter().flatten();
    addresses
        .filter(|a| matches!(a["type"].as_str(), Some("InternalIP" | "ExternalIP")))
        .filter_map(|a| a["address"].as_str()?.parse().ok())
        .collect()
}

/// Every stored Node's addresses, by node name.
pub async fn all(store: &dyn Store) -> Result<HashMap<String, Vec<IpAddr>>, ApiError> {
    let nodes = registry::lookup("", "v1", "nodes").expect("nodes are built in");
    let scope = Scope::new(nodes, None, ServiceNetwork::default());
    let page = objects::list(store, &scope, &Selection::default(), 0, None).await?;
    Ok(page.items.iter().map(|n| (n["metadata"]["name"].as_str().unwrap_or_default().to_string(), of(n))).collect())
}
