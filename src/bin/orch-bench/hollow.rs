//! `orch-bench hollow-nodes`: many hollow nodes in one process (the scheduler benchmark starts
//! it as a child so the nodes' CPU is not the bench driver's), and the driver's handle on it.
//! The child runs until its standard input closes, so it never outlives the benchmark.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use orch::node::hollow::{start_many, HollowConfig};
use tokio::io::AsyncReadExt;

/// Joins at once while the nodes start.
const PARALLEL_JOINS: usize = 32;

/// The name of the `i`-th hollow node.
pub fn node_name(i: usize) -> String {
    format!("hollow-{i:04}")
}

/// Runs `count` hollow nodes joined to `server` with `token` until stdin closes.
pub async fn serve(count: usize, server: &str, token: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let configs: Vec<HollowConfig> =
        (0..count).map(|i| HollowConfig::new(server, token, &node_name(i), &format!("bench-node-password-{i:04}"))).collect();
    let mut nodes = Vec::with_capacity(count);
    for (i, node) in start_many(configs, PARALLEL_JOINS).await.into_iter().enumerate() {
        nodes.push(node.with_context(|| format!("starting {}", node_name(i)))?);
    }
    tracing::info!("{count} hollow nodes started in {:.1} s", started.elapsed().as_secs_f64());
    println!("started {count}");
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    for node in nodes {
        node.stop().await;
    }
    Ok(())
}

/// The child process running the hollow nodes; killed on drop.
pub struct HollowNodes {
    child: tokio::process::Child,
}

impl HollowNodes {
    /// Starts `count` hollow nodes in a child process logging to `log`.
    pub fn start(count: usize, server: &str, token: &str, log: &Path) -> anyhow::Result<Self> {
        let log = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["hollow-nodes", "--count", &count.to_string(), "--join", server, "--token", token])
            .env("RUST_LOG", std::env::var("ORCH_BENCH_NODE_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting the hollow-node process")?;
        Ok(Self { child })
    }

    /// Waits until the child says every node started (joined and registered).
    pub async fn wait_started(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let mut out = self.child.stdout.take().context("the hollow-node process has no stdout")?;
        let mut said = String::new();
        let read = async {
            let mut buf = [0u8; 256];
            while !said.contains("started") {
                let n = out.read(&mut buf).await?;
                if n == 0 {
                    anyhow::bail!("the hollow-node process exited before its nodes started (see its log)");
                }
                said.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            Ok(())
        };
        tokio::time::timeout(timeout, read).await.context("hollow nodes did not start in time")?
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}
