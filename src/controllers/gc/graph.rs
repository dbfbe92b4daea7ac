//! The garbage collector's object graph and its decisions, free of I/O: owners → dependents
//! from ownerReferences, and what Kubernetes' garbage collector does with an object —
//! delete a dependent whose owners are all gone (or being deleted in the foreground), drop
//! references to gone owners while others remain, orphan dependents of an owner with the
//! `orphan` finalizer, and release a foreground-deleted owner once no dependent blocks it.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

/// One object as the collector sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub uid: String,
    /// Which watched resource it belongs to (an index into the collector's resource list).
    pub resource: usize,
    pub namespace: Option<String>,
    pub name: String,
    pub resource_version: Option<String>,
    pub owners: Vec<OwnerReference>,
    pub finalizers: Vec<String>,
    pub deleting: bool,
}

impl Node {
    pub fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// Being deleted and waiting for its dependents (foreground propagation).
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }
}

/// What is known about an owner a dependent refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// Gone (or replaced by an object with another uid).
    Absent,
    Present {
        deleting_dependents: bool,
    },
}

/// How to delete an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// What to do with a dependent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Delete(Propagation),
    /// Remove the references to these owner uids.
    DropOwners(Vec<String>),
}

/// What to do for an owner that is being deleted with a propagation finalizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerWork {
    None,
    /// Remove the owner's reference from these dependents, then the `orphan` finalizer.
    Orphan(Vec<String>),
    /// Dependents still to go (the foreground finalizer stays): these to look at.
    WaitFor(Vec<String>),
    /// No dependent blocks it any more: remove the `foregroundDeletion` finalizer.
    ReleaseForeground,
}

/// The objects and the owner → dependents index.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, BTreeSet<String>>,
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn dependents_of(&self, uid: &str) -> Vec<String> {
        self.dependents.get(uid).map(|d| d.iter().cloned().collect()).unwrap_or_default()
    }

    /// The uids of all nodes of one resource.
    pub fn uids_of(&self, resource: usize) -> Vec<String> {
        self.nodes.values().filter(|n| n.resource == resource).map(|n| n.uid.clone()).collect()
    }

    fn unlink(&mut self, node: &Node) {
        for o in &node.owners {
            if let Some(set) = self.dependents.get_mut(&o.uid) {
                set.remove(&node.uid);
                if set.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
        }
    }

    /// Adds or updates a node; returns the uids worth a look because of it.
    pub fn upsert(&mut self, node: Node) -> Vec<String> {
        let old = self.nodes.remove(&node.uid);
        if let Some(old) = &old {
            self.unlink(old);
        }
        for o in &node.owners {
            self.dependents.entry(o.uid.clone()).or_default().insert(node.uid.clone());
        }
        let mut affected = vec![node.uid.clone()];
        // A node that is now being deleted with a propagation finalizer involves its dependents;
        // a dependent that changed may unblock its owners.
        if node.deleting {
            affected.extend(self.dependents_of(&node.uid));
        }
        affected.extend(node.owners.iter().map(|o| o.uid.clone()));
        if let Some(old) = old {
            affected.extend(old.owners.into_iter().map(|o| o.uid));
        }
        self.nodes.insert(node.uid.clone(), node);
        affected
    }

    /// Removes a node; returns the uids worth a look: its dependents and its owners.
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let Some(node) = self.nodes.remove(uid) else { return Vec::new() };
        self.unlink(&node);
        let mut affected = self.dependents_of(uid);
        affected.extend(node.owners.iter().map(|o| o.uid.clone()));
        affected
    }

    /// What the graph knows about an owner reference (the caller confirms `Absent` against the
    /// API before acting on it).
    pub fn owner_state(&self, owner: &OwnerReference) -> OwnerState {
        match self.nodes.get(&owner.uid) {
            Some(n) => OwnerState::Present { deleting_dependents: n.deleting_dependents() },
            None => OwnerState::Absent,
        }
    }

    /// Kubernetes' `attemptToDeleteItem`: the verdict on a dependent given its owners' states.
    pub fn verdict(&self, node: &Node, owner_state: impl Fn(&OwnerReference) -> OwnerState) -> Verdict {
        if node.owners.is_empty() || (node.deleting && !node.deleting_dependents()) {
            return Verdict::Keep;
        }
        let (mut solid, mut dangling, mut waiting) = (0, Vec::new(), Vec::new());
        for o in &node.owners {
            match owner_state(o) {
                OwnerState::Absent => dangling.push(o.uid.clone()),
                OwnerState::Present { deleting_dependents: true } => waiting.push(o.uid.clone()),
                OwnerState::Present { deleting_dependents: false } => solid += 1,
            }
        }
        if solid > 0 {
            let drop: Vec<String> = dangling.into_iter().chain(waiting).collect();
            return if drop.is_empty() { Verdict::Keep } else { Verdict::DropOwners(drop) };
        }
        if node.deleting {
            // Already being deleted in the foreground: nothing more to ask.
            return Verdict::Keep;
        }
        if !waiting.is_empty() && self.dependents.contains_key(&node.uid) {
            // An owner waits for us; our own dependents must go first.
            return Verdict::Delete(Propagation::Foreground);
        }
        Verdict::Delete(if node.has_finalizer(ORPHAN) {
            Propagation::Orphan
        } else if node.has_finalizer(FOREGROUND) {
            Propagation::Foreground
        } else {
            Propagation::Background
        })
    }

    /// The work an owner being deleted with a propagation finalizer needs.
    pub fn owner_work(&self, owner: &Node) -> OwnerWork {
        if !owner.deleting {
            return OwnerWork::None;
        }
        let dependents = self.dependents_of(&owner.uid);
        if owner.has_finalizer(ORPHAN) {
            return OwnerWork::Orphan(dependents);
        }
        if !owner.has_finalizer(FOREGROUND) {
            return OwnerWork::None;
        }
        let blocking: Vec<String> = dependents
            .into_iter()
            .filter(|d| {
                self.nodes.get(d).is_some_and(|n| n.owners.iter().any(|o| o.uid == owner.uid && o.block_owner_deletion == Some(true)))
            })
            .collect();
        if blocking.is_empty() {
            OwnerWork::ReleaseForeground
        } else {
            OwnerWork::WaitFor(blocking)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner_ref(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("name-{uid}"),
            uid: uid.into(),
            controller: None,
            block_owner_deletion: Some(block),
        }
    }

    fn node(uid: &str, owners: &[(&str, bool)]) -> Node {
        Node {
            uid: uid.into(),
            resource: 0,
            namespace: Some("ns".into()),
            name: format!("name-{uid}"),
            resource_version: Some("1".into()),
            owners: owners.iter().map(|(u, b)| owner_ref(u, *b)).collect(),
            finalizers: Vec::new(),
            deleting: false,
        }
    }

    fn deleting(mut n: Node, finalizer: &str) -> Node {
        n.deleting = true;
        n.finalizers.push(finalizer.into());
        n
    }

    #[test]
    fn dependents_of_gone_owners_are_deleted_in_the_background() {
        let mut g = Graph::default();
        g.upsert(node("owner", &[]));
        g.upsert(node("dep", &[("owner", false)]));
        let state = |g: &Graph| g.verdict(g.get("dep").unwrap(), |o| g.owner_state(o));
        assert_eq!(state(&g), Verdict::Keep);
        let affected = g.remove("owner");
        assert_eq!(affected, ["dep"]);
        assert_eq!(state(&g), Verdict::Delete(Propagation::Background));
    }

    #[test]
    fn a_remaining_owner_keeps_the_dependent_but_drops_dangling_references() {
        let mut g = Graph::default();
        g.upsert(node("a", &[]));
        let dep = node("dep", &[("a", false), ("b", false)]);
        g.upsert(dep.clone());
        assert_eq!(g.verdict(&dep, |o| g.owner_state(o)), Verdict::DropOwners(vec!["b".into()]));
        let lone = node("lone", &[]);
        assert_eq!(g.verdict(&lone, |o| g.owner_state(o)), Verdict::Keep, "objects without owners stay");
    }

    #[test]
    fn foreground_deletion_waits_for_blocking_dependents() {
        let mut g = Graph::default();
        let owner = deleting(node("owner", &[]), FOREGROUND);
        g.upsert(owner.clone());
        g.upsert(node("blocking", &[("owner", true)]));
        g.upsert(node("loose", &[("owner", false)]));
        g.upsert(node("grandchild", &[("blocking", true)]));
        assert_eq!(g.owner_work(&owner), OwnerWork::WaitFor(vec!["blocking".into()]));
        // The blocking dependent has dependents of its own: it goes in the foreground too.
        assert_eq!(g.verdict(g.get("blocking").unwrap(), |o| g.owner_state(o)), Verdict::Delete(Propagation::Foreground));
        assert_eq!(g.verdict(g.get("loose").unwrap(), |o| g.owner_state(o)), Verdict::Delete(Propagation::Background));
        g.remove("blocking");
        assert_eq!(g.owner_work(&owner), OwnerWork::ReleaseForeground);
    }

    #[test]
    fn orphaning_lists_the_dependents_to_unlink() {
        let mut g = Graph::default();
        let owner = deleting(node("owner", &[]), ORPHAN);
        g.upsert(owner.clone());
        g.upsert(node("d1", &[("owner", true)]));
        g.upsert(node("d2", &[("owner", false)]));
        assert_eq!(g.owner_work(&owner), OwnerWork::Orphan(vec!["d1".into(), "d2".into()]));
        // While the owner waits for orphaning, its dependents are kept.
        assert_eq!(g.verdict(g.get("d1").unwrap(), |o| g.owner_state(o)), Verdict::Keep);
        assert_eq!(g.owner_work(&node("alive", &[])), OwnerWork::None);
    }

    #[test]
    fn updates_move_dependents_between_owners() {
        let mut g = Graph::default();
        g.upsert(node("dep", &[("a", false)]));
        let affected = g.upsert(node("dep", &[("b", false)]));
        assert!(affected.contains(&"a".to_string()) && affected.contains(&"b".to_string()));
        assert!(g.dependents_of("a").is_empty());
        assert_eq!(g.dependents_of("b"), ["dep"]);
    }
}
