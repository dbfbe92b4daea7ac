//! Which PersistentVolume a claim may bind to, as kube's `FindMatchingVolume` decides it: a
//! volume pre-bound to the claim wins; otherwise the smallest Available volume of the claim's
//! storage class whose capacity, access modes, volume mode, labels (the claim's selector) and
//! node affinity (for a claim waiting on a chosen node) fit. Pure functions, shared with the
//! scheduler's volume binding. (The default class is `k8s::storage_class`'s.)

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::core::{Selector, SelectorExt};

use crate::controllers::scheduler::plugins::node_affinity::term_matches;

/// The storage class a claim asks for ("" = none).
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    claim.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or_default()
}

/// The storage class of a volume ("" = none).
pub fn volume_class(pv: &PersistentVolume) -> &str {
    pv.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or_default()
}

/// The bytes of storage a claim requests (0 when it names none).
pub fn requested(claim: &PersistentVolumeClaim) -> i64 {
    let requests = claim.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref());
    requests.and_then(|r| r.get("storage")).and_then(crate::k8s::quantity::value).unwrap_or(0)
}

/// The bytes a volume holds (0 when it says none).
pub fn capacity(pv: &PersistentVolume) -> i64 {
    let capacity = pv.spec.as_ref().and_then(|s| s.capacity.as_ref());
    capacity.and_then(|c| c.get("storage")).and_then(crate::k8s::quantity::value).unwrap_or(0)
}

fn volume_mode(mode: Option<&String>) -> &str {
    mode.map_or("Filesystem", String::as_str)
}

/// Whether `pv`'s claimRef names `claim` (by namespace and name, and by uid when it has one).
pub fn bound_to(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else { return false };
    r.namespace == claim.metadata.namespace
        && r.name == claim.metadata.name
        && r.uid.as_deref().is_none_or(|u| u.is_empty() || Some(u) == claim.metadata.uid.as_deref())
}

/// Whether `pv`'s node affinity admits a node with this name and labels (no affinity: any).
pub fn admits_node(pv: &PersistentVolume, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let required = pv.spec.as_ref().and_then(|s| s.node_affinity.as_ref()).and_then(|a| a.required.as_ref());
    required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, name, labels)))
}

/// Why a volume cannot hold a claim (kube's `checkVolumeSatisfyClaim`), or `None` when it can.
pub fn unsatisfied(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> Option<String> {
    let name = pv.metadata.name.as_deref().unwrap_or_default();
    if capacity(pv) < requested(claim) {
        return Some("requested PV is too small".into());
    }
    if volume_class(pv) != claim_class(claim) {
        return Some("storageClassName does not match".into());
    }
    let (pv_spec, claim_spec) = (pv.spec.as_ref(), claim.spec.as_ref());
    if volume_mode(pv_spec.and_then(|s| s.volume_mode.as_ref())) != volume_mode(claim_spec.and_then(|s| s.volume_mode.as_ref())) {
        return Some(format!("incompatible volumeMode for volume {name:?}"));
    }
    let offered = pv_spec.and_then(|s| s.access_modes.as_ref());
    let wanted = claim_spec.and_then(|s| s.access_modes.as_ref());
    if !wanted.into_iter().flatten().all(|m| offered.is_some_and(|o| o.contains(m))) {
        return Some("incompatible accessMode".into());
    }
    None
}

/// Whether the claim's label selector (if any) selects the volume.
fn selected(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(selector) = claim.spec.as_ref().and_then(|s| s.selector.clone()) else { return true };
    let labels = pv.metadata.labels.clone().unwrap_or_default();
    Selector::try_from(selector).is_ok_and(|s| s.matches(&labels))
}

/// The node a waiting claim is to be bound for: its name and labels.
pub struct ChosenNode<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// The volume `claim` should bind to among `volumes`; `delayed` says the claim's class binds
/// on first consumer, `node` is the node chosen for it (none yet: only pre-bound volumes).
pub fn find_match<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    delayed: bool,
    node: Option<&ChosenNode>,
) -> Option<&'a PersistentVolume> {
    let want = requested(claim);
    let mut best: Option<&PersistentVolume> = None;
    for pv in volumes {
        if pv.metadata.deletion_timestamp.is_some() || capacity(pv) < want {
            continue;
        }
        if node.is_some_and(|n| !admits_node(pv, n.name, n.labels)) {
            continue;
        }
        if bound_to(pv, claim) {
            if unsatisfied(pv, claim).is_none() {
                return Some(pv);
            }
            continue;
        }
        let claimed = pv.spec.as_ref().is_some_and(|s| s.claim_ref.is_some());
        let available = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available");
        if claimed || (delayed && node.is_none()) || !available || !selected(pv, claim) || unsatisfied(pv, claim).is_some() {
            continue;
        }
        if best.is_none_or(|b| capacity(pv) < capacity(b)) {
            best = Some(pv);
        }
    }
    best
}

/// Whether a class binds on first consumer (`volumeBindingMode: WaitForFirstConsumer`).
pub fn waits_for_consumer(class: &StorageClass) -> bool {
    class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(name: &str, size: &str, extra: serde_json::Value) -> PersistentVolume {
        let mut v = json!({"metadata": {"name": name, "labels": {"tier": "fast"}},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/x"}},
            "status": {"phase": "Available"}});
        json_patch::merge(&mut v, &extra);
        serde_json::from_value(v).unwrap()
    }

    fn claim(size: &str, extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut v = json!({"metadata": {"name": "data", "namespace": "ns", "uid": "u1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, "storageClassName": ""}});
        json_patch::merge(&mut v, &extra);
        serde_json::from_value(v).unwrap()
    }

    fn name(v: Option<&PersistentVolume>) -> Option<&str> {
        v.and_then(|v| v.metadata.name.as_deref())
    }

    #[test]
    fn the_smallest_fitting_available_volume_of_the_class_wins() {
        let vols = [pv("big", "10Gi", json!({})), pv("small", "2Gi", json!({})), pv("tiny", "500Mi", json!({}))];
        assert_eq!(name(find_match(&claim("1Gi", json!({})), &vols, false, None)), Some("small"));
        assert_eq!(name(find_match(&claim("20Gi", json!({})), &vols, false, None)), None, "none big enough");
        let fast = claim("1Gi", json!({"spec": {"storageClassName": "fast"}}));
        assert_eq!(name(find_match(&fast, &vols, false, None)), None, "other class");
        let rwx = claim("1Gi", json!({"spec": {"accessModes": ["ReadWriteMany"]}}));
        assert_eq!(name(find_match(&rwx, &vols, false, None)), None, "access mode not offered");
        let block = claim("1Gi", json!({"spec": {"volumeMode": "Block"}}));
        assert_eq!(name(find_match(&block, &vols, false, None)), None, "volume mode");
        let slow = claim("1Gi", json!({"spec": {"selector": {"matchLabels": {"tier": "slow"}}}}));
        assert_eq!(name(find_match(&slow, &vols, false, None)), None, "selector");
    }

    #[test]
    fn bound_released_and_pre_bound_volumes() {
        let taken = pv(
            "taken",
            "1Gi",
            json!({"spec": {"claimRef": {"namespace": "ns", "name": "other", "uid": "u2"}}, "status": {"phase": "Bound"}}),
        );
        let released = pv("released", "1Gi", json!({"status": {"phase": "Released"}}));
        assert_eq!(name(find_match(&claim("1Gi", json!({})), [&taken, &released], false, None)), None);
        let mine = pv("mine", "5Gi", json!({"spec": {"claimRef": {"namespace": "ns", "name": "data"}}, "status": {"phase": "Available"}}));
        let free = pv("free", "1Gi", json!({}));
        assert_eq!(name(find_match(&claim("1Gi", json!({})), [&free, &mine], false, None)), Some("mine"), "pre-bound wins");
        let stale = pv("stale", "5Gi", json!({"spec": {"claimRef": {"namespace": "ns", "name": "data", "uid": "old"}}}));
        assert_eq!(name(find_match(&claim("1Gi", json!({})), [&stale], false, None)), None, "a former claim's uid");
    }

    #[test]
    fn delayed_claims_bind_only_on_their_node() {
        let affinity = json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}});
        let local = pv("local", "1Gi", affinity);
        let c = claim("1Gi", json!({}));
        assert_eq!(name(find_match(&c, [&local], true, None)), None, "no node chosen yet");
        let n1 = BTreeMap::from([("kubernetes.io/hostname".to_string(), "n1".to_string())]);
        let n2 = BTreeMap::from([("kubernetes.io/hostname".to_string(), "n2".to_string())]);
        assert_eq!(name(find_match(&c, [&local], true, Some(&ChosenNode { name: "n1", labels: &n1 }))), Some("local"));
        assert_eq!(name(find_match(&c, [&local], true, Some(&ChosenNode { name: "n2", labels: &n2 }))), None);
    }

    #[test]
    fn unsatisfied_says_why() {
        let c = claim("2Gi", json!({}));
        assert_eq!(unsatisfied(&pv("p", "1Gi", json!({})), &c).as_deref(), Some("requested PV is too small"));
        assert_eq!(unsatisfied(&pv("p", "2Gi", json!({})), &c), None);
    }
}
