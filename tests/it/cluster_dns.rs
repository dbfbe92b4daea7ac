//! Cluster DNS on a real node (root only; the node is the one of `kubelet`): a busybox pod
//! resolves the kubernetes Service and the StatefulSet-style name of a pod behind a headless
//! Service through the node-local DNS on 10.43.0.10, gets NXDOMAIN for an unknown Service, and
//! the server keeps the kube-dns Service with the node as its endpoint; the node serves the
//! DNS counters on 10.43.0.10:9153.

use std::io::{Read, Write};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;

use crate::kubelet::{phase, pod_where, start_real_node};
use crate::kubelet_features::wait_for_default_service_account;
use crate::support::{kubectl, skip_without_containers, wait_for};

const OBJECTS: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: db
spec:
  clusterIP: None
  selector: { app: db }
  ports: [{ name: pg, port: 5432 }]
---
apiVersion: v1
kind: Pod
metadata:
  name: db-0
  labels: { app: db }
spec:
  hostname: db-0
  subdomain: db
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:latest
    imagePullPolicy: Never
    command: ["sleep", "3600"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_resolve_cluster_names_through_the_node_local_dns() {
    if skip_without_containers("cluster DNS test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (server, client, node, _) = start_real_node(dir.path(), &[]).await;
    wait_for_default_service_account(&server, &home).await;
    let (ok, out, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(OBJECTS)).await;
    assert!(ok, "kubectl apply failed: {out}{err}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = pod_where(&pods, "db-0", "running with an IP", &node, |p| {
        phase(p) == "Running" && p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some()
    })
    .await;
    let pod_ip = pod.status.unwrap().pod_ip.unwrap();

    let nslookup = |name: &'static str| {
        let (server, home) = (&server, &home);
        async move { kubectl(server, home, &["exec", "db-0", "--", "nslookup", name], None).await }
    };
    let out = wait_for(Duration::from_secs(20), "nslookup of the kubernetes Service to answer 10.43.0.1", || async {
        let (ok, out, err) = nslookup("kubernetes.default.svc.cluster.local").await;
        if !ok {
            eprintln!("not yet: {out}{err}");
            eprintln!("{}", node.log().lines().filter(|l| l.contains("DNS") || l.contains("dns")).collect::<Vec<_>>().join("\n"));
        }
        (ok && out.contains("10.43.0.1")).then_some(out)
    })
    .await;
    assert!(out.contains("10.43.0.10"), "answered by the cluster DNS: {out}");
    let out = wait_for(Duration::from_secs(20), "the headless Service's pod name to resolve to the pod", || async {
        let (ok, out, _) = nslookup("db-0.db.default.svc.cluster.local").await;
        (ok && out.contains(&pod_ip)).then_some(out)
    })
    .await;
    let answers = out.split_once("Name:").map_or("", |(_, a)| a);
    assert!(!answers.contains("10.43."), "a headless name answers the pod, not a ClusterIP: {out}");
    let (ok, out, err) = nslookup("nope.default.svc.cluster.local").await;
    assert!(!ok && format!("{out}{err}").contains("NXDOMAIN"), "an unknown Service is NXDOMAIN: {out}{err}");

    let services: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let dns = services.get("kube-dns").await.expect("the kube-dns Service");
    assert_eq!(dns.spec.unwrap().cluster_ip.as_deref(), Some("10.43.0.10"));
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "kube-system");
    wait_for(Duration::from_secs(15), "the kube-dns EndpointSlice to list the node (127.0.0.1), ready", || async {
        let slice = slices.get("kube-dns").await.ok()?;
        let ready = |e: &k8s_openapi::api::discovery::v1::Endpoint| e.conditions.as_ref().and_then(|c| c.ready) == Some(true);
        (slice.endpoints.len() == 1 && slice.endpoints[0].addresses == ["127.0.0.1"] && ready(&slice.endpoints[0])).then_some(())
    })
    .await;

    let metrics = orch::net::netns::run_in(Some(&node.netns()), || {
        let mut s = std::net::TcpStream::connect("10.43.0.10:9153")?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: dns\r\nConnection: close\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok::<_, std::io::Error>(text)
    })
    .unwrap()
    .expect("the metrics of the node's DNS");
    assert!(metrics.contains("coredns_dns_responses_total{rcode=\"NXDOMAIN\"}"), "{metrics}");
    let (ok, _, err) = kubectl(&server, &home, &["delete", "pod", "db-0", "--grace-period=1"], None).await;
    assert!(ok, "{err}");
}
