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
