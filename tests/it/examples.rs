//! `examples/` on a real node (root only; needs containerd, runc and busybox-static): a server
//! with its local node (pod network in a test-made namespace), the image built by
//! `examples/build-busybox-image.sh` dropped into the airgap dir, then `kubectl apply -f
//! examples/`: the web Deployment's pods turn Ready and serve the ConfigMap's page, the Job
//! completes, the DaemonSet runs a pod on the node, the CronJob and the (inert) validating webhook
//! configuration exist.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::Api;
use orch::net::netns::run_in;
use orch::testkit::node::NodeSandbox;

use crate::support::{free_port, kube_client, kubectl, orch_binary, skip_without_containers, wait_for, ServerProc};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

/// GET / from `addr` inside `netns`.
fn http_get(netns: &Path, addr: SocketAddr) -> String {
    let fetched = run_in(Some(netns), || -> std::io::Result<String> {
        let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        conn.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
        let mut body = String::new();
        conn.read_to_string(&mut body)?;
        Ok(body)
    });
    fetched.unwrap().unwrap_or_else(|e| panic!("GET http://{addr}/: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_run_on_a_real_node() {
    if skip_without_containers("examples") {
        return;
    }
    let sandbox = NodeSandbox::new("orch-ex").expect("creating the node's sandbox");
    let data_dir = sandbox.root().join("server");
    let images = data_dir.join("agent/images");
    std::fs::create_dir_all(&images).unwrap();
    let built = std::process::Command::new(format!("{EXAMPLES}/build-busybox-image.sh")).arg(images.join("busybox.tar")).output().unwrap();
    assert!(built.status.success(), "build-busybox-image.sh: {}", String::from_utf8_lossy(&built.stderr));
    let flags =
        [format!("--netns={}", sandbox.netns().display()), "--node-name=examples".into(), format!("--kubelet-port={}", free_port())];
    let mut server = ServerProc::start_with_node(orch_binary(), &data_dir, &flags);
    server.wait_member(Duration::from_secs(20)).await;
    let home = sandbox.root().join("home");
    let client = kube_client(&server).await;

    let binary = orch_binary().to_path_buf();
    wait_for(Duration::from_secs(30), "the example image to be imported from the airgap dir", || async {
        let out = tokio::process::Command::new(&binary).args(["images", "ls", "--data-dir"]).arg(&data_dir).output().await.ok()?;
        String::from_utf8_lossy(&out.stdout).contains("docker.io/library/busybox:1.35").then_some(())
    })
    .await;
    wait_for(Duration::from_secs(30), "kubectl apply -f examples/ to succeed", || async {
        let (ok, out, err) = kubectl(&server, &home, &["apply", "-f", EXAMPLES], None).await;
        if !ok {
            eprintln!("kubectl apply: {out}{err}");
        }
        ok.then_some(())
    })
    .await;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    wait_for(Duration::from_secs(45), "the web Deployment to have 2 ready replicas", || async {
        (deployments.get("web").await.ok()?.status?.ready_replicas? == 2).then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let web = pods.list(&ListParams::default().labels("app=web")).await.unwrap();
    for pod in &web.items {
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("a Ready pod has an IP");
        let page = http_get(&sandbox.netns(), SocketAddr::new(ip.parse().unwrap(), 8080));
        assert!(page.contains("Hello from orch"), "the page from the ConfigMap: {page}");
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    wait_for(Duration::from_secs(30), "the sum Job to complete", || async {
        (jobs.get("sum").await.ok()?.status?.succeeded? == 1).then_some(())
    })
    .await;
    let (ok, out, err) = kubectl(&server, &home, &["logs", "job/sum"], None).await;
    assert!(ok && out.contains("sum of 1..1000 = 500500"), "{out}{err}");
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    wait_for(Duration::from_secs(30), "the DaemonSet's pod to be ready", || async {
        (daemonsets.get("node-load").await.ok()?.status?.number_ready == 1).then_some(())
    })
    .await;
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    assert_eq!(cronjobs.get("clock").await.unwrap().spec.unwrap().schedule, "* * * * *");
    let (ok, out, _) = kubectl(&server, &home, &["get", "validatingwebhookconfigurations", "-o", "name"], None).await;
    assert!(ok && out.contains("require-team-label"), "the example webhook configuration: {out}");

    let (ok, _, err) = kubectl(&server, &home, &["delete", "-f", EXAMPLES, "--wait=false"], None).await;
    assert!(ok, "kubectl delete -f examples/: {err}");
    wait_for(Duration::from_secs(30), "the examples' pods to be gone", || async {
        pods.list(&ListParams::default()).await.ok()?.items.is_empty().then_some(())
    })
    .await;
    server.terminate(Duration::from_secs(30));
}
