//! `orch secrets-encrypt status | enable | disable | prepare | rotate | reencrypt | rotate-keys`
//! (k3s's): asks the server running on this machine, as the cluster admin, to report or change
//! its encryption at rest (see `server::secrets_encrypt`), and prints what k3s prints.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::api::encryption::k3s::{self, Request, Status};

/// A re-encryption rewrites every Secret before the server answers.
const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Args)]
pub struct SecretsEncryptArgs {
    /// The server's URL
    #[arg(long, global = true, default_value = "https://127.0.0.1:6443", value_name = "URL")]
    pub server: String,
    #[command(subcommand)]
    pub command: SecretsEncryptCommand,
}

#[derive(Debug, Subcommand)]
pub enum SecretsEncryptCommand {
    /// Print the encryption status, the rotation stage and the keys
    Status {
        /// Output format: text or json
        #[arg(long, short = 'o', default_value = "text", value_name = "FORMAT")]
        output: String,
    },
    /// Encrypt Secrets again (identity last) and rewrite them
    Enable,
    /// Store Secrets unencrypted (identity first) and rewrite them
    Disable,
    /// Add a new key that reads but does not write yet
    Prepare {
        #[arg(long)]
        force: bool,
    },
    /// Make the prepared key the one that writes
    Rotate {
        #[arg(long)]
        force: bool,
    },
    /// Rewrite every Secret with the active key, then drop the old key
    Reencrypt {
        #[arg(long)]
        force: bool,
        /// Keep the old key
        #[arg(long)]
        skip: bool,
    },
    /// Add a new key, make it active, rewrite every Secret with it and drop the old key
    RotateKeys,
}

/// k3s's status text: three lines, then the keys in a table.
pub fn render(status: &Status) -> String {
    let Some(enabled) = status.enable else { return "Encryption Status: Disabled, no configuration file found\n".into() };
    let mut out = format!(
        "Encryption Status: {}\nCurrent Rotation Stage: {}\nServer Encryption Hashes: {}\n\n",
        if enabled { "Enabled" } else { "Disabled" },
        status.stage,
        if status.hashmatch { "All hashes match" } else { status.hasherror.as_deref().unwrap_or_default() }
    );
    let key = |active: &str, named: &str| {
        let (kind, name) = named.split_once(' ').unwrap_or(("", named));
        [active.to_string(), kind.to_string(), name.to_string()]
    };
    let mut rows = vec![["Active".to_string(), "Key Type".into(), "Name".into()], ["------".into(), "--------".into(), "----".into()]];
    rows.extend((!status.activekey.is_empty()).then(|| key(" *", &status.activekey)));
    rows.extend(status.inactivekeys.iter().map(|k| key("", k)));
    let width = |c: usize| rows.iter().map(|r| r[c].len()).max().unwrap_or(0) + 2;
    let (w0, w1) = (width(0), width(1));
    for [a, t, n] in &rows {
        out.push_str(&format!("{a:<w0$}{t:<w1$}{n}\n"));
    }
    out
}

pub async fn run(data_dir: &Path, args: SecretsEncryptArgs) -> anyhow::Result<()> {
    let (_, http) = super::token::admin_client(data_dir)?;
    let base = args.server.trim_end_matches('/');
    let stage = |stage: &str, force: bool, skip: bool| Request { stage: Some(stage.into()), force, skip, ..Default::default() };
    let (request, done) = match args.command {
        SecretsEncryptCommand::Status { output } => {
            let answer = super::token::call(&http, "GET", &format!("{base}{}", crate::server::ENCRYPT_STATUS_PATH), None, TIMEOUT).await?;
            let status: Status = serde_json::from_value(answer).context("reading the server's encryption status")?;
            match output.as_str() {
                "json" => println!("{}", serde_json::to_string_pretty(&status)?),
                _ => print!("{}", render(&status)),
            }
            return Ok(());
        }
        SecretsEncryptCommand::Enable => (Request { enable: Some(true), ..Default::default() }, "secrets-encryption enabled"),
        SecretsEncryptCommand::Disable => (Request { enable: Some(false), ..Default::default() }, "secrets-encryption disabled"),
        SecretsEncryptCommand::Prepare { force } => (stage(k3s::STAGE_PREPARE, force, false), "prepare completed successfully"),
        SecretsEncryptCommand::Rotate { force } => (stage(k3s::STAGE_ROTATE, force, false), "rotate completed successfully"),
        SecretsEncryptCommand::Reencrypt { force, skip } => (stage(k3s::STAGE_REENCRYPT_ACTIVE, force, skip), "reencryption finished"),
        SecretsEncryptCommand::RotateKeys => (stage(k3s::STAGE_ROTATE_KEYS, false, false), "keys rotated, reencryption finished"),
    };
    let url = format!("{base}{}", crate::server::ENCRYPT_CONFIG_PATH);
    super::token::call(&http, "PUT", &url, Some(serde_json::to_value(&request)?), TIMEOUT)
        .await
        .context("see the server log for details")?;
    println!("{done}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_as_k3s_prints_it() {
        let status = Status {
            stage: "start".into(),
            activekey: "AES-CBC aescbckey".into(),
            enable: Some(true),
            hashmatch: true,
            hasherror: None,
            inactivekeys: vec!["XSalsa20-POLY1305 secretboxkey".into()],
        };
        assert_eq!(
            render(&status),
            "Encryption Status: Enabled\nCurrent Rotation Stage: start\nServer Encryption Hashes: All hashes match\n\n\
             Active  Key Type           Name\n\
             ------  --------           ----\n \
             *      AES-CBC            aescbckey\n        \
             XSalsa20-POLY1305  secretboxkey\n"
        );
        assert_eq!(render(&Status::default()), "Encryption Status: Disabled, no configuration file found\n");
    }
}
