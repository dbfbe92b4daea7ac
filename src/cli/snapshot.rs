//! `orch snapshot save | ls | delete | prune` (k3s's `etcd-snapshot`): `save` asks the server on
//! this machine, as the cluster admin, for a consistent snapshot of the store; the others work on
//! the snapshot directory alone, so they also work while the server is down. Restoring is
//! `orch server --cluster-reset --cluster-reset-restore-path FILE`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::server::snapshots::{self, Header, Listed};

/// Building and writing the copy of a large store takes a while.
const TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The server's URL (for save)
    #[arg(long, global = true, default_value = "https://127.0.0.1:6443", value_name = "URL")]
    pub server: String,
    /// The snapshot directory (for ls, delete and prune) [default: <data-dir>/server/db/snapshots]
    #[arg(long, global = true, alias = "etcd-snapshot-dir", value_name = "DIR")]
    pub snapshot_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save a snapshot now, as <name>-<node>-<unix time> in the server's snapshot directory
    Save {
        /// Name prefix of the snapshot
        #[arg(long, default_value = snapshots::ON_DEMAND_PREFIX)]
        name: String,
    },
    /// List the snapshots
    #[command(alias = "list")]
    Ls {
        /// Output format: table or json
        #[arg(long, short = 'o', default_value = "table", value_name = "FORMAT")]
        output: String,
    },
    /// Delete snapshots by name
    #[command(alias = "rm")]
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Delete all but the newest snapshots of one name prefix
    Prune {
        /// Name prefix of the snapshots to prune
        #[arg(long, default_value = snapshots::ON_DEMAND_PREFIX)]
        name: String,
        /// How many to keep
        #[arg(long, alias = "retention", default_value_t = 5, value_name = "N")]
        snapshot_retention: usize,
    },
}

/// k3s's listing: name, location, size and creation time.
pub fn render(snapshots: &[Listed]) -> String {
    let mut rows = vec![["Name".to_string(), "Location".into(), "Size".into(), "Created".into()]];
    for s in snapshots {
        let Header { name, size, created_at, .. } = &s.header;
        rows.push([name.clone(), format!("file://{}", s.location.display()), size.to_string(), created_at.clone()]);
    }
    let widths: Vec<usize> = (0..4).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0) + 1).collect();
    rows.iter()
        .map(|r| format!("{:<w0$}{:<w1$}{:<w2$}{}\n", r[0], r[1], r[2], r[3], w0 = widths[0], w1 = widths[1], w2 = widths[2]))
        .collect()
}

pub async fn run(data_dir: &Path, args: SnapshotArgs) -> anyhow::Result<()> {
    let dir = args.snapshot_dir.clone().unwrap_or_else(|| snapshots::default_dir(data_dir));
    match args.command {
        SnapshotCommand::Save { name } => {
            let (_, http) = super::token::admin_client(data_dir)?;
            let url = format!("{}{}", args.server.trim_end_matches('/'), snapshots::SAVE_PATH);
            let body = serde_json::to_value(snapshots::SaveRequest { name: Some(name) })?;
            let answer = super::token::call(&http, "POST", &url, Some(body), TIMEOUT).await.context("saving a snapshot")?;
            let header: Header = serde_json::from_value(answer).context("reading the server's answer")?;
            println!("Snapshot {} saved (revision {}, {} bytes).", header.name, header.revision, header.size);
        }
        SnapshotCommand::Ls { output } => {
            let listed = snapshots::list(&dir).with_context(|| format!("reading {}", dir.display()))?;
            match output.as_str() {
                "json" => println!("{}", serde_json::to_string_pretty(&listed)?),
                "table" => print!("{}", render(&listed)),
                other => anyhow::bail!("-o {other}: use table or json"),
            }
        }
        SnapshotCommand::Delete { names } => {
            for name in names {
                snapshots::delete(&dir, &name).map_err(anyhow::Error::msg)?;
                println!("Snapshot {name} deleted.");
            }
        }
        SnapshotCommand::Prune { name, snapshot_retention } => {
            for gone in snapshots::prune(&dir, &name, snapshot_retention).map_err(anyhow::Error::msg)? {
                println!("Snapshot {gone} deleted.");
            }
        }
    }
    Ok(())
}
