//! A Summary as the kubelet's `/metrics/resource` writes it (Prometheus text format 0.0.4):
//! cumulative CPU seconds and working-set bytes of the node, each pod and each container,
//! stamped with the sample's time in milliseconds, and `scrape_error`.

use std::fmt::Write;

use crate::k8s::stats::{CpuStats, MemoryStats, Summary};

/// One metric family: name, help, type.
struct Family(&'static str, &'static str, &'static str);

const NODE_CPU: Family = Family("node_cpu_usage_seconds_total", "Cumulative cpu time consumed by the node in core-seconds", "counter");
const NODE_MEMORY: Family = Family("node_memory_working_set_bytes", "Current working set of the node in bytes", "gauge");
const POD_CPU: Family = Family("pod_cpu_usage_seconds_total", "Cumulative cpu time consumed by the pod in core-seconds", "counter");
const POD_MEMORY: Family = Family("pod_memory_working_set_bytes", "Current working set of the pod in bytes", "gauge");
const CONTAINER_CPU: Family =
    Family("container_cpu_usage_seconds_total", "Cumulative cpu time consumed by the container in core-seconds", "counter");
const CONTAINER_MEMORY: Family = Family("container_memory_working_set_bytes", "Current working set of the container in bytes", "gauge");

/// A sample: labels (already rendered), value, timestamp in milliseconds.
type Sample = (String, f64, i64);

fn cpu_sample(labels: String, cpu: &Option<CpuStats>) -> Option<Sample> {
    let cpu = cpu.as_ref()?;
    Some((labels, cpu.usage_core_nano_seconds? as f64 / 1e9, cpu.time.0.as_millisecond()))
}

fn memory_sample(labels: String, memory: &Option<MemoryStats>) -> Option<Sample> {
    let memory = memory.as_ref()?;
    Some((labels, memory.working_set_bytes? as f64, memory.time.0.as_millisecond()))
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn write_family(out: &mut String, family: &Family, samples: impl Iterator<Item = Sample>) {
    let Family(name, help, kind) = family;
    let _ = writeln!(out, "# HELP {name} [STABLE] {help}\n# TYPE {name} {kind}");
    for (labels, value, millis) in samples {
        let _ = writeln!(out, "{name}{labels} {value} {millis}");
    }
}

pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let containers = || {
        summary.pods.iter().flat_map(|p| {
            p.containers.iter().map(move |c| {
                let labels = format!(
                    "{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}}",
                    escape(&c.name),
                    escape(&p.pod_ref.namespace),
                    escape(&p.pod_ref.name)
                );
                (labels, c)
            })
        })
    };
    let pods = || {
        summary.pods.iter().map(|p| (format!("{{namespace=\"{}\",pod=\"{}\"}}", escape(&p.pod_ref.namespace), escape(&p.pod_ref.name)), p))
    };
    write_family(&mut out, &CONTAINER_CPU, containers().filter_map(|(l, c)| cpu_sample(l, &c.cpu)));
    write_family(&mut out, &CONTAINER_MEMORY, containers().filter_map(|(l, c)| memory_sample(l, &c.memory)));
    write_family(&mut out, &NODE_CPU, cpu_sample(String::new(), &summary.node.cpu).into_iter());
    write_family(&mut out, &NODE_MEMORY, memory_sample(String::new(), &summary.node.memory).into_iter());
    write_family(&mut out, &POD_CPU, pods().filter_map(|(l, p)| cpu_sample(l, &p.cpu)));
    write_family(&mut out, &POD_MEMORY, pods().filter_map(|(l, p)| memory_sample(l, &p.memory)));
    let _ = writeln!(
        out,
        "# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise\n# TYPE scrape_error gauge\nscrape_error {}",
        u8::from(summary.node.cpu.is_none())
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::stats::{ContainerStats, NodeStats, PodReference, PodStats};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn renders_the_kubelet_resource_metrics() {
        let time = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap());
        let cpu = Some(CpuStats { time: time.clone(), usage_nano_cores: Some(5), usage_core_nano_seconds: Some(1_500_000_000) });
        let memory =
            Some(MemoryStats { time, available_bytes: None, usage_bytes: Some(2048), working_set_bytes: Some(1024), rss_bytes: None });
        let summary = Summary {
            node: NodeStats { node_name: "n".into(), start_time: None, cpu: cpu.clone(), memory: memory.clone() },
            pods: vec![PodStats {
                pod_ref: PodReference { name: "web".into(), namespace: "default".into(), uid: "u".into() },
                start_time: None,
                containers: vec![ContainerStats { name: "app".into(), start_time: None, cpu: cpu.clone(), memory: memory.clone() }],
                cpu,
                memory,
            }],
        };
        let text = render(&summary);
        for line in [
            "# TYPE container_cpu_usage_seconds_total counter",
            "container_cpu_usage_seconds_total{container=\"app\",namespace=\"default\",pod=\"web\"} 1.5 1700000000000",
            "container_memory_working_set_bytes{container=\"app\",namespace=\"default\",pod=\"web\"} 1024 1700000000000",
            "node_cpu_usage_seconds_total 1.5 1700000000000",
            "node_memory_working_set_bytes 1024 1700000000000",
            "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"web\"} 1.5 1700000000000",
            "pod_memory_working_set_bytes{namespace=\"default\",pod=\"web\"} 1024 1700000000000",
            "scrape_error 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
