//! The HorizontalPodAutoscaler through kubectl on a hollow node: `kubectl autoscale`, the
//! `get hpa` table, the controller's conditions and Events without pod metrics, a target above
//! maxReplicas scaled down through its scale subresource, and autoscaling/v1 ↔ v2 round trips
//! of one stored object.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{kubectl, ready_server, start_hollow_node, wait_for};
use orch::testkit::ServerProc;

const WAIT: Duration = Duration::from_secs(60);

fn deployment(name: &str, replicas: u32) -> String {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": name },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": name } },
            "template": { "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "c", "image": "nginx", "resources": { "requests": { "cpu": "100m" } } }] } } },
    })
    .to_string()
}

async fn get_json(server: &ServerProc, home: &Path, args: &[&str]) -> Option<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let (ok, out, _) = kubectl(server, home, &all, None).await;
    ok.then(|| serde_json::from_str(&out).ok()).flatten()
}

fn condition<'a>(hpa: &'a Value, type_: &str) -> Option<&'a Value> {
    hpa["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_through_kubectl_with_v1_and_v2_views() {
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path(), &[]).await;
    let home = dir.path().join("home");
    let _node = start_hollow_node(&server, &dir.path().join("hollow"), "hollow-0", &[]);
    let run = |args: Vec<String>, stdin: Option<String>| {
        let (server, home) = (&server, &home);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (ok, out, err) = kubectl(server, home, &args, stdin.as_deref()).await;
            assert!(ok, "kubectl {args:?}: {out}{err}");
            out
        }
    };
    let args = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    run(args("apply -f -"), Some(deployment("web", 1))).await;
    run(args("autoscale deployment web --cpu-percent=50 --min=1 --max=5"), None).await;

    // Without pod metrics the HPA can read its target but computes nothing.
    let hpa = wait_for(WAIT, "the HPA's FailedGetResourceMetric condition", || async {
        let hpa = get_json(&server, &home, &["get", "hpa", "web"]).await?;
        (condition(&hpa, "ScalingActive")?["reason"] == "FailedGetResourceMetric").then_some(hpa)
    })
    .await;
    let able = condition(&hpa, "AbleToScale").unwrap();
    assert_eq!((&able["status"], &able["reason"]), (&json!("True"), &json!("SucceededGetScale")), "{hpa:#}");
    let active = condition(&hpa, "ScalingActive").unwrap();
    assert_eq!(active["status"], "False");
    let message = active["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: "
        ),
        "{message}"
    );
    assert_eq!(hpa["status"]["currentReplicas"], 1, "{hpa:#}");
    let metrics = &hpa["spec"]["metrics"];
    assert_eq!(
        metrics,
        &json!([{ "type": "Resource", "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 50 } } }])
    );
    let events = run(args("get events --field-selector reason=FailedGetResourceMetric -o json"), None).await;
    let events: Value = serde_json::from_str(&events).unwrap();
    let event = &events["items"][0];
    assert_eq!((&event["type"], &event["involvedObject"]["kind"]), (&json!("Warning"), &json!("HorizontalPodAutoscaler")), "{events:#}");

    // kubectl's table, as against kube-apiserver.
    let table = run(args("get hpa web"), None).await;
    let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"], "{table}");
    assert_eq!(lines[1][..7], ["web", "Deployment/web", "cpu:", "<unknown>/50%", "1", "5", "1"], "{table}");

    // The same object as autoscaling/v1: the CPU target in its own field, the conditions in
    // kube's annotation.
    let v1 = get_json(&server, &home, &["get", "horizontalpodautoscalers.v1.autoscaling", "web"]).await.unwrap();
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50, "{v1:#}");
    assert_eq!(v1["spec"]["minReplicas"], 1);
    assert!(v1["spec"].get("metrics").is_none());
    let conditions = v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/conditions"].as_str().unwrap();
    assert!(conditions.contains("FailedGetResourceMetric"), "{conditions}");

    // A v1 object written, read as v2; a v2-only metric survives a v1 read-and-replace.
    let v1_hpa = json!({ "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": { "name": "api" },
        "spec": { "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "api" },
                  "maxReplicas": 3, "targetCPUUtilizationPercentage": 70 } });
    run(args("apply -f -"), Some(v1_hpa.to_string())).await;
    let v2 = get_json(&server, &home, &["get", "horizontalpodautoscalers.v2.autoscaling", "api"]).await.unwrap();
    assert_eq!(v2["spec"]["minReplicas"], 1, "v1's default");
    assert_eq!(v2["spec"]["metrics"][0]["resource"]["target"], json!({ "type": "Utilization", "averageUtilization": 70 }));
    let memory =
        json!({ "type": "Resource", "resource": { "name": "memory", "target": { "type": "AverageValue", "averageValue": "100Mi" } } });
    let both = json!({ "spec": { "metrics": [v2["spec"]["metrics"][0], memory] } });
    run(
        vec![
            "patch".into(),
            "horizontalpodautoscalers.v2.autoscaling".into(),
            "api".into(),
            "--type=merge".into(),
            "-p".into(),
            both.to_string(),
        ],
        None,
    )
    .await;
    let mut v1 = get_json(&server, &home, &["get", "horizontalpodautoscalers.v1.autoscaling", "api"]).await.unwrap();
    let kept = v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"].as_str().unwrap().to_string();
    assert!(kept.contains("\"targetAverageValue\":\"100Mi\""), "{kept}");
    v1["spec"]["maxReplicas"] = json!(4);
    run(args("replace -f -"), Some(v1.to_string())).await;
    let v2 = get_json(&server, &home, &["get", "horizontalpodautoscalers.v2.autoscaling", "api"]).await.unwrap();
    assert_eq!(v2["spec"]["maxReplicas"], 4);
    let names: Vec<&Value> = v2["spec"]["metrics"].as_array().unwrap().iter().map(|m| &m["resource"]["name"]).collect();
    assert_eq!(names, [&json!("memory"), &json!("cpu")], "{v2:#}");
    assert!(v2["metadata"].get("annotations").is_none_or(|a| a.get("autoscaling.alpha.kubernetes.io/metrics").is_none()), "{v2:#}");

    // A target above maxReplicas is scaled down through its scale subresource, metrics or not.
    run(args("apply -f -"), Some(deployment("big", 3))).await;
    run(args("autoscale deployment big --cpu-percent=50 --max=2"), None).await;
    wait_for(WAIT, "deployment big scaled to 2 by its HPA", || async {
        let d = get_json(&server, &home, &["get", "deployment", "big"]).await?;
        (d["spec"]["replicas"] == 2).then_some(())
    })
    .await;
    let rescaled = run(args("get events --field-selector reason=SuccessfulRescale -o json"), None).await;
    let rescaled: Value = serde_json::from_str(&rescaled).unwrap();
    let messages: Vec<&str> = rescaled["items"].as_array().unwrap().iter().filter_map(|e| e["message"].as_str()).collect();
    assert_eq!(messages, ["New size: 2; reason: Current number of replicas above Spec.MaxReplicas"], "{rescaled:#}");
    let big = wait_for(WAIT, "HPA big's status after the rescale", || async {
        let hpa = get_json(&server, &home, &["get", "hpa", "big"]).await?;
        (hpa["status"]["desiredReplicas"] == 2).then_some(hpa)
    })
    .await;
    // The next sync finds the target within bounds and, without metrics, keeps the size.
    assert_eq!(condition(&big, "AbleToScale").unwrap()["status"], "True", "{big:#}");
    assert!(big["status"]["lastScaleTime"].is_string(), "{big:#}");
}
