//! A real node end to end (root only; needs containerd, runc and busybox-static): a server
//! with `--disable-agent` and an `orch agent` with its own containerd under a data dir in /tmp
//! and its pod network in a test-made network namespace (`--netns`), so the machine's own
//! interfaces are never touched. The busybox test image goes in through the airgap directory.
//! With kubectl: a pod runs and logs, a second pod reaches it over TCP, a Job completes, a
//! crashing container goes into CrashLoopBackOff, deletion stops a container within its grace
//! period, restarting the agent adopts running containers, and pods keep running through a
//! server restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use orch::testkit::node::NodeSandbox;

use crate::support::{
    free_port, kube_client, kubectl, orch_binary, ready_server, skip_without_containers, wait_for, AgentProc, ServerProc,
};

const NODE: &str = "kubelet-test";

/// The test node: its sandbox (data dir and network namespace) and the agent process.
/// Dropping it stops the agent, then the sandbox removes whatever the pods left behind, also
/// when the test failed half way.
pub(crate) struct TestNode {
    agent: Option<AgentProc>,
    sandbox: NodeSandbox,
}

impl TestNode {
    pub(crate) fn new() -> Self {
        Self { agent: None, sandbox: NodeSandbox::new("orch-kl").expect("creating the node's sandbox") }
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.sandbox.root().join("node")
    }

    /// The node's network namespace (its "host").
    pub(crate) fn netns(&self) -> PathBuf {
        self.sandbox.netns()
    }

    /// Starts the agent with `extra` flags besides the test node's own.
    pub(crate) fn start_agent_with(&mut self, server: &ServerProc, kubelet_port: u16, extra: &[&str]) {
        let images = self.data_dir().join("agent/images");
        std::fs::create_dir_all(&images).unwrap();
        orch::testkit::images::busybox_oci_tar(&images.join("busybox.tar")).expect("building the busybox image");
        let flags: Vec<String> = [
            format!("--netns={}", self.sandbox.netns().display()),
            "--node-ip=127.0.0.1".to_string(),
            format!("--kubelet-port={kubelet_port}"),
            "--node-lease-renew-interval=2s".to_string(),
        ]
        .into_iter()
        .chain(extra.iter().map(|f| f.to_string()))
        .collect::<Vec<_>>();
        self.agent = Some(AgentProc::start(orch_binary(), &server.url(), &server.agent_token(), &self.data_dir(), NODE, &flags));
    }

    /// Waits until the node is registered and Ready with a podCIDR (returned) and has imported
    /// the busybox image.
    pub(crate) async fn wait_ready(&self, client: &kube::Client) -> String {
        let nodes: Api<Node> = Api::all(client.clone());
        let cidr = wait_for(Duration::from_secs(60), "the node to register, get a podCIDR and be Ready", || async {
            let n = nodes.get(NODE).await.ok()?;
            let ready = n.status.as_ref()?.conditions.as_ref()?.iter().any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then(|| n.spec.as_ref()?.pod_cidr.clone()).flatten()
        })
        .await;
        let binary = orch_binary().to_path_buf();
        let data_dir = self.data_dir();
        wait_for(Duration::from_secs(30), "the busybox image to be imported from the airgap dir", || async {
            let out = tokio::process::Command::new(&binary).arg("images").arg("ls").arg("--data-dir").arg(&data_dir).output().await.ok()?;
            String::from_utf8_lossy(&out.stdout).contains("busybox").then_some(())
        })
        .await;
        cidr
    }

    pub(crate) fn agent(&mut self) -> &mut AgentProc {
        self.agent.as_mut().expect("the agent was started")
    }

    pub(crate) fn log(&self) -> String {
        self.agent.as_ref().map(AgentProc::log).unwrap_or_default()
    }
}

/// What every real-node test starts from: a server under `dir` and a test node joined to it
/// (`agent_flags` besides its own), Ready with the busybox image; the node's podCIDR last.
/// Bind them in this order so the node is dropped (and cleaned up) before the server.
pub(crate) async fn start_real_node(dir: &Path, agent_flags: &[&str]) -> (ServerProc, kube::Client, TestNode, String) {
    let server = ready_server(dir, &[]).await;
    let client = kube_client(&server).await;
    let mut node = TestNode::new();
    node.start_agent_with(&server, free_port(), agent_flags);
    let cidr = node.wait_ready(&client).await;
    (server, client, node, cidr)
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.terminate(Duration::from_secs(20));
        }
    }
}

pub(crate) async fn pod_where(pods: &Api<Pod>, name: &str, what: &str, node: &TestNode, check: impl Fn(&Pod) -> bool) -> Pod {
    let log = node.log();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(p) = pods.get(name).await {
                if check(&p) {
                    return p;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    match found {
        Ok(p) => p,
        Err(_) => {
            let current = pods.get(name).await.ok().and_then(|p| serde_json::to_string_pretty(&p.status).ok());
            panic!("pod {name}: {what} did not happen within 60s; status: {current:?}\nagent log:\n{log}\n{}", node.log());
        }
    }
}

pub(crate) fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn pod_yaml(name: &str, policy: &str, grace: u32, script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {policy}\n  terminationGracePeriodSeconds: {grace}\n  \
         containers:\n  - name: main\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", {script:?}]\n"
    )
}

fn container_id(p: &Pod) -> String {
    p.status.as_ref().and_then(|s| s.container_statuses.as_ref()?.first()?.container_id.clone()).unwrap_or_default()
}

fn restart_count(p: &Pod) -> i32 {
    p.status.as_ref().and_then(|s| s.container_statuses.as_ref()?.first().map(|c| c.restart_count)).unwrap_or(0)
}

fn running_process(marker: &str) -> bool {
    std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|e| {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(marker)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_node_runs_pods_end_to_end() {
    if skip_without_containers("kubelet tests") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (mut server, client, mut node, cidr) = start_real_node(dir.path(), &[]).await;
    let info = Api::<Node>::all(client.clone()).get(NODE).await.unwrap().status.unwrap().node_info.unwrap();
    assert!(info.container_runtime_version.starts_with("containerd://"), "{info:?}");
    assert!(!info.kernel_version.is_empty() && !info.os_image.is_empty());

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let apply = |yaml: String| {
        let (server, home) = (&server, &home);
        async move {
            let (ok, out, err) = kubectl(server, home, &["apply", "-f", "-"], Some(&yaml)).await;
            assert!(ok, "kubectl apply failed: {out}{err}");
        }
    };

    // A pod runs, gets an address from the node's podCIDR and logs.
    apply(pod_yaml("server", "Always", 30, "echo hello; while true; do echo pong | nc -l -p 8080; done")).await;
    let running = pod_where(&pods, "server", "Running", &node, |p| phase(p) == "Running").await;
    let ip = running.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let prefix = cidr.rsplit_once('.').unwrap().0.to_string();
    assert!(ip.starts_with(&format!("{prefix}.")), "pod IP {ip} is in the node's podCIDR {cidr}");
    let logs = wait_for(Duration::from_secs(20), "kubectl logs to print hello", || async {
        let (ok, out, _) = kubectl(&server, &home, &["logs", "server"], None).await;
        (ok && out.contains("hello")).then_some(out)
    })
    .await;
    assert_eq!(logs.lines().next(), Some("hello"));

    // A second pod reaches the first over TCP.
    apply(pod_yaml("client", "Never", 30, &format!("nc -w 5 {ip} 8080"))).await;
    pod_where(&pods, "client", "Succeeded", &node, |p| phase(p) == "Succeeded").await;
    let (_, out, err) = kubectl(&server, &home, &["logs", "client"], None).await;
    assert!(out.contains("pong"), "the client got the server's answer: {out}{err}");
    let (ok, out, err) = kubectl(&server, &home, &["logs", "-f", "--timestamps", "client"], None).await;
    assert!(ok && out.trim_end().ends_with("pong") && out.starts_with("20"), "logs -f of an exited container ends: {out}{err}");

    // A Job completes.
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    apply(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: echo-done\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      \
         containers:\n      - name: main\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"echo\", \"done\"]\n"
            .to_string(),
    )
    .await;
    wait_for(Duration::from_secs(60), "the Job to complete", || async {
        let job = jobs.get("echo-done").await.ok()?;
        (job.status?.succeeded? == 1).then_some(())
    })
    .await;

    // A crashing container goes into CrashLoopBackOff.
    apply(pod_yaml("crash", "Always", 30, "echo crashing; exit 3")).await;
    let crashed = pod_where(&pods, "crash", "CrashLoopBackOff with a restart", &node, |p| {
        let s = p.status.as_ref().and_then(|s| s.container_statuses.as_ref()?.first().cloned());
        s.is_some_and(|s| {
            s.restart_count >= 1 && s.state.and_then(|st| st.waiting).and_then(|w| w.reason).as_deref() == Some("CrashLoopBackOff")
        })
    })
    .await;
    let last = crashed.status.unwrap().container_statuses.unwrap()[0].last_state.clone().unwrap().terminated.unwrap();
    assert_eq!(last.exit_code, 3);

    // Restarting the agent adopts the running container instead of restarting it.
    let before = pods.get("server").await.unwrap();
    node.agent().terminate(Duration::from_secs(30));
    assert!(running_process("nc -l -p 8080") || running_process("while true"), "the container outlives the agent");
    node.agent().restart();
    wait_for(Duration::from_secs(30), "the restarted agent to adopt its containers", || async {
        node.log().contains("adopted a running container").then_some(())
    })
    .await;
    let after = pod_where(&pods, "server", "still Running after the agent restart", &node, |p| phase(p) == "Running").await;
    assert_eq!(container_id(&after), container_id(&before), "the same container");
    assert_eq!(restart_count(&after), 0);
    let (ok, out, _) = kubectl(&server, &home, &["logs", "server"], None).await;
    assert!(ok && out.contains("hello"), "logs still served after the restart: {out}");

    // Deleting a pod stops its container within the grace period (sleep ignores SIGTERM as pid 1).
    apply(pod_yaml("sleeper", "Always", 3, "exec sleep 3601")).await;
    pod_where(&pods, "sleeper", "Running", &node, |p| phase(p) == "Running").await;
    assert!(running_process("sleep 3601"));
    let started = std::time::Instant::now();
    let (ok, _, err) = kubectl(&server, &home, &["delete", "pod", "sleeper", "--wait=false"], None).await;
    assert!(ok, "{err}");
    wait_for(Duration::from_secs(20), "the deleted pod to be gone", || async {
        pods.get_opt("sleeper").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(!running_process("sleep 3601"), "the container was stopped");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(12), "stopped after the 3s grace period, took {took:?}");

    // A server restart leaves the pod running, and the agent resumes: it carries out the
    // deletions below.
    server.terminate(Duration::from_secs(20));
    server.restart();
    server.wait_member(Duration::from_secs(30)).await;
    let after = pod_where(&pods, "server", "Running after the server restart", &node, |p| phase(p) == "Running").await;
    assert_eq!(container_id(&after), container_id(&before), "the same container after the server restart");

    // Everything is cleaned up by the agent when the pods go.
    for name in ["server", "client", "crash"] {
        let (ok, _, err) = kubectl(&server, &home, &["delete", "pod", name, "--grace-period=1", "--wait=false"], None).await;
        assert!(ok, "{err}");
    }
    let (ok, _, err) = kubectl(&server, &home, &["delete", "job", "echo-done", "--wait=false"], None).await;
    assert!(ok, "{err}");
    wait_for(Duration::from_secs(30), "every pod to be gone", || async {
        pods.list(&Default::default()).await.ok()?.items.is_empty().then_some(())
    })
    .await;
    wait_for(Duration::from_secs(10), "the pods' directories to be removed", || async {
        std::fs::read_dir(node.data_dir().join("agent/pods")).ok()?.next().is_none().then_some(())
    })
    .await;
}
