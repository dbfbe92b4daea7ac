//! `orch images import FILE…|ls|rm REF…|pull REF`: the node's images, through the containerd
//! socket of the agent under `--data-dir` (or `--container-runtime-endpoint`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::node::runtime::config::ContainerdPaths;
use crate::node::runtime::containerd::Containerd;
use crate::node::runtime::images::registries::{self, Registries};

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// containerd socket [default: <data-dir>/agent/containerd/containerd.sock]
    #[arg(long, global = true, value_name = "SOCKET")]
    pub container_runtime_endpoint: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ImagesCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Import image tarballs (OCI image layouts or `docker save` archives)
    Import {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// List the node's images
    Ls,
    /// Remove images by reference
    Rm {
        #[arg(required = true, value_name = "REF")]
        refs: Vec<String>,
    },
    /// Pull an image from its registry (honouring /etc/orch/registries.yaml)
    Pull { reference: String },
}

/// Human-readable size (MB with one decimal, as crictl prints).
fn size(bytes: u64) -> String {
    format!("{:.1}MB", bytes as f64 / 1e6)
}

pub async fn run(data_dir: &std::path::Path, args: ImagesArgs) -> anyhow::Result<()> {
    let paths = ContainerdPaths::for_data_dir(data_dir);
    let socket = args.container_runtime_endpoint.unwrap_or_else(|| paths.socket());
    let registries = Registries::load(std::path::Path::new(registries::DEFAULT_PATH))?;
    let runtime = Containerd::connect(&socket, &paths.fifo_dir(), registries)
        .await
        .with_context(|| format!("is the orch agent (or server) running with --data-dir {}?", data_dir.display()))?;
    match args.command {
        ImagesCommand::Import { files } => {
            for file in files {
                let images = runtime.import(&file).await.with_context(|| format!("importing {}", file.display()))?;
                for i in images {
                    println!("imported {} ({})", i.name, i.digest);
                }
            }
        }
        ImagesCommand::Ls => {
            println!("{:<60} {:<20} SIZE", "IMAGE", "DIGEST");
            for i in runtime.list_images().await? {
                let short = i.digest.trim_start_matches("sha256:").chars().take(12).collect::<String>();
                println!("{:<60} {:<20} {}", i.name, short, size(i.size));
            }
        }
        ImagesCommand::Rm { refs } => {
            for r in refs {
                if !runtime.remove_image(&r).await? {
                    anyhow::bail!("image {r} not found");
                }
                println!("deleted {r}");
            }
        }
        ImagesCommand::Pull { reference } => {
            let i = runtime.pull(&reference, None).await?;
            println!("pulled {} ({})", i.name, i.digest);
        }
    }
    Ok(())
}
