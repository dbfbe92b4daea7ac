//! What one DaemonSet sync does, decided purely per node (`podsShouldBeOnNode` then
//! `rollingUpdate`): create a pod where one should run and none is, delete failed and
//! duplicate pods and pods on nodes they may not stay on; once nothing else is pending,
//! replace out-of-date pods within maxUnavailable (deleting first) or maxSurge (creating
//! the new pod first, deleting the old one once the new one is available).

/// A daemon pod on one node.
#[derive(Debug, Clone)]
pub struct DaemonPod {
    pub name: String,
    /// From the current template.
    pub updated: bool,
    pub available: bool,
    pub terminating: bool,
    pub failed: bool,
}

/// One node and the daemon pods targeting it, oldest first.
#[derive(Debug, Clone)]
pub struct NodePods {
    pub node: String,
    pub should_run: bool,
    pub may_stay: bool,
    pub pods: Vec<DaemonPod>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Nodes that get a new pod.
    pub create_on: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<String>,
}

/// The update strategy.
#[derive(Debug, Clone, Copy)]
pub struct Strategy {
    pub rolling: bool,
    pub max_unavailable: i32,
    pub max_surge: i32,
}

pub fn plan(nodes: &[NodePods], strategy: Strategy) -> Plan {
    let mut plan = Plan::default();
    for n in nodes {
        let active: Vec<&DaemonPod> = n.pods.iter().filter(|p| !p.terminating).collect();
        if n.should_run && n.pods.is_empty() {
            plan.create_on.push(n.node.clone());
        } else if n.may_stay {
            let (failed, running): (Vec<&DaemonPod>, Vec<&DaemonPod>) = active.into_iter().partition(|p| p.failed);
            plan.delete.extend(failed.iter().map(|p| p.name.clone()));
            // Keep the oldest pod (with surge: the oldest old and the oldest new one).
            let keep: Vec<&str> = if strategy.max_surge > 0 {
                [running.iter().find(|p| !p.updated), running.iter().find(|p| p.updated)]
                    .into_iter()
                    .flatten()
                    .map(|p| p.name.as_str())
                    .collect()
            } else {
                running.first().map(|p| p.name.as_str()).into_iter().collect()
            };
            plan.delete.extend(running.iter().filter(|p| !keep.contains(&p.name.as_str())).map(|p| p.name.clone()));
        } else {
            plan.delete.extend(active.iter().map(|p| p.name.clone()));
        }
    }
    if plan != Plan::default() || !strategy.rolling {
        return plan;
    }
    rolling_update(nodes, strategy, &mut plan);
    plan
}

fn rolling_update(nodes: &[NodePods], strategy: Strategy, plan: &mut Plan) {
    let mut unavailable = 0;
    let mut surged = 0;
    let mut candidates = Vec::new();
    for n in nodes.iter().filter(|n| n.should_run) {
        let live: Vec<&DaemonPod> = n.pods.iter().filter(|p| !p.terminating).collect();
        let new = live.iter().find(|p| p.updated);
        let old = live.iter().find(|p| !p.updated);
        match (old, new) {
            (None, None) => unavailable += 1,
            (None, Some(new)) => unavailable += i32::from(!new.available),
            (Some(old), None) if strategy.max_surge > 0 => {
                if old.available {
                    candidates.push(n.node.clone());
                } else {
                    plan.create_on.push(n.node.clone());
                }
            }
            (Some(old), None) => {
                if old.available {
                    candidates.push(old.name.clone());
                } else {
                    plan.delete.push(old.name.clone());
                    unavailable += 1;
                }
            }
            (Some(old), Some(new)) => {
                if new.available {
                    plan.delete.push(old.name.clone());
                } else {
                    surged += 1;
                }
            }
        }
    }
    for candidate in candidates {
        if strategy.max_surge > 0 {
            if surged >= strategy.max_surge {
                break;
            }
            plan.create_on.push(candidate);
            surged += 1;
        } else {
            if unavailable >= strategy.max_unavailable {
                break;
            }
            plan.delete.push(candidate);
            unavailable += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, updated: bool, available: bool) -> DaemonPod {
        DaemonPod { name: name.into(), updated, available, terminating: false, failed: false }
    }

    fn node(name: &str, fits: bool, pods: Vec<DaemonPod>) -> NodePods {
        NodePods { node: name.into(), should_run: fits, may_stay: fits, pods }
    }

    const ONE_AT_A_TIME: Strategy = Strategy { rolling: true, max_unavailable: 1, max_surge: 0 };

    #[test]
    fn one_pod_per_eligible_node() {
        let nodes = [
            node("a", true, vec![]),
            node("b", false, vec![pod("b1", true, true)]),
            node("c", true, vec![pod("c1", true, true), pod("c2", true, true)]),
        ];
        let p = plan(&nodes, ONE_AT_A_TIME);
        assert_eq!(p.create_on, ["a"]);
        assert_eq!(p.delete, ["b1", "c2"], "off an ineligible node, and the younger duplicate");
        let mut failed = pod("d1", true, false);
        failed.failed = true;
        assert_eq!(plan(&[node("d", true, vec![failed])], ONE_AT_A_TIME).delete, ["d1"]);
    }

    #[test]
    fn rolling_update_within_max_unavailable() {
        let nodes = [
            node("a", true, vec![pod("a1", false, true)]),
            node("b", true, vec![pod("b1", false, true)]),
            node("c", true, vec![pod("c1", false, false)]),
        ];
        let p = plan(&nodes, ONE_AT_A_TIME);
        assert_eq!(p.delete, ["c1"], "an unavailable old pod goes at once and uses the budget");
        let nodes = [node("a", true, vec![pod("a1", false, true)]), node("b", true, vec![pod("b1", false, true)])];
        assert_eq!(plan(&nodes, ONE_AT_A_TIME).delete, ["a1"]);
        let nodes = [node("a", true, vec![pod("a2", true, false)]), node("b", true, vec![pod("b1", false, true)])];
        assert!(plan(&nodes, ONE_AT_A_TIME).delete.is_empty(), "waits for the new pod on a");
        assert!(plan(&nodes, Strategy { rolling: false, ..ONE_AT_A_TIME }) == Plan::default(), "OnDelete");
    }

    #[test]
    fn surge_creates_before_deleting() {
        let surge = Strategy { rolling: true, max_unavailable: 0, max_surge: 1 };
        let nodes = [node("a", true, vec![pod("a1", false, true)]), node("b", true, vec![pod("b1", false, true)])];
        assert_eq!(plan(&nodes, surge), Plan { create_on: vec!["a".into()], delete: vec![] });
        let nodes = [node("a", true, vec![pod("a1", false, true), pod("a2", true, false)]), node("b", true, vec![pod("b1", false, true)])];
        assert_eq!(plan(&nodes, surge), Plan::default(), "one surge pod at a time");
        let nodes = [node("a", true, vec![pod("a1", false, true), pod("a2", true, true)]), node("b", true, vec![pod("b1", false, true)])];
        assert_eq!(plan(&nodes, surge).delete, ["a1"]);
    }
}
