//! The node's Service proxy ([`crate::net::proxy`]): follows Services and EndpointSlices and,
//! once both are listed and ~100 ms after the last change, recomputes table `ip orch-proxy` and
//! when it differs from what is applied sends the difference (only the changed Service chains
//! and map elements), then deletes the UDP conntrack flows of endpoints that are gone. The whole
//! table is replaced at start, after a failed update (retried) and at the first resync an hour
//! after the last whole replacement (kube-proxy's full sync). Off with `--disable-kube-proxy` (which removes a table an earlier run left).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};

use super::Config;
use crate::net::conntrack;
use crate::net::proxy::{desired, ProxyConfig, ProxyRules};
use crate::tasks::Tasks;

/// How long the proxy waits for more changes before it reprograms.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How long it waits before retrying a failed apply.
const RETRY: Duration = Duration::from_secs(1);
/// How often the whole table is replaced even when updates succeed (kube-proxy's full sync).
const FULL_RESYNC: Duration = Duration::from_secs(3600);

/// Starts the proxy of the node `config` describes, unless it is disabled.
pub fn start(config: &Config, client: kube::Client, tasks: &Tasks) {
    if !config.service_proxy {
        tracing::info!("--disable-kube-proxy: this node forwards no Service traffic");
        // Rules an earlier run left would keep forwarding to endpoints that may be gone.
        let netns = config.host_netns.clone();
        tasks.spawn(async move {
            match tokio::task::spawn_blocking(move || ProxyRules::remove(netns.as_deref())).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot remove the service proxy's table"),
                Err(e) => tracing::warn!(error = %e, "removing the service proxy's table failed"),
            }
        });
        return;
    }
    // The node answers DNS on the cluster DNS address itself (`node::cluster_dns`): the
    // kube-dns Service's ClusterIP must reach that, not be DNATed to the node IPs it lists.
    let served_locally = if config.dns_server {
        config.cluster_dns.iter().filter_map(|ip| if let std::net::IpAddr::V4(v4) = ip { Some(*v4) } else { None }).collect()
    } else {
        Vec::new()
    };
    let proxy = ProxyConfig { node_name: config.node_name.clone(), cluster_cidr: Some(config.cluster_cidr), served_locally };
    tasks.spawn(run(client, proxy, config.host_netns.clone()));
}

/// A reflector of every `K`, as a stream of "something changed" (or a watch error).
fn follow<K>(client: &kube::Client) -> (Store<K>, impl Stream<Item = Result<(), watcher::Error>>)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let events =
        reflector::reflector(writer, watcher::watcher(Api::<K>::all(client.clone()), watcher::Config::default()).default_backoff());
    (store, events.map(|e| e.map(|_| ())))
}

async fn run(client: kube::Client, config: ProxyConfig, netns: Option<PathBuf>) {
    let (services, service_changes) = follow::<Service>(&client);
    let (slices, slice_changes) = follow::<EndpointSlice>(&client);
    let mut changes = std::pin::pin!(futures::stream::select(service_changes, slice_changes));
    // What the table holds and when it was last replaced whole; `None` when unknown.
    let mut applied: Option<(ProxyRules, Instant)> = None;
    let mut retry = false;
    loop {
        if !retry {
            match changes.next().await {
                Some(Err(e)) => tracing::warn!(error = %e, "service proxy: a watch failed; retrying"),
                Some(Ok(())) => {}
                None => return,
            }
        }
        let quiet = if retry { RETRY } else { DEBOUNCE };
        while let Ok(next) = tokio::time::timeout(quiet, changes.next()).await {
            match next {
                Some(Err(e)) => tracing::warn!(error = %e, "service proxy: a watch failed; retrying"),
                Some(Ok(())) => {}
                None => return,
            }
        }
        retry = false;
        let (Ok(()), Ok(())) = (services.wait_until_ready().await, slices.wait_until_ready().await) else { return };
        let svcs: Vec<Service> = services.state().iter().map(|s| (**s).clone()).collect();
        let eps: Vec<EndpointSlice> = slices.state().iter().map(|s| (**s).clone()).collect();
        let rules = ProxyRules { cluster_cidr: config.cluster_cidr, ports: desired(&config, &svcs, &eps) };
        let last = applied.take();
        if last.as_ref().is_some_and(|(before, full)| *before == rules && full.elapsed() < FULL_RESYNC) {
            applied = last;
            continue;
        }
        let gone = last.as_ref().map(|(a, _)| a.gone_udp_endpoints(&rules)).unwrap_or_default();
        let previous = last.filter(|(_, full)| full.elapsed() < FULL_RESYNC);
        let (to_apply, ns) = (rules.clone(), netns.clone());
        let full_since = previous.as_ref().map_or_else(Instant::now, |(_, full)| *full);
        let result = tokio::task::spawn_blocking(move || match &previous {
            Some((before, _)) => to_apply.update(before, ns.as_deref()),
            None => to_apply.apply(ns.as_deref()),
        })
        .await;
        match result {
            Ok(Ok(())) => {
                tracing::debug!(ports = rules.ports.len(), "service proxy rules applied");
                applied = Some((rules, full_since));
                forget_flows(netns.clone(), gone).await;
            }
            Ok(Err(e)) => {
                // The table's state is unknown now: the retry replaces it whole.
                tracing::warn!(error = %e, "service proxy: cannot program nftables; retrying");
                retry = true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "service proxy: the apply task failed; retrying");
                retry = true;
            }
        }
    }
}

/// Deletes the UDP conntrack flows to `gone` endpoints (a failure is logged: the flows then
/// expire once their clients stop sending).
async fn forget_flows(netns: Option<PathBuf>, gone: BTreeSet<(Ipv4Addr, u16)>) {
    if gone.is_empty() {
        return;
    }
    match tokio::task::spawn_blocking(move || conntrack::delete_udp_flows_from(netns.as_deref(), &gone)).await {
        Ok(Ok(n)) => tracing::debug!(flows = n, "service proxy: deleted UDP flows to gone endpoints"),
        Ok(Err(e)) => tracing::warn!(error = %e, "service proxy: cannot delete UDP flows to gone endpoints"),
        Err(e) => tracing::warn!(error = %e, "service proxy: the conntrack task failed"),
    }
}
