//! Talking to a benchmark's `orch server`: REST calls (with retries while it starts), waiting
//! for its nodes to be Ready, and the memory of its process.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use orch::rpc::HttpClient;
use serde_json::Value;

/// One request with a JSON body; returns the status and the response body.
pub async fn request(http: &HttpClient, method: &str, url: &str, body: String) -> anyhow::Result<(http::StatusCode, Bytes)> {
    let req =
        http::Request::builder().method(method).uri(url).header("content-type", "application/json").body(Full::new(Bytes::from(body)))?;
    Ok(http.fetch(req, Duration::from_secs(60)).await?)
}

/// POSTs `body`, retrying for a while (the server may still be starting its namespaces).
pub async fn create_with_retry(http: &HttpClient, url: &str, body: &str) -> anyhow::Result<()> {
    let mut last = String::new();
    for _ in 0..300 {
        match request(http, "POST", url, body.to_string()).await {
            Ok((s, _)) if s.is_success() || s == http::StatusCode::CONFLICT => return Ok(()),
            Ok((s, b)) => last = format!("{s}: {}", String::from_utf8_lossy(&b)),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("POST {url} kept failing: {last}")
}

/// Waits until `want` nodes are Ready with a pod CIDR.
pub async fn wait_nodes_ready(http: &HttpClient, api: &str, want: usize, timeout: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + timeout;
    loop {
        let ready = match request(http, "GET", &format!("{api}/nodes"), String::new()).await {
            Ok((s, body)) if s.is_success() => serde_json::from_slice::<Value>(&body).map(|list| count_ready(&list)).unwrap_or(0),
            _ => 0,
        };
        if ready >= want {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < until, "only {ready} of {want} nodes Ready after {timeout:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn count_ready(list: &Value) -> usize {
    let items = list["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    items
        .iter()
        .filter(|n| n["spec"]["podCIDR"].is_string())
        .filter(|n| n["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")))
        .count()
}

/// A `Vm*:` figure of `/proc/<pid>/status`, in MiB.
pub fn proc_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status.lines().find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok());
    kib.unwrap_or(0) as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_nodes_need_a_pod_cidr() {
        let list = serde_json::json!({ "items": [
            { "spec": { "podCIDR": "10.64.0.0/24" }, "status": { "conditions": [ { "type": "Ready", "status": "True" } ] } },
            { "spec": {}, "status": { "conditions": [ { "type": "Ready", "status": "True" } ] } },
            { "spec": { "podCIDR": "10.64.1.0/24" }, "status": { "conditions": [ { "type": "Ready", "status": "False" } ] } },
        ] });
        assert_eq!(count_ready(&list), 1);
    }
}
