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
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Context;

/// How often everything is replanned even without a change.
const RESYNC: Duration = Duration::from_secs(30);
/// How long a burst of changes is gathered before one replan.
const SETTLE: Duration = Duration::from_millis(200);

/// The event reason and note k3s records for a Service no node can serve.
const UNAVAILABLE: (&str, &str) = ("UnAvailableLoadBalancer", "There are no available nodes for LoadBalancer");

/// What one replan needs besides the caches.
struct State {
    services: Store<Service>,
    nodes: Store<Node>,
    client: kube::Client,
    recorder: Recorder,
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

impl State {
    async fn record(&self, svc: &Service, kind: EventType, reason: &str, note: String) {
        let event = Event { type_: kind, reason: reason.into(), note: Some(note), action: "EnsureLoadBalancer".into(), secondary: None };
        if let Err(e) = self.recorder.publish(&event, &svc.object_ref(&())).await {
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
            let want = match planned.get(&key) {
                Some(ips) => ips.clone(),
                // Another class or another type: only a former LoadBalancer keeps ingress to drop.
                None if svc.spec.as_ref().is_some_and(|s| s.type_.as_deref() != Some("LoadBalancer")) && has_ingress(svc) => Vec::new(),
                None => continue,
            };
            let uid = svc.uid().unwrap_or_default();
            if planned.contains_key(&key) {
                if want.is_empty() {
                    if self.pending.insert(uid) {
                        tracing::warn!(service = %key.1, namespace = %key.0, "no node can serve this LoadBalancer service");
                        self.record(svc, EventType::Warning, UNAVAILABLE.0, UNAVAILABLE.1.into()).await;
                    }
                } else {
                    self.pending.remove(&uid);
                }
            }
            let written = if want.is_empty() { !has_ingress(svc) } else { current(svc) == want };
            if written {
                continue;
            }
            match self.write(svc, &want).await {
                Ok(()) => {
                    tracing::info!(service = %key.1, namespace = %key.0, ingress = ?want, "updated the load balancer ingress");
                    if !want.is_empty() {
                        let note = format!("LoadBalancer Ingress IP addresses updated: {}", want.join(", "));
                        self.record(svc, EventType::Normal, "UpdatedIngressIP", note).await;
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
    let reporter = Reporter { controller: "service-lb-controller".into(), instance: None };
    let mut state = State { services, nodes, client: ctx.client.clone(), recorder: Recorder::new(ctx.client.clone(), reporter), pending: HashSet::new() };
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
