//! Keeps a node's list of API servers current: learns them from the `kubernetes` Endpoints (a
//! watch through the node's own client) and probes the server in use and the failed ones every
//! two seconds (`/readyz`), so that a dead server is left before a request has to fail on it,
//! and a preferred server is used again once it answers.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Endpoints;
use kube::api::Api;
use kube::client::Body;
use kube::runtime::{watcher, WatchStreamExt};
use tokio_util::sync::CancellationToken;

use super::failover::HyperClient;
use super::ApiServers;

/// How often the server in use and the failed ones are probed.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long a probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The URLs of the servers an Endpoints object lists (its `https` port, else its only one).
pub fn urls(endpoints: &Endpoints) -> Vec<String> {
    let mut urls = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        let ports = subset.ports.as_deref().unwrap_or_default();
        let Some(port) = ports.iter().find(|p| p.name.as_deref() == Some("https")).or(ports.first()) else { continue };
        let Ok(port) = u16::try_from(port.port) else { continue };
        for address in subset.addresses.iter().flatten() {
            if let Ok(ip) = address.ip.parse::<IpAddr>() {
                urls.push(format!("https://{}", SocketAddr::new(ip, port)));
            }
        }
    }
    urls.sort();
    urls
}

/// The upkeep of one node's list; [`Upkeep::run`] it on the node's tasks.
pub struct Upkeep {
    pub(crate) servers: ApiServers,
    pub(crate) client: kube::Client,
    pub(crate) http: HyperClient,
}

impl Upkeep {
    /// Whether the server at `url` answers `/readyz` in time.
    async fn answers(&self, url: &str) -> bool {
        let Ok(req) = http::Request::get(format!("{url}/readyz")).body(Body::empty()) else { return false };
        matches!(tokio::time::timeout(PROBE_TIMEOUT, self.http.request(req)).await, Ok(Ok(resp)) if resp.status().is_success())
    }

    async fn probe(&self) {
        let urls = self.servers.to_probe();
        let answers = futures::future::join_all(urls.iter().map(|u| self.answers(u))).await;
        for (url, answered) in urls.iter().zip(answers) {
            match answered {
                true => self.servers.answered(url),
                false => self.servers.failed(url),
            }
        }
    }

    /// Learns and probes until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), "default");
        let config = watcher::Config::default().fields("metadata.name=kubernetes");
        let mut learned = std::pin::pin!(watcher::watcher(api, config).default_backoff().applied_objects());
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick(), if self.servers.len() > 1 => self.probe().await,
                endpoints = learned.next() => match endpoints {
                    Some(Ok(endpoints)) => self.servers.learn(urls(&endpoints)),
                    Some(Err(e)) => tracing::debug!(error = %e, "watching the kubernetes endpoints failed; retrying"),
                    None => return,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_each_address_on_its_https_port() {
        let servers: Vec<SocketAddr> =
            vec!["10.0.0.2:6443".parse().unwrap(), "[fd00::1]:6443".parse().unwrap(), "10.0.0.1:7443".parse().unwrap()];
        let endpoints = crate::controllers::kubernetes_service::endpoints(&servers);
        assert_eq!(urls(&endpoints), vec!["https://10.0.0.1:7443", "https://10.0.0.2:6443", "https://[fd00::1]:6443"]);
    }
}
