//! The filter half of one scheduling decision (kube's PreFilter + Filter): per-pod state
//! computed once over the cache, then every default filter plugin in kube-scheduler's order.
//! Shared by the decision itself and by the diagnosis of why no node fits.

use super::node_info::NodeInfo;
use super::plugins::interpod::InterPodFilter;
use super::plugins::spread::SpreadFilter;
use super::plugins::volume_binding::PodVolumes;
use super::plugins::{fit, node_affinity, ports, taints, Filtered};
use super::pod_info::PodInfo;

/// Per-pod filter state computed once over the cache (kube's PreFilter).
pub struct Prepared<'a> {
    pod: &'a PodInfo,
    spread: Option<SpreadFilter>,
    interpod: Option<InterPodFilter>,
    volumes: Option<&'a PodVolumes>,
}

impl<'a> Prepared<'a> {
    pub fn new(pod: &'a PodInfo, nodes: &[NodeInfo]) -> Self {
        Self { pod, spread: SpreadFilter::new(pod, nodes), interpod: InterPodFilter::new(pod, nodes), volumes: None }
    }

    /// Adds VolumeBinding's filter over the pod's claims (looked up by its PreFilter).
    pub fn with_volumes(mut self, volumes: &'a PodVolumes) -> Self {
        self.volumes = Some(volumes).filter(|v| !v.is_empty());
        self
    }

    /// Every default filter plugin in kube-scheduler's order; the first rejection wins.
    pub fn filter(&self, node: &NodeInfo) -> Filtered {
        let pod = self.pod;
        let Some(spec) = pod.pod.spec.as_ref() else { return Ok(()) };
        let tolerations = spec.tolerations.as_deref().unwrap_or_default();
        taints::node_unschedulable(tolerations, node)?;
        node_affinity::node_name(spec, node)?;
        taints::taint_toleration(tolerations, node)?;
        node_affinity::node_affinity(spec, node)?;
        ports::node_ports(pod, node)?;
        fit::fits(pod, node)?;
        if let Some(v) = self.volumes {
            v.filter(node)?;
        }
        if let Some(s) = &self.spread {
            s.filter(pod, node)?;
        }
        if let Some(s) = &self.interpod {
            s.filter(pod, node)?;
        }
        Ok(())
    }
}
