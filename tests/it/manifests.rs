//! Auto-deployed manifests against a real server (no node): a file already in
//! `<data-dir>/server/manifests` at start is applied; a ConfigMap + Deployment manifest
//! dropped in is created and recorded as an Addon (source, sha256 checksum) that kubectl
//! lists; an edit is applied and what the file stopped declaring is deleted, an unchanged
//! file is not applied again; a bad file and a rejected object are Warning Events while the
//! other files still apply; a `.skip` file freezes its manifest; a removed file's objects
//! and Addon are deleted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::{kube_client, kubectl, ready_server, wait_for};

const WAIT: Duration = Duration::from_secs(60);

fn sha256(content: &str) -> String {
    Sha256::digest(content.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn config_map(name: &str, namespace: Option<&str>, value: &str) -> String {
    let namespace = namespace.map(|ns| format!("\n  namespace: {ns}")).unwrap_or_default();
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}{namespace}\ndata:\n  value: {value:?}\n")
}

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\nspec:\n  replicas: 1\n  \
                          selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      \
                          containers: [{name: web, image: busybox}]\n";

fn addons(client: &kube::Client) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "k3s.cattle.io".into(),
        version: "v1".into(),
        api_version: "k3s.cattle.io/v1".into(),
        kind: "Addon".into(),
        plural: "addons".into(),
    };
    Api::namespaced_with(client.clone(), "kube-system", &resource)
}

/// Waits until ConfigMap `namespace/name` has `value` (`None`: until it is gone).
async fn config_map_becomes(client: &kube::Client, namespace: &str, name: &str, value: Option<&str>) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    wait_for(WAIT, &format!("ConfigMap {namespace}/{name} with value {value:?}"), || async {
        let have = api.get_opt(name).await.ok()?;
        let have = have.map(|cm| cm.data.unwrap_or_default().get("value").cloned().unwrap_or_default());
        (have.as_deref() == value).then_some(())
    })
    .await;
}

/// Waits until Addon `name` records `path` with `content`'s checksum.
async fn addon_records(client: &kube::Client, name: &str, path: &Path, content: &str) {
    let (source, checksum) = (path.display().to_string(), sha256(content));
    wait_for(WAIT, &format!("Addon {name} with source {source} and checksum {checksum}"), || async {
        let addon = addons(client).get_opt(name).await.ok()??;
        (addon.data["spec"]["source"] == source.as_str() && addon.data["spec"]["checksum"] == checksum.as_str()).then_some(())
    })
    .await;
}

/// Waits for a Warning Event on Addon `name` whose message contains `text`.
async fn warning_on(client: &kube::Client, name: &str, text: &str) {
    let events: Api<Event> = Api::namespaced(client.clone(), "kube-system");
    wait_for(WAIT, &format!("a Warning Event on Addon {name} mentioning {text:?}"), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.involved_object.kind.as_deref() == Some("Addon")
                    && e.involved_object.name.as_deref() == Some(name)
                    && e.message.as_deref().unwrap_or_default().contains(text)
            })
            .then_some(())
    })
    .await;
}

fn write(dir: &Path, file: &str, content: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, content).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_in_the_data_dir_are_deployed() {
    let root = tempfile::tempdir().unwrap();
    let manifests = root.path().join("n0").join("server").join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let boot = config_map("boot", None, "at-start");
    write(&manifests, "boot.yaml", &boot);
    let server = ready_server(root.path(), &[]).await;
    let client = kube_client(&server).await;
    let home = root.path().join("home");

    // Applied at start; a namespaced object without a namespace lands in default.
    config_map_becomes(&client, "default", "boot", Some("at-start")).await;

    // A ConfigMap + Deployment manifest dropped in.
    let web = format!("{}---\n{DEPLOYMENT}", config_map("web-config", Some("default"), "one"));
    let web_path = write(&manifests, "web.yaml", &web);
    config_map_becomes(&client, "default", "web-config", Some("one")).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    wait_for(WAIT, "Deployment default/web", || async { deployments.get_opt("web").await.ok()? }).await;
    addon_records(&client, "web", &web_path, &web).await;
    let managers = deployments.get("web").await.unwrap().metadata.managed_fields.unwrap_or_default();
    assert!(
        managers.iter().any(|m| m.manager.as_deref() == Some("orch-deploy") && m.operation.as_deref() == Some("Apply")),
        "{managers:?}"
    );
    let (ok, out, err) = kubectl(&server, &home, &["get", "addons", "-A"], None).await;
    assert!(ok, "kubectl get addons -A: {err}");
    assert!(out.contains("web") && out.contains(&web_path.display().to_string()) && out.contains(&sha256(&web)), "{out}");

    // Edited: the ConfigMap changes and the Deployment it no longer declares is deleted.
    let web = config_map("web-config", Some("default"), "two");
    write(&manifests, "web.yaml", &web);
    config_map_becomes(&client, "default", "web-config", Some("two")).await;
    wait_for(WAIT, "Deployment default/web deleted", || async { deployments.get_opt("web").await.ok()?.is_none().then_some(()) }).await;
    addon_records(&client, "web", &web_path, &web).await;
    // An unchanged file is not applied again: a change by hand stays.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let by_hand = json!({ "data": { "value": "by-hand" } });
    config_maps.patch("web-config", &PatchParams::default(), &Patch::Merge(&by_hand)).await.unwrap();

    // A file that is not YAML and one with a rejected object: Warning Events, and the other
    // files (and the good object of the same file) still apply.
    write(&manifests, "bad.yaml", "apiVersion: v1\nkind: [unclosed\n");
    let rejected = format!("{}---\n{}", config_map("Not_A_Name", None, "x"), config_map("beside-rejected", None, "ok"));
    write(&manifests, "rejected.yaml", &rejected);
    let extra = format!(
        "{}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: extra, namespace: default}}\nstringData: {{k: v}}\n",
        config_map("extra", Some("default"), "e")
    );
    let extra_path = write(&manifests, "extra.json.yaml", &extra);
    config_map_becomes(&client, "default", "extra", Some("e")).await;
    config_map_becomes(&client, "default", "beside-rejected", Some("ok")).await;
    warning_on(&client, "bad", "Parse manifest at").await;
    warning_on(&client, "rejected", "Not_A_Name").await;
    addon_records(&client, "extra", &extra_path, &extra).await;
    let (ok, out, err) = kubectl(&server, &home, &["get", "events", "-n", "kube-system"], None).await;
    assert!(
        ok && out.contains("ParseManifestFailed") && out.contains("ApplyManifestFailed") && out.contains("addon/bad"),
        "kubectl get events: {out}{err}"
    );
    // A rejected object leaves the checksum unset, so the file is tried again later.
    let recorded = addons(&client).get("rejected").await.unwrap();
    assert_eq!(recorded.data["spec"]["checksum"], "", "{recorded:?}");
    config_map_becomes(&client, "default", "web-config", Some("by-hand")).await;

    // `.skip` freezes web.yaml: its edit is not applied (a later file's change is, in the
    // same pass or before), and its objects stay.
    write(&manifests, "web.yaml.skip", "");
    write(&manifests, "web.yaml", &config_map("web-config", Some("default"), "three"));
    write(&manifests, "zz-marker.yaml", &config_map("marker", None, "m"));
    config_map_becomes(&client, "default", "marker", Some("m")).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    config_map_becomes(&client, "default", "web-config", Some("by-hand")).await;

    // A removed file: its objects and its Addon are deleted; the others stay.
    std::fs::remove_file(&extra_path).unwrap();
    config_map_becomes(&client, "default", "extra", None).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    wait_for(WAIT, "Secret default/extra deleted", || async { secrets.get_opt("extra").await.ok()?.is_none().then_some(()) }).await;
    wait_for(WAIT, "Addon extra deleted", || async { addons(&client).get_opt("extra").await.ok()?.is_none().then_some(()) }).await;
    config_map_becomes(&client, "default", "web-config", Some("by-hand")).await;
    config_map_becomes(&client, "default", "boot", Some("at-start")).await;
}
