//! Strategic merge patch and apply as stock kubectl drives them: `set image`, `set env`,
//! `set resources`, `patch` with each directive, client-side `apply` removing fields (three-way),
//! `edit` through `KUBE_EDITOR`, and server-side apply over what `create` stored.

use serde_json::{json, Value};

use crate::support::{kubectl, kubectl_with, ServerProc};

const DEPLOYMENT: &str = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},
"spec":{"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[
 {"name":"c","image":"busybox:1.36","command":["httpd","-f"],"ports":[{"containerPort":80}],
  "env":[{"name":"A","value":"1"}],
  "readinessProbe":{"tcpSocket":{"port":80}}},
 {"name":"side","image":"busybox:1.36","command":["sleep","3600"]}]}}}}"#;

async fn get(server: &ServerProc, home: &std::path::Path, what: &str) -> Value {
    let (ok, out, err) = kubectl(server, home, &["get", what, "-o", "json", "--show-managed-fields"], None).await;
    assert!(ok, "get {what}: {err}");
    serde_json::from_str(&out).unwrap()
}

fn container<'a>(deploy: &'a Value, name: &str) -> &'a Value {
    deploy["spec"]["template"]["spec"]["containers"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or(&Value::Null)
}

fn env_names(c: &Value) -> Vec<String> {
    c["env"].as_array().map(|e| e.iter().map(|v| v["name"].as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_patches_merge_by_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::ready_server(dir.path(), &["--disable-controllers".to_string()]).await;
    let home = dir.path().join("home");
    let run = |args: Vec<&'static str>| {
        let (server, home) = (&server, &home);
        async move {
            let (ok, out, err) = kubectl(server, home, &args, None).await;
            assert!(ok, "kubectl {args:?}: {out}{err}");
            out
        }
    };
    let (ok, out, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(DEPLOYMENT)).await;
    assert!(ok, "{out}{err}");

    // set image touches the image only.
    run(vec!["set", "image", "deploy/web", "c=busybox:1.37"]).await;
    let d = get(&server, &home, "deploy/web").await;
    let c = container(&d, "c");
    assert_eq!(c["image"], "busybox:1.37");
    assert_eq!(c["command"], json!(["httpd", "-f"]), "{c}");
    assert_eq!(c["ports"][0]["containerPort"], 80, "{c}");
    assert!(c["readinessProbe"]["tcpSocket"].is_object(), "{c}");
    assert_eq!(container(&d, "side")["image"], "busybox:1.36");

    run(vec!["set", "env", "deploy/web", "-c", "c", "B=2"]).await;
    run(vec!["set", "resources", "deploy/web", "-c", "c", "--limits=cpu=200m,memory=64Mi"]).await;
    let d = get(&server, &home, "deploy/web").await;
    let c = container(&d, "c");
    let mut names = env_names(c);
    names.sort();
    assert_eq!(names, ["A", "B"], "{c}");
    assert_eq!(c["resources"]["limits"], json!({ "cpu": "200m", "memory": "64Mi" }));
    assert_eq!(c["command"], json!(["httpd", "-f"]));

    // A patch naming a container by its key merges into it (it used to replace the list).
    run(vec![
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"c","env":[{"name":"C","value":"3"}]}]}}}}"#,
    ])
    .await;
    let d = get(&server, &home, "deploy/web").await;
    assert_eq!(container(&d, "c")["image"], "busybox:1.37");
    // $setElementOrder orders the list.
    run(vec![
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"c","$setElementOrder/env":[{"name":"C"},{"name":"B"},{"name":"A"}]}]}}}}"#,
    ])
    .await;
    let d = get(&server, &home, "deploy/web").await;
    assert_eq!(env_names(container(&d, "c")), ["C", "B", "A"]);
    // $patch: delete removes a list item by its key.
    run(vec!["patch", "deploy", "web", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","$patch":"delete"}]}}}}"#]).await;
    let d = get(&server, &home, "deploy/web").await;
    assert!(container(&d, "side").is_null(), "side is gone");
    assert!(!container(&d, "c").is_null());
    // $retainKeys clears what it does not list (RollingUpdate's parameters when switching to Recreate).
    run(vec!["patch", "deploy", "web", "-p", r#"{"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate"}}}"#]).await;
    let d = get(&server, &home, "deploy/web").await;
    assert_eq!(d["spec"]["strategy"], json!({ "type": "Recreate" }));
    // Finalizers are a set: added to, and taken from with $deleteFromPrimitiveList.
    run(vec!["patch", "deploy", "web", "-p", r#"{"metadata":{"finalizers":["example.com/a","example.com/b"]}}"#]).await;
    run(vec!["patch", "deploy", "web", "-p", r#"{"metadata":{"$deleteFromPrimitiveList/finalizers":["example.com/a"]}}"#]).await;
    let d = get(&server, &home, "deploy/web").await;
    assert_eq!(d["metadata"]["finalizers"], json!(["example.com/b"]));
    run(vec!["patch", "deploy", "web", "--type", "merge", "-p", r#"{"metadata":{"finalizers":null}}"#]).await;
    // $patch: replace replaces a map whole.
    run(vec!["patch", "deploy", "web", "-p", r#"{"spec":{"template":{"metadata":{"labels":{"$patch":"replace","app":"web"}}}}}"#]).await;

    // Client-side apply of the manifest without the probe and without env A: the three-way
    // patch removes what the last applied configuration had, and keeps what others added (B, C).
    let mut manifest: Value = serde_json::from_str(DEPLOYMENT).unwrap();
    let c = &mut manifest["spec"]["template"]["spec"]["containers"][0];
    c.as_object_mut().unwrap().remove("readinessProbe");
    c["env"] = json!([{ "name": "D", "value": "4" }]);
    c["image"] = json!("busybox:1.37");
    let (ok, out, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(&manifest.to_string())).await;
    assert!(ok, "{out}{err}");
    let d = get(&server, &home, "deploy/web").await;
    let c = container(&d, "c");
    assert!(c.get("readinessProbe").is_none(), "the probe is gone: {c}");
    let mut names = env_names(c);
    names.sort();
    assert_eq!(names, ["B", "C", "D"], "{c}");
    assert_eq!(c["command"], json!(["httpd", "-f"]));
    // Nothing to diff once applied; server-side dry runs store nothing.
    let rv = d["metadata"]["resourceVersion"].clone();
    let (code, out, err) = kubectl_with(&server, &home, &["diff", "-f", "-"], Some(&manifest.to_string()), &[]).await;
    assert_eq!(code, Some(0), "kubectl diff of the applied manifest: {out}{err}");
    assert_eq!(get(&server, &home, "deploy/web").await["metadata"]["resourceVersion"], rv, "a diff writes nothing");
    let mut other = manifest.clone();
    other["metadata"]["name"] = json!("dry");
    let (ok, out, err) = kubectl(&server, &home, &["apply", "--dry-run=server", "-f", "-"], Some(&other.to_string())).await;
    assert!(ok && out.contains("deployment.apps/dry created (server dry run)"), "{out}{err}");
    let (ok, _, _) = kubectl(&server, &home, &["get", "deploy/dry"], None).await;
    assert!(!ok, "a dry run creates nothing");

    // kubectl edit with an editor that bumps the image.
    let editor = dir.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/busybox:1.37/busybox:1.38/' \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (code, out, err) = kubectl_with(&server, &home, &["edit", "deploy/web"], None, &[("KUBE_EDITOR", editor.to_str().unwrap())]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    let d = get(&server, &home, "deploy/web").await;
    let c = container(&d, "c");
    assert_eq!(c["image"], "busybox:1.38");
    assert_eq!(c["command"], json!(["httpd", "-f"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_shares_equal_values_with_create() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::ready_server(dir.path(), &["--disable-controllers".to_string()]).await;
    let home = dir.path().join("home");
    let (ok, out, err) = kubectl(&server, &home, &["create", "-f", "-"], Some(DEPLOYMENT)).await;
    assert!(ok, "{out}{err}");
    // The same manifest applied server-side: equal values, no conflict.
    let (ok, out, err) = kubectl(&server, &home, &["apply", "--server-side", "-f", "-"], Some(DEPLOYMENT)).await;
    assert!(ok, "{out}{err}");
    let d = get(&server, &home, "deploy/web").await;
    let managers: Vec<&str> = d["metadata"]["managedFields"].as_array().unwrap().iter().map(|m| m["manager"].as_str().unwrap()).collect();
    assert!(managers.contains(&"kubectl-create") && managers.contains(&"kubectl"), "shared ownership: {managers:?}");
    // A different image conflicts, named by the container's key.
    let changed = DEPLOYMENT.replacen("busybox:1.36", "busybox:1.37", 1);
    let (ok, out, err) = kubectl(&server, &home, &["apply", "--server-side", "-f", "-"], Some(&changed)).await;
    assert!(!ok, "{out}");
    assert!(err.contains(r#"conflict with "kubectl-create" using apps/v1: .spec.template.spec.containers[name="c"].image"#), "{err}");
    let (ok, out, err) = kubectl(&server, &home, &["apply", "--server-side", "--force-conflicts", "-f", "-"], Some(&changed)).await;
    assert!(ok, "{out}{err}");
    let d = get(&server, &home, "deploy/web").await;
    assert_eq!(container(&d, "c")["image"], "busybox:1.37");
    assert_eq!(container(&d, "side")["image"], "busybox:1.36");
}
