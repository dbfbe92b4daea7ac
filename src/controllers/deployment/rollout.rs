//! Rollout arithmetic (`deployment/util` and `rolling.go`, `sync.go`), pure: maxSurge and
//! maxUnavailable fenceposts, how far the new ReplicaSet may grow, how far old ones may
//! shrink, and proportional scaling of every active ReplicaSet when a Deployment is resized
//! mid-rollout. Plans are `(replicaset name, new replicas)` lists, applied by `sync`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::revisions::{desired_replicas_annotation, max_replicas_annotation, replicas_of};
use crate::controllers::common::{intstr, Error};

pub fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

pub fn available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

pub fn is_rolling(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate"
}

/// `ResolveFenceposts`: (maxSurge, maxUnavailable) for the Deployment; never both zero.
pub fn fenceposts(d: &Deployment) -> Result<(i32, i32), Error> {
    let rolling = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let desired = replicas_of(d);
    let pct = || IntOrString::String("25%".into());
    let surge = intstr::scaled(rolling.and_then(|r| r.max_surge.as_ref()), pct(), desired, true)?;
    let unavailable = intstr::scaled(rolling.and_then(|r| r.max_unavailable.as_ref()), pct(), desired, false)?;
    Ok(if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) })
}

pub fn max_surge(d: &Deployment) -> Result<i32, Error> {
    if !is_rolling(d) {
        return Ok(0);
    }
    Ok(fenceposts(d)?.0)
}

pub fn max_unavailable(d: &Deployment) -> Result<i32, Error> {
    if !is_rolling(d) || replicas_of(d) == 0 {
        return Ok(0);
    }
    Ok(fenceposts(d)?.1.min(replicas_of(d)))
}

fn total(sets: &[&ReplicaSet]) -> i32 {
    sets.iter().map(|rs| spec_replicas(rs)).sum()
}

/// `NewRSNewReplicas`: the size the new ReplicaSet may have now.
pub fn new_rs_replicas(d: &Deployment, all: &[&ReplicaSet], new_replicas: i32) -> Result<i32, Error> {
    if !is_rolling(d) {
        return Ok(replicas_of(d));
    }
    let max_total = replicas_of(d) + max_surge(d)?;
    let current = total(all);
    if current >= max_total {
        return Ok(new_replicas);
    }
    let up = (max_total - current).min(replicas_of(d) - new_replicas);
    Ok(new_replicas + up)
}

/// How many old pods may go now (`reconcileOldReplicaSets`), given every set and the new one.
pub fn max_scaled_down(d: &Deployment, all: &[&ReplicaSet], new: &ReplicaSet) -> Result<i32, Error> {
    let min_available = replicas_of(d) - max_unavailable(d)?;
    let new_unavailable = spec_replicas(new) - available(new);
    Ok(total(all) - min_available - new_unavailable)
}

/// `cleanupUnhealthyReplicas`: shrink old sets (oldest first) by their unavailable pods, at
/// most `budget` in all. `old` must be sorted oldest first.
pub fn cleanup_unhealthy(old: &[&ReplicaSet], budget: i32) -> Vec<(String, i32)> {
    let mut done = 0;
    let mut plan = Vec::new();
    for rs in old {
        if done >= budget {
            break;
        }
        let replicas = spec_replicas(rs);
        if replicas == 0 || replicas == available(rs) {
            continue;
        }
        let down = (budget - done).min(replicas - available(rs)).max(0);
        plan.push((rs.metadata.name.clone().unwrap_or_default(), replicas - down));
        done += down;
    }
    plan
}

/// `scaleDownOldReplicaSetsForRollingUpdate`: shrink old sets (oldest first) while more
/// than the minimum are available. `available_total` is over every set.
pub fn scale_down_old(d: &Deployment, old: &[&ReplicaSet], available_total: i32) -> Result<Vec<(String, i32)>, Error> {
    let min_available = replicas_of(d) - max_unavailable(d)?;
    if available_total <= min_available {
        return Ok(vec![]);
    }
    let budget = available_total - min_available;
    let mut done = 0;
    let mut plan = Vec::new();
    for rs in old {
        if done >= budget {
            break;
        }
        let replicas = spec_replicas(rs);
        if replicas == 0 {
            continue;
        }
        let down = replicas.min(budget - done);
        plan.push((rs.metadata.name.clone().unwrap_or_default(), replicas - down));
        done += down;
    }
    Ok(plan)
}

/// `IsSaturated`: the new set has every replica, all available.
pub fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else { return false };
    let want = replicas_of(d);
    spec_replicas(rs) == want && desired_replicas_annotation(rs) == Some(want) && available(rs) == want
}

/// `isScalingEvent`: some active set was sized for a different replica count.
pub fn is_scaling_event(d: &Deployment, all: &[&ReplicaSet]) -> bool {
    all.iter().filter(|rs| spec_replicas(rs) > 0).filter_map(|rs| desired_replicas_annotation(rs)).any(|want| want != replicas_of(d))
}

/// `scale`'s proportional step: new sizes for every active set when the Deployment's size
/// changed while several sets have pods. `active` must exclude sets with zero replicas.
pub fn proportional(d: &Deployment, active: &[&ReplicaSet]) -> Result<BTreeMap<String, i32>, Error> {
    let want = replicas_of(d);
    let allowed = if want > 0 { want + max_surge(d)? } else { 0 };
    let to_add = allowed - total(active);
    let mut sets: Vec<&ReplicaSet> = active.to_vec();
    let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    if to_add > 0 {
        // Largest first; newer first among equals.
        sets.sort_by(|a, b| spec_replicas(b).cmp(&spec_replicas(a)).then_with(|| created(b).cmp(&created(a))));
    } else if to_add < 0 {
        // Largest first; older first among equals.
        sets.sort_by(|a, b| spec_replicas(b).cmp(&spec_replicas(a)).then_with(|| created(a).cmp(&created(b))));
    }
    let status_replicas = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = Vec::new();
    for rs in &sets {
        let replicas = spec_replicas(rs);
        let mut size = replicas;
        if to_add != 0 && replicas != 0 && to_add != added {
            let fraction = if want == 0 {
                -replicas
            } else {
                let annotated = max_replicas_annotation(rs).unwrap_or(status_replicas);
                let ideal = if annotated == 0 { 0.0 } else { f64::from(replicas) * f64::from(allowed) / f64::from(annotated) };
                ideal.round() as i32 - replicas
            };
            let left = to_add - added;
            let proportion = if to_add > 0 { fraction.min(left) } else { fraction.max(left) };
            size += proportion;
            added += proportion;
        }
        sizes.push((rs.metadata.name.clone().unwrap_or_default(), size));
    }
    if let Some(first) = sizes.first_mut() {
        if to_add != 0 {
            first.1 = (first.1 + to_add - added).max(0);
        }
    }
    Ok(sizes.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(replicas: i32, surge: serde_json::Value, unavailable: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"replicas": replicas, "selector": {}, "template": {},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}},
            "status": {"replicas": replicas}
        }))
        .unwrap()
    }

    fn rs(name: &str, replicas: i32, available: i32, max_replicas: Option<i32>, created: &str) -> ReplicaSet {
        let mut a = serde_json::Map::new();
        if let Some(m) = max_replicas {
            a.insert("deployment.kubernetes.io/max-replicas".into(), json!(m.to_string()));
            a.insert("deployment.kubernetes.io/desired-replicas".into(), json!((m - 1).to_string()));
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": a, "creationTimestamp": created},
            "spec": {"replicas": replicas, "selector": {}},
            "status": {"replicas": replicas, "availableReplicas": available}
        }))
        .unwrap()
    }

    #[test]
    fn fenceposts_round_like_kubernetes() {
        assert_eq!(fenceposts(&deployment(10, json!("25%"), json!("25%"))).unwrap(), (3, 2));
        assert_eq!(fenceposts(&deployment(1, json!("25%"), json!("25%"))).unwrap(), (1, 0));
        assert_eq!(fenceposts(&deployment(3, json!(0), json!(0))).unwrap(), (0, 1), "never both zero");
        assert_eq!(max_unavailable(&deployment(2, json!(0), json!(5))).unwrap(), 2, "capped at replicas");
        let recreate: Deployment =
            serde_json::from_value(json!({"spec": {"replicas": 3, "selector": {}, "template": {}, "strategy": {"type": "Recreate"}}}))
                .unwrap();
        assert_eq!((max_surge(&recreate).unwrap(), max_unavailable(&recreate).unwrap()), (0, 0));
    }

    #[test]
    fn rolling_update_steps() {
        let d = deployment(3, json!(1), json!(0));
        let old = rs("old", 3, 3, None, "2024-01-01T00:00:00Z");
        let new = rs("new", 0, 0, None, "2024-01-02T00:00:00Z");
        assert_eq!(new_rs_replicas(&d, &[&old, &new], 0).unwrap(), 1, "surge by one");
        let new = rs("new", 1, 0, None, "2024-01-02T00:00:00Z");
        assert_eq!(new_rs_replicas(&d, &[&old, &new], 1).unwrap(), 1, "at max total");
        assert_eq!(max_scaled_down(&d, &[&old, &new], &new).unwrap(), 0, "new pod not yet available");
        let new = rs("new", 1, 1, None, "2024-01-02T00:00:00Z");
        assert_eq!(max_scaled_down(&d, &[&old, &new], &new).unwrap(), 1);
        assert_eq!(scale_down_old(&d, &[&old], 4).unwrap(), [("old".to_string(), 2)]);
        assert!(scale_down_old(&d, &[&old], 3).unwrap().is_empty());
    }

    #[test]
    fn unhealthy_old_pods_go_first() {
        let a = rs("a", 3, 1, None, "2024-01-01T00:00:00Z");
        let b = rs("b", 2, 0, None, "2024-01-02T00:00:00Z");
        assert_eq!(cleanup_unhealthy(&[&a, &b], 3), [("a".to_string(), 1), ("b".to_string(), 1)]);
        assert_eq!(cleanup_unhealthy(&[&a, &b], 1), [("a".to_string(), 2)]);
    }

    #[test]
    fn proportional_scaling_splits_by_size() {
        // 10 replicas, surge 3: old 8 + new 5 = 13 (= 10 + 3). Scale the deployment to 20.
        let d = deployment(20, json!(3), json!(2));
        let old = rs("old", 8, 8, Some(13), "2024-01-01T00:00:00Z");
        let new = rs("new", 5, 0, Some(13), "2024-01-02T00:00:00Z");
        let sizes = proportional(&d, &[&old, &new]).unwrap();
        // allowed = 23 (20 + 3 surge): 8*23/13 = 14.2 → 14, 5*23/13 = 8.8 → 9.
        assert_eq!((sizes["old"], sizes["new"]), (14, 9));
        assert_eq!(sizes.values().sum::<i32>(), 23);
        let down = deployment(5, json!(1), json!(0));
        let sizes = proportional(&down, &[&old, &new]).unwrap();
        assert_eq!(sizes.values().sum::<i32>(), 6);
        assert!(is_scaling_event(&d, &[&old, &new]));
    }
}
