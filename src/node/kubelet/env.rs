//! A container's environment as the kubelet builds it: `envFrom` first (ConfigMaps and Secrets,
//! with prefix), then `env` in order (value with `$(VAR)` expansion, fieldRef, resourceFieldRef,
//! configMapKeyRef, secretKeyRef; later names replace earlier ones), then the Service variables
//! ([`super::service_env`]) the container does not define itself; `$(VAR)` in `env` also sees
//! the Service variables. A missing required reference is a CreateContainerConfigError with the
//! kubelet's message.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::downward::{self, DownwardError, NodeAllocatable, PodAddresses};
use super::objects::{DataKind, DataSource, ObjectError};
use super::service_env::NotSynced;

/// Why a container's environment cannot be made (its CreateContainerConfigError message).
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("couldn't find key {key} in {} {name}", kind_title(*.kind))]
    MissingKey { key: String, kind: DataKind, name: String },
    #[error(transparent)]
    Downward(#[from] DownwardError),
    #[error(transparent)]
    Services(#[from] NotSynced),
}

/// Expands `$(NAME)` from `vars` (`$$` escapes; unknown references stay as written).
pub fn expand(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(end) = after.strip_prefix('(').and_then(|a| a.find(')')) {
            let name = &after[1..end + 1];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = &after[end + 2..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn set(env: &mut Vec<(String, String)>, name: String, value: String) {
    match env.iter_mut().find(|(n, _)| *n == name) {
        Some(entry) => entry.1 = value,
        None => env.push((name, value)),
    }
}

async fn key(source: &dyn DataSource, kind: DataKind, name: &str, key: &str, optional: bool) -> Result<Option<String>, EnvError> {
    let data = source.data(kind, name).await?;
    match (data, optional) {
        (Some(d), _) if d.contains_key(key) => Ok(d.get(key).map(|v| String::from_utf8_lossy(v).into_owned())),
        (Some(_), true) | (None, true) => Ok(None),
        (Some(_), false) => Err(EnvError::MissingKey { key: key.to_string(), kind, name: name.to_string() }),
        (None, false) => Err(ObjectError::Missing { kind, name: name.to_string() }.into()),
    }
}

fn kind_title(kind: DataKind) -> &'static str {
    match kind {
        DataKind::ConfigMap => "ConfigMap",
        DataKind::Secret => "Secret",
    }
}

/// The environment of `container` in `pod` that sees the Service variables `services`.
pub async fn resolve(
    pod: &Pod,
    container: &Container,
    addrs: &PodAddresses,
    node: NodeAllocatable,
    source: &dyn DataSource,
    services: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, EnvError> {
    let mut env: Vec<(String, String)> = Vec::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, optional) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(c), _) => (DataKind::ConfigMap, c.name.clone(), c.optional.unwrap_or(false)),
            (None, Some(s)) => (DataKind::Secret, s.name.clone(), s.optional.unwrap_or(false)),
            (None, None) => continue,
        };
        match source.data(kind, &name).await? {
            Some(data) => {
                for (k, v) in data {
                    set(&mut env, format!("{prefix}{k}"), String::from_utf8_lossy(&v).into_owned());
                }
            }
            None if optional => {}
            None => return Err(ObjectError::Missing { kind, name }.into()),
        }
    }
    for var in container.env.iter().flatten() {
        let mut vars = services.clone();
        vars.extend(env.iter().cloned());
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => Some(expand(v, &vars)),
            (None, Some(from)) => {
                if let Some(f) = &from.field_ref {
                    Some(downward::field(pod, &f.field_path, addrs)?)
                } else if let Some(r) = &from.resource_field_ref {
                    let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                        Some(n) => pod.spec.iter().flat_map(|s| s.containers.iter()).find(|c| c.name == n).unwrap_or(container),
                        None => container,
                    };
                    Some(downward::resource(target, &r.resource, r.divisor.as_ref(), node)?)
                } else if let Some(c) = &from.config_map_key_ref {
                    key(source, DataKind::ConfigMap, &c.name, &c.key, c.optional.unwrap_or(false)).await?
                } else if let Some(s) = &from.secret_key_ref {
                    key(source, DataKind::Secret, &s.name, &s.key, s.optional.unwrap_or(false)).await?
                } else {
                    None
                }
            }
            (None, None) => Some(String::new()),
        };
        if let Some(value) = value {
            set(&mut env, var.name.clone(), value);
        }
    }
    for (name, value) in services {
        if !env.iter().any(|(n, _)| n == name) {
            env.push((name.clone(), value.clone()));
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::kubelet::objects::StaticData;
    use serde_json::json;

    #[test]
    fn expansion_follows_kubernetes() {
        let vars: BTreeMap<String, String> = [("A".to_string(), "1".to_string())].into();
        assert_eq!(expand("x$(A)y", &vars), "x1y");
        assert_eq!(expand("$(B)-$$(A)-$", &vars), "$(B)-$(A)-$");
    }

    #[tokio::test]
    async fn every_source_of_a_variable() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [{
                "name": "c",
                "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}, {"secretRef": {"name": "gone", "optional": true}}],
                "env": [
                    {"name": "PLAIN", "value": "v-$(CM_k)-$(SVC_HOST)"},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
                    {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "password"}}},
                    {"name": "OPTIONAL", "valueFrom": {"secretKeyRef": {"name": "s", "key": "missing", "optional": true}}},
                    {"name": "CM_k", "value": "replaced"}
                ]
            }]}
        }))
        .unwrap();
        let mut data = StaticData::default();
        data.0.insert((DataKind::ConfigMap, "cm".into()), [("k".to_string(), b"cv".to_vec())].into());
        data.0.insert((DataKind::Secret, "s".into()), [("password".to_string(), b"hunter2".to_vec())].into());
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let node = NodeAllocatable { millicpu: 2000, memory: 512 << 20 };
        let services: BTreeMap<String, String> = [("CM_k".into(), "svc".into()), ("SVC_HOST".into(), "10.43.0.9".into())].into();
        let env = resolve(&pod, c, &PodAddresses::default(), node, &data, &services).await.unwrap();
        let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("CM_k", "replaced"),
                ("PLAIN", "v-cv-10.43.0.9"),
                ("POD", "p"),
                ("MEM", "512"),
                ("FROM_CM", "cv"),
                ("FROM_SECRET", "hunter2"),
                ("SVC_HOST", "10.43.0.9")
            ]
        );
        let mut missing = c.clone();
        missing.env =
            Some(vec![serde_json::from_value(json!({"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}})).unwrap()]);
        missing.env_from = None;
        let err = resolve(&pod, &missing, &PodAddresses::default(), node, &data, &services).await.unwrap_err();
        assert_eq!(err.to_string(), "secret \"nope\" not found");
    }
}
