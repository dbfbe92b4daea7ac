//! Admission webhooks against a webhook server written here (HTTPS with a CA the test makes):
//! stock kubectl shows kube's denial, a mutating webhook's JSON patch is stored, a deletion is
//! judged by the old object, a namespace selector exempts a namespace, and a webhook that is
//! down is ignored or fails the request by its failurePolicy.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use orch::pki::{CertSpec, ClusterCa};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::support::{kubectl, ready_server, wait_for, ServerProc};

/// The reviews the test webhook received.
type Seen = Arc<Mutex<Vec<Value>>>;

/// What the test webhook answers to a review at `path`.
fn answer(path: &str, review: &Value) -> Value {
    let request = &review["request"];
    let labels = if request["operation"] == "DELETE" {
        &request["oldObject"]["metadata"]["labels"]
    } else {
        &request["object"]["metadata"]["labels"]
    };
    let mut response = json!({ "uid": request["uid"], "allowed": true });
    match path {
        "/validate" if labels["color"] == "blue" => {
            response["allowed"] = json!(false);
            response["status"] = json!({ "code": 403, "reason": "Forbidden", "message": "blue ConfigMaps are not allowed" });
        }
        "/validate" if request["operation"] == "DELETE" && labels["protected"] == "true" => {
            response["allowed"] = json!(false);
            response["status"] = json!({ "message": "protected ConfigMaps stay" });
        }
        "/validate" => response["warnings"] = json!(["checked by the test webhook"]),
        "/mutate" => {
            let patch = if labels.is_object() {
                json!([{ "op": "add", "path": "/metadata/labels/mutated", "value": "yes" }])
            } else {
                json!([{ "op": "add", "path": "/metadata/labels", "value": { "mutated": "yes" } }])
            };
            response["patchType"] = json!("JSONPatch");
            response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
        }
        _ => {}
    }
    json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response })
}

/// Starts the webhook server on 127.0.0.1 with a certificate of `ca`; its port.
async fn webhook_server(ca: &ClusterCa, seen: Seen) -> u16 {
    let spec =
        CertSpec { common_name: "webhook".into(), ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)], server_auth: true, ..Default::default() };
    let serving = ca.sign(&spec).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(orch::pki::server_config(&ca.pem().cert, &serving).unwrap()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        assert!(req.uri().query().is_some_and(|q| q.starts_with("timeout=")), "kube's ?timeout=: {}", req.uri());
                        let body = req.into_body().collect().await?.to_bytes();
                        let review: Value = serde_json::from_slice(&body).unwrap_or_default();
                        seen.lock().push(review.clone());
                        let out = answer(&path, &review).to_string();
                        Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from(out))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    port
}

fn config(kind: &str, name: &str, url: &str, ca_bundle: &str, resources: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: {kind}
metadata:
  name: {name}
webhooks:
- name: {name}.orch.test
  admissionReviewVersions: ["v1"]
  sideEffects: None
  clientConfig:
    url: {url}
    caBundle: {ca_bundle}
  rules:
  - operations: ["*"]
    apiGroups: [""]
    apiVersions: ["v1"]
    resources: ["{resources}"]
{extra}"#
    )
}

fn config_map(name: &str, namespace: &str, labels: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels: {labels}\ndata:\n  k: v\n")
}

/// Applies `manifest` with kubectl: (success, stdout + stderr).
async fn apply(server: &ServerProc, home: &std::path::Path, manifest: &str) -> (bool, String) {
    let (ok, out, err) = kubectl(server, home, &["apply", "-f", "-"], Some(manifest)).await;
    (ok, format!("{out}{err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_deny_mutate_and_follow_their_policies() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path(), &["--disable-controllers".to_string()]).await;
    let home = dir.path().join("home");
    let ca = ClusterCa::create("webhook-test-ca").unwrap();
    let bundle = base64::engine::general_purpose::STANDARD.encode(&ca.pem().cert);
    let seen = Seen::default();
    let port = webhook_server(&ca, seen.clone()).await;

    // Configurations are validated as kube-apiserver validates them.
    let bad =
        config("ValidatingWebhookConfiguration", "bad", "http://127.0.0.1/x", &bundle, "configmaps", "").replace("bad.orch.test", "bad");
    let (ok, out) = apply(&server, &home, &bad).await;
    assert!(!ok && out.contains("should be a domain with at least three segments separated by dots"), "{out}");
    assert!(out.contains("'https' is the only allowed URL scheme"), "{out}");

    let skip = "  namespaceSelector:\n    matchExpressions: [{key: webhooks, operator: NotIn, values: [skip]}]\n";
    let url = format!("https://127.0.0.1:{port}/validate");
    let (ok, out) = apply(&server, &home, &config("ValidatingWebhookConfiguration", "deny-blue", &url, &bundle, "configmaps", skip)).await;
    assert!(ok, "{out}");
    let (ok, out, _) = kubectl(&server, &home, &["get", "validatingwebhookconfigurations"], None).await;
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().take(2).collect()).collect();
    assert!(ok && rows[0] == ["NAME", "WEBHOOKS"] && rows[1] == ["deny-blue", "1"], "{out}");
    let (_, stored, _) = kubectl(&server, &home, &["get", "validatingwebhookconfiguration", "deny-blue", "-o", "json"], None).await;
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["metadata"]["generation"], 1, "{stored}");
    let hook = &stored["webhooks"][0];
    assert_eq!((&hook["failurePolicy"], &hook["timeoutSeconds"], &hook["matchPolicy"]), (&json!("Fail"), &json!(10), &json!("Equivalent")));

    // Denied with kube's message, as stock kubectl prints it.
    let blue = config_map("blue", "default", "{color: blue}");
    let out = wait_for(Duration::from_secs(10), "the validating webhook to be in force", || async {
        let (ok, out) = apply(&server, &home, &blue).await;
        (!ok).then_some(out)
    })
    .await;
    assert!(
        out.contains(r#"Error from server (Forbidden): error when creating "STDIN": admission webhook "deny-blue.orch.test" denied the request: blue ConfigMaps are not allowed"#),
        "{out}"
    );
    let (ok, out) = apply(&server, &home, &config_map("green", "default", "{color: green, protected: \"true\"}")).await;
    assert!(ok && out.contains("Warning: checked by the test webhook"), "allowed, with the webhook's warning: {out}");
    let review = seen.lock().iter().rev().find(|r| r["request"]["name"] == "green").cloned().expect("the webhook saw the create");
    let request = &review["request"];
    assert_eq!((&request["operation"], &request["namespace"], &request["dryRun"]), (&json!("CREATE"), &json!("default"), &json!(false)));
    assert_eq!(request["resource"], json!({ "group": "", "version": "v1", "resource": "configmaps" }));
    assert!(request["userInfo"]["groups"].as_array().unwrap().contains(&json!("system:authenticated")), "{request}");

    // Deletion is judged by the old object.
    let (ok, out, err) = kubectl(&server, &home, &["delete", "configmap", "green"], None).await;
    assert!(!ok && err.contains(r#"admission webhook "deny-blue.orch.test" denied the request: protected ConfigMaps stay"#), "{out}{err}");

    // A dry run calls webhooks without side effects, telling them so.
    let (ok, out, err) = kubectl(&server, &home, &["create", "configmap", "dry", "--dry-run=server"], None).await;
    assert!(ok, "{out}{err}");
    assert!(seen.lock().iter().any(|r| r["request"]["name"] == "dry" && r["request"]["dryRun"] == true));

    // The namespace selector exempts a namespace.
    let (ok, out) = apply(&server, &home, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: exempt\n  labels: {webhooks: skip}\n").await;
    assert!(ok, "{out}");
    let (ok, out) = apply(&server, &home, &config_map("blue", "exempt", "{color: blue}")).await;
    assert!(ok, "a namespace the selector excludes: {out}");

    // A mutating webhook's JSON patch is stored.
    let url = format!("https://127.0.0.1:{port}/mutate");
    let (ok, out) = apply(&server, &home, &config("MutatingWebhookConfiguration", "add-label", &url, &bundle, "configmaps", "")).await;
    assert!(ok, "{out}");
    let label = wait_for(Duration::from_secs(10), "the mutating webhook to label a new ConfigMap", || async {
        let name = format!("m{}", rand::random::<u32>());
        let (ok, _, _) = kubectl(&server, &home, &["create", "configmap", &name], None).await;
        let (_, label, _) = kubectl(&server, &home, &["get", "configmap", &name, "-o", "jsonpath={.metadata.labels.mutated}"], None).await;
        (ok && !label.is_empty()).then_some(label)
    })
    .await;
    assert_eq!(label, "yes");

    // A webhook that is down: ignored with failurePolicy Ignore, fatal with Fail.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("https://127.0.0.1:{down}/validate");
    let ignore = config("ValidatingWebhookConfiguration", "down", &url, &bundle, "secrets", "  failurePolicy: Ignore\n");
    assert!(apply(&server, &home, &ignore).await.0);
    let seen_before = seen.lock().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, out, err) = kubectl(&server, &home, &["create", "secret", "generic", "s1", "--from-literal=a=b"], None).await;
    assert!(ok, "failurePolicy Ignore lets the request through: {out}{err}");
    let (ok, out) = apply(&server, &home, &ignore.replace("failurePolicy: Ignore", "failurePolicy: Fail")).await;
    assert!(ok, "{out}");
    let err = wait_for(Duration::from_secs(10), "failurePolicy Fail to refuse secrets", || async {
        let name = format!("s{}", rand::random::<u32>());
        let (ok, _, err) = kubectl(&server, &home, &["create", "secret", "generic", &name, "--from-literal=a=b"], None).await;
        (!ok).then_some(err)
    })
    .await;
    assert!(err.contains("Internal error occurred: failed calling webhook \"down.orch.test\": failed to call webhook: Post"), "{err}");
    assert!(err.contains(&format!("https://127.0.0.1:{down}/validate?timeout=10s")), "{err}");
    assert_eq!(seen.lock().len(), seen_before, "secrets never reached the test webhook");

    // Configurations themselves never go to webhooks, so a broken one can be removed.
    let (ok, out, err) = kubectl(&server, &home, &["delete", "validatingwebhookconfiguration", "down"], None).await;
    assert!(ok, "{out}{err}");

    // The example blocks nothing: even in a namespace it selects, its missing Service fails open.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/validating-webhook.yaml");
    let (ok, out, err) = kubectl(&server, &home, &["apply", "-f", example], None).await;
    assert!(ok, "{out}{err}");
    let (ok, out) = apply(
        &server,
        &home,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: enforced\n  labels: {policy.orch.example/enforce: \"true\"}\n",
    )
    .await;
    assert!(ok, "{out}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, out) = apply(&server, &home, &config_map("plain", "enforced", "{}")).await;
    assert!(ok, "{out}");
}
