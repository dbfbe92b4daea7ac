//! NodePorts: a pod's host ports must be free on the node.

use super::{Filtered, Rejection};
use crate::controllers::scheduler::node_info::NodeInfo;
use crate::controllers::scheduler::pod_info::PodInfo;

pub fn node_ports(pod: &PodInfo, node: &NodeInfo) -> Filtered {
    if pod.host_ports.is_empty() {
        return Ok(());
    }
    let taken = node.pods.iter().flat_map(|p| &p.host_ports);
    if taken.into_iter().any(|used| pod.host_ports.iter().any(|want| want.conflicts(used))) {
        Err(Rejection::unschedulable("node(s) didn't have free ports for the requested pod ports"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;
    use std::sync::Arc;

    fn pod(name: &str, ports: serde_json::Value) -> PodInfo {
        PodInfo::new(Arc::new(
            serde_json::from_value(json!({ "metadata": { "name": name, "namespace": "d" },
                "spec": { "containers": [ { "name": "c", "ports": ports } ] } }))
            .unwrap(),
        ))
    }

    #[test]
    fn host_port_conflicts() {
        let node: Node = serde_json::from_value(json!({ "metadata": { "name": "n" } })).unwrap();
        let n = NodeInfo::with_pods(node, [pod("a", json!([{ "containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1" }]))]);
        let clash = pod("b", json!([{ "containerPort": 80, "hostPort": 8080 }]));
        assert_eq!(node_ports(&clash, &n).unwrap_err().reasons, ["node(s) didn't have free ports for the requested pod ports"]);
        assert!(node_ports(&pod("c", json!([{ "containerPort": 80, "hostPort": 8080, "protocol": "UDP" }])), &n).is_ok());
        assert!(node_ports(&pod("d", json!([{ "containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2" }])), &n).is_ok());
        assert!(node_ports(&pod("e", json!([{ "containerPort": 80 }])), &n).is_ok());
    }
}
