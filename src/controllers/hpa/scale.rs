//! The HPA's target read and resized through its `/scale` subresource (autoscaling/v1 Scale).

use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::CrossVersionObjectReference;

/// The `/scale` path of a scale target in `namespace`, for the kinds orch serves with one.
pub fn path(namespace: &str, target: &CrossVersionObjectReference) -> Result<String, String> {
    let group = target.api_version.as_deref().unwrap_or("").split_once('/').map_or("", |(group, _)| group);
    let (prefix, plural) = match (group, target.kind.as_str()) {
        ("apps", "Deployment") => ("/apis/apps/v1", "deployments"),
        ("apps", "ReplicaSet") => ("/apis/apps/v1", "replicasets"),
        ("apps", "StatefulSet") => ("/apis/apps/v1", "statefulsets"),
        ("", "ReplicationController") => ("/api/v1", "replicationcontrollers"),
        (group, kind) => return Err(format!("no matches for kind \"{kind}\" in group \"{group}\"")),
    };
    Ok(format!("{prefix}/namespaces/{namespace}/{plural}/{}/scale", target.name))
}

pub async fn get(client: &kube::Client, path: &str) -> Result<Scale, String> {
    let request = http::Request::get(path).body(Vec::new()).map_err(|e| e.to_string())?;
    client.request(request).await.map_err(|e| api_message(&e))
}

/// Sets the target's replicas (a PUT of the Scale read, pinned to its resourceVersion).
pub async fn update(client: &kube::Client, path: &str, mut scale: Scale, replicas: i32) -> Result<(), String> {
    scale.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
    let body = serde_json::to_vec(&scale).map_err(|e| e.to_string())?;
    let request = http::Request::put(path).header(http::header::CONTENT_TYPE, "application/json").body(body).map_err(|e| e.to_string())?;
    client.request::<Scale>(request).await.map(|_| ()).map_err(|e| api_message(&e))
}

/// An API error as client-go prints it: the Status message alone.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}
