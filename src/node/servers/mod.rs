//! The API servers a node talks to, as k3s's agent load balancer keeps them: an ordered list —
//! the `--join` server first (the preferred one), then the servers learned from the
//! `kubernetes` Endpoints ([`upkeep`]) — with the one in use. When the server in use stops
//! answering the node moves to the next healthy one ([`failover`]); a probe brings it back to
//! a more preferred server once that answers again. The learned servers are kept in the node's
//! data dir, so a node restarting while its `--join` server is down still finds the cluster.

pub mod failover;
pub mod upkeep;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::NodeError;
use crate::join::JoinError;

/// Where a node keeps the servers it learned, in its data dir.
pub const FILE: &str = "api-servers.json";

#[derive(Debug, Clone)]
struct Entry {
    url: String,
    healthy: bool,
}

#[derive(Debug)]
struct State {
    /// In order of preference; the first is the `--join` server.
    servers: Vec<Entry>,
    /// The index of the server in use.
    current: usize,
}

impl State {
    fn index(&self, url: &str) -> Option<usize> {
        self.servers.iter().position(|e| e.url == url)
    }

    /// The most preferred healthy server, else the one after the current (so every server
    /// gets tried in turn while none answers).
    fn pick(&self) -> usize {
        self.servers.iter().position(|e| e.healthy).unwrap_or((self.current + 1) % self.servers.len())
    }
}

/// What is persisted: the learned servers.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    servers: Vec<String>,
}

/// The shared list of API servers of one node; cheap to clone.
#[derive(Debug, Clone)]
pub struct ApiServers {
    state: Arc<Mutex<State>>,
    /// Where the learned servers are kept (`None`: in memory only, e.g. in-process hollow nodes).
    file: Option<PathBuf>,
}

/// `url` without a trailing slash.
fn normalise(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

impl ApiServers {
    /// The list of a node that joins through `join`, with the servers it learned before (read
    /// from `file`, when given).
    pub fn new(join: &str, file: Option<PathBuf>) -> Result<Self, NodeError> {
        join.parse::<http::Uri>().map_err(|e| NodeError::Flag(format!("--join {join:?}: {e}")))?;
        let learned = file.as_deref().and_then(|f| std::fs::read(f).ok()).and_then(|b| serde_json::from_slice::<Saved>(&b).ok());
        let servers = Self { state: Arc::new(Mutex::new(State { servers: Vec::new(), current: 0 })), file };
        servers.set(join, learned.map(|s| s.servers).unwrap_or_default());
        Ok(servers)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The URL of the server in use, e.g. `https://10.0.0.1:6443`.
    pub fn current(&self) -> String {
        let state = self.lock();
        state.servers[state.current].url.clone()
    }

    /// Every server, the one in use first, then the rest in order of preference.
    pub fn in_turn(&self) -> Vec<String> {
        let state = self.lock();
        let n = state.servers.len();
        (0..n).map(|i| state.servers[(state.current + i) % n].url.clone()).collect()
    }

    /// How many servers there are.
    pub fn len(&self) -> usize {
        self.lock().servers.len()
    }

    /// Whether the list is empty (it never is: the `--join` server stays).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Notes that `url` stopped answering; if it was in use, the next healthy server is.
    pub fn failed(&self, url: &str) {
        let mut state = self.lock();
        let Some(i) = state.index(url) else { return };
        state.servers[i].healthy = false;
        if state.current == i && state.servers.len() > 1 {
            state.current = state.pick();
            let next = &state.servers[state.current].url;
            tracing::warn!(failed = %url, using = %next, "API server stopped answering; moving to another");
        }
    }

    /// Notes that `url` answers again; if it is preferred over the server in use, it is used.
    pub fn answered(&self, url: &str) {
        let mut state = self.lock();
        let Some(i) = state.index(url) else { return };
        let was_healthy = std::mem::replace(&mut state.servers[i].healthy, true);
        if i < state.current || !state.servers[state.current].healthy {
            let from = std::mem::replace(&mut state.current, i);
            tracing::info!(from = %state.servers[from].url, to = %url, "using a preferred API server again");
        } else if !was_healthy {
            tracing::info!(server = %url, "API server answers again");
        }
    }

    /// The servers to probe: the one in use and those that failed.
    pub fn to_probe(&self) -> Vec<String> {
        let state = self.lock();
        let current = state.current;
        state.servers.iter().enumerate().filter(|(i, e)| *i == current || !e.healthy).map(|(_, e)| e.url.clone()).collect()
    }

    /// Replaces the learned servers with `learned` (the `--join` server stays first), keeping
    /// what is known of each, and saves them when they changed.
    pub fn learn(&self, learned: Vec<String>) {
        let join = self.lock().servers[0].url.clone();
        if self.set(&join, learned) {
            self.save();
        }
    }

    /// Sets the list to `join` then `learned`; returns whether it changed.
    fn set(&self, join: &str, learned: Vec<String>) -> bool {
        let mut urls = vec![normalise(join)];
        for url in learned.iter().map(|u| normalise(u)) {
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
        let mut state = self.lock();
        if state.servers.iter().map(|e| &e.url).eq(urls.iter()) {
            return false;
        }
        let current = state.servers.get(state.current).map(|e| e.url.clone());
        let known = |url: &String| state.servers.iter().find(|e| &e.url == url).map_or(true, |e| e.healthy);
        let servers: Vec<Entry> = urls.iter().map(|url| Entry { url: url.clone(), healthy: known(url) }).collect();
        state.servers = servers;
        state.current = current.and_then(|c| state.index(&c)).unwrap_or_else(|| state.pick());
        tracing::info!(servers = ?urls, "API servers");
        true
    }

    /// Runs `call` against each server in turn (the one in use first) until one can be
    /// reached: its answer, or the last server's error when none can.
    pub async fn try_in_turn<T, F, Fut>(&self, mut call: F) -> Result<T, JoinError>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<T, JoinError>>,
    {
        let mut unreachable = None;
        for url in self.in_turn() {
            match call(url.clone()).await {
                Err(e @ JoinError::Unreachable { .. }) => {
                    self.failed(&url);
                    unreachable = Some(e);
                }
                answer => {
                    self.answered(&url);
                    return answer;
                }
            }
        }
        Err(unreachable.expect("the list always holds the --join server"))
    }

    fn save(&self) {
        let Some(file) = &self.file else { return };
        let learned: Vec<String> = self.lock().servers.iter().skip(1).map(|e| e.url.clone()).collect();
        let json = serde_json::to_string(&Saved { servers: learned }).expect("serialisable");
        if let Err(e) = crate::pki::write_private(file, &json) {
            tracing::warn!(error = %e, "cannot save the learned API servers");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "https://10.0.0.1:6443";
    const B: &str = "https://10.0.0.2:6443";
    const C: &str = "https://10.0.0.3:6443";

    #[test]
    fn moves_on_failure_and_returns_to_the_preferred_server() {
        let servers = ApiServers::new(&format!("{A}/"), None).unwrap();
        servers.learn(vec!["https://10.0.0.3:6443".into(), A.into(), B.into()]);
        assert_eq!(servers.in_turn(), vec![A, C, B]);
        servers.failed(A);
        assert_eq!(servers.current(), C);
        servers.failed(C);
        assert_eq!(servers.current(), B);
        assert_eq!(servers.to_probe(), vec![A, C, B]);
        servers.answered(C);
        assert_eq!(servers.current(), C, "a more preferred server that answers again is used");
        servers.answered(A);
        assert_eq!(servers.current(), A);
        servers.answered(B);
        assert_eq!(servers.current(), A, "a less preferred server answering changes nothing");
    }

    #[test]
    fn with_every_server_down_each_is_tried_in_turn() {
        let servers = ApiServers::new(A, None).unwrap();
        servers.learn(vec![B.into(), C.into()]);
        for _ in 0..2 {
            for url in [A, B, C] {
                assert_eq!(servers.current(), url);
                servers.failed(url);
            }
        }
    }

    #[test]
    fn learned_servers_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE);
        ApiServers::new(A, Some(file.clone())).unwrap().learn(vec![B.into(), C.into()]);
        let again = ApiServers::new(A, Some(file.clone())).unwrap();
        assert_eq!(again.in_turn(), vec![A, B, C]);
        again.learn(vec![C.into()]);
        assert_eq!(ApiServers::new("https://10.0.0.9:6443", Some(file)).unwrap().in_turn(), vec!["https://10.0.0.9:6443", C]);
    }
}
