//! Adversarial tests: the roles of secrets (see mod.rs). An agent token never reaches the CA's
//! key; node bootstrap grants only `system:node:<name>` to the machine that owns the name;
//! kubelet serving certificates carry only the node's own names and addresses; the node
//! proxy reaches only the node's kubelet; the API's kubelet client identity has no rights;
//! bootstrap tokens are honoured only as kube-apiserver honours them.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use orch::join::{join_as_agent, wire, AgentCredentials, JoinError};
use orch::pki::{self, Identity, JoinToken, PemPair};
use orch::rpc::HttpClient;
use serde_json::{json, Value};

use super::{assert_alive, Answer, Caller};
use crate::support::{ready_server, wait_for, ServerProc};

/// A caller presenting `pair` (a client certificate).
fn caller_with(server: &ServerProc, pair: &PemPair) -> Caller {
    let ca = std::fs::read_to_string(server.data_dir.join("server/tls/server-ca.crt")).unwrap();
    Caller { client: HttpClient::new(pki::client_config(&ca, Some(pair)).unwrap()), base: server.url(), bearer: None }
}

/// POSTs JSON `body` to `path` with an optional `Authorization` header.
async fn post(caller: &Caller, path: &str, authorization: Option<String>, body: Value) -> Answer {
    let mut req = http::Request::post(format!("{}{path}", caller.base)).header("content-type", "application/json");
    if let Some(auth) = authorization {
        req = req.header("authorization", auth);
    }
    let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let (status, bytes) = caller.client.fetch(req, Duration::from_secs(30)).await.expect("the server answers");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Answer { code: status.as_u16(), body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
}

/// `Authorization: Basic user:secret`.
fn basic(user: &str, secret: &str) -> String {
    wire::basic_auth(&JoinToken { ca_hash: None, user: user.into(), secret: secret.into() })
}

/// The identity in a PEM certificate.
fn identity_of(pem: &str) -> Identity {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    Identity::from_der(&pem.contents).unwrap()
}

/// Joins `name` with `token` once the server can record node passwords (kube-system exists).
async fn join(server: &ServerProc, token: &JoinToken, name: &str, password: &str) -> AgentCredentials {
    wait_for(Duration::from_secs(20), "a node join", || async { join_as_agent(&server.url(), token, name, password).await.ok() }).await
}

/// The stored node password record of `node`, as the admin reads it.
async fn node_password(server: &ServerProc, node: &str) -> Answer {
    Caller::admin(server).get(&format!("/api/v1/namespaces/kube-system/secrets/{node}.node-password.orch")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_token_never_reaches_the_ca_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path(), &[]).await;
    let (server_token, agent_token) = (server.token(), server.agent_token());
    let agent = JoinToken::parse(&agent_token).unwrap();
    assert_ne!(agent.secret, JoinToken::parse(&server_token).unwrap().secret, "the agent token is not the server token");
    assert_eq!(agent.user, "node", "{agent_token}");

    let anonymous = Caller::anonymous(&server);
    for user in ["server", "node", ""] {
        let answer = post(&anonymous, wire::SERVER_BOOTSTRAP_PATH, Some(basic(user, &agent.secret)), json!({})).await;
        assert_eq!(answer.code, 401, "the agent token as {user:?} must not bootstrap a server: {}", answer.text);
        assert!(!answer.text.contains("PRIVATE KEY"), "{}", answer.text);
    }
    // The agent token joins an agent, whose node certificate opens no way to the key either.
    let creds = join(&server, &agent, "worker-a", "password-a").await;
    let node = caller_with(&server, &creds.client);
    let answer = post(&node, wire::SERVER_BOOTSTRAP_PATH, None, json!({})).await;
    assert_eq!(answer.code, 401, "{}", answer.text);
    assert!(!answer.text.contains("PRIVATE KEY"));
    let answer = node.get("/raft/status").await;
    assert!(answer.code == 403 && !answer.text.contains("PRIVATE KEY"), "{} {}", answer.code, answer.text);

    // A server cannot join with the agent token (the process refuses and keeps nothing).
    let out = tokio::process::Command::new(crate::support::orch_binary())
        .args(["server", "--bind-address=127.0.0.1", "--https-listen-port=0", "--disable-agent", "--join", &server.url()])
        .args(["--token", &agent_token, "--data-dir"])
        .arg(dir.path().join("j1"))
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out).await.expect("a refused join ends the process").unwrap();
    assert!(!out.status.success(), "a server must not join with the agent token");
    assert!(!dir.path().join("j1/server/tls/server-ca.key").exists(), "the CA key was handed out");
    assert_alive(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_bootstrap_grants_only_the_node_itself() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path(), &[]).await;
    let agent = JoinToken::parse(&server.agent_token()).unwrap();
    let creds = join(&server, &agent, "worker-a", "password-a").await;
    let recorded = node_password(&server, "worker-a").await;
    assert_eq!(recorded.code, 200, "{}", recorded.text);

    // Extra fields asking for more are ignored: the certificate is the node's, in system:nodes only.
    let anonymous = Caller::anonymous(&server);
    let greedy = json!({ "name": "worker-b", "password": "password-b", "groups": ["system:masters"], "commonName": "system:admin" });
    let answer = post(&anonymous, wire::NODE_BOOTSTRAP_PATH, Some(basic("node", &agent.secret)), greedy).await;
    assert_eq!(answer.code, 200, "{}", answer.text);
    let id = identity_of(answer.body["client"]["cert"].as_str().unwrap());
    assert_eq!((id.user.as_str(), id.groups.clone()), ("system:node:worker-b", vec!["system:nodes".to_string()]));
    let id = identity_of(&creds.client.cert);
    assert_eq!((id.user.as_str(), id.groups), ("system:node:worker-a", vec!["system:nodes".to_string()]));

    // Names that are not node names are refused, and record nothing.
    for name in ["system:masters", "../worker-a", "Worker-A", ""] {
        let answer = post(
            &anonymous,
            wire::NODE_BOOTSTRAP_PATH,
            Some(basic("node", &agent.secret)),
            json!({ "name": name, "password": "password-x" }),
        )
        .await;
        assert_eq!(answer.code, 400, "{name:?}: {}", answer.text);
    }
    // Another machine cannot take worker-a, with the agent token or the server token.
    for token in [agent.clone(), JoinToken::parse(&server.token()).unwrap()] {
        match join_as_agent(&server.url(), &token, "worker-a", "another-machine").await {
            Err(JoinError::NameTaken(msg)) => assert!(msg.contains("already in use"), "{msg}"),
            other => panic!("a second machine must not take worker-a: {other:?}"),
        }
    }
    // A wrong token gets nothing and records nothing.
    let answer = post(
        &anonymous,
        wire::NODE_BOOTSTRAP_PATH,
        Some(basic("node", "not-the-token")),
        json!({ "name": "worker-c", "password": "password-c" }),
    )
    .await;
    assert_eq!(answer.code, 401, "{}", answer.text);
    assert_eq!(node_password(&server, "worker-c").await.code, 404);
    let after = node_password(&server, "worker-a").await;
    assert_eq!(after.body["data"], recorded.body["data"], "worker-a's password record changed");
    assert_alive(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_certificates_carry_only_the_nodes_own_names_and_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path(), &[]).await;
    let agent = JoinToken::parse(&server.agent_token()).unwrap();
    let evil = caller_with(&server, &join(&server, &agent, "worker-a", "password-a").await.client);
    // Another node has registered its address.
    let admin = Caller::admin(&server);
    let victim = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "worker-b" },
        "status": { "addresses": [{ "type": "InternalIP", "address": "10.77.0.2" }] } });
    let created = admin.send("POST", "/api/v1/nodes", "application/json", victim.to_string()).await;
    assert_eq!(created.code, 201, "{}", created.text);
    let patch = json!({ "status": { "addresses": [{ "type": "InternalIP", "address": "10.77.0.2" }] } });
    let patched = admin.send("PATCH", "/api/v1/nodes/worker-b/status", "application/merge-patch+json", patch.to_string()).await;
    assert_eq!(patched.code, 200, "{}", patched.text);

    let refused = [
        json!({ "ips": ["10.77.0.2"] }),                               // another node's address
        json!({ "ips": ["10.43.0.1"] }),                               // the kubernetes Service
        json!({ "ips": [], "dns_names": ["kubernetes.default.svc"] }), // the API server's name
        json!({ "ips": [], "dns_names": ["worker-b"] }),               // another node's name
    ];
    for request in refused {
        let answer = post(&evil, wire::NODE_SERVING_CERT_PATH, None, request.clone()).await;
        assert_eq!(answer.code, 403, "{request}: {}", answer.text);
        assert!(!answer.text.contains("CERTIFICATE"), "{}", answer.text);
    }
    // A node named like the API server gets no serving certificate for that name.
    let localhost = caller_with(&server, &join(&server, &agent, "localhost", "password-l").await.client);
    let answer = post(&localhost, wire::NODE_SERVING_CERT_PATH, None, json!({ "ips": [] })).await;
    assert_eq!(answer.code, 403, "{}", answer.text);

    // Its own address and name are fine, and the certificate names nothing else.
    let answer = post(&evil, wire::NODE_SERVING_CERT_PATH, None, json!({ "ips": ["10.77.0.1", "127.0.0.1"] })).await;
    assert_eq!(answer.code, 200, "{}", answer.text);
    let (_, pem) = x509_parser::pem::parse_x509_pem(answer.body["cert"].as_str().unwrap().as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let sans = cert.subject_alternative_name().unwrap().unwrap().value.general_names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>();
    assert_eq!(sans.len(), 3, "{sans:?}");
    assert!(sans.iter().any(|s| s.contains("worker-a")) && !sans.iter().any(|s| s.contains("kubernetes")), "{sans:?}");
    let stored = admin.get("/api/v1/nodes/worker-b").await;
    assert_eq!(stored.body["status"]["addresses"][0]["address"], "10.77.0.2");
    assert_alive(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_proxy_reaches_only_the_nodes_kubelet() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path(), &["--disable-controllers".to_string()]).await;
    let admin = Caller::admin(&server);
    // A Node whose "kubelet" is the server's own port.
    let trap = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "trap" }, "status": {
        "addresses": [{ "type": "InternalIP", "address": "127.0.0.1" }],
        "daemonEndpoints": { "kubeletEndpoint": { "Port": server.port } } } });
    let created = admin.send("POST", "/api/v1/nodes", "application/json", trap.to_string()).await;
    assert_eq!(created.code, 201, "{}", created.text);
    let before = server.status().await.expect("raft status");

    for path in ["raft/status", "healthz", "store/range"] {
        let answer = admin.get(&format!("/api/v1/nodes/trap/proxy/{path}")).await;
        assert_ne!(answer.code, 200, "{path} reached the server through the node proxy: {}", answer.text);
        assert!(!answer.text.contains("members") && answer.text != "ok", "{path}: {}", answer.text);
    }
    for path in ["%2e%2e/%2e%2e/raft/status", "x/../../../raft/status", "..%2f..%2fraft/status", "%2E%2E/healthz"] {
        let answer = admin.get(&format!("/api/v1/nodes/trap/proxy/{path}")).await;
        assert_eq!(answer.code, 400, "{path}: {}", answer.text);
    }
    assert_eq!(server.status().await.expect("raft status")["members"], before["members"]);
    assert_alive(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_client_identity_has_no_rights() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path(), &[]).await;
    let tls = server.data_dir.join("server/tls");
    let pair = PemPair::read(&tls, "client-kubelet").unwrap().expect("the API's kubelet client certificate");
    let id = identity_of(&pair.cert);
    assert!(!id.in_group(pki::MASTERS_GROUP) && !id.in_group(pki::SERVERS_GROUP), "{id:?}");
    let kubelet_client = caller_with(&server, &pair);
    for path in ["/api/v1/secrets", "/api/v1/namespaces/kube-system/secrets", "/raft/status"] {
        let answer = kubelet_client.get(path).await;
        assert_eq!(answer.code, 403, "{path}: {}", answer.text);
    }
    let write = kubelet_client
        .send("POST", "/api/v1/namespaces/default/configmaps", "application/json", json!({ "metadata": { "name": "x" } }).to_string())
        .await;
    assert_eq!(write.code, 403, "{}", write.text);
    assert_eq!(Caller::admin(&server).get("/api/v1/namespaces/default/configmaps/x").await.code, 404);
    assert_alive(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_tokens_are_honoured_only_as_kube_honours_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path(), &[]).await;
    let admin = Caller::admin(&server);
    let ca = std::fs::read_to_string(server.data_dir.join("server/tls/server-ca.crt")).unwrap();
    let store = |id: &str, secret: &str, edit: &dyn Fn(&mut Value)| {
        let mut obj = orch::api::bootstrap_tokens::secret_for(id, secret, Some("2999-01-01T00:00:00Z"), "adversarial");
        edit(&mut obj);
        let admin = admin.clone();
        async move {
            let answer = admin.send("POST", "/api/v1/namespaces/kube-system/secrets", "application/json", obj.to_string()).await;
            assert_eq!(answer.code, 201, "{}", answer.text);
        }
    };
    let b64 = |s: &str| json!(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s));
    let refused: [(&str, &dyn Fn(&mut Value)); 5] = [
        ("noauth", &|s: &mut Value| s["data"]["usage-bootstrap-authentication"] = b64("false")),
        ("nousag", &|s: &mut Value| {
            s["data"].as_object_mut().unwrap().remove("usage-bootstrap-authentication");
        }),
        ("expird", &|s: &mut Value| s["data"]["expiration"] = b64("2001-01-01T00:00:00Z")),
        ("groups", &|s: &mut Value| s["data"]["auth-extra-groups"] = b64("system:masters")),
        ("wrongi", &|s: &mut Value| s["data"]["token-id"] = b64("other1")),
    ];
    for (id, edit) in refused {
        store(id, "0123456789abcdef", edit).await;
        let token = JoinToken { ca_hash: Some(pki::ca_hash(&ca)), user: "node".into(), secret: format!("{id}.0123456789abcdef") };
        let name = format!("by-{id}");
        match join_as_agent(&server.url(), &token, &name, "password-x").await {
            Err(JoinError::WrongToken { .. }) => {}
            other => panic!("bootstrap token {id} must be refused: {other:?}"),
        }
        assert_eq!(node_password(&server, &name).await.code, 404, "a refused join recorded {name}");
    }
    // The same token, valid, joins: the refusals above are about the token.
    store("goodid", "0123456789abcdef", &|s: &mut Value| s["data"]["auth-extra-groups"] = b64("system:bootstrappers:edge")).await;
    let token = JoinToken { ca_hash: Some(pki::ca_hash(&ca)), user: "node".into(), secret: "goodid.0123456789abcdef".into() };
    join_as_agent(&server.url(), &token, "by-goodid", "password-g").await.expect("a valid bootstrap token joins");
    assert_alive(&server).await;
}
