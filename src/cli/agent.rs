//! `orch agent`: joins a cluster and runs this machine's node until SIGINT/SIGTERM.

use std::path::Path;

use clap::Args;

use super::node_flags::NodeArgs;
use crate::node::{self, Node, NodeError};

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// URL of a server to join, e.g. https://10.0.0.1:6443
    #[arg(long, value_name = "URL")]
    pub join: Option<String>,
    /// Agent token printed by `orch server` (`<data-dir>/server/agent-token`), a bootstrap token
    /// from `orch token create`, or the server token
    #[arg(long, env = "ORCH_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Joins and runs the node until SIGINT/SIGTERM.
pub async fn run(data_dir: &Path, args: AgentArgs) -> Result<(), NodeError> {
    let (join, token) = (args.join.unwrap_or_default(), args.token.unwrap_or_default());
    let config = args.node.config(data_dir, &join, &token, None).map_err(NodeError::Flag)?;
    // A missing containerd or runc is reported first: it is what the user must fix.
    node::check_binaries(&config)?;
    if join.is_empty() {
        return Err(NodeError::Flag("--join https://SERVER:6443 is required".into()));
    }
    if token.is_empty() {
        return Err(NodeError::Flag("--token is required (the agent token printed by `orch server`)".into()));
    }
    crate::pki::JoinToken::parse(&token)?;
    node::check_runnable(&config)?;
    let cancel = super::signals::shutdown_token().map_err(|source| NodeError::Io { path: "signal handler".into(), source })?;
    if let Some(node) = Node::start(&config, &cancel).await? {
        crate::host::notify_ready();
        cancel.cancelled().await;
        node.stop().await;
    }
    Ok(())
}
