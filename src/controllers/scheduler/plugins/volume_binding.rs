//! VolumeBinding: a pod's persistentVolumeClaims as kube-scheduler's plugin weighs them. Before
//! any node (PreFilter) a missing or deleted claim, or an unbound claim of a class that binds
//! immediately, makes the pod unschedulable everywhere; then (Filter) a claim's bound volume
//! must admit the node by its node affinity, and a claim that waits for its first consumer must
//! have an Available volume for that node or a class with a provisioner (the binder then
//! records the chosen node on the claim, see `binder`).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::{ObjectRef, Store};

use super::{Filtered, Rejection};
use crate::controllers::scheduler::node_info::NodeInfo;
use crate::controllers::volume::matching::{self, ChosenNode};

/// kube's reasons.
const NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
const BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
const PV_NOT_EXIST: &str = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

/// The names of the claims a pod's volumes refer to.
pub fn claim_names(pod: &Pod) -> impl Iterator<Item = &str> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes.into_iter().flatten().filter_map(|v| v.persistent_volume_claim.as_ref()).map(|c| c.claim_name.as_str())
}

/// The scheduler's views of claims, volumes and classes (the shared informers' caches).
#[derive(Clone)]
pub struct VolumeStores {
    pub claims: Store<PersistentVolumeClaim>,
    pub volumes: Store<PersistentVolume>,
    pub classes: Store<StorageClass>,
}

/// A claim that waits for its first consumer: bound on the node the pod goes to.
#[derive(Debug)]
struct Waiting {
    claim: Arc<PersistentVolumeClaim>,
    /// The class has a provisioner that can make a volume on any node.
    provisionable: bool,
}

/// A pod's claims, looked up once per scheduling attempt (kube's PreFilter state).
#[derive(Debug, Default)]
pub struct PodVolumes {
    /// The volumes of the pod's bound claims (`None`: bound to a volume that does not exist).
    bound: Vec<Option<Arc<PersistentVolume>>>,
    waiting: Vec<Waiting>,
    /// Every volume, to find one for a waiting claim (empty when none waits).
    candidates: Vec<Arc<PersistentVolume>>,
}

impl VolumeStores {
    /// The pod's claims, or the message that makes it unschedulable on every node.
    pub fn prefilter(&self, pod: &Pod) -> Result<PodVolumes, String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut out = PodVolumes::default();
        for name in claim_names(pod) {
            let claim = self
                .claims
                .get(&ObjectRef::new(name).within(namespace))
                .ok_or_else(|| format!("persistentvolumeclaim {name:?} not found"))?;
            if claim.metadata.deletion_timestamp.is_some() {
                return Err(format!("persistentvolumeclaim {name:?} is being deleted"));
            }
            if let Some(volume) = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).filter(|v| !v.is_empty()) {
                out.bound.push(self.volumes.get(&ObjectRef::new(volume)));
                continue;
            }
            let class_name = matching::claim_class(&claim);
            let class = (!class_name.is_empty()).then(|| self.classes.get(&ObjectRef::new(class_name))).flatten();
            match class {
                Some(class) if matching::waits_for_consumer(&class) => {
                    let provisionable = !class.provisioner.is_empty() && class.provisioner != "kubernetes.io/no-provisioner";
                    out.waiting.push(Waiting { claim, provisionable });
                }
                _ => return Err(UNBOUND_IMMEDIATE.into()),
            }
        }
        if !out.waiting.is_empty() {
            out.candidates = self.volumes.state();
        }
        Ok(out)
    }
}

impl PodVolumes {
    /// Whether the pod has no claim to look at.
    pub fn is_empty(&self) -> bool {
        self.bound.is_empty() && self.waiting.is_empty()
    }

    /// kube's Filter for one node.
    pub fn filter(&self, node: &NodeInfo) -> Filtered {
        for pv in &self.bound {
            let Some(pv) = pv else { return Err(Rejection::unresolvable(PV_NOT_EXIST)) };
            if !matching::admits_node(pv, &node.name, node.labels()) {
                return Err(Rejection::unresolvable(NODE_CONFLICT));
            }
        }
        let chosen = ChosenNode { name: &node.name, labels: node.labels() };
        for w in &self.waiting {
            let found = || matching::find_match(&w.claim, self.candidates.iter().map(|v| &**v), true, Some(&chosen)).is_some();
            if !w.provisionable && !found() {
                return Err(Rejection::unresolvable(BIND_CONFLICT));
            }
        }
        Ok(())
    }
}

/// The FailedScheduling message of a pod whose PreFilter failed with `message` (no node was
/// looked at; preemption cannot help).
pub fn prefilter_message(all: usize, message: &str) -> String {
    format!(
        "0/{all} nodes are available: {message}. preemption: 0/{all} nodes are available: {all} Preemption is not helpful for scheduling.."
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;
    use serde_json::json;

    fn store<K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned>(objects: Vec<serde_json::Value>) -> Store<K> {
        let mut writer = Writer::<K>::default();
        let store = writer.as_reader();
        writer.apply_watcher_event(&Event::Init);
        for o in objects {
            writer.apply_watcher_event(&Event::InitApply(serde_json::from_value(o).unwrap()));
        }
        writer.apply_watcher_event(&Event::InitDone);
        store
    }

    fn node(name: &str) -> NodeInfo {
        let n: k8s_openapi::api::core::v1::Node =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}})).unwrap();
        let mut cache = crate::controllers::scheduler::cache::Cache::default();
        cache.upsert_node(Arc::new(n));
        cache.nodes()[0].clone()
    }

    fn pod(claim: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [{"name": "c"}],
            "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]}}))
        .unwrap()
    }

    fn stores() -> VolumeStores {
        let on_n1 = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}});
        VolumeStores {
            claims: store(vec![
                json!({"metadata": {"name": "bound", "namespace": "ns"}, "spec": {"volumeName": "pv-n1"}}),
                json!({"metadata": {"name": "dangling", "namespace": "ns"}, "spec": {"volumeName": "gone"}}),
                json!({"metadata": {"name": "wait", "namespace": "ns", "uid": "u"}, "spec": {"storageClassName": "local-path",
                    "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
                json!({"metadata": {"name": "static", "namespace": "ns", "uid": "s"}, "spec": {"storageClassName": "manual",
                    "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
                json!({"metadata": {"name": "now", "namespace": "ns"}, "spec": {"storageClassName": "immediate"}}),
            ]),
            volumes: store(vec![
                json!({"metadata": {"name": "pv-n1"}, "spec": {"nodeAffinity": on_n1}}),
                json!({"metadata": {"name": "manual-n1"}, "spec": {"nodeAffinity": on_n1, "storageClassName": "manual",
                    "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}, "status": {"phase": "Available"}}),
            ]),
            classes: store(vec![
                json!({"metadata": {"name": "local-path"}, "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"}),
                json!({"metadata": {"name": "manual"}, "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer"}),
                json!({"metadata": {"name": "immediate"}, "provisioner": "x", "volumeBindingMode": "Immediate"}),
            ]),
        }
    }

    #[test]
    fn prefilter_refuses_missing_and_unbound_immediate_claims() {
        let s = stores();
        assert_eq!(s.prefilter(&pod("nope")).unwrap_err(), "persistentvolumeclaim \"nope\" not found");
        assert_eq!(s.prefilter(&pod("now")).unwrap_err(), UNBOUND_IMMEDIATE);
        assert_eq!(
            prefilter_message(1, "persistentvolumeclaim \"nope\" not found"),
            "0/1 nodes are available: persistentvolumeclaim \"nope\" not found. \
             preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.."
        );
    }

    #[test]
    fn bound_volumes_pin_the_pod_and_waiting_claims_need_a_volume_or_a_provisioner() {
        let s = stores();
        let bound = s.prefilter(&pod("bound")).unwrap();
        assert_eq!(bound.filter(&node("n1")), Ok(()));
        assert_eq!(bound.filter(&node("n2")).unwrap_err().reasons, vec![NODE_CONFLICT]);
        let dangling = s.prefilter(&pod("dangling")).unwrap();
        assert_eq!(dangling.filter(&node("n1")).unwrap_err().reasons, vec![PV_NOT_EXIST]);
        let wait = s.prefilter(&pod("wait")).unwrap();
        assert_eq!(wait.filter(&node("n2")), Ok(()), "provisioned on any node");
        let manual = s.prefilter(&pod("static")).unwrap();
        assert_eq!(manual.filter(&node("n1")), Ok(()));
        assert_eq!(manual.filter(&node("n2")).unwrap_err().reasons, vec![BIND_CONFLICT]);
    }
}
