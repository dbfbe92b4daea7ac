//! Leader election over a coordination.k8s.io/v1 Lease, as client-go's leaderelection does:
//! one candidate holds `kube-system/orch-controller-manager` and renews it; the others take
//! it over once they have seen it unchanged for a whole lease duration (measured on their own
//! clock, so clock skew between servers does not matter). Writes use optimistic concurrency
//! through resourceVersion; a graceful stop releases the lease so a successor starts at once.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::k8s::names::KUBE_SYSTEM;

/// How soon a candidate retries after an API error (rather than losing to another holder).
const ERROR_RETRY: Duration = Duration::from_millis(250);

/// Timings and the lease's name.
#[derive(Debug, Clone)]
pub struct Config {
    pub namespace: String,
    pub name: String,
    /// How long a holder's lease lasts without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews.
    pub renew_period: Duration,
    /// The holder gives up leading if it could not renew for this long.
    pub renew_deadline: Duration,
    /// How often a candidate tries to acquire.
    pub retry_period: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            namespace: KUBE_SYSTEM.into(),
            name: "orch-controller-manager".into(),
            lease_duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(2),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The lease record as last seen, and when it was first seen in that state.
struct Observed {
    spec: LeaseSpec,
    at: Instant,
}

/// One candidate.
pub struct Elector {
    api: Api<Lease>,
    identity: String,
    config: Config,
    observed: Option<Observed>,
}

/// Why a term of leadership ended.
enum TermEnd {
    Shutdown,
    Lost,
}

impl Elector {
    pub fn new(client: kube::Client, config: Config) -> Self {
        let api = Api::namespaced(client, &config.namespace);
        Self { api, identity: identity(), config, observed: None }
    }

    /// Campaigns until `shutdown`; while this candidate leads, runs `lead` with a token that
    /// is cancelled when leadership ends (`lead` must then return). Releases the lease on
    /// shutdown.
    pub async fn run<F, Fut>(mut self, shutdown: CancellationToken, mut lead: F)
    where
        F: FnMut(CancellationToken) -> Fut,
        Fut: Future<Output = ()>,
    {
        tracing::info!(identity = %self.identity, lease = %self.config.name, "campaigning for controller-manager leadership");
        loop {
            if !self.acquire(&shutdown).await {
                return;
            }
            tracing::info!(identity = %self.identity, "acquired the controller-manager lease; starting controllers");
            let leading = shutdown.child_token();
            let work = lead(leading.clone());
            tokio::pin!(work);
            let end = tokio::select! {
                end = self.keep(&shutdown) => Some(end),
                _ = &mut work => None,
            };
            leading.cancel();
            if end.is_some() {
                work.await;
            }
            if shutdown.is_cancelled() || matches!(end, Some(TermEnd::Shutdown)) {
                self.release().await;
                return;
            }
            tracing::warn!(identity = %self.identity, "lost the controller-manager lease; controllers stopped");
        }
    }

    /// Retries until the lease is ours (true) or `shutdown` (false).
    async fn acquire(&mut self, shutdown: &CancellationToken) -> bool {
        loop {
            let wait = match self.try_acquire_or_renew().await {
                Ok(true) => return true,
                Ok(false) => {
                    let jitter = rand::thread_rng().gen_range(0..=self.config.retry_period.as_millis() as u64 / 5);
                    self.config.retry_period + Duration::from_millis(jitter)
                }
                // Not contention but an API that is not ready yet (e.g. kube-system missing
                // on a fresh cluster): try again soon so controllers start promptly.
                Err(e) => {
                    tracing::debug!(error = %e, "could not acquire the controller-manager lease");
                    ERROR_RETRY
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Renews while leading; returns when shutting down or when renewal failed for longer
    /// than the renew deadline (or someone else holds the lease).
    async fn keep(&mut self, shutdown: &CancellationToken) -> TermEnd {
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return TermEnd::Shutdown,
                _ = tokio::time::sleep(self.config.renew_period) => {}
            }
            let left = self.config.renew_deadline.saturating_sub(renewed.elapsed());
            match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => renewed = Instant::now(),
                Ok(Ok(false)) => {
                    if self.observed.as_ref().and_then(|o| o.spec.holder_identity.as_deref()).is_some_and(|h| h != self.identity) {
                        return TermEnd::Lost;
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "renewing the controller-manager lease failed"),
                Err(_) => {}
            }
            if renewed.elapsed() >= self.config.renew_deadline {
                return TermEnd::Lost;
            }
        }
    }

    /// One round of client-go's tryAcquireOrRenew: true when we hold the lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let Some(current) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.config.name.clone()), ..Default::default() },
                spec: Some(next_spec(&LeaseSpec::default(), &self.identity, self.lease_seconds(), now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(created.spec.unwrap_or_default());
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        self.observe(spec.clone());
        let observed_at = self.observed.as_ref().map_or_else(Instant::now, |o| o.at);
        if held_by_other(&spec, &self.identity, observed_at, Instant::now()) {
            return Ok(false);
        }
        let updated = Lease { spec: Some(next_spec(&spec, &self.identity, self.lease_seconds(), now)), ..current };
        match self.api.replace(&self.config.name, &PostParams::default(), &updated).await {
            Ok(replaced) => {
                self.observe(replaced.spec.unwrap_or_default());
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Clears holderIdentity if we still hold the lease, so a successor need not wait.
    async fn release(&mut self) {
        let Ok(Some(current)) = self.api.get_opt(&self.config.name).await else { return };
        let spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let released = LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: spec.lease_transitions,
            ..Default::default()
        };
        match self.api.replace(&self.config.name, &PostParams::default(), &Lease { spec: Some(released), ..current }).await {
            Ok(_) => tracing::info!(identity = %self.identity, "released the controller-manager lease"),
            Err(e) => tracing::warn!(error = %e, "releasing the controller-manager lease failed"),
        }
    }

    fn observe(&mut self, spec: LeaseSpec) {
        if self.observed.as_ref().is_none_or(|o| o.spec != spec) {
            self.observed = Some(Observed { spec, at: Instant::now() });
        }
    }

    fn lease_seconds(&self) -> i32 {
        self.config.lease_duration.as_secs() as i32
    }
}

/// Whether someone else holds a lease we first saw in this state at `observed_at`.
fn held_by_other(spec: &LeaseSpec, me: &str, observed_at: Instant, now: Instant) -> bool {
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
    !holder.is_empty() && holder != me && observed_at + duration > now
}

/// The lease record after `me` acquires or renews `current` at `now`.
fn next_spec(current: &LeaseSpec, me: &str, lease_seconds: i32, now: MicroTime) -> LeaseSpec {
    let renewing = current.holder_identity.as_deref() == Some(me);
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(lease_seconds),
        acquire_time: if renewing { current.acquire_time.clone() } else { Some(now.clone()) },
        renew_time: Some(now),
        lease_transitions: Some(current.lease_transitions.unwrap_or(0) + i32::from(!renewing && current.holder_identity.is_some())),
        ..Default::default()
    }
}

/// This candidate's identity: the hostname plus a random suffix (two servers may share a host).
fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let host = if host.is_empty() { "orch".to_string() } else { host };
    let suffix: String = rand::thread_rng().sample_iter(rand::distributions::Alphanumeric).take(8).map(char::from).collect();
    format!("{host}_{}", suffix.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> MicroTime {
        MicroTime(k8s_openapi::jiff::Timestamp::now())
    }

    fn held(by: &str) -> LeaseSpec {
        LeaseSpec { holder_identity: Some(by.into()), lease_duration_seconds: Some(15), lease_transitions: Some(3), ..Default::default() }
    }

    #[test]
    fn a_fresh_lease_of_another_holder_blocks() {
        let t = Instant::now();
        assert!(held_by_other(&held("b"), "a", t, t + Duration::from_secs(14)));
        assert!(!held_by_other(&held("b"), "a", t, t + Duration::from_secs(15)), "expired once unchanged for a lease duration");
        assert!(!held_by_other(&held("a"), "a", t, t), "our own lease");
        assert!(!held_by_other(&LeaseSpec { holder_identity: None, ..held("x") }, "a", t, t), "a released lease");
        assert!(!held_by_other(&LeaseSpec { holder_identity: Some(String::new()), ..held("x") }, "a", t, t));
    }

    #[test]
    fn takeover_counts_a_transition_and_renewal_keeps_the_acquire_time() {
        let taken = next_spec(&held("b"), "a", 15, now());
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(4));
        assert!(taken.acquire_time.is_some());
        let renewed = next_spec(&taken, "a", 15, now());
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.acquire_time, taken.acquire_time);
        assert_eq!(renewed.lease_duration_seconds, Some(15));
        let first = next_spec(&LeaseSpec::default(), "a", 15, now());
        assert_eq!(first.lease_transitions, Some(0));
    }

    #[test]
    fn identities_differ_per_candidate() {
        assert_ne!(identity(), identity());
    }
}
