//! The server's TLS material under `<data-dir>/server/tls/` and its join tokens under
//! `<data-dir>/server/token` (servers and agents) and `<data-dir>/server/agent-token` (agents
//! only): created on first start (or received from the cluster when joining), reused on every
//! restart. Leaf certificates are re-signed at each start so they always carry the current
//! addresses and never expire on a running cluster.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::pki::{self, CertSpec, ClusterCa, JoinToken, PemPair, PkiError};

const CA_STEM: &str = "server-ca";
/// Files of the API's client certificate towards kubelets.
const KUBELET_CLIENT_STEM: &str = "client-kubelet";
/// Who the API is towards kubelets (kube-apiserver's `--kubelet-client-certificate`).
const KUBELET_CLIENT_USER: &str = "system:kube-apiserver-kubelet-client";

/// Everything TLS a server needs.
pub struct Credentials {
    pub ca: ClusterCa,
    /// The certificate served on the server port.
    pub serving: PemPair,
    /// The client certificate this server presents to its peers.
    pub peer: PemPair,
    /// The client certificate the API presents to kubelets (no rights on the API or peers).
    pub kubelet_client: PemPair,
    /// The cluster administrator's client certificate (for the kubeconfig).
    pub admin: PemPair,
    pub token: JoinToken,
    /// The agent token: joins agents, never servers (it cannot obtain the CA's key).
    pub agent_token: JoinToken,
}

/// Which of the two stored tokens.
#[derive(Clone, Copy)]
enum TokenRole {
    Server,
    Agent,
}

impl TokenRole {
    fn file(self) -> &'static str {
        match self {
            TokenRole::Server => "token",
            TokenRole::Agent => "agent-token",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            TokenRole::Server => "--token",
            TokenRole::Agent => "--agent-token",
        }
    }

    fn token(self, ca_pem: &str, secret: &str) -> JoinToken {
        match self {
            TokenRole::Server => JoinToken::server(ca_pem, secret),
            TokenRole::Agent => JoinToken::agent(ca_pem, secret),
        }
    }
}

pub fn tls_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("tls")
}

fn token_path(data_dir: &Path, role: TokenRole) -> PathBuf {
    data_dir.join("server").join(role.file())
}

/// Stores a CA received from the cluster (when joining), before [`load_or_create`].
pub fn store_received_ca(data_dir: &Path, ca: &PemPair) -> Result<(), PkiError> {
    ca.write(&tls_dir(data_dir), CA_STEM)
}

/// Whether this data dir already has a cluster CA.
pub fn has_ca(data_dir: &Path) -> bool {
    ca_cert_path(data_dir).exists()
}

/// The cluster CA's certificate (PEM) in this data dir.
pub fn ca_cert_path(data_dir: &Path) -> PathBuf {
    tls_dir(data_dir).join(format!("{CA_STEM}.crt"))
}

/// A random secret for tokens: 32 lowercase hex digits.
fn new_secret() -> String {
    (0..16).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// The stored token of `role`, or (first start) one with the secret of `flag`, else of
/// `default_secret`, written to its file. A flag must agree with the stored token afterwards.
fn load_or_create_token(
    data_dir: &Path,
    role: TokenRole,
    ca_pem: &str,
    flag: Option<&str>,
    default_secret: impl FnOnce() -> String,
) -> Result<JoinToken, PkiError> {
    let path = token_path(data_dir, role);
    if let Ok(stored) = std::fs::read_to_string(&path) {
        let stored = JoinToken::parse(&stored)?;
        if let Some(flag) = flag {
            if !pki::constant_time_eq(JoinToken::parse(flag)?.secret.as_bytes(), stored.secret.as_bytes()) {
                return Err(PkiError::Token(format!(
                    "{} differs from the token this server already uses ({})",
                    role.flag(),
                    path.display()
                )));
            }
        }
        return Ok(stored);
    }
    let secret = match flag {
        Some(flag) => JoinToken::parse(flag)?.secret,
        None => default_secret(),
    };
    let token = role.token(ca_pem, &secret);
    crate::pki::write_private(&path, &format!("{token}\n"))?;
    Ok(token)
}

/// The tokens a server is started with: `--token` and `--agent-token`.
#[derive(Clone, Copy, Default)]
pub struct TokenFlags<'a> {
    pub server: Option<&'a str>,
    pub agent: Option<&'a str>,
}

/// Loads or creates the CA, tokens and leaf certificates. The flags set the tokens' secrets on
/// first start and must agree with the stored ones afterwards. Without `--agent-token` the
/// agent token's secret is derived from the server token's (so every server of a cluster has
/// the same one) and differs from it.
pub fn load_or_create(
    data_dir: &Path,
    node_name: &str,
    dns_names: &[String],
    ips: &[IpAddr],
    flags: TokenFlags<'_>,
) -> Result<Credentials, PkiError> {
    let dir = tls_dir(data_dir);
    let ca = ClusterCa::load_or_create(&dir, CA_STEM, "orch-server-ca")?;
    let ca_pem = ca.pem().cert.clone();
    let token = load_or_create_token(data_dir, TokenRole::Server, &ca_pem, flags.server, new_secret)?;
    let agent_token = load_or_create_token(data_dir, TokenRole::Agent, &ca_pem, flags.agent, || pki::derived_agent_secret(&token.secret))?;
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
    // The admin pair is kept across starts (users copy the kubeconfig) until it is due for renewal.
    let due =
        |pair: &PemPair| pki::expiry::Expiry::of_pem(&pair.cert).is_none_or(|e| e.within(pki::expiry::RENEW_BEFORE, pki::expiry::now()));
    let admin = match PemPair::read(&dir, "client-admin")?.filter(|pair| !due(pair)) {
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
    let kubelet_client = ca.sign(&CertSpec {
        common_name: KUBELET_CLIENT_USER.into(),
        organizations: vec![pki::KUBELET_CLIENTS_GROUP.into()],
        client_auth: true,
        ..Default::default()
    })?;
    serving.write(&dir, "serving")?;
    peer.write(&dir, "peer")?;
    kubelet_client.write(&dir, KUBELET_CLIENT_STEM)?;
    pki::expiry::warn_expiring(&dir);
    Ok(Credentials { ca, serving, peer, kubelet_client, admin, token, agent_token })
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

/// The server token stored in a server data dir.
pub fn read_token(data_dir: &Path) -> Result<String, PkiError> {
    read_token_file(token_path(data_dir, TokenRole::Server))
}

/// The agent token stored in a server data dir.
pub fn read_agent_token(data_dir: &Path) -> Result<String, PkiError> {
    read_token_file(token_path(data_dir, TokenRole::Agent))
}

fn read_token_file(p: PathBuf) -> Result<String, PkiError> {
    std::fs::read_to_string(&p).map(|t| t.trim().to_string()).map_err(|source| PkiError::Read { path: p.display().to_string(), source })
}
