//! Follows the benchmark's pods through one watch: when each was first seen bound to a node,
//! running and Ready. Events are parsed into a minimal shape (name, node, phase, conditions) so
//! the driver spends little CPU on the 100k+ events of a big run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http_body_util::{BodyExt, Full};
use orch::rpc::HttpClient;
use serde::Deserialize;

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    object: Object,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Object {
    metadata: Meta,
    spec: Spec,
    status: Status,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Meta {
    name: String,
    #[serde(rename = "resourceVersion")]
    resource_version: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Spec {
    #[serde(rename = "nodeName")]
    node_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Status {
    phase: Option<String>,
    conditions: Vec<Condition>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Condition {
    #[serde(rename = "type")]
    kind: String,
    status: String,
}

impl Status {
    fn ready(&self) -> bool {
        self.conditions.iter().any(|c| c.kind == "Ready" && c.status == "True")
    }
}

#[derive(Default, Clone, Copy)]
struct PodTimes {
    bound: Option<Instant>,
    running: Option<Instant>,
    ready: Option<Instant>,
}

/// What the watch has seen so far.
#[derive(Default)]
pub struct Seen {
    pods: HashMap<String, PodTimes>,
    pub bound: usize,
    pub running: usize,
    pub ready: usize,
}

impl Seen {
    fn record(&mut self, ev: Event, at: Instant) {
        if ev.kind != "ADDED" && ev.kind != "MODIFIED" {
            return;
        }
        let o = ev.object;
        let times = self.pods.entry(o.metadata.name).or_default();
        if times.bound.is_none() && o.spec.node_name.is_some_and(|n| !n.is_empty()) {
            times.bound = Some(at);
            self.bound += 1;
        }
        if times.running.is_none() && o.status.phase.as_deref() == Some("Running") {
            times.running = Some(at);
            self.running += 1;
        }
        if times.ready.is_none() && o.status.ready() {
            times.ready = Some(at);
            self.ready += 1;
        }
    }

    /// Sorted times at which pods were first seen bound.
    pub fn bind_times(&self) -> Vec<Instant> {
        let mut t: Vec<Instant> = self.pods.values().filter_map(|p| p.bound).collect();
        t.sort_unstable();
        t
    }

    /// When the pod `name` was first seen bound to a node.
    pub fn bound_at(&self, name: &str) -> Option<Instant> {
        self.pods.get(name)?.bound
    }

    /// When the pod `name` was first seen Ready.
    pub fn ready_at(&self, name: &str) -> Option<Instant> {
        self.pods.get(name)?.ready
    }

    /// When the last pod started running.
    pub fn last_running(&self) -> Option<Instant> {
        self.pods.values().filter_map(|p| p.running).max()
    }
}

/// Watches the pods of `namespace` (under `base`, e.g. `https://…/api/v1`) until dropped,
/// re-watching from the last resourceVersion when the stream ends.
pub fn start(http: HttpClient, base: String, namespace: String) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = seen.clone();
    let task = tokio::spawn(async move {
        let mut rv = String::new();
        loop {
            let url = format!("{base}/namespaces/{namespace}/pods?watch=true&resourceVersion={rv}");
            if let Err(e) = follow(&http, &url, &shared, &mut rv).await {
                tracing::warn!("pod watch: {e}; watching again");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (seen, task)
}

async fn follow(http: &HttpClient, url: &str, seen: &Mutex<Seen>, rv: &mut String) -> anyhow::Result<()> {
    let req = http::Request::get(url).body(Full::default())?;
    let resp = http.send(req, Duration::from_secs(30)).await?;
    anyhow::ensure!(resp.status().is_success(), "watch answered {}", resp.status());
    let mut body = resp.into_body();
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        buf.extend_from_slice(&data);
        let at = Instant::now();
        let mut events = Vec::new();
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line = buf.split_to(end + 1);
            match serde_json::from_slice::<Event>(&line[..end]) {
                Ok(ev) if ev.kind == "ERROR" => {
                    rv.clear(); // Too old (410): list again.
                    anyhow::bail!("watch ERROR event");
                }
                Ok(ev) => events.push(ev),
                Err(e) => tracing::warn!("unparsable watch event: {e}"),
            }
        }
        if let Some(last) = events.iter().rev().find(|e| !e.object.metadata.resource_version.is_empty()) {
            rv.clone_from(&last.object.metadata.resource_version);
        }
        let mut seen = seen.lock().expect("pod watch lock");
        events.into_iter().for_each(|ev| seen.record(ev, at));
    }
    Ok(())
}
