//! kube's replica calculator for resource metrics: the pods' usage against their requests
//! (Utilization) or against a per-pod value (AverageValue), within a tolerance of 10 %, with
//! missing metrics and not-yet-ready pods counted the way that dampens the change.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// How far usage may be off target before the replica count changes
/// (`--horizontal-pod-autoscaler-tolerance`).
pub const TOLERANCE: f64 = 0.1;
/// A pod this young may still be warming up its CPU (`--horizontal-pod-autoscaler-cpu-initialization-period`).
const CPU_INITIALIZATION_PERIOD: SignedDuration = SignedDuration::from_secs(300);
/// A pod unready for no longer than this after start was never ready (`--horizontal-pod-autoscaler-initial-readiness-delay`).
const INITIAL_READINESS_DELAY: SignedDuration = SignedDuration::from_secs(30);

/// One pod's usage of a resource, in thousandths of its unit, as the metrics API reported it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub milli: i64,
    pub timestamp: Timestamp,
    pub window: SignedDuration,
}

/// The pods' usages by pod name.
pub type Usages = BTreeMap<String, Usage>;

/// What a metric aims at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// A percentage of the pods' requests.
    Utilization(i64),
    /// Thousandths of a unit per pod.
    AverageValue(i64),
}

/// A metric's proposal: the replica count and the current value it was computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proposal {
    pub replicas: i32,
    /// The pods' usage as a percentage of their requests (Utilization targets).
    pub utilization: Option<i64>,
    /// The average usage per pod, in thousandths of a unit.
    pub average_milli: i64,
}

/// What a resource metric is computed over.
pub struct Inputs<'a> {
    /// The target's current replicas (its scale's `spec.replicas`).
    pub current: i32,
    pub target: Target,
    /// `cpu`, `memory`, …
    pub resource: &'a str,
    /// A ContainerResource metric's container; `None`: the whole pod.
    pub container: Option<&'a str>,
    /// The pods the target's selector selects.
    pub pods: &'a [Pod],
    pub now: Timestamp,
}

/// The pods sorted as kube's `groupPods` sorts them.
struct Groups {
    ready: usize,
    unready: BTreeSet<String>,
    missing: BTreeSet<String>,
    ignored: BTreeSet<String>,
}

fn group_pods(inputs: &Inputs<'_>, usages: &Usages) -> Groups {
    let mut groups = Groups { ready: 0, unready: BTreeSet::new(), missing: BTreeSet::new(), ignored: BTreeSet::new() };
    for pod in inputs.pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        if pod.metadata.deletion_timestamp.is_some() || phase == "Failed" {
            groups.ignored.insert(name);
            continue;
        }
        if phase == "Pending" {
            groups.unready.insert(name);
            continue;
        }
        let Some(usage) = usages.get(&name) else {
            groups.missing.insert(name);
            continue;
        };
        if inputs.resource == "cpu" && cpu_sample_unready(pod, usage, inputs.now) {
            groups.unready.insert(name);
            continue;
        }
        groups.ready += 1;
    }
    groups
}

/// Whether a pod's CPU sample is not yet to be trusted: the pod is unready, or still warming up
/// and the sample's window began before it turned ready.
fn cpu_sample_unready(pod: &Pod, usage: &Usage, now: Timestamp) -> bool {
    let status = pod.status.as_ref();
    let ready = status.and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let (Some(ready), Some(start)) = (ready, status.and_then(|s| s.start_time.as_ref())) else {
        return true;
    };
    let transition = ready.last_transition_time.as_ref().map_or(start.0, |t| t.0);
    if start.0 + CPU_INITIALIZATION_PERIOD > now {
        ready.status == "False" || usage.timestamp < transition + usage.window
    } else {
        ready.status == "False" && start.0 + INITIAL_READINESS_DELAY > transition
    }
}

/// Each pod's request of the resource (thousandths), as kube's `calculatePodRequests`.
fn pod_requests(inputs: &Inputs<'_>) -> Result<BTreeMap<String, i64>, String> {
    let mut out = BTreeMap::new();
    for pod in inputs.pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut sum = 0;
        // Regular containers and sidecars (init containers that keep running).
        let spec = pod.spec.as_ref();
        let sidecars = spec.and_then(|s| s.init_containers.as_ref()).into_iter().flatten();
        let sidecars = sidecars.filter(|c| c.restart_policy.as_deref() == Some("Always"));
        for c in spec.into_iter().flat_map(|s| &s.containers).chain(sidecars) {
            if inputs.container.is_some_and(|want| want != c.name) {
                continue;
            }
            let request = c.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get(inputs.resource));
            match request.and_then(crate::k8s::quantity::milli_value) {
                Some(milli) => sum += milli,
                None => return Err(format!("missing request for {} in container {} of Pod {name}", inputs.resource, c.name)),
            }
        }
        out.insert(name, sum);
    }
    Ok(out)
}

/// The usage ratio against the target, with the utilization (percent) and the average usage.
fn usage_ratio(target: Target, usages: &Usages, requests: &BTreeMap<String, i64>) -> Result<(f64, Option<i64>, i64), String> {
    match target {
        Target::Utilization(percent) => {
            let (mut used, mut requested, mut entries) = (0i64, 0i64, 0i64);
            for (pod, usage) in usages {
                if let Some(request) = requests.get(pod) {
                    used += usage.milli;
                    requested += request;
                    entries += 1;
                }
            }
            if requested == 0 {
                return Err("no metrics returned matched known pods".into());
            }
            let utilization = used * 100 / requested;
            Ok((utilization as f64 / percent as f64, Some(utilization), used / entries))
        }
        Target::AverageValue(milli) => {
            let average = usages.values().map(|u| u.milli).sum::<i64>() / usages.len().max(1) as i64;
            Ok((average as f64 / milli as f64, None, average))
        }
    }
}

/// The replica count a resource metric proposes, as kube's `GetResourceReplicas` and
/// `GetRawResourceReplicas`; errors are kube's messages.
pub fn propose(inputs: &Inputs<'_>, mut usages: Usages) -> Result<Proposal, String> {
    if inputs.pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let groups = group_pods(inputs, &usages);
    usages.retain(|pod, _| !groups.ignored.contains(pod) && !groups.unready.contains(pod));
    if usages.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let requests = match inputs.target {
        Target::Utilization(_) => pod_requests(inputs)?,
        Target::AverageValue(_) => inputs.pods.iter().map(|p| (p.metadata.name.clone().unwrap_or_default(), 0)).collect(),
    };
    let (ratio, utilization, average_milli) = usage_ratio(inputs.target, &usages, &requests)?;
    let proposal = |replicas| Proposal { replicas, utilization, average_milli };
    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if (1.0 - ratio).abs() <= TOLERANCE {
            return Ok(proposal(inputs.current));
        }
        return Ok(proposal((ratio * groups.ready as f64).ceil() as i32));
    }
    let at = |milli| Usage { milli, timestamp: inputs.now, window: SignedDuration::ZERO };
    for pod in &groups.missing {
        // Missing pods count as using their whole request (at least the target) when scaling
        // down, nothing when scaling up: the change is dampened either way.
        let milli = match inputs.target {
            _ if ratio >= 1.0 => 0,
            Target::Utilization(percent) => requests.get(pod).copied().unwrap_or(0) * percent.max(100) / 100,
            Target::AverageValue(milli) => milli,
        };
        if ratio != 1.0 {
            usages.insert(pod.clone(), at(milli));
        }
    }
    if scale_up_with_unready {
        for pod in &groups.unready {
            usages.insert(pod.clone(), at(0));
        }
    }
    let (new_ratio, _, _) = usage_ratio(inputs.target, &usages, &requests)?;
    let flipped = (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0);
    if (1.0 - new_ratio).abs() <= TOLERANCE || flipped {
        return Ok(proposal(inputs.current));
    }
    let replicas = (new_ratio * usages.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > inputs.current) || (new_ratio > 1.0 && replicas < inputs.current) {
        return Ok(proposal(inputs.current));
    }
    Ok(proposal(replicas))
}

/// Cases from kube's `replica_calculator_test.go` (3 pods requesting 1 CPU each unless said).
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-01-01T12:00:00Z".parse().unwrap()
    }

    /// A Running pod started 10 minutes ago, Ready (or not) since then, requesting `request` CPU.
    fn pod(name: &str, request: &str, ready: bool) -> Pod {
        let started = (now() - SignedDuration::from_mins(10)).to_string();
        serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": { "containers": [{ "name": "c", "image": "i", "resources": { "requests": { "cpu": request } } }] },
            "status": { "phase": "Running", "startTime": started,
                        "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": started }] },
        }))
        .unwrap()
    }

    fn ready_pods(n: usize) -> Vec<Pod> {
        (0..n).map(|i| pod(&format!("p{i}"), "1", true)).collect()
    }

    fn usage_of(levels: &[(usize, i64)]) -> Usages {
        let at = |milli| Usage { milli, timestamp: now(), window: SignedDuration::from_secs(60) };
        levels.iter().map(|&(i, milli)| (format!("p{i}"), at(milli))).collect()
    }

    fn levels(values: &[i64]) -> Usages {
        usage_of(&values.iter().copied().enumerate().collect::<Vec<_>>())
    }

    fn run(current: i32, target: Target, pods: &[Pod], usages: Usages) -> Result<Proposal, String> {
        propose(&Inputs { current, target, resource: "cpu", container: None, pods, now: now() }, usages)
    }

    #[test]
    fn scale_up() {
        let p = run(3, Target::Utilization(30), &ready_pods(3), levels(&[300, 500, 700])).unwrap();
        assert_eq!((p.replicas, p.utilization, p.average_milli), (5, Some(50), 500));
    }

    #[test]
    fn scale_up_with_an_unready_pod_scales_less() {
        let pods = vec![pod("p0", "1", false), pod("p1", "1", true), pod("p2", "1", true)];
        let p = run(3, Target::Utilization(30), &pods, levels(&[300, 500, 700])).unwrap();
        assert_eq!((p.replicas, p.utilization), (4, Some(60)));
    }

    #[test]
    fn scale_up_held_back_entirely_by_unready_pods() {
        let pods = vec![pod("p0", "1", true), pod("p1", "1", false), pod("p2", "1", false)];
        let p = run(3, Target::Utilization(30), &pods, levels(&[400, 500, 700])).unwrap();
        assert_eq!((p.replicas, p.utilization), (3, Some(40)));
    }

    #[test]
    fn scale_down() {
        let p = run(5, Target::Utilization(50), &ready_pods(5), levels(&[100, 300, 500, 250, 250])).unwrap();
        assert_eq!((p.replicas, p.utilization), (3, Some(28)));
    }

    #[test]
    fn scale_down_ignores_unready_and_deleted_pods() {
        let mut pods = ready_pods(3);
        pods.extend([pod("p3", "1", false), pod("p4", "1", false)]);
        let p = run(5, Target::Utilization(50), &pods, levels(&[100, 300, 500, 250, 250])).unwrap();
        assert_eq!((p.replicas, p.utilization), (2, Some(30)));
        let mut pods = ready_pods(5);
        for doomed in &mut pods[3..] {
            doomed.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        }
        assert_eq!(run(5, Target::Utilization(50), &pods, levels(&[100, 300, 500, 250, 250])).unwrap().replicas, 2);
    }

    #[test]
    fn usage_within_the_tolerance_keeps_the_size() {
        let pods = vec![pod("p0", "900m", true), pod("p1", "1", true), pod("p2", "1100m", true)];
        let p = run(3, Target::Utilization(100), &pods, levels(&[1010, 1030, 1020])).unwrap();
        assert_eq!((p.replicas, p.utilization), (3, Some(102)));
    }

    #[test]
    fn missing_metrics_dampen_the_change() {
        // At target: no change.
        assert_eq!(run(2, Target::Utilization(100), &ready_pods(2), usage_of(&[(0, 1000)])).unwrap().replicas, 2);
        // Above target: the missing pod counts as idle, 95 % is within the tolerance.
        let p = run(2, Target::Utilization(100), &ready_pods(2), usage_of(&[(0, 1900)])).unwrap();
        assert_eq!((p.replicas, p.utilization), (2, Some(190)));
        // Below target: the missing pod counts as using its whole request, 80 % needs 2.
        let p = run(2, Target::Utilization(100), &ready_pods(2), usage_of(&[(0, 600)])).unwrap();
        assert_eq!((p.replicas, p.utilization), (2, Some(60)));
        // Far below: 4 pods, one missing (counted at 100 %): (100+100+100+1000)/4000 = 32.5 % → 2.
        assert_eq!(run(4, Target::Utilization(100), &ready_pods(4), usage_of(&[(0, 100), (1, 100), (2, 100)])).unwrap().replicas, 2);
    }

    #[test]
    fn a_warming_up_pod_sampled_before_it_was_ready_counts_as_unready() {
        let mut young = pod("p0", "1", true);
        let status = young.status.as_mut().unwrap();
        status.start_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now() - SignedDuration::from_mins(1)));
        status.conditions.as_mut().unwrap()[0].last_transition_time =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now() - SignedDuration::from_secs(10)));
        let pods = vec![young, pod("p1", "1", true), pod("p2", "1", true)];
        // p0 burns 1 CPU since its start, the others are at target: p0 is left out, then counted as idle.
        let p = run(3, Target::Utilization(50), &pods, levels(&[1000, 500, 500])).unwrap();
        assert_eq!((p.replicas, p.utilization), (3, Some(50)));
    }

    #[test]
    fn average_value_targets_ignore_requests() {
        let pods: Vec<Pod> = (0..3).map(|i| pod(&format!("p{i}"), "0", true)).collect();
        let p = run(3, Target::AverageValue(250), &pods, levels(&[300, 500, 700])).unwrap();
        assert_eq!((p.replicas, p.utilization, p.average_milli), (6, None, 500));
    }

    #[test]
    fn errors_are_kubes() {
        assert_eq!(
            run(3, Target::Utilization(50), &[], levels(&[1])).unwrap_err(),
            "no pods returned by selector while calculating replica count"
        );
        let unready = vec![pod("p0", "1", false)];
        assert_eq!(
            run(1, Target::Utilization(50), &unready, levels(&[1])).unwrap_err(),
            "did not receive metrics for targeted pods (pods might be unready)"
        );
        let mut no_request = ready_pods(1);
        no_request[0].spec.as_mut().unwrap().containers[0].resources = None;
        assert_eq!(
            run(1, Target::Utilization(50), &no_request, levels(&[1])).unwrap_err(),
            "missing request for cpu in container c of Pod p0"
        );
    }
}
