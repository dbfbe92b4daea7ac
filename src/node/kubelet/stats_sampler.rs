//! The kubelet's resource sampler (cadvisor's housekeeping): every [`SAMPLE_INTERVAL`] it reads
//! the node's usage and the cgroups of every running container and its pod, and publishes a
//! Summary whose CPU rates are the change since the previous sample, so a `/stats/summary`
//! request only copies the latest one.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::cgroups::{self, CgroupFs, Usage};
use super::layout::{LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID};
use crate::k8s::stats::{ContainerStats, CpuStats, MemoryStats, NodeStats, PodReference, PodStats, Summary, SAMPLE_INTERVAL};
use crate::node::runtime::{ContainerRuntime, ContainerState, LABEL_CGROUP};

/// Samples the node and its containers; owns the previous readings.
pub struct Sampler {
    runtime: Arc<dyn ContainerRuntime>,
    cgroups: CgroupFs,
    proc: PathBuf,
    node_name: String,
    start_time: Time,
    /// The last cumulative CPU reading of each cgroup (`""`: the node), for the rates.
    previous: HashMap<String, (Instant, u64)>,
    published: watch::Sender<Arc<Summary>>,
}

impl Sampler {
    /// A sampler of the host's cgroups and `/proc` for node `node_name`, and the receiver of
    /// its summaries (empty until the first sample).
    pub fn new(runtime: Arc<dyn ContainerRuntime>, node_name: &str) -> (Self, watch::Receiver<Arc<Summary>>) {
        Self::reading(runtime, node_name, CgroupFs::host(), PathBuf::from("/proc"))
    }

    fn reading(
        runtime: Arc<dyn ContainerRuntime>,
        node_name: &str,
        cgroups: CgroupFs,
        proc: PathBuf,
    ) -> (Self, watch::Receiver<Arc<Summary>>) {
        let empty = Summary { node: NodeStats { node_name: node_name.into(), ..Default::default() }, pods: Vec::new() };
        let (published, rx) = watch::channel(Arc::new(empty));
        let start_time = crate::k8s::time::now();
        (Self { runtime, cgroups, proc, node_name: node_name.into(), start_time, previous: HashMap::new(), published }, rx)
    }

    /// Samples at once, then every [`SAMPLE_INTERVAL`] until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {
                    let summary = self.sample(Instant::now()).await;
                    self.published.send_replace(Arc::new(summary));
                }
            }
        }
    }

    /// Reads everything, `now` being the monotonic time of the reading.
    async fn sample(&mut self, now: Instant) -> Summary {
        let containers = match self.runtime.list_containers().await {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list containers for resource stats");
                Vec::new()
            }
        };
        let time = crate::k8s::time::now();
        let mut seen: HashMap<String, (Instant, u64)> = HashMap::new();
        let node_usage = cgroups::node(&self.proc);
        let node = NodeStats {
            node_name: self.node_name.clone(),
            start_time: Some(self.start_time.clone()),
            cpu: self.cpu("", &node_usage, now, &time, &mut seen),
            memory: memory(&node_usage, &time),
        };
        let mut pods: BTreeMap<&str, PodStats> = BTreeMap::new();
        for c in containers.iter().filter(|c| matches!(c.state, ContainerState::Running { .. })) {
            let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
            let (Some(uid), Some(cgroup)) = (c.labels.get(LABEL_POD_UID), c.labels.get(LABEL_CGROUP)) else { continue };
            let usage = self.cgroups.read(cgroup);
            let stats = ContainerStats {
                name: label(LABEL_CONTAINER_NAME),
                start_time: None,
                cpu: self.cpu(cgroup, &usage, now, &time, &mut seen),
                memory: memory(&usage, &time),
            };
            let pod = pods.entry(uid).or_insert_with(|| PodStats {
                pod_ref: PodReference { name: label(LABEL_POD_NAME), namespace: label(LABEL_POD_NAMESPACE), uid: uid.clone() },
                ..Default::default()
            });
            if pod.containers.is_empty() {
                let pod_cgroup = cgroup.rsplit_once('/').map(|(parent, _)| parent).unwrap_or_default();
                let usage = self.cgroups.read(pod_cgroup);
                pod.cpu = self.cpu(pod_cgroup, &usage, now, &time, &mut seen);
                pod.memory = memory(&usage, &time);
            }
            pod.containers.push(stats);
        }
        self.previous = seen;
        Summary { node, pods: pods.into_values().collect() }
    }

    /// The CPU figures of the cgroup `key` from `usage`, with the rate since its previous
    /// reading; the reading is kept in `seen`.
    fn cpu(&self, key: &str, usage: &Usage, now: Instant, time: &Time, seen: &mut HashMap<String, (Instant, u64)>) -> Option<CpuStats> {
        let total = usage.cpu_ns?;
        seen.insert(key.to_string(), (now, total));
        let rate = self.previous.get(key).and_then(|&(then, before)| {
            let elapsed = now.checked_duration_since(then)?.as_nanos();
            (elapsed > 0 && total >= before).then(|| (u128::from(total - before) * 1_000_000_000 / elapsed) as u64)
        });
        Some(CpuStats { time: time.clone(), usage_nano_cores: rate, usage_core_nano_seconds: Some(total) })
    }
}

fn memory(usage: &Usage, time: &Time) -> Option<MemoryStats> {
    usage.memory.map(|m| MemoryStats {
        time: time.clone(),
        available_bytes: m.available,
        usage_bytes: Some(m.usage),
        working_set_bytes: Some(m.working_set),
        rss_bytes: Some(m.rss),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::runtime::fake::FakeRuntime;

    fn write(root: &std::path::Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[tokio::test]
    async fn rates_come_from_two_samples_and_containers_group_by_pod() {
        let dir = tempfile::tempdir().unwrap();
        let (cg, proc) = (dir.path().join("cgroup"), dir.path().join("proc"));
        write(&cg, "cgroup.controllers", "cpu memory\n");
        write(&proc, "stat", "cpu  100 0 0 900 0 0 0 0 0 0\n");
        write(&proc, "meminfo", "MemTotal: 1000 kB\nMemFree: 500 kB\nMemAvailable: 600 kB\n");
        for (path, usec) in [("orch/podu1", 1000), ("orch/podu1/c1", 1000)] {
            write(&cg, &format!("{path}/cpu.stat"), &format!("usage_usec {usec}\n"));
            write(&cg, &format!("{path}/memory.current"), "4096\n");
        }
        let runtime = Arc::new(FakeRuntime::default());
        let labels = [
            (LABEL_POD_UID, "u1"),
            (LABEL_POD_NAME, "web"),
            (LABEL_POD_NAMESPACE, "default"),
            (LABEL_CONTAINER_NAME, "app"),
            (LABEL_CGROUP, "/orch/podu1/c1"),
        ];
        runtime.add_image("busybox");
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let config = crate::node::runtime::ContainerConfig { id: "c1".into(), image: "busybox".into(), labels, ..Default::default() };
        runtime.create_container(&config).await.unwrap();
        runtime.start_container("c1").await.unwrap();
        let (mut sampler, _rx) = Sampler::reading(runtime, "n1", CgroupFs::at(&cg), proc.clone());

        let start = Instant::now();
        let first = sampler.sample(start).await;
        assert_eq!(first.pods.len(), 1);
        assert_eq!(first.pods[0].pod_ref, PodReference { name: "web".into(), namespace: "default".into(), uid: "u1".into() });
        let app = &first.pods[0].containers[0];
        assert_eq!((app.name.as_str(), app.cpu.as_ref().unwrap().usage_nano_cores), ("app", None));
        assert_eq!(app.memory.as_ref().unwrap().working_set_bytes, Some(4096));

        // Half a core for ten seconds.
        write(&cg, "orch/podu1/c1/cpu.stat", "usage_usec 5001000\n");
        write(&cg, "orch/podu1/cpu.stat", "usage_usec 5001000\n");
        write(&proc, "stat", "cpu  600 0 0 1400 0 0 0 0 0 0\n");
        let second = sampler.sample(start + SAMPLE_INTERVAL).await;
        let cpu = second.pods[0].containers[0].cpu.as_ref().unwrap();
        assert_eq!((cpu.usage_nano_cores, cpu.usage_core_nano_seconds), (Some(500_000_000), Some(5_001_000_000)));
        assert_eq!(second.pods[0].cpu.as_ref().unwrap().usage_nano_cores, Some(500_000_000));
        assert_eq!(second.node.cpu.as_ref().unwrap().usage_nano_cores, Some(500_000_000));
        assert_eq!(second.node.memory.as_ref().unwrap().available_bytes, Some(600 * 1024));
    }
}
