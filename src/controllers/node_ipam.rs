//! Node IPAM: gives every Node a `spec.podCIDR` (one /24 of `--cluster-cidr`), never the same
//! /24 to two nodes, and the same /24 again to a node that re-registers under its name. The
//! assignments live in the ConfigMap `kube-system/orch-node-cidrs` (written before a Node is
//! patched, with optimistic concurrency), so they survive restarts and failover; CIDRs already
//! on Nodes are recorded there too. When the range is exhausted, the /24 of a name that has no
//! Node any more is reused.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::common::backoff;
use super::Context;
use crate::k8s::cidr::{self, Ipv4Network};

const RECORD_NAMESPACE: &str = crate::k8s::names::KUBE_SYSTEM;
const RECORD_NAME: &str = "orch-node-cidrs";

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("--cluster-cidr {0:?}: {1}")]
    Range(String, String),
    #[error("no /24 left in the cluster CIDR for node {0}")]
    Exhausted(String),
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// Prefix length of the range each node gets.
const NODE_PREFIX: u8 = 24;

/// The /24s of the cluster CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    range: Ipv4Network,
}

impl Pool {
    pub fn parse(cidr: &str) -> Result<Self, IpamError> {
        let bad = |why: String| IpamError::Range(cidr.into(), why);
        let range = crate::k8s::cidr::parse(cidr).map_err(|e| bad(e.to_string()))?;
        if !(8..=NODE_PREFIX).contains(&range.prefix()) {
            return Err(bad("the prefix must be between /8 and /24".into()));
        }
        Ok(Self { range })
    }

    fn count(&self) -> u32 {
        cidr::subnet_count(self.range, NODE_PREFIX) as u32
    }

    fn cidr(&self, i: u32) -> String {
        cidr::subnet(self.range, NODE_PREFIX, i).map(|n| n.to_string()).unwrap_or_default()
    }

    /// The /24 for `name`: its recorded one unless another live node holds it, else the first
    /// free one, else (range exhausted) one recorded for a name without a Node, whose record
    /// is then dropped (returned second).
    pub fn allocate(
        &self,
        recorded: &BTreeMap<String, String>,
        live: &HashMap<String, Option<String>>,
        name: &str,
    ) -> Option<(String, Option<String>)> {
        let held_by_other = |cidr: &str| live.iter().any(|(n, c)| n != name && c.as_deref() == Some(cidr));
        if let Some(cidr) = recorded.get(name).filter(|c| !held_by_other(c)) {
            return Some((cidr.clone(), None));
        }
        let taken = |cidr: &str| recorded.values().any(|c| c == cidr) || held_by_other(cidr);
        if let Some(cidr) = (0..self.count()).map(|i| self.cidr(i)).find(|c| !taken(c)) {
            return Some((cidr, None));
        }
        recorded
            .iter()
            .find(|(n, c)| n.as_str() != name && !live.contains_key(*n) && !held_by_other(c))
            .map(|(n, c)| (c.clone(), Some(n.clone())))
    }
}

/// The ConfigMap of assignments, as last read or written.
struct Record {
    resource_version: Option<String>,
    cidrs: BTreeMap<String, String>,
}

impl Record {
    async fn load(api: &Api<ConfigMap>) -> Result<Self, kube::Error> {
        let cm = api.get_opt(RECORD_NAME).await?;
        Ok(Self {
            resource_version: cm.as_ref().and_then(|c| c.metadata.resource_version.clone()),
            cidrs: cm.and_then(|c| c.data).unwrap_or_default(),
        })
    }

    async fn save(&mut self, api: &Api<ConfigMap>) -> Result<(), kube::Error> {
        let mut cm: ConfigMap = serde_json::from_value(json!({
            "metadata": { "name": RECORD_NAME, "namespace": RECORD_NAMESPACE, "labels": { "app.kubernetes.io/managed-by": "orch-node-ipam" } },
        }))
        .expect("a valid ConfigMap");
        cm.data = Some(self.cidrs.clone());
        let saved = match self.resource_version.clone() {
            None => api.create(&PostParams::default(), &cm).await?,
            Some(rv) => {
                cm.metadata.resource_version = Some(rv);
                api.replace(RECORD_NAME, &PostParams::default(), &cm).await?
            }
        };
        self.resource_version = saved.metadata.resource_version;
        Ok(())
    }
}

struct Ipam {
    client: kube::Client,
    pool: Pool,
    nodes: Store<Node>,
    /// Loaded on first use; dropped after a failed write so the next reconcile re-reads it.
    record: Mutex<Option<Record>>,
}

fn pod_cidr(node: &Node) -> Option<String> {
    let spec = node.spec.as_ref()?;
    spec.pod_cidr.clone().or_else(|| spec.pod_cidrs.as_ref()?.first().cloned())
}

async fn reconcile(node: Arc<Node>, ipam: Arc<Ipam>) -> Result<Action, IpamError> {
    let name = node.name_any();
    let records: Api<ConfigMap> = Api::namespaced(ipam.client.clone(), RECORD_NAMESPACE);
    let mut guard = ipam.record.lock().await;
    let record = match guard.take() {
        Some(r) => r,
        None => Record::load(&records).await?,
    };
    let record = guard.insert(record);
    if let Some(cidr) = pod_cidr(&node) {
        if record.cidrs.get(&name) != Some(&cidr) {
            record.cidrs.insert(name, cidr);
            if let Err(e) = record.save(&records).await {
                *guard = None;
                return Err(e.into());
            }
        }
        return Ok(Action::await_change());
    }
    let live: HashMap<String, Option<String>> = ipam.nodes.state().iter().map(|n| (n.name_any(), pod_cidr(n))).collect();
    let (cidr, reclaimed) = ipam.pool.allocate(&record.cidrs, &live, &name).ok_or_else(|| IpamError::Exhausted(name.clone()))?;
    if let Some(old) = &reclaimed {
        record.cidrs.remove(old);
    }
    if record.cidrs.get(&name) != Some(&cidr) {
        record.cidrs.insert(name.clone(), cidr.clone());
        if let Err(e) = record.save(&records).await {
            *guard = None;
            return Err(e.into());
        }
    }
    drop(guard);
    let patch = json!({ "spec": { "podCIDR": cidr, "podCIDRs": [cidr] } });
    Api::<Node>::all(ipam.client.clone()).patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
    tracing::info!(node = %name, %cidr, reclaimed_from = ?reclaimed, "assigned a pod CIDR");
    Ok(Action::await_change())
}

/// Runs node IPAM until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let pool = match Pool::parse(&ctx.settings.cluster_cidr) {
        Ok(pool) => pool,
        Err(e) => return tracing::error!(error = %e, "node IPAM disabled"),
    };
    // One allocation at a time: each reads and writes the one record.
    let controller = Controller::new(Api::<Node>::all(ctx.client.clone()), watcher::Config::default())
        .with_config(controller::Config::default().concurrency(1));
    let ipam = Arc::new(Ipam { client: ctx.client.clone(), pool, nodes: controller.store(), record: Mutex::new(None) });
    backoff::run(controller.graceful_shutdown_on(shutdown.cancelled_owned()), reconcile, ipam).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(nodes: &[(&str, Option<&str>)]) -> HashMap<String, Option<String>> {
        nodes.iter().map(|(n, c)| (n.to_string(), c.map(String::from))).collect()
    }

    #[test]
    fn pools_split_the_cluster_cidr_into_24s() {
        let pool = Pool::parse("10.42.0.0/16").unwrap();
        assert_eq!((pool.count(), pool.cidr(0), pool.cidr(255)), (256, "10.42.0.0/24".to_string(), "10.42.255.0/24".to_string()));
        assert_eq!(Pool::parse("10.0.0.0/8").unwrap().count(), 65536);
        assert!(Pool::parse("10.42.0.0/25").is_err());
        assert!(Pool::parse("banana").is_err());
    }

    #[test]
    fn distinct_and_sticky() {
        let pool = Pool::parse("10.42.0.0/16").unwrap();
        let mut recorded = BTreeMap::new();
        let (a, _) = pool.allocate(&recorded, &live(&[("a", None)]), "a").unwrap();
        recorded.insert("a".to_string(), a.clone());
        let (b, _) = pool.allocate(&recorded, &live(&[("a", Some(&a)), ("b", None)]), "b").unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("10.42.0.0/24", "10.42.1.0/24"));
        recorded.insert("b".to_string(), b.clone());
        // "a" is deleted and comes back: it gets its old /24 again, not the next free one.
        assert_eq!(pool.allocate(&recorded, &live(&[("b", Some(&b)), ("a", None)]), "a").unwrap(), (a.clone(), None));
        // A CIDR some live node already carries (e.g. assigned before the record existed) is not handed out.
        let (c, _) = pool.allocate(&recorded, &live(&[("x", Some("10.42.2.0/24")), ("c", None)]), "c").unwrap();
        assert_eq!(c, "10.42.3.0/24");
    }

    #[test]
    fn exhausted_ranges_reuse_the_cidrs_of_departed_nodes() {
        let pool = Pool::parse("10.42.0.0/23").unwrap();
        let recorded: BTreeMap<String, String> =
            [("gone".to_string(), "10.42.0.0/24".to_string()), ("here".to_string(), "10.42.1.0/24".to_string())].into();
        let some = live(&[("here", Some("10.42.1.0/24")), ("new", None)]);
        assert_eq!(pool.allocate(&recorded, &some, "new"), Some(("10.42.0.0/24".to_string(), Some("gone".to_string()))));
        let full = live(&[("gone", Some("10.42.0.0/24")), ("here", Some("10.42.1.0/24")), ("new", None)]);
        assert_eq!(pool.allocate(&recorded, &full, "new"), None);
    }
}
