//! A hollow node's resource figures: fixed, plausible usage (each running container a
//! millicore and a mebibyte, the node a tenth of a core and half a gibibyte besides), with
//! cumulative CPU counting up from each pod's start, so `/stats/summary`, `metrics.k8s.io` and
//! `kubectl top` can be exercised without a single process.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;

use crate::k8s::stats::{ContainerStats, CpuStats, MemoryStats, NodeStats, PodReference, PodStats, Summary};
use crate::node::stats::StatsSource;

/// CPU of each running container, in nanocores (1m).
pub const CONTAINER_NANO_CORES: u64 = 1_000_000;
/// Working set of each running container (1Mi).
pub const CONTAINER_BYTES: u64 = 1 << 20;
/// The node's own CPU besides its containers (100m).
const NODE_NANO_CORES: u64 = 100_000_000;
/// The node's own memory besides its containers (512Mi).
const NODE_BYTES: u64 = 512 << 20;

/// A pod the hollow node runs.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningPod {
    pub pod_ref: PodReference,
    pub containers: Vec<String>,
    pub started: Timestamp,
}

/// The figures of a hollow node whose running pods are published on `pods`.
pub struct HollowStats {
    pub node_name: String,
    pub since: Timestamp,
    /// The node's memory capacity in bytes (what is available is taken from it).
    pub memory_capacity: u64,
    pub pods: watch::Receiver<Arc<Vec<RunningPod>>>,
}

fn cpu(time: &Time, nano_cores: u64, since: Timestamp) -> Option<CpuStats> {
    let seconds = time.0.duration_since(since).as_secs_f64().max(0.0);
    let total = (nano_cores as f64 * seconds) as u64;
    Some(CpuStats { time: time.clone(), usage_nano_cores: Some(nano_cores), usage_core_nano_seconds: Some(total) })
}

fn memory(time: &Time, bytes: u64, available: Option<u64>) -> Option<MemoryStats> {
    let some = Some(bytes);
    Some(MemoryStats { time: time.clone(), available_bytes: available, usage_bytes: some, working_set_bytes: some, rss_bytes: some })
}

impl StatsSource for HollowStats {
    fn summary(&self) -> Arc<Summary> {
        let time = crate::k8s::time::now();
        let pods = self.pods.borrow().clone();
        let pods: Vec<PodStats> = pods
            .iter()
            .map(|p| {
                let n = p.containers.len() as u64;
                let containers = p
                    .containers
                    .iter()
                    .map(|name| ContainerStats {
                        name: name.clone(),
                        start_time: Some(Time(p.started)),
                        cpu: cpu(&time, CONTAINER_NANO_CORES, p.started),
                        memory: memory(&time, CONTAINER_BYTES, None),
                    })
                    .collect();
                PodStats {
                    pod_ref: p.pod_ref.clone(),
                    start_time: Some(Time(p.started)),
                    containers,
                    cpu: cpu(&time, n * CONTAINER_NANO_CORES, p.started),
                    memory: memory(&time, n * CONTAINER_BYTES, None),
                }
            })
            .collect();
        let containers: u64 = pods.iter().map(|p| p.containers.len() as u64).sum();
        let used = NODE_BYTES + containers * CONTAINER_BYTES;
        let node = NodeStats {
            node_name: self.node_name.clone(),
            start_time: Some(Time(self.since)),
            cpu: cpu(&time, NODE_NANO_CORES + containers * CONTAINER_NANO_CORES, self.since),
            memory: memory(&time, used, Some(self.memory_capacity.saturating_sub(used))),
        };
        Arc::new(Summary { node, pods })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_fixed_per_container() {
        let started = Timestamp::from_second(Timestamp::now().as_second() - 100).unwrap();
        let pod = RunningPod {
            pod_ref: PodReference { name: "web".into(), namespace: "default".into(), uid: "u".into() },
            containers: vec!["a".into(), "b".into()],
            started,
        };
        let (_tx, pods) = watch::channel(Arc::new(vec![pod]));
        let stats = HollowStats { node_name: "h".into(), since: started, memory_capacity: 8 << 30, pods };
        let summary = stats.summary();
        let p = &summary.pods[0];
        assert_eq!(p.containers.len(), 2);
        assert_eq!(p.cpu.as_ref().unwrap().usage_nano_cores, Some(2 * CONTAINER_NANO_CORES));
        let total = p.containers[0].cpu.as_ref().unwrap().usage_core_nano_seconds.unwrap();
        assert!((100_000_000..=102_000_000).contains(&total), "{total}");
        assert_eq!(summary.node.cpu.as_ref().unwrap().usage_nano_cores, Some(102_000_000));
        assert_eq!(summary.node.memory.as_ref().unwrap().working_set_bytes, Some((512 << 20) + 2 * CONTAINER_BYTES));
    }
}
