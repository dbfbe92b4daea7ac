//! ServiceLB (k3s's svccontroller): LoadBalancer Services without a `loadBalancerClass` get
//! the addresses of the nodes that serve them ([`plan`]) as `status.loadBalancer.ingress`;
//! one that no node can serve keeps an empty status and gets a Warning Event; a Service that
//! is no longer of type LoadBalancer loses its ingress. Every Service or Node change replans
//! all of them (ports are claimed across Services); only changed statuses are written.
//! `orch server --disable servicelb` does not run it.

mod plan;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Context;

/// How often everything is replanned even without a change.
const RESYNC: Duration = Duration::from_secs(30);
/// How long a burst of changes is gathered before one replan.
const SETTLE: Duration = Duration::from_millis(200);

/// The component its Events come from.
const COMPONENT: &str = "service-lb-controller";
/// The event reason and note k3s records for a Service no node can serve.
const UNAVAILABLE: (&str, &str) = ("UnAvailableLoadBalancer", "There are no available nodes for LoadBalancer");

/// What one replan needs besides the caches.
struct State {
    services: Store<Service>,
    nodes: Store<Node>,
    client: kube::Client,
    /// The uids of Services already told that no node can serve them.
    pending: HashSet<String>,
}

/// The ingress IPs `svc`'s status holds.
fn current(svc: &Service) -> Vec<String> {
    let ingress = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
    ingress.into_iter().flatten().filter_map(|i| i.ip.clone()).collect()
}

/// Whether `svc`'s status has any ingress at all (IPs or host names).
fn has_ingress(svc: &Service) -> bool {
    let ingress = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
    ingress.is_some_and(|i| !i.is_empty())
}

/// The ingress IPs `svc` should have given its `planned` ones (`None`: not ServiceLB's to
/// touch — a LoadBalancer of another class).
fn target(svc: &Service, planned: Option<&Vec<String>>) -> Option<Vec<String>> {
    match planned {
        Some(ips) => Some(ips.clone()),
        // No longer a LoadBalancer: whatever ingress it kept goes.
        None if svc.spec.as_ref().is_some_and(|s| s.type_.as_deref() != Some("LoadBalancer")) && has_ingress(svc) => Some(Vec::new()),
        None => None,
    }
}

/// Whether `svc`'s status already holds exactly the ingress IPs `want`.
fn up_to_date(svc: &Service, want: &[String]) -> bool {
    if want.is_empty() {
        !has_ingress(svc)
    } else {
        current(svc) == want
    }
}

impl State {
    /// Records a core/v1 Event about `svc` (what `kubectl describe service` shows).
    async fn record(&self, svc: &Service, kind: &str, reason: &str, message: String) {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let namespace = svc.namespace().unwrap_or_default();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let event = CoreEvent {
            metadata: ObjectMeta {
                name: Some(format!("{}.{nanos:x}", svc.name_any())),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: svc.object_ref(&()),
            reason: Some(reason.into()),
            message: Some(message),
            type_: Some(kind.into()),
            source: Some(EventSource { component: Some(COMPONENT.into()), host: None }),
            reporting_component: Some(COMPONENT.into()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        if let Err(e) = Api::<CoreEvent>::namespaced(self.client.clone(), &namespace).create(&PostParams::default(), &event).await {
            tracing::debug!(error = %e, "could not record an event");
        }
    }

    async fn write(&self, svc: &Service, ips: &[String]) -> Result<(), kube::Error> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &svc.namespace().unwrap_or_default());
        let ingress = if ips.is_empty() { json!(null) } else { json!(ips.iter().map(|ip| json!({ "ip": ip })).collect::<Vec<_>>()) };
        let patch = json!({ "status": { "loadBalancer": { "ingress": ingress } } });
        api.patch_status(&svc.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        Ok(())
    }

    /// Plans every Service and writes the statuses that differ.
    async fn sync(&mut self) {
        let (services, nodes) = (self.services.state(), self.nodes.state());
        let refs: Vec<&Service> = services.iter().map(|s| &**s).collect();
        let node_refs: Vec<&Node> = nodes.iter().map(|n| &**n).collect();
        let planned = plan::plan(&refs, &node_refs);
        for svc in &services {
            let key = (svc.namespace().unwrap_or_default(), svc.name_any());
            let Some(want) = target(svc, planned.get(&key)) else { continue };
            let uid = svc.uid().unwrap_or_default();
            if planned.contains_key(&key) {
                if want.is_empty() {
                    if self.pending.insert(uid) {
                        tracing::warn!(service = %key.1, namespace = %key.0, "no node can serve this LoadBalancer service");
                        self.record(svc, "Warning", UNAVAILABLE.0, UNAVAILABLE.1.into()).await;
                    }
                } else {
                    self.pending.remove(&uid);
                }
            }
            if up_to_date(svc, &want) {
                continue;
            }
            match self.write(svc, &want).await {
                Ok(()) => {
                    tracing::info!(service = %key.1, namespace = %key.0, ingress = ?want, "updated the load balancer ingress");
                    if !want.is_empty() {
                        let note = format!("LoadBalancer Ingress IP addresses updated: {}", want.join(", "));
                        self.record(svc, "Normal", "UpdatedIngressIP", note).await;
                    }
                }
                Err(e) => tracing::warn!(service = %key.1, namespace = %key.0, error = %e, "cannot write the load balancer ingress"),
            }
        }
        let live: HashSet<String> = services.iter().filter_map(|s| s.uid()).collect();
        self.pending.retain(|uid| live.contains(uid));
    }
}

/// Runs ServiceLB until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let (service_informer, node_informer) = (ctx.informers.get::<Service>(), ctx.informers.get::<Node>());
    let mut changes = std::pin::pin!(futures::stream::select(service_informer.touched().map(|_| ()), node_informer.touched().map(|_| ())));
    let Some(services) = service_informer.ready(&shutdown).await else { return };
    let Some(nodes) = node_informer.ready(&shutdown).await else { return };
    let mut state = State { services, nodes, client: ctx.client.clone(), pending: HashSet::new() };
    loop {
        state.sync().await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = changes.next() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
        tokio::time::sleep(SETTLE).await;
        while futures::FutureExt::now_or_never(changes.next()).flatten().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(spec: serde_json::Value, ingress: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": spec, "status": {"loadBalancer": {"ingress": ingress}}})).unwrap()
    }

    #[test]
    fn targets_and_what_is_already_written() {
        let ips = vec!["192.0.2.1".to_string()];
        let served = svc(json!({"type": "LoadBalancer"}), json!([{"ip": "192.0.2.1"}]));
        assert_eq!(target(&served, Some(&ips)), Some(ips.clone()));
        assert!(up_to_date(&served, &ips));
        assert!(!up_to_date(&served, &[]), "a Service no node serves loses its old ingress");

        let was_lb = svc(json!({"type": "NodePort"}), json!([{"ip": "192.0.2.1"}]));
        assert_eq!(target(&was_lb, None), Some(Vec::new()), "a former LoadBalancer's ingress is cleared");
        let plain = svc(json!({"type": "ClusterIP"}), json!(null));
        assert_eq!(target(&plain, None), None);
        assert!(up_to_date(&plain, &[]));

        let other_class = svc(json!({"type": "LoadBalancer", "loadBalancerClass": "example.com/lb"}), json!([{"hostname": "lb.example"}]));
        assert_eq!(target(&other_class, None), None, "another class's status is not ServiceLB's");
    }
}
