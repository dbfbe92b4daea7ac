//! An in-memory [`PodNetwork`] for the kubelet's unit tests: hands out addresses from a podCIDR
//! like the real one (skipping network, gateway and broadcast) and records what is set up.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use ipnetwork::Ipv4Network;
use parking_lot::Mutex;

use super::names::{host_veth_name, valid_pod_id};
use super::pod_network::{gateway, PodAttachment, PodNetRequest, PodNetwork};
use super::NetError;

pub struct FakePodNetwork {
    cidr: Ipv4Network,
    pods: Mutex<BTreeMap<String, (PodAttachment, PodNetRequest)>>,
}

impl FakePodNetwork {
    pub fn new(cidr: Ipv4Network) -> Self {
        Self { cidr, pods: Mutex::new(BTreeMap::new()) }
    }

    /// The pods currently set up, with the request each was set up with.
    pub fn pods(&self) -> BTreeMap<String, (PodAttachment, PodNetRequest)> {
        self.pods.lock().clone()
    }
}

#[async_trait]
impl PodNetwork for FakePodNetwork {
    async fn setup(&self, pod: &PodNetRequest) -> Result<PodAttachment, NetError> {
        if !valid_pod_id(&pod.id) {
            return Err(NetError::BadPodId(pod.id.clone()));
        }
        let mut pods = self.pods.lock();
        if let Some((att, _)) = pods.get(&pod.id) {
            return Ok(att.clone());
        }
        let used: Vec<_> = pods.values().map(|(a, _)| a.ip).collect();
        let ip = (2..self.cidr.size().saturating_sub(1))
            .filter_map(|i| self.cidr.nth(i))
            .find(|ip| !used.contains(ip))
            .ok_or(NetError::Ipam(super::ipam::IpamError::Exhausted(self.cidr)))?;
        let att = PodAttachment {
            netns: PathBuf::from("/run/orch/netns").join(&pod.id),
            ip,
            prefix: self.cidr.prefix(),
            gateway: gateway(self.cidr),
            host_veth: host_veth_name(&pod.id),
        };
        pods.insert(pod.id.clone(), (att.clone(), pod.clone()));
        Ok(att)
    }

    async fn teardown(&self, pod_id: &str) -> Result<(), NetError> {
        self.pods.lock().remove(pod_id);
        Ok(())
    }

    async fn gc(&self, alive: &(dyn for<'a> Fn(&'a str) -> bool + Send + Sync)) -> Result<Vec<String>, NetError> {
        let mut pods = self.pods.lock();
        let gone: Vec<String> = pods.keys().filter(|id| !alive(id)).cloned().collect();
        for id in &gone {
            pods.remove(id);
        }
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hands_out_distinct_addresses_and_forgets_on_teardown() {
        let net = FakePodNetwork::new("10.42.1.0/24".parse().unwrap());
        let req = |id: &str| PodNetRequest { id: id.into(), host_ports: vec![] };
        let a = net.setup(&req("a")).await.unwrap();
        assert_eq!(a.ip.to_string(), "10.42.1.2");
        assert_eq!(net.setup(&req("a")).await.unwrap(), a);
        assert_eq!(net.setup(&req("b")).await.unwrap().ip.to_string(), "10.42.1.3");
        assert_eq!(net.gc(&|id| id == "b").await.unwrap(), vec!["a".to_string()]);
        net.teardown("b").await.unwrap();
        assert!(net.pods().is_empty());
        assert!(net.setup(&req("../x")).await.is_err());
    }
}
