//! Strategic merge patch against kube's own cases: `kube_cases.json` holds the inputs and outputs
//! of apimachinery's `strategicMergePatchRawTestCases` and `customStrategicMergePatchRawTestCases`
//! (`pkg/util/strategicpatch/patch_test.go`, Apache-2.0): each patch applied to its original
//! must give the expected object exactly, list order included, or fail with the expected error.

use super::*;
use crate::api::openapi::OpenApi;
use serde_json::json;

/// kube's test type `MergeItem` as a schema with its patch extensions, `depth` levels deep.
fn merge_item(depth: usize) -> Value {
    let item = || if depth == 0 { json!({ "type": "object" }) } else { merge_item(depth - 1) };
    let merging = |strategy: &str| json!({ "type": "array", "items": item(), "x-kubernetes-patch-strategy": strategy, "x-kubernetes-patch-merge-key": "name" });
    let ints = |strategy: Option<&str>| {
        let mut s = json!({ "type": "array", "items": { "type": "integer" } });
        if let Some(strategy) = strategy {
            s["x-kubernetes-patch-strategy"] = json!(strategy);
        }
        s
    };
    let string = json!({ "type": "string" });
    json!({ "type": "object", "properties": {
        "name": string, "value": string, "other": string,
        "mergingList": merging("merge"),
        "nonMergingList": { "type": "array", "items": item() },
        "mergingIntList": ints(Some("merge")),
        "nonMergingIntList": ints(None),
        "mergeItemPtr": { "allOf": [item()], "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name" },
        "simpleMap": { "type": "object", "additionalProperties": string },
        "replacingItem": { "type": "object", "x-kubernetes-patch-strategy": "replace" },
        "jsonItem": { "type": "object" },
        "retainKeysMap": { "type": "object", "x-kubernetes-patch-strategy": "retainKeys", "properties": {
            "name": string, "value": string, "other": string,
            "simpleMap": { "type": "object", "additionalProperties": string },
            "mergingIntList": ints(Some("merge")),
            "mergingList": merging("merge"),
            "nonMergingList": { "type": "array", "items": item() },
        } },
        "retainKeysMergingList": merging("merge,retainKeys"),
    } })
}

fn yaml(text: &str) -> Value {
    let v: Value = serde_yaml::from_str(text).expect("a case's YAML parses");
    if v.is_null() {
        json!({})
    } else {
        v
    }
}

#[test]
fn kube_strategic_merge_cases() {
    let cases: Vec<Value> = serde_json::from_str(include_str!("kube_cases.json")).unwrap();
    let schema_json = merge_item(4);
    let schema = Schema::new(OpenApi::shared(), Some(&schema_json));
    let mut failures = Vec::new();
    for case in &cases {
        let description = case["description"].as_str().unwrap();
        let mut doc = yaml(case["original"].as_str().unwrap());
        let patch = yaml(case["patch"].as_str().unwrap());
        let result = strategic_merge(&mut doc, &patch, schema);
        match (case["error"].as_str(), result) {
            (Some(_), Err(_)) => {}
            (Some(expected), Ok(())) => failures.push(format!("{description}: expected the error {expected:?}, got {doc}")),
            (None, Err(e)) => failures.push(format!("{description}: {}", e.message)),
            (None, Ok(())) => {
                let expected = yaml(case["expected"].as_str().unwrap());
                if doc != expected {
                    failures.push(format!("{description}:\n  patch    {patch}\n  expected {expected}\n  got      {doc}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases fail:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn builtin_paths_merge_by_their_keys() {
    let api = OpenApi::shared();
    let deploy = api.schema(crate::api::registry::lookup("apps", "v1", "deployments").unwrap());
    let mut doc = json!({ "spec": { "template": { "spec": { "containers": [
        { "name": "c", "image": "busybox:1.36", "command": ["httpd"], "ports": [{ "containerPort": 80, "protocol": "TCP" }],
          "env": [{ "name": "A", "value": "1" }] },
        { "name": "side", "image": "pause" } ],
        "tolerations": [{ "key": "a", "operator": "Exists" }] } } } });
    // `kubectl set image` and `kubectl set env`.
    let patch = json!({ "spec": { "template": { "spec": {
        "containers": [{ "name": "c", "image": "busybox:1.37", "env": [{ "name": "B", "value": "2" }],
                         "ports": [{ "containerPort": 8080 }] }],
        "tolerations": [{ "key": "b", "operator": "Exists" }] } } } });
    strategic_merge(&mut doc, &patch, deploy).unwrap();
    let c = &doc["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "busybox:1.37");
    assert_eq!(c["command"], json!(["httpd"]), "set image keeps the command");
    // New items come first when the patch gives no `$setElementOrder`, as in kube.
    assert_eq!(c["env"], json!([{ "name": "B", "value": "2" }, { "name": "A", "value": "1" }]));
    assert_eq!(c["ports"], json!([{ "containerPort": 8080 }, { "containerPort": 80, "protocol": "TCP" }]));
    assert_eq!(doc["spec"]["template"]["spec"]["containers"][1]["name"], "side");
    assert_eq!(doc["spec"]["template"]["spec"]["tolerations"], json!([{ "key": "b", "operator": "Exists" }]), "tolerations are atomic");
    // Service ports merge on `port`.
    let svc = api.schema(crate::api::registry::lookup("", "v1", "services").unwrap());
    let mut doc = json!({ "spec": { "ports": [{ "port": 80, "targetPort": 8080 }, { "port": 443 }] } });
    strategic_merge(&mut doc, &json!({ "spec": { "ports": [{ "port": 80, "targetPort": 9090 }] } }), svc).unwrap();
    assert_eq!(doc["spec"]["ports"], json!([{ "port": 80, "targetPort": 9090 }, { "port": 443 }]));
    // Maps: null deletes, `$patch: replace` replaces, `$patch: delete` empties.
    let mut doc = json!({ "metadata": { "labels": { "a": "1", "b": "2" }, "annotations": { "x": "y" } } });
    strategic_merge(&mut doc, &json!({ "metadata": { "labels": { "a": null, "$patch": "replace", "c": "3" } } }), svc).unwrap();
    assert_eq!(doc["metadata"]["labels"], json!({ "c": "3" }));
    strategic_merge(&mut doc, &json!({ "metadata": { "annotations": { "$patch": "delete" } } }), svc).unwrap();
    assert_eq!(doc["metadata"]["annotations"], json!({}));
}

#[test]
fn json_and_merge_patches_apply() {
    let mut doc = json!({"a": {"b": 1}, "l": [1, 2]});
    let none = Schema::default();
    apply(&mut doc, PatchType::Json, br#"[{"op":"replace","path":"/a/b","value":2},{"op":"add","path":"/l/-","value":3}]"#, none).unwrap();
    assert_eq!(doc, json!({"a": {"b": 2}, "l": [1, 2, 3]}));
    apply(&mut doc, PatchType::Merge, br#"{"a": null, "l": [9]}"#, none).unwrap();
    assert_eq!(doc, json!({"l": [9]}));
    assert!(apply(&mut doc, PatchType::Json, br#"[{"op":"remove","path":"/nope"}]"#, none).is_err());
}
