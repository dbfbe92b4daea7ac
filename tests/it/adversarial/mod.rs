//! The adversarial suite: each test sends an attack over HTTPS as the identity an attacker
//! would have (namespace admin, node certificate, agent token, ServiceAccount token,
//! anonymous) and asserts the kube-compatible refusal, that the server still answers and that
//! nothing stored changed. One file per class of the threat model (docs/security.md).

mod authz;
mod crash;
mod exhaust;
mod fuzz;
mod tokens;
mod volumes;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use orch::pki;
use orch::rpc::HttpClient;
use serde_json::Value;

use crate::support::{kubectl, ServerProc};

/// Someone talking HTTPS to a server as one identity.
#[derive(Clone)]
pub struct Caller {
    client: HttpClient,
    base: String,
    bearer: Option<String>,
}

/// What a request got back: the status code and the body (JSON when it parses).
pub struct Answer {
    pub code: u16,
    pub body: Value,
    pub text: String,
}

impl Caller {
    /// The server's administrator (the `system:masters` client certificate of its kubeconfig).
    pub fn admin(server: &ServerProc) -> Self {
        Self { client: server.admin_client().expect("admin credentials"), base: server.url(), bearer: None }
    }

    /// A client certificate for `user` in `groups`, signed by the cluster's client CA.
    pub fn cert(server: &ServerProc, user: &str, groups: &[&str]) -> Self {
        let tls = server.data_dir.join("server/tls");
        let ca = pki::ClusterCa::from_pem(pki::PemPair::read(&tls, "server-ca").unwrap().unwrap()).unwrap();
        let pair = ca
            .sign(&pki::CertSpec {
                common_name: user.into(),
                organizations: groups.iter().map(|g| g.to_string()).collect(),
                client_auth: true,
                ..Default::default()
            })
            .unwrap();
        let client = HttpClient::new(pki::client_config(&ca.pem().cert, Some(&pair)).unwrap());
        Self { client, base: server.url(), bearer: None }
    }

    /// No credentials at all.
    pub fn anonymous(server: &ServerProc) -> Self {
        let ca = std::fs::read_to_string(server.data_dir.join("server/tls/server-ca.crt")).unwrap();
        Self { client: HttpClient::new(pki::client_config(&ca, None).unwrap()), base: server.url(), bearer: None }
    }

    /// A bearer token (ServiceAccount, bootstrap or node token).
    pub fn token(server: &ServerProc, token: &str) -> Self {
        Self { bearer: Some(token.trim().to_string()), ..Self::anonymous(server) }
    }

    /// Sends `method path` (path relative to the server, with its query) with `body` of
    /// `content_type` (empty: no body).
    pub async fn send(&self, method: &str, path: &str, content_type: &str, body: impl Into<Bytes>) -> Answer {
        let mut req = http::Request::builder().method(method).uri(format!("{}{path}", self.base));
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        if let Some(token) = &self.bearer {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req.body(Full::new(body.into())).unwrap();
        let (status, bytes) = self.client.fetch(req, Duration::from_secs(30)).await.expect("the server answers");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Answer { code: status.as_u16(), body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, "", Bytes::new()).await
    }
}

/// Asserts the server still answers its administrator.
pub async fn assert_alive(server: &ServerProc) {
    let answer = Caller::admin(server).get("/readyz").await;
    assert_eq!(answer.code, 200, "the server no longer answers: {}", answer.text);
}

/// Makes `user` the administrator of namespace `ns` (every verb on every resource there, as a
/// RoleBinding to a Role `ns-admin`), the usual identity of a tenant.
pub async fn make_namespace_admin(server: &ServerProc, home: &std::path::Path, ns: &str, user: &str) -> Caller {
    for args in [
        vec!["create", "namespace", ns],
        vec!["create", "role", "ns-admin", "-n", ns, "--verb=*", "--resource=*.*"],
        vec!["create", "rolebinding", "ns-admin", "-n", ns, "--role=ns-admin", &format!("--user={user}")],
    ] {
        let (ok, out, err) = kubectl(server, home, &args, None).await;
        assert!(ok, "kubectl {args:?}: {out}{err}");
    }
    let caller = Caller::cert(server, user, &[]);
    crate::support::wait_for(Duration::from_secs(10), "the namespace admin binding to take effect", || async {
        (caller.get(&format!("/api/v1/namespaces/{ns}/configmaps")).await.code == 200).then_some(())
    })
    .await;
    caller
}
