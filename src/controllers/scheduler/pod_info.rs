//! `PodInfo`: a pod with everything the filters and scores need worked out once (requests,
//! host ports, owner, parsed affinity terms), shared by the queue, the cache and the plugins.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, WeightedPodAffinityTerm};
use kube::core::{Selector, SelectorExt};

use super::resources::{self, Resources};

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// The namespaces an affinity term looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    All,
    Listed(BTreeSet<String>),
}

/// A required or preferred (anti-)affinity term with its selector parsed.
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    /// `None` when the term has no (or an invalid) label selector: it matches no pod.
    pub selector: Option<Selector>,
    pub namespaces: Namespaces,
    pub topology_key: String,
}

impl AffinityTerm {
    /// `owner_namespace` is the namespace of the pod that carries the term. A namespaceSelector
    /// other than `{}` cannot be evaluated without namespace labels and adds no namespace.
    fn parse(term: &PodAffinityTerm, owner_namespace: &str) -> Self {
        let selector = term.label_selector.clone().and_then(|s| Selector::try_from(s).ok());
        let listed: BTreeSet<String> = term.namespaces.iter().flatten().cloned().collect();
        let namespaces = match &term.namespace_selector {
            Some(ns)
                if ns.match_labels.as_ref().is_none_or(|m| m.is_empty()) && ns.match_expressions.as_ref().is_none_or(|e| e.is_empty()) =>
            {
                Namespaces::All
            }
            None if listed.is_empty() => Namespaces::Listed([owner_namespace.to_string()].into()),
            _ => Namespaces::Listed(listed),
        };
        Self { selector, namespaces, topology_key: term.topology_key.clone() }
    }

    /// Whether `pod` is one of the pods this term selects.
    pub fn matches(&self, pod: &PodInfo) -> bool {
        let in_namespace = match &self.namespaces {
            Namespaces::All => true,
            Namespaces::Listed(set) => set.contains(&pod.namespace),
        };
        in_namespace && self.selector.as_ref().is_some_and(|s| s.matches(pod.labels()))
    }
}

/// A preferred term and its weight (1–100).
#[derive(Debug, Clone)]
pub struct WeightedTerm {
    pub weight: i64,
    pub term: AffinityTerm,
}

/// A host port a container asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Two host ports clash on the same protocol and port when either binds all addresses.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port && self.protocol == other.protocol && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// A pod prepared for scheduling decisions.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    /// `namespace/name`.
    pub key: String,
    pub namespace: String,
    pub uid: String,
    pub priority: i32,
    pub requests: Resources,
    pub non_zero_requests: Resources,
    pub host_ports: Vec<HostPort>,
    /// The uid of the ReplicaSet, ReplicationController or StatefulSet controlling the pod: the
    /// group kube-scheduler's default topology spreading spreads.
    pub owner_uid: Option<String>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<WeightedTerm>,
    pub preferred_anti_affinity: Vec<WeightedTerm>,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> Self {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let key = format!("{namespace}/{}", pod.metadata.name.as_deref().unwrap_or_default());
        let spec = pod.spec.as_ref();
        let host_ports = spec
            .into_iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let port = p.host_port.filter(|port| *port > 0)?;
                let ip = p.host_ip.clone().filter(|ip| !ip.is_empty()).unwrap_or_else(|| "0.0.0.0".into());
                Some(HostPort { ip, protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()), port })
            })
            .collect();
        let affinity = spec.and_then(|s| s.affinity.as_ref());
        let pod_affinity = affinity.and_then(|a| a.pod_affinity.as_ref());
        let pod_anti = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms.into_iter().flatten().map(|t| AffinityTerm::parse(t, &namespace)).collect()
        };
        let preferred = |terms: Option<&Vec<WeightedPodAffinityTerm>>| -> Vec<WeightedTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|t| WeightedTerm { weight: i64::from(t.weight), term: AffinityTerm::parse(&t.pod_affinity_term, &namespace) })
                .collect()
        };
        Self {
            key,
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            priority: spec.and_then(|s| s.priority).unwrap_or(0),
            requests: resources::pod_requests(&pod),
            non_zero_requests: resources::pod_non_zero_requests(&pod),
            host_ports,
            owner_uid: pod
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true) && matches!(o.kind.as_str(), "ReplicaSet" | "ReplicationController" | "StatefulSet"))
                .map(|o| o.uid.clone()),
            required_affinity: required(pod_affinity.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())),
            required_anti_affinity: required(pod_anti.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())),
            preferred_affinity: preferred(pod_affinity.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())),
            preferred_anti_affinity: preferred(pod_anti.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())),
            namespace,
            pod,
        }
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
    }

    pub fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or_default()
    }

    /// Whether the pod carries any inter-pod affinity or anti-affinity term.
    pub fn has_affinity(&self) -> bool {
        !(self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(v: serde_json::Value) -> PodInfo {
        PodInfo::new(Arc::new(serde_json::from_value(v).unwrap()))
    }

    #[test]
    fn terms_default_to_the_owner_namespace() {
        let p = info(json!({
            "metadata": { "name": "p", "namespace": "ns1", "labels": { "app": "web" } },
            "spec": { "containers": [], "affinity": { "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [
                { "labelSelector": { "matchLabels": { "app": "web" } }, "topologyKey": "kubernetes.io/hostname" }
            ] } } }
        }));
        let other = info(json!({ "metadata": { "name": "q", "namespace": "ns2", "labels": { "app": "web" } } }));
        let term = &p.required_anti_affinity[0];
        assert!(term.matches(&p));
        assert!(!term.matches(&other));
        assert!(p.has_affinity());
    }

    #[test]
    fn host_ports_and_owner() {
        let p = info(json!({
            "metadata": { "name": "p", "namespace": "d", "ownerReferences": [
                { "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": true }
            ] },
            "spec": { "containers": [ { "name": "c", "ports": [ { "containerPort": 80, "hostPort": 8080 }, { "containerPort": 81 } ] } ] }
        }));
        assert_eq!(p.host_ports, vec![HostPort { ip: "0.0.0.0".into(), protocol: "TCP".into(), port: 8080 }]);
        assert_eq!(p.owner_uid.as_deref(), Some("u1"));
        assert_eq!(p.key, "d/p");
        let specific = HostPort { ip: "10.0.0.1".into(), protocol: "TCP".into(), port: 8080 };
        assert!(p.host_ports[0].conflicts(&specific));
        assert!(!specific.conflicts(&HostPort { ip: "10.0.0.2".into(), ..specific.clone() }));
    }
}
