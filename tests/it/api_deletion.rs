//! Deletion as clients rely on it: `deletecollection` (selectors, dry run, discovery verbs), what
//! a DELETE answers per resource, the initial status of new objects and `Status` bodies byte for
//! byte in kube-apiserver's field order — over raw HTTPS and through the official Python client.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use orch::rpc::HttpClient;
use serde_json::Value;

async fn request(client: &HttpClient, method: &str, url: &str, body: &str) -> (u16, String) {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let (status, bytes) = client.fetch(req, Duration::from_secs(10)).await.unwrap();
    (status.as_u16(), String::from_utf8_lossy(&bytes).into_owned())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_delete_and_statuses_read_as_kube_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::ready_server(dir.path(), &["--disable-controllers".to_string()]).await;
    let admin = server.admin_client().unwrap();
    let base = format!("{}/api/v1/namespaces/default/configmaps", server.url());

    let (code, body) = request(&admin, "GET", &format!("{base}/missing"), "").await;
    assert_eq!(code, 404);
    assert_eq!(
        body,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"configmaps \"missing\" not found","reason":"NotFound","details":{"name":"missing","kind":"configmaps"},"code":404}"#
    );

    for (name, app) in [("a0", "a"), ("a1", "a"), ("b0", "b")] {
        let cm = format!(r#"{{"metadata":{{"name":"{name}","labels":{{"app":"{app}"}}}}}}"#);
        assert_eq!(request(&admin, "POST", &base, &cm).await.0, 201);
    }
    let (code, body) = request(&admin, "DELETE", &format!("{base}?labelSelector=app%3Da&dryRun=All"), "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["items"].as_array().map(Vec::len), Some(2), "{body}");
    let (_, list) = request(&admin, "GET", &base, "").await;
    assert_eq!(json(&list)["items"].as_array().map(Vec::len), Some(3), "a dry run deletes nothing");
    let (code, body) = request(&admin, "DELETE", &format!("{base}?labelSelector=app%3Da"), "").await;
    assert_eq!(code, 200, "{body}");
    let deleted = json(&body);
    assert_eq!(deleted["kind"], "ConfigMapList");
    let mut names: Vec<&str> = deleted["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["a0", "a1"]);
    let (_, list) = request(&admin, "GET", &base, "").await;
    let left: Vec<Value> = json(&list)["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].clone()).collect();
    assert_eq!(left, ["b0"]);

    // A GET → PUT round trip changes nothing: no new resourceVersion.
    let (_, b0) = request(&admin, "GET", &format!("{base}/b0"), "").await;
    let (code, put) = request(&admin, "PUT", &format!("{base}/b0"), &b0).await;
    assert_eq!(code, 200, "{put}");
    assert_eq!(json(&put)["metadata"]["resourceVersion"], json(&b0)["metadata"]["resourceVersion"], "{put}");
    let (code, body) = request(&admin, "DELETE", &format!("{base}/b0"), "").await;
    assert_eq!(code, 200);
    assert!(
        body.starts_with(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":{"name":"b0","kind":"configmaps","uid":""#
        ),
        "{body}"
    );
    // Namespaces have no deletecollection, in discovery or on the wire.
    let (code, _) = request(&admin, "DELETE", &format!("{}/api/v1/namespaces", server.url()), "").await;
    assert_eq!(code, 405);
    let (_, discovery) = request(&admin, "GET", &format!("{}/api/v1", server.url()), "").await;
    let verbs = |plural: &str| -> Vec<String> {
        let doc = json(&discovery);
        let r = doc["resources"].as_array().unwrap().iter().find(|r| r["name"] == plural).cloned().unwrap();
        r["verbs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    assert!(verbs("configmaps").contains(&"deletecollection".to_string()));
    assert!(!verbs("namespaces").contains(&"deletecollection".to_string()));

    // A Service comes back with its initial status, and its delete returns it.
    let svcs = format!("{}/api/v1/namespaces/default/services", server.url());
    let (code, body) = request(&admin, "POST", &svcs, r#"{"metadata":{"name":"web"},"spec":{"ports":[{"port":80}]}}"#).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(json(&body)["status"], serde_json::json!({ "loadBalancer": {} }));
    let (code, body) = request(&admin, "DELETE", &format!("{svcs}/web"), "").await;
    assert_eq!((code, json(&body)["kind"].as_str()), (200, Some("Service")), "{body}");

    // No `null`s stored, from JSON or from kubectl's protobuf bodies.
    let (code, body) = request(
        &admin,
        "POST",
        &svcs,
        r#"{"metadata":{"name":"absent","labels":null},"spec":{"ports":[{"port":80,"name":null}],"selector":null}}"#,
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert!(!body.contains("null"), "{body}");
    let home = dir.path().join("home");
    for args in [
        &["create", "deployment", "pb", "--image=busybox"][..],
        &["create", "service", "clusterip", "pb", "--tcp=80:8080"],
        &["create", "rolebinding", "pb", "--clusterrole=view", "--user=u"],
        &["create", "job", "pb", "--image=busybox"],
    ] {
        let (ok, out, err) = crate::support::kubectl(&server, &home, args, None).await;
        assert!(ok, "{args:?}: {out}{err}");
        let what = format!("{}/pb", args[1]);
        let (ok, out, err) = crate::support::kubectl(&server, &home, &["get", &what, "-o", "json", "--show-managed-fields"], None).await;
        assert!(ok && !out.contains("null"), "{what} stored a null: {out}{err}");
    }

    // APIServices can be created, listed and deleted (proxying to them is not served yet).
    let api_service = r#"{"apiVersion":"apiregistration.k8s.io/v1","kind":"APIService","metadata":{"name":"v1beta1.metrics.k8s.io"},
        "spec":{"group":"metrics.k8s.io","version":"v1beta1","groupPriorityMinimum":100,"versionPriority":100,
        "service":{"namespace":"kube-system","name":"metrics-server"},"insecureSkipTLSVerify":true}}"#;
    let (ok, out, err) = crate::support::kubectl(&server, &home, &["apply", "-f", "-"], Some(api_service)).await;
    assert!(ok, "{out}{err}");
    let (ok, out, err) = crate::support::kubectl(&server, &home, &["get", "apiservices"], None).await;
    assert!(ok && out.contains("v1beta1.metrics.k8s.io") && out.contains("kube-system/metrics-server"), "{out}{err}");
    let (ok, out, err) = crate::support::kubectl(&server, &home, &["delete", "apiservice", "v1beta1.metrics.k8s.io"], None).await;
    assert!(ok, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_deletion_flows() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::ready_server(dir.path(), &["--disable-agent".to_string()]).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/deletion.py");
    let out = tokio::process::Command::new("python3").arg(script).arg(server.data_dir.join("orch.yaml")).output();
    let out = tokio::time::timeout(Duration::from_secs(120), out).await.expect("python deletion flows hung").expect("running python3");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.contains("python deletion flows: ok"), "python deletion flows failed:\n{stdout}\n{stderr}");
}
