//! `orch token create|list|delete`: agent-only bootstrap tokens (Secrets
//! `kube-system/bootstrap-token-<id>` usable for authentication, as kubeadm creates them),
//! managed through the API of the server running on this machine with its admin credentials.
//! They join agents, never servers; the cluster's fixed tokens are in `<data-dir>/server/token`
//! (servers) and `<data-dir>/server/agent-token` (agents).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::Full;
use serde_json::Value;

use crate::api::bootstrap_tokens::{self, SECRET_TYPE};
use crate::pki;
use crate::rpc::HttpClient;

/// How long a token request may take.
const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The server's URL
    #[arg(long, global = true, default_value = "https://127.0.0.1:6443", value_name = "URL")]
    pub server: String,
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token that lets agents (not servers) join; prints it
    Create {
        /// How long the token stays valid (0 = forever)
        #[arg(long, default_value = "24h", value_parser = super::duration, value_name = "DURATION")]
        ttl: Duration,
        /// A note on what the token is for
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the agent tokens
    List,
    /// Delete an agent token by its id (the part before the dot)
    Delete { id: String },
}

/// Sends a JSON request to the server and returns its JSON answer (`null` when it has none);
/// an error answer becomes its Status message or body.
pub(super) async fn call(http: &HttpClient, method: &str, url: &str, body: Option<Value>, timeout: Duration) -> anyhow::Result<Value> {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(body.map(|b| Bytes::from(b.to_string())).unwrap_or_default()))?;
    let (status, bytes) = http.fetch(req, timeout).await.with_context(|| format!("is `orch server` running at {url}?"))?;
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{}", value["message"].as_str().unwrap_or(&String::from_utf8_lossy(&bytes)));
    }
    Ok(value)
}

/// The CA certificate and an HTTPS client presenting the data dir's admin certificate.
pub(super) fn admin_client(data_dir: &Path) -> anyhow::Result<(String, HttpClient)> {
    let (ca, admin) = crate::server::admin_credentials(data_dir).with_context(|| {
        format!("no server credentials in {} (run this where orch server runs, with its --data-dir)", data_dir.display())
    })?;
    let http = HttpClient::new(pki::client_config(&ca, Some(&admin))?);
    Ok((ca, http))
}

pub async fn run(data_dir: &Path, args: TokenArgs) -> anyhow::Result<()> {
    let (ca, http) = admin_client(data_dir)?;
    let secrets = format!("{}/api/v1/namespaces/kube-system/secrets", args.server.trim_end_matches('/'));
    match args.command {
        TokenCommand::Create { ttl, description } => {
            let token = pki::new_bootstrap(&ca);
            let (id, secret) = token.secret.split_once('.').expect("bootstrap tokens have an id and a secret");
            let expiration = (!ttl.is_zero()).then(|| {
                let at = time::OffsetDateTime::now_utc() + ttl;
                at.format(&time::format_description::well_known::Rfc3339).expect("a timestamp always formats")
            });
            call(&http, "POST", &secrets, Some(bootstrap_tokens::secret_for(id, secret, expiration.as_deref(), &description)), TIMEOUT)
                .await?;
            println!("{token}");
        }
        TokenCommand::List => {
            let list = call(&http, "GET", &secrets, None, TIMEOUT).await?;
            println!("{:<8} {:<22} DESCRIPTION", "ID", "EXPIRES");
            for s in list["items"].as_array().into_iter().flatten().filter(|s| s["type"] == SECRET_TYPE) {
                let get = |k| bootstrap_tokens::field(s, k).unwrap_or_default();
                let expires = Some(get("expiration")).filter(|e| !e.is_empty()).unwrap_or_else(|| "never".into());
                println!("{:<8} {:<22} {}", get("token-id"), expires, get("description"));
            }
        }
        TokenCommand::Delete { id } => {
            call(&http, "DELETE", &format!("{secrets}/bootstrap-token-{id}"), None, TIMEOUT).await?;
            println!("token {id} deleted");
        }
    }
    Ok(())
}
