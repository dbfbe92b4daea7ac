//! The server port's security: joining needs the right token and the right CA, the internal
//! API needs a cluster certificate, and stock kubectl talks to `/version` with the kubeconfig.

use std::time::Duration;

use orch::pki::{self, CertSpec, ClusterCa, PemPair};
use orch::rpc::{HttpClient, RemoteStore, RpcError};
use orch::store::{Store, StoreError};

use crate::support::{orch_binary, start_server};

/// Runs `orch server --join` against `seed` with `token` and returns its stderr once it exits.
async fn failed_join(dir: &std::path::Path, seed: &str, token: &str) -> String {
    let out = tokio::process::Command::new(orch_binary())
        .args(["server", "--bind-address=127.0.0.1", "--https-listen-port=0", "--join", seed, "--token", token, "--data-dir"])
        .arg(dir)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out).await.expect("a refused join must end the process").unwrap();
    assert!(!out.status.success(), "join with a bad token must fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_needs_the_right_token_and_ca() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("n0"), &[]);
    server.wait_member(Duration::from_secs(20)).await;
    let token = pki::JoinToken::parse(&server.token()).unwrap();

    let wrong_secret = pki::JoinToken { secret: "not-the-secret".into(), ..token.clone() };
    let err = failed_join(&dir.path().join("j1"), &server.url(), &wrong_secret.to_string()).await;
    assert!(err.contains("refused the token"), "{err}");

    let other_ca = pki::JoinToken { ca_hash: Some("0".repeat(64)), ..token.clone() };
    let err = failed_join(&dir.path().join("j2"), &server.url(), &other_ca.to_string()).await;
    assert!(err.contains("but the token expects"), "{err}");
    assert!(!dir.path().join("j2/server/tls/server-ca.key").exists(), "nothing is kept from a refused join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_api_needs_a_cluster_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("n0"), &[]);
    server.wait_member(Duration::from_secs(20)).await;
    let tls = dir.path().join("n0/server/tls");
    let ca = ClusterCa::from_pem(PemPair::read(&tls, "server-ca").unwrap().unwrap()).unwrap();
    let ca_pem = ca.pem().cert.clone();
    let status = |client: HttpClient| {
        let url = server.url();
        async move { RemoteStore::new(url, client).current_revision().await }
    };

    let anonymous = status(HttpClient::new(pki::client_config(&ca_pem, None).unwrap())).await;
    assert!(matches!(&anonymous, Err(StoreError::Unavailable(m)) if m.contains("401")), "{anonymous:?}");

    let developer = ca
        .sign(&CertSpec { common_name: "dev".into(), organizations: vec!["developers".into()], client_auth: true, ..Default::default() })
        .unwrap();
    let forbidden = status(HttpClient::new(pki::client_config(&ca_pem, Some(&developer)).unwrap())).await;
    assert!(matches!(&forbidden, Err(StoreError::Unavailable(m)) if m.contains("403") && m.contains("dev")), "{forbidden:?}");

    let stranger_ca = ClusterCa::create("someone-else").unwrap();
    let stranger = stranger_ca
        .sign(&CertSpec {
            common_name: "x".into(),
            organizations: vec![pki::MASTERS_GROUP.into()],
            client_auth: true,
            ..Default::default()
        })
        .unwrap();
    let refused = status(HttpClient::new(pki::client_config(&ca_pem, Some(&stranger)).unwrap())).await;
    assert!(refused.is_err(), "a certificate from another CA must not be accepted");

    assert!(server.store().current_revision().await.is_ok(), "the admin certificate is accepted");

    // A client that does not trust the cluster CA cannot talk to the server at all.
    let untrusting = HttpClient::new(pki::client_config(&stranger_ca.pem().cert, Some(&stranger)).unwrap());
    let call: Result<u64, RpcError> = untrusting.call(&format!("{}/store/revision", server.url()), &(), Duration::from_secs(5)).await;
    assert!(matches!(call, Err(RpcError::Unreachable { .. })), "{call:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_the_server_version_with_the_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("n0"), &[]);
    server.wait_member(Duration::from_secs(20)).await;
    let kubeconfig = dir.path().join("n0/orch.yaml");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&kubeconfig).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "kubeconfig must be private");
    let out = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["version", "-o", "json"])
        .env("HOME", dir.path())
        .output()
        .await
        .expect("running kubectl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kubectl version failed: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["serverVersion"]["major"], "1");
    assert_eq!(v["serverVersion"]["minor"], "33");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reuses_the_ca_token_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_server(&dir.path().join("n0"), &[]);
    server.wait_member(Duration::from_secs(20)).await;
    let tls = dir.path().join("n0/server/tls");
    let ca_before = std::fs::read_to_string(tls.join("server-ca.crt")).unwrap();
    let token_before = server.token();
    let admin_before = server.admin_client().unwrap();
    let rev = server.store().txn(orch::store::TxnRequest::put("/restart", "kept")).await.unwrap().revision;

    server.kill();
    server.restart();
    server.wait_member(Duration::from_secs(20)).await;
    assert_eq!(std::fs::read_to_string(tls.join("server-ca.crt")).unwrap(), ca_before, "the CA survives a restart");
    assert_eq!(server.token(), token_before, "the token survives a restart");
    // A client built before the restart (old kubeconfig credentials) still works.
    let store = RemoteStore::new(server.url(), admin_before);
    assert!(store.current_revision().await.unwrap() >= rev);
    let got =
        store.range(orch::store::RangeRequest { range: orch::store::KeyRange::single("/restart"), ..Default::default() }).await.unwrap();
    assert_eq!(got.kvs[0].value, b"kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_the_server_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_server(&dir.path().join("n0"), &[]);
    server.wait_member(Duration::from_secs(20)).await;
    // An open watch must not hold the shutdown up.
    let _watch =
        server.store().watch(orch::store::WatchRequest { range: orch::store::KeyRange::prefix("/"), start_revision: 0 }).await.unwrap();
    let code = server.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "orch server should exit 0 within 10 s of SIGTERM:\n{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_join_with_the_token_and_keep_their_node_name() {
    use orch::join::{join_as_agent, JoinError};
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("n0"), &[]);
    server.wait_member(Duration::from_secs(20)).await;
    let token = pki::JoinToken::parse(&server.token()).unwrap();
    // The agent's node password lives in kube-system, which exists once the server is ready.
    crate::support::wait_for(Duration::from_secs(20), "a first join", || async {
        join_as_agent(&server.url(), &token, "worker-1", "password-one").await.ok()
    })
    .await;

    let creds = join_as_agent(&server.url(), &token, "worker-1", "password-one").await.expect("the same machine may join again");
    let client = HttpClient::new(pki::client_config(&creds.ca, Some(&creds.client)).unwrap());
    let (status, body) = client
        .fetch(
            http::Request::get(format!("{}/apis/rbac.authorization.k8s.io/v1/clusterroles", server.url()))
                .body(http_body_util::Full::default())
                .unwrap(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(status == 403 && body.contains("system:node:worker-1"), "the node certificate identifies the node: {status} {body}");

    match join_as_agent(&server.url(), &token, "worker-1", "another-machine").await {
        Err(JoinError::NameTaken(msg)) => assert!(msg.contains("already in use"), "{msg}"),
        other => panic!("a second machine must not take worker-1: {other:?}"),
    }
    let wrong = pki::JoinToken { secret: "nope".into(), ..token.clone() };
    assert!(matches!(join_as_agent(&server.url(), &wrong, "worker-2", "password-two").await, Err(JoinError::WrongToken { .. })));
    let other_ca = pki::JoinToken { ca_hash: Some("f".repeat(64)), ..token };
    assert!(matches!(join_as_agent(&server.url(), &other_ca, "worker-2", "password-two").await, Err(JoinError::CaMismatch { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_tokens_are_created_listed_used_and_deleted() {
    use orch::join::{join_as_agent, JoinError};
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("n0"), &[]);
    server.wait_member(Duration::from_secs(20)).await;
    let orch_token = |args: Vec<String>| {
        let data = server.data_dir.clone();
        let url = server.url();
        async move {
            let out = tokio::process::Command::new(crate::support::orch_binary())
                .arg("--data-dir")
                .arg(&data)
                .args(["token", "--server", &url])
                .args(&args)
                .output()
                .await
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    // kube-system exists once the server is ready.
    let created = crate::support::wait_for(Duration::from_secs(20), "a token to be created", || async {
        let (ok, out, _) = orch_token(vec!["create".into(), "--description=rack 2".into()]).await;
        ok.then_some(out)
    })
    .await;
    let token = pki::JoinToken::parse(&created).expect("a K10 token");
    assert!(pki::is_bootstrap(&token.secret), "{created}");
    let id = token.secret.split('.').next().unwrap().to_string();

    let (ok, list, err) = orch_token(vec!["list".into()]).await;
    assert!(ok && list.contains(&id) && list.contains("rack 2"), "{list}{err}");

    join_as_agent(&server.url(), &token, "edge-1", "edge-password").await.expect("an agent joins with an agent token");
    // An agent token cannot make a server.
    let ca = orch::server::admin_credentials(&server.data_dir).unwrap().0;
    let http = HttpClient::new(pki::client_config(&ca, None).unwrap());
    let basic = format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("node:{}", token.secret)));
    let req = http::Request::post(format!("{}/v1-orch/server-bootstrap", server.url()))
        .header("authorization", basic)
        .body(http_body_util::Full::default())
        .unwrap();
    assert_eq!(http.fetch(req, Duration::from_secs(10)).await.unwrap().0, 401);

    let (ok, _, err) = orch_token(vec!["delete".into(), id.clone()]).await;
    assert!(ok, "{err}");
    assert!(
        matches!(join_as_agent(&server.url(), &token, "edge-2", "edge-password").await, Err(JoinError::WrongToken { .. })),
        "a deleted token no longer works"
    );

    let (ok, short, err) = orch_token(vec!["create".into(), "--ttl=1s".into()]).await;
    assert!(ok, "{err}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = pki::JoinToken::parse(&short).unwrap();
    assert!(
        matches!(join_as_agent(&server.url(), &expired, "edge-3", "edge-password").await, Err(JoinError::WrongToken { .. })),
        "an expired token no longer works"
    );
}
