//! LimitRange admission (kube-apiserver's `LimitRanger` plugin): containers of new pods get
//! their namespace's default requests and limits (noted in the `kubernetes.io/limit-ranger`
//! annotation), then pods and PersistentVolumeClaims are checked against the ranges' min, max
//! and maxLimitRequestRatio per Container, Pod and PersistentVolumeClaim, refused with kube's
//! 403 and wording. Also LimitRange's own defaulting (default from max, defaultRequest from
//! default or min).

use serde_json::{json, Map, Value};

use super::registry::Resource;
use crate::k8s::quantity::milli_value;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

const ANNOTATION: &str = "kubernetes.io/limit-ranger";

fn items(ranges: &[Value]) -> impl Iterator<Item = &Value> {
    ranges.iter().flat_map(|r| r["spec"]["limits"].as_array().into_iter().flatten())
}

fn milli(v: &Value) -> Option<i64> {
    milli_value(&Quantity(v.as_str()?.to_string()))
}

/// Fills in the default requests and limits of a new pod's containers from `ranges`.
pub fn default(ranges: &[Value], r: &Resource, pod: &mut Value) {
    if (r.group, r.plural) != ("", "pods") {
        return;
    }
    let mut notes = Vec::new();
    for item in items(ranges).filter(|i| i["type"] == "Container") {
        for (list, prefix) in [("initContainers", "init container"), ("containers", "container")] {
            let Some(containers) = pod["spec"][list].as_array_mut() else { continue };
            for c in containers {
                let name = c["name"].as_str().unwrap_or_default().to_string();
                let set_requests = fill(&mut c["resources"], "requests", &item["defaultRequest"]);
                let set_limits = fill(&mut c["resources"], "limits", &item["default"]);
                if !set_requests.is_empty() {
                    notes.push(format!("{} request for {prefix} {name}", set_requests.join(", ")));
                }
                if !set_limits.is_empty() {
                    notes.push(format!("{} limit for {prefix} {name}", set_limits.join(", ")));
                }
            }
        }
    }
    if !notes.is_empty() {
        pod["metadata"]["annotations"][ANNOTATION] = json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
        pod["status"]["qosClass"] = json!(crate::k8s::qos::class(&pod["spec"]));
    }
}

/// Sets each of `defaults` missing from `resources[list]`; the names set, sorted.
fn fill(resources: &mut Value, list: &str, defaults: &Value) -> Vec<String> {
    let Some(defaults) = defaults.as_object().filter(|d| !d.is_empty()) else { return Vec::new() };
    if !resources.is_object() {
        *resources = json!({});
    }
    if !resources[list].is_object() {
        resources[list] = json!({});
    }
    let target = resources[list].as_object_mut().expect("made an object above");
    let mut set: Vec<String> = defaults.keys().filter(|k| !target.contains_key(*k)).cloned().collect();
    set.sort();
    for k in &set {
        target.insert(k.clone(), defaults[k].clone());
    }
    set
}

/// A request or limit: its amount in thousandths and as it is shown in messages.
type Amount = Option<(i64, String)>;

fn amount(v: Option<&Value>) -> Amount {
    let v = v?;
    Some((milli(v)?, v.as_str()?.to_string()))
}

/// Why a new pod or claim falls outside `ranges`, as kube words it; `None` when it fits.
pub fn check(ranges: &[Value], r: &Resource, obj: &Value) -> Option<String> {
    let mut errors = Vec::new();
    for item in items(ranges) {
        match ((r.group, r.plural), item["type"].as_str()) {
            (("", "pods"), Some("Container")) => {
                for list in ["initContainers", "containers"] {
                    for c in obj["spec"][list].as_array().into_iter().flatten() {
                        let res = &c["resources"];
                        let request = |name: &str| amount(res["requests"].get(name));
                        let limit = |name: &str| amount(res["limits"].get(name));
                        bounds(item, "Container", &request, Some(&limit), &mut errors);
                    }
                }
            }
            (("", "pods"), Some("Pod")) => {
                let total = |list: &str, name: &str| pod_total(&obj["spec"], list, name).map(|m| (m, show(name, m)));
                bounds(item, "Pod", &|name| total("requests", name), Some(&|name| total("limits", name)), &mut errors);
            }
            (("", "persistentvolumeclaims"), Some("PersistentVolumeClaim")) => {
                let request = |name: &str| amount(obj["spec"]["resources"]["requests"].get(name));
                bounds(item, "PersistentVolumeClaim", &request, None, &mut errors);
            }
            _ => {}
        }
    }
    match errors.len() {
        0 => None,
        1 => errors.pop(),
        _ => Some(format!("[{}]", errors.join(", "))),
    }
}

/// A pod's total request or limit of one resource (`None` when some container names none):
/// the sum over containers or the largest init container, whichever is more.
fn pod_total(spec: &Value, list: &str, name: &str) -> Option<i64> {
    let of = |l: &str| -> Option<Vec<i64>> {
        spec[l].as_array().into_iter().flatten().map(|c| c["resources"][list].get(name).and_then(milli)).collect()
    };
    let sum: i64 = of("containers")?.iter().sum();
    let init = of("initContainers")?.into_iter().max().unwrap_or(0);
    Some(sum.max(init))
}

/// Checks one item's min, max and ratio against a request and a limit lookup (`limit` is
/// `None` for kinds with requests only, whose max bounds the request).
fn bounds(item: &Value, of: &str, request: &dyn Fn(&str) -> Amount, limit: Option<&dyn Fn(&str) -> Amount>, errors: &mut Vec<String>) {
    let entries = |field: &str| item[field].as_object().cloned().unwrap_or_else(Map::new);
    let shown = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let no_limit = |_: &str| None;
    let limit_of = limit.unwrap_or(&no_limit);
    for (name, min) in entries("min") {
        let (Some(bound), req, lim) = (milli(&min), request(&name), limit_of(&name)) else { continue };
        let min = shown(&min);
        match (req, lim) {
            (None, _) => errors.push(format!("minimum {name} usage per {of} is {min}.  No request is specified")),
            (Some((r, shown_r)), _) if r < bound => {
                errors.push(format!("minimum {name} usage per {of} is {min}, but request is {shown_r}"))
            }
            (_, Some((l, shown_l))) if l < bound => errors.push(format!("minimum {name} usage per {of} is {min}, but limit is {shown_l}")),
            _ => {}
        }
    }
    for (name, max) in entries("max") {
        let Some(bound) = milli(&max) else { continue };
        let (req, max) = (request(&name), shown(&max));
        let Some(limit) = limit else {
            match req {
                None => errors.push(format!("maximum {name} usage per {of} is {max}.  No request is specified")),
                Some((r, shown_r)) if r > bound => errors.push(format!("maximum {name} usage per {of} is {max}, but request is {shown_r}")),
                _ => {}
            }
            continue;
        };
        match (limit(&name), req) {
            (None, _) => errors.push(format!("maximum {name} usage per {of} is {max}.  No limit is specified")),
            (Some((l, shown_l)), _) if l > bound => errors.push(format!("maximum {name} usage per {of} is {max}, but limit is {shown_l}")),
            (_, Some((r, shown_r))) if r > bound => {
                errors.push(format!("maximum {name} usage per {of} is {max}, but request is {shown_r}"))
            }
            _ => {}
        }
    }
    for (name, ratio) in entries("maxLimitRequestRatio") {
        let Some(bound) = milli(&ratio) else { continue };
        let ratio = shown(&ratio);
        let Some((req, _)) = request(&name).filter(|(r, _)| *r > 0) else {
            errors.push(format!("{name} max limit to request ratio per {of} is {ratio}, but no request is specified or request is 0"));
            continue;
        };
        let Some((lim, _)) = limit_of(&name).filter(|(l, _)| *l > 0) else {
            errors.push(format!("{name} max limit to request ratio per {of} is {ratio}, but no limit is specified or limit is 0"));
            continue;
        };
        let provided = lim as f64 / req as f64;
        if provided * 1000.0 > bound as f64 {
            errors.push(format!("{name} max limit to request ratio per {of} is {ratio}, but provided ratio is {provided:.6}"));
        }
    }
}

/// A total in thousandths shown as kube shows a quantity: cpu in cores or millicores, the
/// rest in whole units with a binary suffix when exact.
fn show(name: &str, millis: i64) -> String {
    crate::k8s::quota::format(name, i128::from(millis)).0
}

/// LimitRange's own defaulting: a Container item's default limit from its max, its default
/// request from its default limit, else from its min.
pub fn default_limit_range(range: &mut Value) {
    let Some(items) = range["spec"]["limits"].as_array_mut() else { return };
    for item in items.iter_mut().filter(|i| i["type"] == "Container") {
        for (to, from) in [("default", "max"), ("defaultRequest", "default"), ("defaultRequest", "min")] {
            let Some(source) = item.get(from).and_then(Value::as_object).cloned() else { continue };
            if !item[to].is_object() {
                item[to] = json!({});
            }
            let target = item[to].as_object_mut().expect("made an object above");
            for (k, v) in source {
                target.entry(k).or_insert(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> &'static Resource {
        super::super::registry::lookup("", "v1", "pods").unwrap()
    }

    fn ranges(limits: Value) -> Vec<Value> {
        let mut range = json!({ "spec": { "limits": limits } });
        default_limit_range(&mut range);
        vec![range]
    }

    #[test]
    fn defaults_fill_only_what_containers_leave_out_and_are_noted() {
        let ranges =
            ranges(json!([{ "type": "Container", "default": { "cpu": "500m", "memory": "128Mi" }, "defaultRequest": { "cpu": "100m" } }]));
        let mut pod = json!({ "metadata": {}, "spec": { "containers": [
            { "name": "a", "resources": {} },
            { "name": "b", "resources": { "limits": { "memory": "64Mi" }, "requests": { "memory": "64Mi" } } }
        ] }, "status": { "qosClass": "BestEffort" } });
        default(&ranges, pods(), &mut pod);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"],
            json!({ "requests": { "cpu": "100m", "memory": "128Mi" }, "limits": { "cpu": "500m", "memory": "128Mi" } })
        );
        assert_eq!(pod["spec"]["containers"][1]["resources"]["limits"], json!({ "cpu": "500m", "memory": "64Mi" }));
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, memory request for container a; cpu, memory limit for container a; cpu request for container b; cpu limit for container b"
        );
        assert_eq!(pod["status"]["qosClass"], "Burstable");
    }

    #[test]
    fn min_max_and_ratio_are_checked_in_kubes_words() {
        let ranges = ranges(
            json!([{ "type": "Container", "min": { "cpu": "100m" }, "max": { "cpu": "1", "memory": "1Gi" }, "maxLimitRequestRatio": { "cpu": "2" } }]),
        );
        let pod = |req: &str, lim: &str| json!({ "spec": { "containers": [{ "name": "c", "resources": { "requests": { "cpu": req, "memory": "1Gi" }, "limits": { "cpu": lim, "memory": "1Gi" } } }] } });
        assert_eq!(check(&ranges, pods(), &pod("200m", "400m")), None);
        assert_eq!(check(&ranges, pods(), &pod("50m", "100m")), Some("minimum cpu usage per Container is 100m, but request is 50m".into()));
        assert_eq!(
            check(&ranges, pods(), &pod("500m", "2")),
            Some("[maximum cpu usage per Container is 1, but limit is 2, cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000]".into())
        );
    }

    #[test]
    fn claims_are_held_to_storage_bounds() {
        let claims = super::super::registry::lookup("", "v1", "persistentvolumeclaims").unwrap();
        let ranges = ranges(json!([{ "type": "PersistentVolumeClaim", "min": { "storage": "1Gi" }, "max": { "storage": "2Gi" } }]));
        let claim = |size: &str| json!({ "spec": { "resources": { "requests": { "storage": size } } } });
        assert_eq!(check(&ranges, claims, &claim("1Gi")), None);
        assert_eq!(
            check(&ranges, claims, &claim("5Gi")),
            Some("maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi".into())
        );
    }
}
