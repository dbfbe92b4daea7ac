//! Built-in resources served in another version than the one stored, as kube-apiserver
//! stores one version per resource and converts on every read and write: autoscaling/v1
//! HorizontalPodAutoscalers are stored as autoscaling/v2.

use serde_json::Value;

use super::registry::Resource;

/// Whether objects of `r` are stored in another version than `r`'s.
pub fn converts(r: &Resource) -> bool {
    (r.group, r.version, r.kind) == ("autoscaling", "v1", "HorizontalPodAutoscaler")
}

/// An object of `r`'s version in its stored version (defaulted as the stored version is).
pub fn to_storage(r: &Resource, obj: Value) -> Value {
    if !converts(r) {
        return obj;
    }
    let mut stored = super::hpa::to_v2(&obj);
    super::hpa::apply_defaults(&mut stored);
    stored
}

/// A stored object in `r`'s version.
pub fn from_storage(r: &Resource, obj: Value) -> Value {
    if converts(r) {
        super::hpa::to_v1(&obj)
    } else {
        obj
    }
}
