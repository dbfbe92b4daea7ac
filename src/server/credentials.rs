//! The server's TLS material under `<data-dir>/server/tls/` and its join token under
//! `<data-dir>/server/token`: created on first start (or received from the cluster when
//! joining), reused on every restart. Leaf certificates are re-signed at each start so they
//! always carry the current addresses and never expire on a running cluster.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::pki::{self, CertSpec, ClusterCa, JoinToken, PemPair, PkiError};

const CA_STEM: &str = "server-ca";

/// Everything TLS a server needs.
pub struct Credentials {
    pub ca: ClusterCa,
    /// The certificate served on the server port.
    pub serving: PemPair,
    /// The client certificate this server presents to its peers.
    pub peer: PemPair,
    /// The cluster administrator's client certificate (for the kubeconfig).
    pub admin: PemPair,
    pub token: JoinToken,
}

pub fn tls_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("tls")
}

fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("token")
}

/// Stores a CA received from the cluster (when joining), before [`load_or_create`].
pub fn store_received_ca(data_dir: &Path, ca: &PemPair) -> Result<(), PkiError> {
    ca.write(&tls_dir(data_dir), CA_STEM)
}

/// Whether this data dir already has a cluster CA.
pub fn has_ca(data_dir: &Path) -> bool {
    tls_dir(data_dir).join(format!("{CA_STEM}.crt")).exists()
}

/// A random secret for tokens: 32 lowercase hex digits.
fn new_secret() -> String {
    (0..16).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// Loads or creates the CA, token and leaf certificates. `token_flag` (`--token`) sets the
/// token secret on first start and must agree with the stored one afterwards.
pub fn load_or_create(
    data_dir: &Path,
    node_name: &str,
    dns_names: &[String],
    ips: &[IpAddr],
    token_flag: Option<&str>,
) -> Result<Credentials, PkiError> {
    let dir = tls_dir(data_dir);
    let ca = ClusterCa::load_or_create(&dir, CA_STEM, "orch-server-ca")?;
    let token = match std::fs::read_to_string(token_path(data_dir)) {
        Ok(stored) => {
            let stored = JoinToken::parse(&stored)?;
            if let Some(flag) = token_flag {
                if JoinToken::parse(flag)?.secret != stored.secret {
                    return Err(PkiError::Token(format!(
                        "--token differs from the token this server already uses ({})",
                        token_path(data_dir).display()
                    )));
                }
            }
            stored
        }
        Err(_) => {
            let secret = match token_flag {
                Some(flag) => JoinToken::parse(flag)?.secret,
                None => new_secret(),
            };
            let token = JoinToken::server(&ca.pem().cert, &secret);
            crate::pki::write_private(&token_path(data_dir), &format!("{token}\n"))?;
            token
        }
    };
    let serving = ca.sign(&CertSpec {
        common_name: "orch".into(),
        dns_names: dns_names.to_vec(),
        ips: ips.to_vec(),
        server_auth: true,
        ..Default::default()
    })?;
    let peer = ca.sign(&CertSpec {
        common_name: format!("system:orch-server:{node_name}"),
        organizations: vec![pki::SERVERS_GROUP.into()],
        client_auth: true,
        ..Default::default()
    })?;
    let admin = match PemPair::read(&dir, "client-admin")? {
        Some(admin) => admin,
        None => {
            let admin = ca.sign(&CertSpec {
                common_name: "system:admin".into(),
                organizations: vec![pki::MASTERS_GROUP.into()],
                client_auth: true,
                ..Default::default()
            })?;
            admin.write(&dir, "client-admin")?;
            admin
        }
    };
    serving.write(&dir, "serving")?;
    peer.write(&dir, "peer")?;
    Ok(Credentials { ca, serving, peer, admin, token })
}

/// The admin client's credentials of a server data dir: the CA certificate and the admin pair.
pub fn admin_credentials(data_dir: &Path) -> Result<(String, PemPair), PkiError> {
    let dir = tls_dir(data_dir);
    let ca = PemPair::read(&dir, CA_STEM)?
        .ok_or_else(|| PkiError::Read { path: dir.display().to_string(), source: std::io::ErrorKind::NotFound.into() })?;
    let admin = PemPair::read(&dir, "client-admin")?
        .ok_or_else(|| PkiError::Read { path: dir.display().to_string(), source: std::io::ErrorKind::NotFound.into() })?;
    Ok((ca.cert, admin))
}

/// The join token stored in a server data dir.
pub fn read_token(data_dir: &Path) -> Result<String, PkiError> {
    let p = token_path(data_dir);
    std::fs::read_to_string(&p).map(|t| t.trim().to_string()).map_err(|source| PkiError::Read { path: p.display().to_string(), source })
}
