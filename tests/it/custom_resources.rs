//! CustomResourceDefinitions end to end with the real kubectl: a CRD is served at once, its
//! objects are validated, defaulted and pruned by its schema, printed with its columns, scaled,
//! explained, and deleted with it.

use std::time::Duration;

use crate::support::{kubectl, ready_server, wait_for};

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.size, statusReplicasPath: .status.size}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Mode, type: string, jsonPath: .spec.mode}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: What the widget should be.
            required: [size]
            properties:
              size: {type: integer, minimum: 0, description: How many parts.}
              mode: {type: string, enum: [fast, safe], default: safe}
          status:
            type: object
            properties:
              size: {type: integer}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_serves_custom_resources() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path(), &["--disable-controllers".to_string()]).await;
    let home = dir.path().join("home");
    let run = |args: &'static [&'static str], stdin: Option<&'static str>| {
        let (server, home) = (&server, &home);
        async move { kubectl(server, home, args, stdin).await }
    };

    let (ok, out, err) = run(&["apply", "-f", "-"], Some(CRD)).await;
    assert!(ok, "{out}{err}");
    let (ok, out, _) =
        run(&["get", "crd", "widgets.example.com", "-o", "jsonpath={.status.conditions[?(@.type==\"Established\")].status}"], None).await;
    assert!(ok && out == "True", "{out}");

    let widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 2}\n";
    wait_for(Duration::from_secs(20), "kubectl to see the new kind", || async {
        let (ok, _, _) = run(&["apply", "-f", "-"], Some(widget)).await;
        ok.then_some(())
    })
    .await;
    let (ok, out, err) = run(&["get", "wd"], None).await;
    assert!(ok, "{err}");
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "MODE"]);
    assert!(out.lines().nth(1).unwrap().split_whitespace().collect::<Vec<_>>() == ["w1", "2", "safe"], "{out}");

    // Schema violations are 422 with the field; unknown fields are refused under Strict.
    let bad = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: bad}\nspec: {size: -1, mode: slow}\n";
    let (ok, _, err) = run(&["apply", "-f", "-"], Some(bad)).await;
    assert!(!ok && err.contains("spec.size") && err.contains("spec.mode") && err.contains("is invalid"), "{err}");
    let unknown = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: odd}\nspec: {size: 1, colour: red}\n";
    let (ok, _, err) = run(&["apply", "--validate=strict", "-f", "-"], Some(unknown)).await;
    assert!(!ok && err.contains("colour"), "{err}");

    let (ok, out, err) = run(&["scale", "widget/w1", "--replicas=5"], None).await;
    assert!(ok, "{out}{err}");
    let (_, out, _) = run(&["get", "widget", "w1", "-o", "jsonpath={.spec.size}"], None).await;
    assert_eq!(out, "5");
    let (ok, out, err) = run(&["explain", "widget.spec.size"], None).await;
    assert!(ok && out.contains("How many parts."), "{out}{err}");

    let (ok, out, err) = run(&["delete", "crd", "widgets.example.com"], None).await;
    assert!(ok, "{out}{err}");
    let (ok, _, err) = run(&["get", "widgets.example.com"], None).await;
    assert!(!ok, "{err}");
}
