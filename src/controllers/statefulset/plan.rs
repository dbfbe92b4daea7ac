//! What one StatefulSet sync does next (`updateStatefulSet`), decided purely from the pods it
//! has: recreate failed pods, create missing ordinals (in order, each waiting for the one
//! before to be Running and Ready, under OrderedReady; all at once under Parallel), delete
//! ordinals beyond `replicas` from the highest, then roll pods at or above the partition to
//! the update revision one at a time from the highest ordinal (RollingUpdate only).

/// A pod as the plan sees it.
#[derive(Debug, Clone)]
pub struct PodView {
    pub ordinal: i32,
    pub name: String,
    pub revision: String,
    pub terminating: bool,
    /// Succeeded or Failed: to be replaced.
    pub finished: bool,
    /// Running, Ready and available for minReadySeconds.
    pub healthy: bool,
}

/// A step of the sync.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Create the pod for this ordinal from the current (`true`) or update revision.
    Create {
        ordinal: i32,
        current: bool,
    },
    Delete(String),
}

/// The set's knobs the plan needs.
#[derive(Debug, Clone)]
pub struct Policy {
    pub replicas: i32,
    /// OrderedReady: one at a time, waiting for health.
    pub ordered: bool,
    /// RollingUpdate (else OnDelete).
    pub rolling: bool,
    pub partition: i32,
    pub current_revision: String,
    pub update_revision: String,
}

fn create_step(p: &Policy, ordinal: i32) -> Step {
    Step::Create { ordinal, current: p.rolling && p.current_revision != p.update_revision && ordinal < p.partition }
}

/// The steps to take now, in order.
pub fn plan(p: &Policy, pods: &[PodView]) -> Vec<Step> {
    let mut steps = Vec::new();
    let at = |o: i32| pods.iter().find(|v| v.ordinal == o);
    // Replicas in order.
    for ordinal in 0..p.replicas.max(0) {
        match at(ordinal) {
            None => {
                steps.push(create_step(p, ordinal));
                if p.ordered {
                    return steps;
                }
            }
            Some(v) if v.finished && !v.terminating => {
                steps.push(Step::Delete(v.name.clone()));
                if p.ordered {
                    return steps;
                }
            }
            Some(v) if v.terminating || !v.healthy => {
                if p.ordered {
                    return steps;
                }
            }
            Some(_) => {}
        }
    }
    // Condemned ordinals, highest first.
    let mut condemned: Vec<&PodView> = pods.iter().filter(|v| v.ordinal >= p.replicas).collect();
    condemned.sort_by_key(|v| std::cmp::Reverse(v.ordinal));
    for v in condemned {
        if v.terminating {
            if p.ordered {
                return steps;
            }
            continue;
        }
        steps.push(Step::Delete(v.name.clone()));
        if p.ordered {
            return steps;
        }
    }
    if !steps.is_empty() || !p.rolling {
        return steps;
    }
    // Rolling update, highest ordinal first, down to the partition.
    for ordinal in (p.partition.max(0)..p.replicas.max(0)).rev() {
        let Some(v) = at(ordinal) else { return steps };
        if v.revision != p.update_revision && !v.terminating {
            steps.push(Step::Delete(v.name.clone()));
            return steps;
        }
        if !v.healthy || v.terminating {
            return steps;
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(replicas: i32, ordered: bool) -> Policy {
        Policy { replicas, ordered, rolling: true, partition: 0, current_revision: "r1".into(), update_revision: "r1".into() }
    }

    fn pod(ordinal: i32, revision: &str, healthy: bool) -> PodView {
        PodView { ordinal, name: format!("s-{ordinal}"), revision: revision.into(), terminating: false, finished: false, healthy }
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        let p = policy(3, true);
        assert_eq!(plan(&p, &[]), [Step::Create { ordinal: 0, current: false }]);
        assert!(plan(&p, &[pod(0, "r1", false)]).is_empty(), "waits for s-0 to be ready");
        assert_eq!(plan(&p, &[pod(0, "r1", true)]), [Step::Create { ordinal: 1, current: false }]);
    }

    #[test]
    fn parallel_creates_and_deletes_at_once() {
        let p = policy(3, false);
        assert_eq!(plan(&p, &[pod(1, "r1", false)]).len(), 2);
        let p = policy(1, false);
        let steps = plan(&p, &[pod(0, "r1", true), pod(1, "r1", true), pod(2, "r1", true)]);
        assert_eq!(steps, [Step::Delete("s-2".into()), Step::Delete("s-1".into())]);
    }

    #[test]
    fn ordered_scale_down_goes_from_the_highest_ordinal() {
        let p = policy(1, true);
        assert_eq!(plan(&p, &[pod(0, "r1", true), pod(1, "r1", true), pod(2, "r1", true)]), [Step::Delete("s-2".into())]);
    }

    #[test]
    fn rolling_update_respects_partition_and_health() {
        let mut p = policy(3, true);
        p.update_revision = "r2".into();
        p.partition = 1;
        let pods = [pod(0, "r1", true), pod(1, "r1", true), pod(2, "r1", true)];
        assert_eq!(plan(&p, &pods), [Step::Delete("s-2".into())], "highest first");
        let pods = [pod(0, "r1", true), pod(1, "r1", true), pod(2, "r2", false)];
        assert!(plan(&p, &pods).is_empty(), "waits for the updated pod to be healthy");
        let pods = [pod(0, "r1", true), pod(1, "r1", true), pod(2, "r2", true)];
        assert_eq!(plan(&p, &pods), [Step::Delete("s-1".into())]);
        let pods = [pod(0, "r1", true), pod(1, "r2", true), pod(2, "r2", true)];
        assert!(plan(&p, &pods).is_empty(), "ordinal 0 is below the partition");
        assert_eq!(
            plan(&p, &pods[1..]),
            [Step::Create { ordinal: 0, current: true }],
            "below the partition pods come from the current revision"
        );
        p.rolling = false;
        assert!(plan(&p, &[pod(0, "r1", true), pod(1, "r1", true), pod(2, "r1", true)]).is_empty(), "OnDelete");
    }

    #[test]
    fn finished_pods_are_replaced() {
        let p = policy(1, true);
        let mut failed = pod(0, "r1", false);
        failed.finished = true;
        assert_eq!(plan(&p, &[failed]), [Step::Delete("s-0".into())]);
    }
}
