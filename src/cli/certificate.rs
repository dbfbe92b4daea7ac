//! `orch certificate check|rotate` (k3s's): the expiry table of every certificate in the data
//! dir, and renewal of the server's leaf certificates. Leaves are signed again at every start
//! anyway when under 90 days remain (the admin pair) or always (serving, peer, kubelet
//! client); an agent's node certificate is issued afresh at every join. `rotate` removes the
//! chosen leaves so the next start signs new ones. The CA (ten years) is not rotated: see
//! docs/security.md for the manual procedure.

use std::path::Path;

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};

use crate::pki::expiry::{self, Expiry, RENEW_BEFORE};

#[derive(Debug, Args)]
pub struct CertificateArgs {
    #[command(subcommand)]
    pub command: CertificateCommand,
}

#[derive(Debug, Subcommand)]
pub enum CertificateCommand {
    /// Print every certificate of the data dir with its subject, end of validity and days left
    Check,
    /// Remove leaf certificates so the next start signs new ones (stop orch first, start it after)
    Rotate {
        /// Only this leaf (repeatable) [default: all of them]
        #[arg(long = "service", value_enum)]
        services: Vec<Leaf>,
    },
}

/// The server's leaf certificates, by what they serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Leaf {
    /// The admin client (`orch.yaml`)
    Admin,
    /// The API server's serving certificate
    ApiServer,
    /// The server's client certificate towards other servers
    Peer,
    /// The API server's client certificate towards kubelets
    KubeletClient,
}

impl Leaf {
    fn stem(self) -> &'static str {
        match self {
            Leaf::Admin => "client-admin",
            Leaf::ApiServer => "serving",
            Leaf::Peer => "peer",
            Leaf::KubeletClient => "client-kubelet",
        }
    }
}

/// The status word of a certificate with `e` at `now`.
fn status(e: &Expiry, now: i64) -> &'static str {
    if e.left(now) <= 0 {
        "EXPIRED"
    } else if e.within(RENEW_BEFORE, now) {
        "renewed at next start"
    } else {
        "ok"
    }
}

pub fn run(data_dir: &Path, args: CertificateArgs) -> anyhow::Result<()> {
    match args.command {
        CertificateCommand::Check => {
            let found = expiry::certificates_under(data_dir);
            if found.is_empty() {
                bail!("no certificates in {} (has orch run with this --data-dir?)", data_dir.display());
            }
            let now = expiry::now();
            println!("{:<44} {:<40} {:<22} {:>9}  STATUS", "FILE", "SUBJECT", "NOT AFTER", "DAYS LEFT");
            for (path, e) in found {
                let file = path.strip_prefix(data_dir).unwrap_or(&path).display().to_string();
                let not_after = time::OffsetDateTime::from_unix_timestamp(e.not_after)
                    .ok()
                    .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                    .unwrap_or_default();
                let kind = if e.is_ca { format!("{} (CA)", e.common_name) } else { e.common_name.clone() };
                println!("{file:<44} {kind:<40} {not_after:<22} {:>9}  {}", e.left(now) / 86_400, status(&e, now));
            }
            Ok(())
        }
        CertificateCommand::Rotate { services } => {
            let dir = crate::server::tls_dir(data_dir);
            if !dir.exists() {
                bail!("{} does not exist: `orch certificate rotate` runs on a server's data dir", dir.display());
            }
            let leaves = if services.is_empty() { Leaf::value_variants().to_vec() } else { services };
            for leaf in leaves {
                for ext in ["crt", "key"] {
                    let path = dir.join(format!("{}.{ext}", leaf.stem()));
                    match std::fs::remove_file(&path) {
                        Ok(()) => println!("removed {}", path.display()),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => bail!("cannot remove {}: {e}", path.display()),
                    }
                }
            }
            println!("start orch again (e.g. `systemctl start orch`) to sign new certificates; copies of the old orch.yaml stop working");
            Ok(())
        }
    }
}
