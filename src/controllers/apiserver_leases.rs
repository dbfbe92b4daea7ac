//! Every API server's share of the `kubernetes` Endpoints, as kube-apiserver's lease endpoint
//! reconciler keeps them: each server (not only the elected controller manager) renews a Lease
//! of its own in `kube-system` holding its advertised address, and writes the `kubernetes`
//! Endpoints and EndpointSlice listing the addresses whose Leases are alive. A server that
//! stops cleanly deletes its Lease and leaves the list; one that dies drops out once its Lease
//! expires. Agents learn the servers to fail over to from this list.

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use tokio_util::sync::CancellationToken;

use super::kubernetes_service::{endpoints, ensure, slice, NAMESPACE as SERVICE_NAMESPACE};

/// How often a server renews its Lease and reconciles the list (kube: 10 s).
const RENEW: Duration = Duration::from_secs(5);
/// How long a Lease stays alive without renewal (kube's master lease TTL).
const LEASE_SECONDS: i32 = 15;
const NAMESPACE: &str = "kube-system";
/// The label marking these Leases.
const LABEL: &str = "orch.io/apiserver-endpoint";

/// The Lease name of the server at `addr` (a DNS label: the address's dots and colons become
/// dashes).
fn lease_name(addr: SocketAddr) -> String {
    let ip: String = addr.ip().to_string().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    format!("orch-apiserver-{ip}-{}", addr.port())
}

/// The addresses of the Leases in `leases` that are alive at `now`, sorted.
pub fn alive(leases: &[Lease], now: Timestamp) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = leases
        .iter()
        .filter_map(|l| {
            let spec = l.spec.as_ref()?;
            let renewed = spec.renew_time.as_ref()?.0;
            let ttl = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS)));
            (renewed + ttl > now).then_some(())?;
            spec.holder_identity.as_deref()?.parse().ok()
        })
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs
}

/// One server's upkeep of its Lease and the list.
struct Member {
    leases: Api<Lease>,
    endpoints: Api<Endpoints>,
    slices: Api<EndpointSlice>,
    address: SocketAddr,
}

impl Member {
    async fn renew(&self) -> Result<(), kube::Error> {
        let name = lease_name(self.address);
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(NAMESPACE.into()),
                labels: Some([(LABEL.to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.address.to_string()),
                lease_duration_seconds: Some(LEASE_SECONDS),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..Default::default()
            }),
        };
        let patch = serde_json::json!({ "spec": lease.spec });
        match self.leases.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Err(kube::Error::Api(s)) if s.code == 404 => self.leases.create(&PostParams::default(), &lease).await.map(|_| ()),
            other => other.map(|_| ()),
        }
    }

    /// Writes the Endpoints and EndpointSlice listing the alive servers (this one included
    /// unless `leaving`).
    async fn reconcile(&self, leaving: bool) -> Result<(), kube::Error> {
        let leases = self.leases.list(&ListParams::default().labels(&format!("{LABEL}=true"))).await?.items;
        let mut servers = alive(&leases, Timestamp::now());
        match leaving {
            true => servers.retain(|s| *s != self.address),
            false if !servers.contains(&self.address) => servers.push(self.address),
            false => {}
        }
        if servers.is_empty() {
            return Ok(());
        }
        let want = endpoints(&servers);
        let subsets = want.subsets.clone();
        ensure(&self.endpoints, want, |have| have.subsets != subsets).await?;
        let want = slice(&servers);
        let (eps, ports) = (want.endpoints.clone(), want.ports.clone());
        ensure(&self.slices, want, |have| have.endpoints != eps || have.ports != ports).await
    }

    async fn leave(&self) {
        let name = lease_name(self.address);
        if let Err(e) = self.leases.delete(&name, &DeleteParams::default()).await {
            tracing::warn!(error = %e, "cannot delete this API server's endpoint lease");
        }
        if let Err(e) = self.reconcile(true).await {
            tracing::warn!(error = %e, "cannot remove this API server from the kubernetes endpoints");
        }
    }
}

/// Keeps this server (advertised at `address`) in the `kubernetes` Endpoints until `shutdown`,
/// then takes it out. `client` may write Leases in `kube-system` and the Endpoints.
pub async fn run(client: kube::Client, address: SocketAddr, shutdown: CancellationToken) {
    let member = Member {
        leases: Api::namespaced(client.clone(), NAMESPACE),
        endpoints: Api::namespaced(client.clone(), SERVICE_NAMESPACE),
        slices: Api::namespaced(client, SERVICE_NAMESPACE),
        address,
    };
    let mut tick = tokio::time::interval(RENEW);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let done = match member.renew().await {
            Ok(()) => member.reconcile(false).await,
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, "cannot renew this API server's place in the kubernetes endpoints; retrying");
        }
    }
    member.leave().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_secs_ago: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(LEASE_SECONDS),
                renew_time: Some(MicroTime(Timestamp::now() - SignedDuration::from_secs(renewed_secs_ago))),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn lists_the_servers_whose_leases_are_alive() {
        let leases = [lease("10.0.0.2:6443", 1), lease("10.0.0.1:6443", 14), lease("10.0.0.3:6443", 16), lease("garbage", 0)];
        let got = alive(&leases, Timestamp::now());
        assert_eq!(got, vec!["10.0.0.1:6443".parse::<SocketAddr>().unwrap(), "10.0.0.2:6443".parse().unwrap()]);
    }

    #[test]
    fn lease_names_are_dns_labels() {
        assert_eq!(lease_name("10.0.0.1:6443".parse().unwrap()), "orch-apiserver-10-0-0-1-6443");
        assert_eq!(lease_name("[fd00::1]:6443".parse().unwrap()), "orch-apiserver-fd00--1-6443");
    }
}
