//! The first slice of the Kubernetes API, driven by the real kubectl and raw HTTPS: discovery,
//! system namespaces, apply/get/list/replace/patch/label/delete of ConfigMaps, conflicts,
//! label selectors, paging, watch, and Status errors for bad input and missing credentials.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use orch::pki;
use orch::rpc::HttpClient;
use serde_json::Value;

use crate::support::kubectl;

async fn request(client: &HttpClient, method: &str, url: &str, content_type: &str, body: &str) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let (status, bytes) = client.fetch(req, Duration::from_secs(10)).await.unwrap();
    (status.as_u16(), serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The API alone: controllers would add objects of their own (kube-root-ca.crt, ...).
async fn ready_server(dir: &std::path::Path) -> crate::support::ServerProc {
    crate::support::ready_server(dir, &["--disable-controllers".to_string()]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_manages_configmaps() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path()).await;
    let home = dir.path().join("home");

    let (ok, out, err) = kubectl(&server, &home, &["api-resources"], None).await;
    assert!(ok && out.contains("configmaps") && out.contains(" cm "), "{out}{err}");

    let manifest = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"web","labels":{"app":"web"}},"data":{"k":"v"}}
{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"db","labels":{"app":"db"}},"data":{"k":"v"}}"#;
    let (ok, out, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(manifest)).await;
    assert!(ok, "apply failed: {out}{err}");
    assert!(out.contains("configmap/web created") && out.contains("configmap/db created"), "{out}");

    // Server-side Table columns, as kube-apiserver prints them.
    let (ok, out, _) = kubectl(&server, &home, &["get", "cm", "web"], None).await;
    assert!(ok);
    let header: Vec<&str> = out.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "DATA", "AGE"], "{out}");
    assert!(out.lines().nth(1).is_some_and(|l| l.split_whitespace().take(2).collect::<Vec<_>>() == ["web", "1"]), "{out}");
    let (_, out, _) = kubectl(&server, &home, &["get", "ns", "kube-system"], None).await;
    assert!(out.starts_with("NAME") && out.contains("STATUS") && out.contains("Active"), "{out}");

    let (ok, out, _) = kubectl(&server, &home, &["get", "cm", "-l", "app=web", "-o", "name"], None).await;
    assert!(ok);
    assert_eq!(out.trim(), "configmap/web");

    let (ok, out, _) = kubectl(&server, &home, &["get", "cm", "--field-selector", "metadata.name=db", "-o", "name"], None).await;
    assert!(ok);
    assert_eq!(out.trim(), "configmap/db");
    let (ok, _, err) = kubectl(&server, &home, &["get", "cm", "--field-selector", "data.k=v"], None).await;
    assert!(!ok && err.contains("field label not supported: data.k"), "{err}");
    let (ok, out, err) = kubectl(&server, &home, &["describe", "cm", "web"], None).await;
    assert!(ok && out.contains("Name:         web") && out.contains("Events:"), "{out}{err}");

    let (_, out, _) = kubectl(&server, &home, &["get", "cm", "web", "-o", "json"], None).await;
    let obj: Value = serde_json::from_str(&out).unwrap();
    let rv: u64 = obj["metadata"]["resourceVersion"].as_str().unwrap().parse().expect("numeric resourceVersion");
    assert!(obj["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36));

    // A replace carrying a stale resourceVersion is a conflict and changes nothing.
    let mut stale = obj.clone();
    stale["metadata"]["resourceVersion"] = Value::String((rv - 1).to_string());
    stale["data"]["k"] = "changed".into();
    let (ok, _, err) = kubectl(&server, &home, &["replace", "-f", "-"], Some(&stale.to_string())).await;
    assert!(!ok && err.contains("the object has been modified"), "{err}");
    let mut fresh = obj.clone();
    fresh["data"]["k"] = "changed".into();
    let (ok, _, err) = kubectl(&server, &home, &["replace", "-f", "-"], Some(&fresh.to_string())).await;
    assert!(ok, "{err}");
    let (_, out, _) = kubectl(&server, &home, &["get", "cm", "web", "-o", "jsonpath={.data.k}"], None).await;
    assert_eq!(out, "changed");

    // Labels, annotations and the three patch types.
    for args in [
        vec!["label", "cm", "web", "tier=front"],
        vec!["annotate", "cm", "web", "note=hi"],
        vec!["patch", "cm", "web", "-p", r#"{"data":{"s":"strategic"}}"#],
        vec!["patch", "cm", "web", "--type=merge", "-p", r#"{"data":{"k":null}}"#],
        vec!["patch", "cm", "web", "--type=json", "-p", r#"[{"op":"add","path":"/data/j","value":"json"}]"#],
    ] {
        let (ok, out, err) = kubectl(&server, &home, &args, None).await;
        assert!(ok, "kubectl {args:?}: {out}{err}");
    }
    let (_, out, _) = kubectl(&server, &home, &["get", "cm", "web", "-o", "json"], None).await;
    let patched: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(patched["data"], serde_json::json!({"s": "strategic", "j": "json"}));
    assert_eq!(patched["metadata"]["labels"]["tier"], "front");
    assert_eq!(patched["metadata"]["annotations"]["note"], "hi");
    assert_eq!(patched["metadata"]["uid"], obj["metadata"]["uid"], "patches keep the uid");

    // Re-applying a changed manifest updates the object (client-side apply patches it).
    let changed = manifest
        .replace(r#""name":"db","labels":{"app":"db"}},"data":{"k":"v"}"#, r#""name":"db","labels":{"app":"db"}},"data":{"k":"v2"}"#);
    let (ok, out, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(&changed)).await;
    assert!(ok && out.contains("configmap/db configured"), "{out}{err}");
    let (_, out, _) = kubectl(&server, &home, &["get", "cm", "db", "-o", "jsonpath={.data.k}"], None).await;
    assert_eq!(out, "v2");

    let (ok, out, _) = kubectl(&server, &home, &["get", "cm", "-A", "--chunk-size=1", "-o", "name"], None).await;
    assert!(ok);
    assert_eq!(out.lines().count(), 2, "paging with limit/continue returns every object once: {out}");

    let (ok, out, err) = kubectl(&server, &home, &["delete", "cm", "web", "--wait"], None).await;
    assert!(ok && out.contains("deleted"), "{out}{err}");
    let (ok, _, err) = kubectl(&server, &home, &["get", "cm", "web"], None).await;
    assert!(!ok && err.contains("configmaps \"web\" not found"), "{err}");

    // Server-side field validation: kubectl's default (Strict) refuses unknown fields, Warn
    // drops them with a warning; kubectl explain reads the OpenAPI v3 schemas.
    let typo = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"typo"},"dta":{"k":"v"}}"#;
    let (ok, _, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(typo)).await;
    assert!(!ok && err.contains(r#"strict decoding error: unknown field "dta""#), "{err}");
    let (ok, _, err) = kubectl(&server, &home, &["apply", "--validate=warn", "-f", "-"], Some(typo)).await;
    assert!(ok && err.contains(r#"unknown field "dta""#), "{err}");
    let (ok, out, err) = kubectl(&server, &home, &["explain", "configmap.data"], None).await;
    assert!(ok && out.contains("map[string]string"), "{out}{err}");

    // kubectl's typed create commands send protobuf bodies.
    for args in [
        vec!["create", "namespace", "team-a"],
        vec!["create", "configmap", "settings", "-n", "team-a", "--from-literal=mode=fast"],
        vec!["create", "secret", "generic", "creds", "-n", "team-a", "--from-literal=password=pw"],
        vec!["create", "serviceaccount", "robot", "-n", "team-a"],
        vec!["create", "service", "nodeport", "web", "-n", "team-a", "--tcp=80:8080"],
    ] {
        let (ok, out, err) = kubectl(&server, &home, &args, None).await;
        assert!(ok && out.contains("created"), "kubectl {args:?}: {out}{err}");
    }
    let (_, out, _) = kubectl(&server, &home, &["get", "secret", "creds", "-n", "team-a", "-o", "jsonpath={.data.password}"], None).await;
    assert_eq!(out, "cHc=", "secret data arrives base64-encoded");
    let (_, out, _) = kubectl(&server, &home, &["get", "cm,secret,sa", "-n", "team-a", "-o", "name"], None).await;
    assert_eq!(out.lines().count(), 3, "{out}");
    let (_, out, _) = kubectl(&server, &home, &["get", "svc", "-n", "team-a"], None).await;
    let header: Vec<&str> = out.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], "{out}");
    assert!(out.contains("NodePort") && out.contains("80:3"), "{out}");

    let (ok, _, err) = kubectl(&server, &home, &["apply", "-n", "nope", "-f", "-"], Some(manifest)).await;
    assert!(!ok && err.contains("namespaces \"nope\" not found"), "{err}");

    let (ok, out, _) = kubectl(&server, &home, &["get", "cm", "db", "-o", "yaml"], None).await;
    assert!(ok && out.contains("kind: ConfigMap") && out.contains("name: db"), "{out}");
    let (ok, out, _) = kubectl(&server, &home, &["get", "cm", "-A", "-o", "name"], None).await;
    assert!(ok && out.contains("configmap/db") && out.contains("configmap/settings"), "{out}");

    // `kubectl get -w` prints the current objects, then changes as they happen.
    let mut watcher = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(server.data_dir.join("orch.yaml"))
        .args(["get", "cm", "-w"])
        .env("HOME", &home)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(watcher.stdout.take().unwrap()));
    let first = tokio::time::timeout(Duration::from_secs(15), lines.next_line()).await.expect("a header").unwrap().unwrap();
    assert!(first.starts_with("NAME"), "{first}");
    let (ok, _, err) = kubectl(&server, &home, &["create", "configmap", "watched"], None).await;
    assert!(ok, "{err}");
    let seen = tokio::time::timeout(Duration::from_secs(15), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("watched") {
                return line;
            }
        }
        String::new()
    })
    .await
    .expect("the new configmap in the watch");
    assert!(seen.starts_with("watched"), "{seen}");
    let _ = watcher.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_kubernetes_status_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path()).await;
    let admin = server.admin_client().unwrap();
    let url = format!("{}/api/v1/namespaces/default/configmaps", server.url());

    let (code, status) = request(&admin, "POST", &url, "application/json", "{not json").await;
    assert_eq!((code, status["kind"].as_str(), status["reason"].as_str()), (400, Some("Status"), Some("BadRequest")));
    let (code, status) = request(&admin, "POST", &url, "application/json", r#"{"metadata":{"name":"Bad_Name"}}"#).await;
    assert_eq!((code, status["reason"].as_str()), (422, Some("Invalid")), "{status}");
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
    let (code, _) = request(&admin, "POST", &url, "application/xml", "<x/>").await;
    assert_eq!(code, 415);
    let big = format!(r#"{{"metadata":{{"name":"big"}},"data":{{"k":"{}"}}}}"#, "x".repeat(4 << 20));
    let (code, status) = request(&admin, "POST", &url, "application/json", &big).await;
    assert_eq!(code, 413, "{status}");
    let (code, status) = request(&admin, "POST", &url, "application/json", r#"{"metadata":{"name":"dup"}}"#).await;
    assert_eq!(code, 201, "{status}");
    let (code, status) = request(&admin, "POST", &url, "application/json", r#"{"metadata":{"name":"dup"}}"#).await;
    assert_eq!((code, status["reason"].as_str()), (409, Some("AlreadyExists")));
    let (_, list) = request(&admin, "GET", &url, "", "").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "refused requests stored nothing");

    let ca = std::fs::read_to_string(server.data_dir.join("server/tls/server-ca.crt")).unwrap();
    let anonymous = HttpClient::new(pki::client_config(&ca, None).unwrap());
    let (code, status) = request(&anonymous, "GET", &url, "", "").await;
    assert_eq!((code, status["reason"].as_str()), (401, Some("Unauthorized")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_events_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path()).await;
    let admin = server.admin_client().unwrap();
    let base = format!("{}/api/v1/namespaces/default/configmaps", server.url());
    let (_, created) = request(&admin, "POST", &base, "application/json", r#"{"metadata":{"name":"w0"}}"#).await;
    let rv = created["metadata"]["resourceVersion"].as_str().unwrap().to_string();

    let req = http::Request::get(format!("{base}?watch=true&resourceVersion={rv}&timeoutSeconds=5")).body(Full::default()).unwrap();
    let resp = admin.send(req, Duration::from_secs(10)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let writer = {
        let admin = admin.clone();
        let base = base.clone();
        tokio::spawn(async move {
            request(&admin, "POST", &base, "application/json", r#"{"metadata":{"name":"w1"}}"#).await;
            let (_, mut w1) = request(&admin, "GET", &format!("{base}/w1"), "", "").await;
            // A PUT that changes something (an unchanged one is no write, as in kube).
            w1["data"] = serde_json::json!({ "k": "v" });
            request(&admin, "PUT", &format!("{base}/w1"), "application/json", &w1.to_string()).await;
            request(&admin, "DELETE", &format!("{base}/w1"), "", "").await;
        })
    };
    let body = tokio::time::timeout(Duration::from_secs(15), resp.into_body().collect())
        .await
        .expect("watch ends at timeoutSeconds")
        .unwrap()
        .to_bytes();
    writer.await.unwrap();
    let events: Vec<(String, String)> = String::from_utf8_lossy(&body)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["type"].as_str().unwrap().to_string(), v["object"]["metadata"]["name"].as_str().unwrap().to_string())
        })
        .collect();
    let expected: Vec<(String, String)> =
        [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(events, expected);

    // Without a resourceVersion the current objects come first, as ADDED.
    let req = http::Request::get(format!("{base}?watch=1&timeoutSeconds=1")).body(Full::default()).unwrap();
    let resp = admin.send(req, Duration::from_secs(10)).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let first: Value = serde_json::from_str(String::from_utf8_lossy(&body).lines().next().unwrap()).unwrap();
    assert_eq!((first["type"].as_str(), first["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some("w0")));
}

/// A watcher resuming from a resourceVersion older than the watch cache's ring reads the
/// store's history, then is handed over to the cache: every change arrives once, in order,
/// including those written after the hand-over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_older_than_the_cache_catches_up_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path()).await;
    let admin = server.admin_client().unwrap();
    let base = format!("{}/api/v1/namespaces/default/configmaps", server.url());
    let other = format!("{}/api/v1/namespaces/kube-system/configmaps", server.url());
    let (_, created) = request(&admin, "POST", &base, "application/json", r#"{"metadata":{"name":"c"},"data":{"n":"0"}}"#).await;
    let rv = created["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    request(&admin, "POST", &other, "application/json", r#"{"metadata":{"name":"c"},"data":{"n":"0"}}"#).await;
    // Start the cache, then push more changes through it than its ring keeps.
    let req = http::Request::get(format!("{base}?watch=true&resourceVersion={rv}&timeoutSeconds=1")).body(Full::default()).unwrap();
    admin.send(req, Duration::from_secs(10)).await.unwrap().into_body().collect().await.unwrap();
    const WRITES: usize = 700;
    for n in 1..=WRITES {
        let (url, body) = (if n % 2 == 0 { &other } else { &base }, format!(r#"{{"data":{{"n":"{n}"}}}}"#));
        let (code, _) = request(&admin, "PATCH", &format!("{url}/c"), "application/merge-patch+json", &body).await;
        assert_eq!(code, 200);
    }

    let req = http::Request::get(format!("{base}?watch=true&resourceVersion={rv}&timeoutSeconds=4")).body(Full::default()).unwrap();
    let resp = admin.send(req, Duration::from_secs(10)).await.unwrap();
    assert_eq!(resp.status(), 200);
    // Once every change from the history has arrived, one more is written live.
    let history = WRITES / 2;
    let (mut body, mut stream, mut live_written) = (Vec::new(), resp.into_body(), false);
    while let Some(frame) = stream.frame().await {
        body.extend_from_slice(&frame.unwrap().into_data().unwrap_or_default());
        if !live_written && body.iter().filter(|b| **b == b'\n').count() >= history {
            let patch = format!(r#"{{"data":{{"n":"{}"}}}}"#, WRITES + 1);
            let (code, _) = request(&admin, "PATCH", &format!("{base}/c"), "application/merge-patch+json", &patch).await;
            assert_eq!(code, 200);
            live_written = true;
        }
    }
    assert!(live_written, "the history arrived");
    let seen: Vec<(String, String, String)> = String::from_utf8_lossy(&body)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let meta = &v["object"]["metadata"];
            (
                v["type"].as_str().unwrap().into(),
                meta["namespace"].as_str().unwrap().into(),
                v["object"]["data"]["n"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> =
        (1..=WRITES + 1).filter(|n| n % 2 == 1).map(|n| ("MODIFIED".into(), "default".into(), n.to_string())).collect();
    assert_eq!(seen.len(), want.len(), "first differences: {:?}", seen.iter().zip(&want).find(|(a, b)| a != b));
    assert_eq!(seen, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_hold_deletion_and_generation_counts_spec_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path()).await;
    let admin = server.admin_client().unwrap();
    let base = format!("{}/apis/coordination.k8s.io/v1/namespaces/default/leases", server.url());
    let lease = r#"{"metadata":{"name":"l","finalizers":["example.com/hold"]},"spec":{"holderIdentity":"a"}}"#;
    let (code, created) = request(&admin, "POST", &base, "application/json", lease).await;
    assert_eq!((code, created["metadata"]["generation"].as_i64()), (201, Some(1)), "{created}");

    let url = format!("{base}/l");
    let (_, spec_changed) = request(&admin, "PATCH", &url, "application/merge-patch+json", r#"{"spec":{"holderIdentity":"b"}}"#).await;
    assert_eq!(spec_changed["metadata"]["generation"], 2);
    let (_, labelled) = request(&admin, "PATCH", &url, "application/merge-patch+json", r#"{"metadata":{"labels":{"x":"y"}}}"#).await;
    assert_eq!(labelled["metadata"]["generation"], 2, "metadata changes do not bump generation");

    let (code, terminating) = request(&admin, "DELETE", &url, "", "").await;
    assert_eq!(code, 200);
    assert!(terminating["metadata"]["deletionTimestamp"].is_string(), "{terminating}");
    let (code, _) = request(&admin, "GET", &url, "", "").await;
    assert_eq!(code, 200, "a finalizer keeps the object");
    let (code, _) = request(&admin, "PATCH", &url, "application/merge-patch+json", r#"{"metadata":{"finalizers":null}}"#).await;
    assert_eq!(code, 200);
    let (code, _) = request(&admin, "GET", &url, "", "").await;
    assert_eq!(code, 404, "removing the last finalizer completes the deletion");

    // An orphan propagation policy is recorded as a finalizer for the garbage collector.
    request(&admin, "POST", &base, "application/json", r#"{"metadata":{"name":"o"},"spec":{}}"#).await;
    let (code, held) = request(&admin, "DELETE", &format!("{base}/o?propagationPolicy=Orphan"), "", "").await;
    assert_eq!(code, 200);
    assert_eq!(held["metadata"]["finalizers"], serde_json::json!(["orphan"]));
    let (code, status) = request(&admin, "DELETE", &format!("{base}/o"), "application/json", r#"{"preconditions":{"uid":"not-it"}}"#).await;
    assert_eq!((code, status["reason"].as_str()), (409, Some("Conflict")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_can_i_answers_for_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path()).await;
    let (ok, out, err) = kubectl(&server, &dir.path().join("home"), &["auth", "can-i", "create", "configmaps"], None).await;
    assert!(ok && out.trim() == "yes", "{out}{err}");

    // Someone outside system:masters is refused, and a review says so.
    let tls = server.data_dir.join("server/tls");
    let ca = pki::ClusterCa::from_pem(pki::PemPair::read(&tls, "server-ca").unwrap().unwrap()).unwrap();
    let dev = ca
        .sign(&pki::CertSpec {
            common_name: "dev".into(),
            organizations: vec!["developers".into()],
            client_auth: true,
            ..Default::default()
        })
        .unwrap();
    let client = HttpClient::new(pki::client_config(&ca.pem().cert, Some(&dev)).unwrap());
    let review = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{"resourceAttributes":{"verb":"get","resource":"configmaps","namespace":"default"}}}"#;
    let (code, answer) = request(
        &client,
        "POST",
        &format!("{}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", server.url()),
        "application/json",
        review,
    )
    .await;
    assert_eq!((code, answer["status"]["allowed"].as_bool()), (201, Some(false)), "{answer}");
    let (code, status) = request(&client, "GET", &format!("{}/api/v1/namespaces/default/configmaps", server.url()), "", "").await;
    assert_eq!(code, 403);
    let message = status["message"].as_str().unwrap_or("");
    assert!(message.contains("User \"dev\" cannot list resource \"configmaps\""), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_tracks_managers_and_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path()).await;
    let home = dir.path().join("home");
    let cm = |data: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n{data}");

    let (ok, out, err) = kubectl(&server, &home, &["apply", "--server-side", "-f", "-"], Some(&cm("  k: v1\n  j: x\n"))).await;
    assert!(ok && out.contains("serverside-applied"), "{out}{err}");
    let (ok, _, err) =
        kubectl(&server, &home, &["apply", "--server-side", "--field-manager=other", "-f", "-"], Some(&cm("  k: v2\n"))).await;
    assert!(!ok && err.contains("Apply failed with 1 conflict") && err.contains(".data.k"), "{err}");
    let (ok, _, err) = kubectl(
        &server,
        &home,
        &["apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", "-"],
        Some(&cm("  k: v2\n")),
    )
    .await;
    assert!(ok, "{err}");
    let (_, out, _) = kubectl(&server, &home, &["get", "cm", "ssa", "-o", "json", "--show-managed-fields"], None).await;
    let obj: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(obj["data"], serde_json::json!({"k": "v2", "j": "x"}));
    let managers: Vec<(&str, &str)> = obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["manager"].as_str().unwrap(), e["operation"].as_str().unwrap()))
        .collect();
    assert_eq!(managers, [("kubectl", "Apply"), ("other", "Apply")]);

    // A manager that stops applying a field it alone owns removes it.
    let (ok, _, err) =
        kubectl(&server, &home, &["apply", "--server-side", "--field-manager=other", "-f", "-"], Some(&cm("  z: new\n"))).await;
    assert!(ok, "{err}");
    let (_, out, _) = kubectl(&server, &home, &["get", "cm", "ssa", "-o", "jsonpath={.data}"], None).await;
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), serde_json::json!({"j": "x", "z": "new"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watchers_each_receive_every_event_in_order() {
    const WATCHERS: usize = 1000;
    const EVENTS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path()).await;
    let base = format!("{}/api/v1/namespaces/default/configmaps", server.url());
    let admin = server.admin_client().unwrap();
    let (_, list) = request(&admin, "GET", &base, "", "").await;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();

    // Ten connections, a hundred watch streams on each.
    let clients: Vec<HttpClient> = (0..10).map(|_| server.admin_client().unwrap()).collect();
    let mut watchers = Vec::new();
    for i in 0..WATCHERS {
        let client = clients[i % clients.len()].clone();
        let url = format!("{base}?watch=true&resourceVersion={rv}&timeoutSeconds=60");
        watchers.push(tokio::spawn(async move {
            let resp = client.send(http::Request::get(url).body(Full::default()).unwrap(), Duration::from_secs(30)).await.unwrap();
            let mut body = resp.into_body();
            let (mut buf, mut names) = (Vec::new(), Vec::new());
            while names.len() < EVENTS {
                let frame = tokio::time::timeout(Duration::from_secs(60), body.frame())
                    .await
                    .expect("watch event in time")
                    .expect("stream open")
                    .unwrap();
                buf.extend_from_slice(&frame.into_data().unwrap_or_default());
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let ev: Value = serde_json::from_slice(&line).unwrap();
                    names.push(ev["object"]["metadata"]["name"].as_str().unwrap().to_string());
                }
            }
            names
        }));
    }
    // Watchers replay from `rv`, so writing before every stream is open loses nothing.
    for i in 0..EVENTS {
        let (code, _) = request(&admin, "POST", &base, "application/json", &format!(r#"{{"metadata":{{"name":"e{i:02}"}}}}"#)).await;
        assert_eq!(code, 201);
    }
    let expected: Vec<String> = (0..EVENTS).map(|i| format!("e{i:02}")).collect();
    for w in watchers {
        assert_eq!(w.await.unwrap(), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_unique_cluster_ips_and_node_ports_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path()).await;
    let admin = server.admin_client().unwrap();
    let base = format!("{}/api/v1/namespaces/default/services", server.url());
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (admin, base) = (admin.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let svc = format!(r#"{{"metadata":{{"name":"s{i}"}},"spec":{{"type":"NodePort","ports":[{{"port":80}}]}}}}"#);
            let (code, obj) = request(&admin, "POST", &base, "application/json", &svc).await;
            assert_eq!(code, 201, "{obj}");
            (obj["spec"]["clusterIP"].as_str().unwrap().to_string(), obj["spec"]["ports"][0]["nodePort"].as_u64().unwrap())
        }));
    }
    let mut ips = std::collections::HashSet::new();
    let mut ports = std::collections::HashSet::new();
    for t in tasks {
        let (ip, port) = t.await.unwrap();
        let addr: std::net::Ipv4Addr = ip.parse().unwrap();
        assert!(addr.octets()[..2] == [10, 43] && ip != "10.43.0.1", "{ip} must come from 10.43.0.0/16, not the kubernetes address");
        assert!((30000..=32767).contains(&port));
        assert!(ips.insert(ip.clone()), "ClusterIP {ip} handed out twice");
        assert!(ports.insert(port), "NodePort {port} handed out twice");
    }

    // An address someone holds cannot be taken; deleting its Service releases it.
    let taken = ips.iter().next().unwrap().clone();
    let want = format!(r#"{{"metadata":{{"name":"fixed"}},"spec":{{"clusterIP":"{taken}","ports":[{{"port":53}}]}}}}"#);
    let (code, status) = request(&admin, "POST", &base, "application/json", &want).await;
    assert_eq!(code, 422, "{status}");
    assert!(status["message"].as_str().unwrap().contains("provided IP is already allocated"));
    let (_, list) = request(&admin, "GET", &base, "", "").await;
    let owner = list["items"].as_array().unwrap().iter().find(|s| s["spec"]["clusterIP"] == taken.as_str()).unwrap()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, _) = request(&admin, "DELETE", &format!("{base}/{owner}"), "", "").await;
    assert_eq!(code, 200);
    let (code, created) = request(&admin, "POST", &base, "application/json", &want).await;
    assert_eq!((code, created["spec"]["clusterIP"].as_str()), (201, Some(taken.as_str())));

    // Addresses are immutable.
    let (code, _) =
        request(&admin, "PATCH", &format!("{base}/fixed"), "application/merge-patch+json", r#"{"spec":{"clusterIP":"10.43.9.9"}}"#).await;
    assert_eq!(code, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_grants_what_bindings_say_and_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path()).await;
    let home = dir.path().join("home");
    for args in [
        vec!["create", "namespace", "team"],
        vec!["create", "role", "cm-reader", "-n", "team", "--verb=get,list", "--resource=configmaps"],
        vec!["create", "rolebinding", "devs-read", "-n", "team", "--role=cm-reader", "--group=developers"],
        vec!["create", "configmap", "settings", "-n", "team", "--from-literal=a=b"],
    ] {
        let (ok, out, err) = kubectl(&server, &home, &args, None).await;
        assert!(ok, "kubectl {args:?}: {out}{err}");
    }
    let (_, out, _) = kubectl(&server, &home, &["get", "rolebindings", "-n", "team"], None).await;
    assert!(out.contains("Role/cm-reader"), "{out}");

    let tls = server.data_dir.join("server/tls");
    let ca = pki::ClusterCa::from_pem(pki::PemPair::read(&tls, "server-ca").unwrap().unwrap()).unwrap();
    let dev = ca
        .sign(&pki::CertSpec {
            common_name: "bob".into(),
            organizations: vec!["developers".into()],
            client_auth: true,
            ..Default::default()
        })
        .unwrap();
    let client = HttpClient::new(pki::client_config(&ca.pem().cert, Some(&dev)).unwrap());
    let api = format!("{}/api/v1/namespaces", server.url());
    // The cache follows the store; give it a moment to see the new binding.
    crate::support::wait_for(Duration::from_secs(10), "the binding to take effect", || async {
        let (code, _) = request(&client, "GET", &format!("{api}/team/configmaps"), "", "").await;
        (code == 200).then_some(())
    })
    .await;
    let (code, cm) = request(&client, "GET", &format!("{api}/team/configmaps/settings"), "", "").await;
    assert_eq!((code, cm["data"]["a"].as_str()), (200, Some("b")));
    let (code, _) = request(&client, "GET", &format!("{api}/default/configmaps"), "", "").await;
    assert_eq!(code, 403, "a RoleBinding grants only in its namespace");
    let (code, _) = request(&client, "POST", &format!("{api}/team/configmaps"), "application/json", r#"{"metadata":{"name":"x"}}"#).await;
    assert_eq!(code, 403, "the role does not allow create");
    let (code, _) = request(&client, "GET", &format!("{api}/team/secrets"), "", "").await;
    assert_eq!(code, 403, "nor other resources");

    // Removing the binding takes the access away again.
    let (ok, _, err) = kubectl(&server, &home, &["delete", "rolebinding", "devs-read", "-n", "team"], None).await;
    assert!(ok, "{err}");
    crate::support::wait_for(Duration::from_secs(10), "the binding removal to take effect", || async {
        let (code, _) = request(&client, "GET", &format!("{api}/team/configmaps"), "", "").await;
        (code == 403).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_authenticate_for_their_audience_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path()).await;
    let home = dir.path().join("home");
    let (ok, _, err) = kubectl(&server, &home, &["create", "serviceaccount", "robot"], None).await;
    assert!(ok, "{err}");
    let (ok, token, err) = kubectl(&server, &home, &["create", "token", "robot"], None).await;
    assert!(ok && token.starts_with("ey"), "{err}");
    let (_, vault_token, _) = kubectl(&server, &home, &["create", "token", "robot", "--audience=vault"], None).await;

    let ca = std::fs::read_to_string(server.data_dir.join("server/tls/server-ca.crt")).unwrap();
    let anonymous = HttpClient::new(pki::client_config(&ca, None).unwrap());
    let url = format!("{}/api/v1/namespaces/default/configmaps", server.url());
    let as_token = |token: String| {
        let (client, url) = (anonymous.clone(), url.clone());
        async move {
            let req = http::Request::get(url).header("authorization", format!("Bearer {}", token.trim())).body(Full::default()).unwrap();
            let (status, body) = client.fetch(req, Duration::from_secs(10)).await.unwrap();
            (status.as_u16(), String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (code, body) = as_token(token.clone()).await;
    assert!(code == 403 && body.contains("system:serviceaccount:default:robot"), "authenticated, not yet authorised: {body}");
    let (code, _) = as_token(vault_token).await;
    assert_eq!(code, 401, "a token for another audience is refused");
    let (code, _) = as_token("not.a.token".into()).await;
    assert_eq!(code, 401);

    kubectl(
        &server,
        &home,
        &["create", "rolebinding", "robot-admin", "--clusterrole=cluster-admin", "--serviceaccount=default:robot"],
        None,
    )
    .await;
    crate::support::wait_for(Duration::from_secs(10), "the token to be authorised", || async {
        (as_token(token.clone()).await.0 == 200).then_some(())
    })
    .await;

    // Deleting the ServiceAccount invalidates its tokens.
    kubectl(&server, &home, &["delete", "serviceaccount", "robot"], None).await;
    assert_eq!(as_token(token).await.0, 401);
}

/// kubectl 1.33 asks for aggregated discovery: two requests (`/api`, `/apis`) map every
/// resource, and an unchanged document is not sent again (`ETag`, 304).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_discovers_through_aggregated_discovery() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path()).await;
    let home = dir.path().join("fresh-home");
    let (ok, out, err) = kubectl(&server, &home, &["api-resources", "-v=6"], None).await;
    assert!(ok && out.contains("deployments") && out.contains("customresourcedefinitions"), "{out}{err}");
    let discovery: Vec<&str> = err
        .lines()
        .filter_map(|l| l.split("url=\"").nth(1))
        .filter_map(|u| u.split('"').next())
        .map(|u| u.split('?').next().unwrap_or(u))
        .collect();
    let roots: Vec<String> = ["/api", "/apis"].iter().map(|p| format!("{}{p}", server.url())).collect();
    assert_eq!(discovery, roots, "kubectl should need only the two aggregated documents:\n{err}");

    const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
    let client = server.admin_client().expect("admin credentials");
    let get = |etag: Option<&str>| {
        let mut req = http::Request::builder().uri(format!("{}/apis", server.url())).header("accept", AGGREGATED);
        if let Some(etag) = etag {
            req = req.header("if-none-match", etag);
        }
        req.body(Full::new(Bytes::new())).unwrap()
    };
    let resp = client.send(get(None), Duration::from_secs(10)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("content-type").unwrap(), AGGREGATED);
    let etag = resp.headers().get("etag").expect("an ETag").to_str().unwrap().to_string();
    let doc: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(doc["kind"], "APIGroupDiscoveryList", "{doc}");
    let resp = client.send(get(Some(&etag)), Duration::from_secs(10)).await.unwrap();
    assert_eq!(resp.status(), 304);
}
