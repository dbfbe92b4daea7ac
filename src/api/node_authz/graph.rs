//! The Node authorizer's graph, as kube-apiserver keeps it: which Secrets, ConfigMaps,
//! PersistentVolumeClaims (and the PersistentVolumes bound to them) and ServiceAccounts the
//! pods bound to each node refer to. Fed by a mirror of the pods and claims in the store, so
//! that a decision is a map lookup.

use std::collections::{HashMap, HashSet};

use parking_lot::RwLock;
use serde_json::Value;

use crate::api::mirror::Mirror;

/// What a pod can refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Secret,
    ConfigMap,
    Claim,
    ServiceAccount,
}

/// Store prefixes the graph follows.
pub const PODS: &str = "/registry/core/pods/";
pub const CLAIMS: &str = "/registry/core/persistentvolumeclaims/";

/// A pod bound to a node, with what it refers to (in its namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PodEntry {
    node: String,
    uid: String,
    refs: HashSet<(Kind, String)>,
}

#[derive(Default)]
struct Index {
    /// Bound pods by (namespace, name).
    pods: HashMap<(String, String), PodEntry>,
    /// (kind, namespace, name) → node → how many of its pods refer to it.
    edges: HashMap<(Kind, String, String), HashMap<String, usize>>,
    /// (node, namespace) → how many pods bound to the node live there.
    namespaces: HashMap<(String, String), usize>,
    /// Claim (namespace, name) → the PersistentVolume it is bound to.
    claims: HashMap<(String, String), String>,
    /// PersistentVolume → the claims bound to it.
    volumes: HashMap<String, HashSet<(String, String)>>,
}

/// The graph; decisions fail closed until the first load of each prefix.
#[derive(Default)]
pub struct Graph {
    index: RwLock<Index>,
}

/// The namespace and name of a store key `<prefix><namespace>/<name>`.
fn key_parts(prefix: &str, key: &str) -> Option<(String, String)> {
    let (ns, name) = key.strip_prefix(prefix)?.split_once('/')?;
    Some((ns.to_string(), name.to_string()))
}

fn name_of(v: &Value) -> Option<String> {
    v.as_str().filter(|n| !n.is_empty()).map(str::to_string)
}

/// Everything `pod` refers to that a kubelet needs to read: kube's graph populator's edges.
fn references(pod: &Value) -> HashSet<(Kind, String)> {
    let spec = &pod["spec"];
    let mut refs = HashSet::new();
    let mut add = |kind, v: &Value| {
        if let Some(name) = name_of(v) {
            refs.insert((kind, name));
        }
    };
    add(Kind::ServiceAccount, &spec["serviceAccountName"]);
    for s in spec["imagePullSecrets"].as_array().into_iter().flatten() {
        add(Kind::Secret, &s["name"]);
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in spec[list].as_array().into_iter().flatten() {
            for from in c["envFrom"].as_array().into_iter().flatten() {
                add(Kind::ConfigMap, &from["configMapRef"]["name"]);
                add(Kind::Secret, &from["secretRef"]["name"]);
            }
            for e in c["env"].as_array().into_iter().flatten() {
                add(Kind::ConfigMap, &e["valueFrom"]["configMapKeyRef"]["name"]);
                add(Kind::Secret, &e["valueFrom"]["secretKeyRef"]["name"]);
            }
        }
    }
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    for v in spec["volumes"].as_array().into_iter().flatten() {
        add(Kind::Secret, &v["secret"]["secretName"]);
        add(Kind::ConfigMap, &v["configMap"]["name"]);
        add(Kind::Claim, &v["persistentVolumeClaim"]["claimName"]);
        if v["ephemeral"].is_object() {
            // A generic ephemeral volume's claim is named after the pod and the volume.
            if let Some(volume) = v["name"].as_str() {
                add(Kind::Claim, &Value::String(format!("{pod_name}-{volume}")));
            }
        }
        for source in v["projected"]["sources"].as_array().into_iter().flatten() {
            add(Kind::Secret, &source["secret"]["name"]);
            add(Kind::ConfigMap, &source["configMap"]["name"]);
        }
        // Volume plugins that take credentials (csi, cephfs, rbd, iscsi, flexVolume, …).
        for (_, plugin) in v.as_object().into_iter().flatten() {
            add(Kind::Secret, &plugin["secretRef"]["name"]);
            add(Kind::Secret, &plugin["nodePublishSecretRef"]["name"]);
        }
        add(Kind::Secret, &v["azureFile"]["secretName"]);
    }
    refs
}

impl Index {
    fn add_pod(&mut self, key: (String, String), entry: PodEntry) {
        for (kind, name) in &entry.refs {
            *self.edges.entry((*kind, key.0.clone(), name.clone())).or_default().entry(entry.node.clone()).or_default() += 1;
        }
        *self.namespaces.entry((entry.node.clone(), key.0.clone())).or_default() += 1;
        self.pods.insert(key, entry);
    }

    fn remove_pod(&mut self, key: &(String, String)) {
        let Some(old) = self.pods.remove(key) else { return };
        let place = (old.node.clone(), key.0.clone());
        if let Some(count) = self.namespaces.get_mut(&place) {
            *count -= 1;
            if *count == 0 {
                self.namespaces.remove(&place);
            }
        }
        for (kind, name) in old.refs {
            let edge = (kind, key.0.clone(), name);
            let Some(nodes) = self.edges.get_mut(&edge) else { continue };
            if let Some(count) = nodes.get_mut(&old.node) {
                *count -= 1;
                if *count == 0 {
                    nodes.remove(&old.node);
                }
            }
            if nodes.is_empty() {
                self.edges.remove(&edge);
            }
        }
    }

    fn set_pod(&mut self, key: (String, String), pod: Option<&Value>) {
        let entry = pod.and_then(|pod| {
            Some(PodEntry {
                node: name_of(&pod["spec"]["nodeName"])?,
                uid: pod["metadata"]["uid"].as_str().unwrap_or_default().to_string(),
                refs: references(pod),
            })
        });
        if entry.is_some() && self.pods.get(&key) == entry.as_ref() {
            return;
        }
        self.remove_pod(&key);
        if let Some(entry) = entry {
            self.add_pod(key, entry);
        }
    }

    fn set_claim(&mut self, key: (String, String), claim: Option<&Value>) {
        if let Some(volume) = self.claims.remove(&key) {
            if let Some(claims) = self.volumes.get_mut(&volume) {
                claims.remove(&key);
                if claims.is_empty() {
                    self.volumes.remove(&volume);
                }
            }
        }
        if let Some(volume) = claim.and_then(|c| name_of(&c["spec"]["volumeName"])) {
            self.volumes.entry(volume.clone()).or_default().insert(key.clone());
            self.claims.insert(key, volume);
        }
    }

    fn refers(&self, node: &str, kind: Kind, namespace: &str, name: &str) -> bool {
        self.edges.get(&(kind, namespace.to_string(), name.to_string())).is_some_and(|nodes| nodes.contains_key(node))
    }
}

impl Graph {
    /// Whether a pod bound to `node` refers to `kind` `namespace/name`.
    pub fn refers(&self, node: &str, kind: Kind, namespace: &str, name: &str) -> bool {
        self.index.read().refers(node, kind, namespace, name)
    }

    /// Whether PersistentVolume `volume` is bound to a claim a pod bound to `node` uses.
    pub fn uses_volume(&self, node: &str, volume: &str) -> bool {
        let index = self.index.read();
        index.volumes.get(volume).is_some_and(|claims| claims.iter().any(|(ns, claim)| index.refers(node, Kind::Claim, ns, claim)))
    }

    /// Whether a pod bound to `node` lives in `namespace`.
    pub fn has_pod_in(&self, node: &str, namespace: &str) -> bool {
        self.index.read().namespaces.contains_key(&(node.to_string(), namespace.to_string()))
    }

    /// The node and uid of pod `namespace/name`, if it is bound to one.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<(String, String)> {
        let index = self.index.read();
        index.pods.get(&(namespace.to_string(), name.to_string())).map(|p| (p.node.clone(), p.uid.clone()))
    }
}

impl Mirror for Graph {
    fn reset(&self, prefix: &str, objects: Vec<(String, Value)>) {
        let mut index = self.index.write();
        if prefix == PODS {
            index.pods.clear();
            index.edges.clear();
            index.namespaces.clear();
        } else {
            index.claims.clear();
            index.volumes.clear();
        }
        for (key, obj) in objects {
            self.apply_locked(&mut index, prefix, &key, Some(&obj));
        }
    }

    fn apply(&self, prefix: &str, key: &str, object: Option<Value>) {
        let mut index = self.index.write();
        self.apply_locked(&mut index, prefix, key, object.as_ref());
    }
}

impl Graph {
    fn apply_locked(&self, index: &mut Index, prefix: &str, key: &str, object: Option<&Value>) {
        let Some(parts) = key_parts(prefix, key) else { return };
        if prefix == PODS {
            index.set_pod(parts, object);
        } else {
            index.set_claim(parts, object);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, spec: Value) -> (String, Value) {
        let mut spec = spec;
        spec["nodeName"] = json!(node);
        (
            format!("{PODS}team/{name}"),
            json!({ "metadata": { "name": name, "namespace": "team", "uid": format!("uid-{name}") }, "spec": spec }),
        )
    }

    #[test]
    fn nodes_reach_only_what_their_pods_refer_to() {
        let g = Graph::default();
        let (key, web) = pod(
            "web",
            "n1",
            json!({
                "serviceAccountName": "sa",
                "imagePullSecrets": [{ "name": "pull" }],
                "containers": [{ "name": "c", "envFrom": [{ "configMapRef": { "name": "cm-env" } }],
                    "env": [{ "name": "X", "valueFrom": { "secretKeyRef": { "name": "s-env", "key": "k" } } }] }],
                "volumes": [
                    { "name": "a", "secret": { "secretName": "s-vol" } },
                    { "name": "b", "projected": { "sources": [{ "configMap": { "name": "cm-proj" } }] } },
                    { "name": "c", "persistentVolumeClaim": { "claimName": "data" } },
                    { "name": "d", "csi": { "driver": "x", "nodePublishSecretRef": { "name": "s-csi" } } },
                ],
            }),
        );
        g.reset(PODS, vec![(key.clone(), web.clone())]);
        g.reset(CLAIMS, vec![(format!("{CLAIMS}team/data"), json!({ "spec": { "volumeName": "pv-1" } }))]);
        for (kind, name) in [
            (Kind::ServiceAccount, "sa"),
            (Kind::Secret, "pull"),
            (Kind::ConfigMap, "cm-env"),
            (Kind::Secret, "s-env"),
            (Kind::Secret, "s-vol"),
            (Kind::ConfigMap, "cm-proj"),
            (Kind::Claim, "data"),
            (Kind::Secret, "s-csi"),
        ] {
            assert!(g.refers("n1", kind, "team", name), "{kind:?} {name}");
            assert!(!g.refers("n2", kind, "team", name), "another node: {kind:?} {name}");
            assert!(!g.refers("n1", kind, "other", name), "another namespace: {kind:?} {name}");
        }
        assert!(!g.refers("n1", Kind::Secret, "team", "cm-env"), "kinds are distinct");
        assert!(g.uses_volume("n1", "pv-1") && !g.uses_volume("n2", "pv-1") && !g.uses_volume("n1", "pv-2"));
        assert_eq!(g.pod("team", "web"), Some(("n1".into(), "uid-web".into())));

        // A second pod sharing a secret keeps the edge when the first goes.
        let (key2, other) = pod("other", "n1", json!({ "volumes": [{ "name": "a", "secret": { "secretName": "s-vol" } }] }));
        g.apply(PODS, &key2, Some(other));
        g.apply(PODS, &key, None);
        assert!(g.refers("n1", Kind::Secret, "team", "s-vol"));
        assert!(!g.refers("n1", Kind::Secret, "team", "pull"));
        assert!(!g.uses_volume("n1", "pv-1"));
        assert_eq!(g.pod("team", "web"), None);
        g.apply(PODS, &key2, None);
        assert!(g.index.read().edges.is_empty(), "no edge outlives its pods");

        // An unbound pod refers to nothing; binding it adds its edges.
        let (key, mut pending) = pod("late", "", json!({ "volumes": [{ "name": "a", "secret": { "secretName": "s" } }] }));
        g.apply(PODS, &key, Some(pending.clone()));
        assert!(!g.refers("n1", Kind::Secret, "team", "s"));
        pending["spec"]["nodeName"] = json!("n1");
        g.apply(PODS, &key, Some(pending));
        assert!(g.refers("n1", Kind::Secret, "team", "s"));
    }
}
