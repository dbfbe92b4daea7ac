//! A node's own objects: the Node it registers (labels, taints, capacity, addresses, node
//! info, conditions) and its Lease in `kube-node-lease`, as the kubelet writes them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use crate::k8s::names::{HOSTNAME_LABEL, NODE_LEASE_NAMESPACE};
use crate::k8s::version::KUBELET_VERSION;

/// What a node reports about itself.
#[derive(Debug, Clone)]
pub struct NodeShape {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// Resource quantities of the machine (cpu, memory, pods, ephemeral-storage).
    pub capacity: BTreeMap<String, String>,
    /// What is left for pods after the reserved amounts.
    pub allocatable: BTreeMap<String, String>,
    pub internal_ip: IpAddr,
    pub external_ip: Option<IpAddr>,
    pub container_runtime: String,
    pub system: SystemInfo,
    pub kubelet_port: u16,
}

/// The machine's identity as nodeInfo reports it.
#[derive(Debug, Clone, Default)]
pub struct SystemInfo {
    pub os_image: String,
    pub kernel_version: String,
    pub machine_id: String,
    pub boot_id: String,
}

/// Which resources of the host run short (the pressure conditions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

/// Capacity with the given cpu, memory and pod count (and 100Gi of ephemeral storage), as a
/// hollow node reports it.
pub fn resources(cpu: &str, memory: &str, pods: u32) -> BTreeMap<String, String> {
    [("cpu", cpu.to_string()), ("memory", memory.to_string()), ("pods", pods.to_string()), ("ephemeral-storage", "100Gi".to_string())]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

impl NodeShape {
    /// The Node to create (status is written separately, through the status subresource).
    pub fn node(&self) -> Value {
        let mut labels = json!({
            HOSTNAME_LABEL: self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": crate::host::kube_arch(),
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": crate::host::kube_arch(),
        });
        for (k, v) in &self.labels {
            labels[k] = json!(v);
        }
        let mut node = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": self.name, "labels": labels }, "spec": {} });
        if !self.taints.is_empty() {
            node["spec"]["taints"] = json!(self.taints);
        }
        node
    }

    /// The full node status; the conditions say Ready since `since`, heartbeat now.
    pub fn status(&self, since: Timestamp, pressure: Pressure) -> Value {
        let sys = &self.system;
        let mut addresses = vec![json!({ "type": "InternalIP", "address": self.internal_ip.to_string() })];
        addresses.extend(self.external_ip.map(|ip| json!({ "type": "ExternalIP", "address": ip.to_string() })));
        addresses.push(json!({ "type": "Hostname", "address": self.name }));
        json!({
            "capacity": self.capacity,
            "allocatable": self.allocatable,
            "conditions": conditions(since, pressure),
            "addresses": addresses,
            "daemonEndpoints": { "kubeletEndpoint": { "Port": self.kubelet_port } },
            "nodeInfo": {
                "machineID": sys.machine_id, "systemUUID": sys.machine_id, "bootID": sys.boot_id,
                "kernelVersion": sys.kernel_version, "osImage": sys.os_image,
                "containerRuntimeVersion": self.container_runtime,
                "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "",
                "operatingSystem": "linux", "architecture": crate::host::kube_arch(),
            },
        })
    }
}

/// The node conditions: Ready, and the pressure ones from `pressure`; transitioned at
/// `since`, heartbeat now.
pub fn conditions(since: Timestamp, pressure: Pressure) -> Value {
    let (since, now) = (Time(since), Time(Timestamp::now()));
    let c = |kind: &str, on: bool, reason: &str, message: &str| {
        let status = if on { "True" } else { "False" };
        json!({ "type": kind, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": now, "lastTransitionTime": since })
    };
    let p = pressure;
    json!([
        if p.memory {
            c("MemoryPressure", true, "KubeletHasInsufficientMemory", "kubelet has insufficient memory available")
        } else {
            c("MemoryPressure", false, "KubeletHasSufficientMemory", "kubelet has sufficient memory available")
        },
        if p.disk {
            c("DiskPressure", true, "KubeletHasDiskPressure", "kubelet has disk pressure")
        } else {
            c("DiskPressure", false, "KubeletHasNoDiskPressure", "kubelet has no disk pressure")
        },
        if p.pid {
            c("PIDPressure", true, "KubeletHasInsufficientPID", "kubelet has insufficient PID available")
        } else {
            c("PIDPressure", false, "KubeletHasSufficientPID", "kubelet has sufficient PID available")
        },
        c("Ready", true, "KubeletReady", "kubelet is posting ready status"),
    ])
}

/// The node's Lease, renewed now, owned by the Node (so it goes when the Node goes).
pub fn lease(name: &str, node_uid: &str, duration_seconds: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": NODE_LEASE_NAMESPACE,
            "ownerReferences": [{ "apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid }],
        },
        "spec": { "holderIdentity": name, "leaseDurationSeconds": duration_seconds, "renewTime": MicroTime(Timestamp::now()) },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_like_a_kubelet() {
        let shape = NodeShape {
            name: "h1".into(),
            labels: [("type".to_string(), "hollow".to_string())].into(),
            taints: vec![Taint { key: "k".into(), value: Some("v".into()), effect: "NoSchedule".into(), time_added: None }],
            capacity: resources("4", "8Gi", 110),
            allocatable: resources("4", "8Gi", 110),
            internal_ip: "127.0.0.1".parse().unwrap(),
            external_ip: Some("203.0.113.5".parse().unwrap()),
            container_runtime: "fake://orch".into(),
            system: SystemInfo::default(),
            kubelet_port: 10250,
        };
        let node = shape.node();
        assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], "h1");
        assert_eq!(node["metadata"]["labels"]["type"], "hollow");
        assert_eq!(node["spec"]["taints"][0]["effect"], "NoSchedule");
        let status = shape.status(Timestamp::now(), Pressure { disk: true, ..Default::default() });
        assert_eq!(status["capacity"]["pods"], "110");
        let addresses: Vec<&str> = status["addresses"].as_array().unwrap().iter().map(|a| a["type"].as_str().unwrap()).collect();
        assert_eq!(addresses, ["InternalIP", "ExternalIP", "Hostname"]);
        assert_eq!(status["addresses"][1]["address"], "203.0.113.5");
        assert_eq!(status["nodeInfo"]["kubeletVersion"], "v1.33.0");
        let ready = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("True"), Some("KubeletReady")));
        let disk = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "DiskPressure").unwrap();
        assert_eq!(disk["status"], "True");
        let lease = lease("h1", "uid-1", 40);
        assert_eq!(lease["spec"]["holderIdentity"], "h1");
        assert!(lease["spec"]["renewTime"].as_str().unwrap().ends_with('Z'));
    }
}
