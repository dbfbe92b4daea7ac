//! The resources the API serves, from its discovery documents: what the namespace and garbage
//! collectors walk, so that new kinds (custom resources included) are covered without a list
//! here.

use kube::discovery::{verbs, ApiCapabilities, ApiResource, Discovery, Scope};

/// Every served resource (preferred version of each group) that can be listed and deleted.
pub async fn deletable(client: &kube::Client) -> Result<Vec<(ApiResource, ApiCapabilities)>, kube::Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    Ok(discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .filter(|(_, caps)| [verbs::LIST, verbs::DELETE].iter().all(|v| caps.supports_operation(v)))
        .collect())
}

/// Only the namespaced ones.
pub async fn namespaced(client: &kube::Client) -> Result<Vec<(ApiResource, ApiCapabilities)>, kube::Error> {
    Ok(deletable(client).await?.into_iter().filter(|(_, caps)| caps.scope == Scope::Namespaced).collect())
}
