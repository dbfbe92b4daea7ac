//! ResourceQuota admission (kube-apiserver's `ResourceQuota` plugin): a create that would take
//! its namespace past a quota's `hard` limits is refused with kube's 403; one that fits is
//! charged to the quota's `status.used` (compare-and-swap, retried) before it is stored, and
//! the quota controller recounts from the objects themselves. Pods must name every compute
//! resource a quota limits.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{json, Value};

use super::namespace_policies::NamespacePolicies;
use super::objects::{self, Scope};
use super::registry::{self, Resource};
use super::status::ApiError;
use crate::k8s::quota::{format, milli, used, Objects};
use crate::store::Store;

/// Charges the create of `obj` to every quota of its namespace, or refuses it.
pub async fn charge(store: &dyn Store, policies: &NamespacePolicies, scope: &Scope<'_>, obj: &Value) -> Result<(), ApiError> {
    let Some(namespace) = scope.namespace.filter(|_| scope.subresource.is_none()) else { return Ok(()) };
    let mut keys = policies.quota_keys(namespace);
    if keys.is_empty() {
        return Ok(());
    }
    let Some(single) = counted(scope.resource, obj) else { return Ok(()) };
    keys.sort();
    let r = scope.resource;
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let quotas = registry::lookup("", "v1", "resourcequotas").expect("resourcequotas are built in");
    let quota_scope = Scope { subresource: Some("status"), dry_run: scope.dry_run, ..Scope::new(quotas, Some(namespace), scope.net) };
    for key in keys {
        let quota_name = key.rsplit('/').next().unwrap_or_default();
        let edit = |quota: &Value| charged(quota, &single, obj).map_err(|why| ApiError::forbidden(r.group, r.plural, Some(name), &why));
        match objects::modify(store, &quota_scope, quota_name, "kube-apiserver", &|_| Ok(()), &edit).await {
            Ok(_) => {}
            Err(e) if e.code == http::StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The object alone as quota usage counts it; `None` for kinds quotas do not count.
fn counted(r: &Resource, obj: &Value) -> Option<Objects> {
    fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> Option<T> {
        serde_json::from_value(v.clone()).ok()
    }
    let mut single = Objects::default();
    match (r.group, r.plural) {
        ("", "pods") => single.pods.push(typed(obj)?),
        ("", "services") => single.services.push(typed(obj)?),
        ("", "configmaps") => single.config_maps.push(typed(obj)?),
        ("", "secrets") => single.secrets.push(typed(obj)?),
        ("", "persistentvolumeclaims") => single.claims.push(typed(obj)?),
        _ => return None,
    }
    Some(single)
}

fn quantities(v: &Value) -> BTreeMap<String, Quantity> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

/// `key=value` pairs as kube prints resource lists in quota messages.
fn pretty(list: &[(&String, String)]) -> String {
    list.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// The quota after charging `single` (the created `obj`) to it, or why it cannot be.
fn charged(quota: &Value, single: &Objects, obj: &Value) -> Result<Value, String> {
    let name = quota["metadata"]["name"].as_str().unwrap_or_default();
    let spec = &quota["spec"];
    // Scoped quotas (scopes, scopeSelector) are counted by nobody yet: not enforced.
    if spec.get("scopes").is_some_and(|s| s.as_array().is_some_and(|a| !a.is_empty())) || spec.get("scopeSelector").is_some() {
        return Ok(quota.clone());
    }
    let hard = quantities(&spec["hard"]);
    if !single.pods.is_empty() {
        let missing = unspecified(&hard, &obj["spec"]);
        if !missing.is_empty() {
            return Err(format!("failed quota: {name}: must specify {missing}"));
        }
    }
    let requested: Vec<(&String, i128)> = used(&hard, single)
        .into_iter()
        .filter_map(|(k, q)| Some((hard.get_key_value(&k)?.0, milli(&q)?)))
        .filter(|(_, m)| *m > 0)
        .collect();
    if requested.is_empty() {
        return Ok(quota.clone());
    }
    let in_use = quantities(&quota["status"]["used"]);
    let unknown: Vec<&str> = requested.iter().filter(|(k, _)| !in_use.contains_key(*k)).map(|(k, _)| k.as_str()).collect();
    if !unknown.is_empty() {
        return Err(format!("status unknown for quota: {name}, resources: {}", unknown.join(",")));
    }
    let now = |k: &str| in_use.get(k).and_then(milli).unwrap_or(0);
    let exceeded: Vec<&(&String, i128)> =
        requested.iter().filter(|(k, m)| hard.get(*k).and_then(milli).is_some_and(|limit| now(k) + m > limit)).collect();
    if !exceeded.is_empty() {
        let requested: Vec<(&String, String)> = exceeded.iter().map(|(k, m)| (*k, format(k, *m).0)).collect();
        let using: Vec<(&String, String)> = exceeded.iter().map(|(k, _)| (*k, in_use[k.as_str()].0.clone())).collect();
        let limited: Vec<(&String, String)> = exceeded.iter().map(|(k, _)| (*k, hard[k.as_str()].0.clone())).collect();
        return Err(format!(
            "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
            pretty(&requested),
            pretty(&using),
            pretty(&limited)
        ));
    }
    let mut next = quota.clone();
    for (k, m) in requested {
        next["status"]["used"][k.as_str()] = json!(format(k, now(k) + m).0);
    }
    Ok(next)
}

/// The compute resources a quota limits that some containers of `pod_spec` do not name, as
/// kube words it: `cpu for: a,b; limits.memory for: a`.
fn unspecified(hard: &BTreeMap<String, Quantity>, pod_spec: &Value) -> String {
    let containers: Vec<&Value> =
        ["initContainers", "containers"].iter().flat_map(|l| pod_spec[*l].as_array().into_iter().flatten()).collect();
    let mut out = Vec::new();
    for key in hard.keys() {
        let (list, resource) = match key.as_str() {
            r @ ("cpu" | "memory" | "ephemeral-storage") => ("requests", r),
            other => match other.split_once('.') {
                Some((list @ ("requests" | "limits"), r @ ("cpu" | "memory" | "ephemeral-storage"))) => (list, r),
                _ => continue,
            },
        };
        let names: Vec<&str> = containers
            .iter()
            .filter(|c| c["resources"][list].get(resource).is_none())
            .map(|c| c["name"].as_str().unwrap_or_default())
            .collect();
        if !names.is_empty() {
            out.push(format!("{key} for: {}", names.join(",")));
        }
    }
    out.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(requests: Value) -> (Objects, Value) {
        let obj = json!({ "metadata": { "name": "p" }, "spec": { "containers": [{ "name": "c", "image": "busybox", "resources": { "requests": requests } }] } });
        let mut single = Objects::default();
        single.pods.push(serde_json::from_value(obj.clone()).unwrap());
        (single, obj)
    }

    fn quota(hard: Value, used: Option<Value>) -> Value {
        let mut q = json!({ "metadata": { "name": "q" }, "spec": { "hard": hard } });
        if let Some(used) = used {
            q["status"] = json!({ "hard": hard, "used": used });
        }
        q
    }

    #[test]
    fn a_fitting_create_is_charged() {
        let (single, obj) = pod(json!({ "cpu": "250m" }));
        let q = quota(json!({ "pods": "2", "requests.cpu": "1" }), Some(json!({ "pods": "1", "requests.cpu": "500m" })));
        let next = charged(&q, &single, &obj).unwrap();
        assert_eq!(next["status"]["used"], json!({ "pods": "2", "requests.cpu": "750m" }));
    }

    #[test]
    fn exceeding_creates_are_refused_in_kubes_words() {
        let (single, obj) = pod(json!({ "cpu": "600m" }));
        let q = quota(json!({ "pods": "2", "requests.cpu": "1" }), Some(json!({ "pods": "2", "requests.cpu": "500m" })));
        assert_eq!(
            charged(&q, &single, &obj).unwrap_err(),
            "exceeded quota: q, requested: pods=1,requests.cpu=600m, used: pods=2,requests.cpu=500m, limited: pods=2,requests.cpu=1"
        );
    }

    #[test]
    fn pods_must_name_what_a_quota_limits_and_usage_must_be_known() {
        let (single, obj) = pod(json!({}));
        let q = quota(json!({ "cpu": "1", "limits.memory": "1Gi" }), Some(json!({ "cpu": "0", "limits.memory": "0" })));
        assert_eq!(charged(&q, &single, &obj).unwrap_err(), "failed quota: q: must specify cpu for: c; limits.memory for: c");
        let (single, obj) = pod(json!({ "cpu": "1" }));
        let unknown = quota(json!({ "pods": "5" }), None);
        assert_eq!(charged(&unknown, &single, &obj).unwrap_err(), "status unknown for quota: q, resources: pods");
    }

    #[test]
    fn quotas_that_do_not_count_the_kind_are_left_alone() {
        let (single, obj) = pod(json!({}));
        let q = quota(json!({ "configmaps": "1" }), Some(json!({ "configmaps": "1" })));
        assert_eq!(charged(&q, &single, &obj).unwrap(), q);
    }
}
