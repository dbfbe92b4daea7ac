//! Cluster networking across real nodes (root only; containerd, runc, busybox-static): a
//! [`ClusterBed`] of nodes in network namespaces of their own on an underlay bridge. On three
//! nodes with the VXLAN backend: every node Ready with its podCIDR and flannel's annotations,
//! `flannel.1` as flannel makes it, a DaemonSet's pods reaching each other across every node
//! pair by pod IP with their own address as source, `kubectl logs`/`exec` on agent nodes, an
//! agent restart that keeps its pods reachable, a server restart the agents' Node watches
//! follow, and a deleted node's neighbour, FDB entry and route gone from the others. On two nodes with host-gw: the same pod-to-pod traffic over
//! plain routes. Kernel state is read with iproute2 inside each node's namespace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use orch::testkit::cluster::ClusterBed;
use serde_json::Value;

use crate::support::{orch_binary, skip_without_containers, HEAVY};

const ANN: &str = "flannel.alpha.coreos.com/";

/// The echo DaemonSet: busybox httpd answering `/cgi-bin/ip` with the caller's address.
const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: echo}
spec:
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && echo serving on $(hostname) && exec httpd -f -v -p 0.0.0.0:8080 -h /www"]
"#;

pub(crate) struct Bed {
    pub(crate) bed: ClusterBed,
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
    client: kube::Client,
}

impl Bed {
    /// A bed of `n` nodes with `flags`, every node Ready with a podCIDR; `None` (skipped) when
    /// real containers cannot run here.
    pub(crate) async fn start(n: usize, flags: &[&str]) -> Option<Self> {
        if skip_without_containers("the multi-node overlay tests") {
            return None;
        }
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let mut bed = ClusterBed::new(orch_binary(), n, &flags).await.expect("building the test bed");
        bed.start_agents().await;
        let kubeconfig = bed.kubeconfig().await;
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let this = Self { bed, kubeconfig, home: tempfile::tempdir().unwrap(), client };
        this.wait(Duration::from_secs(180), "every node Ready with a podCIDR and flannel's annotations", || async {
            let nodes = this.nodes().await?;
            (nodes.len() == n && nodes.values().all(|n| ready(n) && pod_cidr(n).is_some() && annotation(n, "backend-type").is_some()))
                .then_some(())
        })
        .await;
        Some(this)
    }

    async fn nodes(&self) -> Option<BTreeMap<String, Node>> {
        let list = Api::<Node>::all(self.client.clone()).list(&Default::default()).await.ok()?;
        Some(list.items.into_iter().map(|n| (n.metadata.name.clone().unwrap_or_default(), n)).collect())
    }

    /// Waits for `check`, failing with every node's log.
    pub(crate) async fn wait<T, F, Fut>(&self, timeout: Duration, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if tokio::time::Instant::now() > until {
                panic!("timed out after {timeout:?} waiting for {what}\n{}", self.bed.logs());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub(crate) async fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        kubectl(&self.kubeconfig, self.home.path(), args, stdin).await
    }

    /// The echo pods by node name, once one runs on each of `nodes` with an IP.
    pub(crate) async fn echo_pods(&self, nodes: usize) -> BTreeMap<String, (String, String)> {
        let (ok, out, err) = self.kubectl(&["apply", "-f", "-"], Some(DAEMONSET)).await;
        assert!(ok, "applying the DaemonSet: {out}{err}");
        let pods: Api<Pod> = Api::default_namespaced(self.client.clone());
        self.wait(Duration::from_secs(120), "an echo pod running with an IP on every node", || async {
            let list = pods.list(&kube::api::ListParams::default().labels("app=echo")).await.ok()?;
            let running: BTreeMap<String, (String, String)> = list
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .filter_map(|p| {
                    let node = p.spec.as_ref()?.node_name.clone()?;
                    Some((node, (p.metadata.name.clone()?, p.status.as_ref()?.pod_ip.clone()?)))
                })
                .collect();
            (running.len() == nodes).then_some(running)
        })
        .await
    }

    /// `from` fetches `/cgi-bin/ip` of the pod at `to_ip` and must be seen as `from_ip`.
    async fn assert_reaches(&self, from: &str, from_ip: &str, to_ip: &str) {
        let url = format!("http://{to_ip}:8080/cgi-bin/ip");
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            // busybox-static's wget crashes in glibc's resolver; nc speaks the HTTP instead.
            let script = format!("printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {to_ip} 8080");
            let (ok, out, err) = self.kubectl(&["exec", from, "--", "sh", "-c", &script], None).await;
            let body = out.trim().lines().last().unwrap_or_default().trim();
            if ok && out.contains("200 OK") {
                assert_eq!(body, from_ip, "the receiving pod sees the sender's pod IP as source ({from} -> {to_ip})");
                return;
            }
            if tokio::time::Instant::now() > until {
                panic!("pod {from} ({from_ip}) cannot reach {url}: {out}{err}\n{}", self.bed.logs());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every echo pod reaches every other one.
    async fn assert_all_pairs(&self, pods: &BTreeMap<String, (String, String)>) {
        for (from_node, (from, from_ip)) in pods {
            for (to_node, (_, to_ip)) in pods {
                if from_node != to_node {
                    self.assert_reaches(from, from_ip, to_ip).await;
                }
            }
        }
    }
}

async fn kubectl(kubeconfig: &Path, home: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let (code, out, err) = crate::support::kubectl_at(kubeconfig, home, args, stdin, &[]).await;
    (code == Some(0), out, err)
}

fn ready(n: &Node) -> bool {
    let conditions = n.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_cidr(n: &Node) -> Option<String> {
    n.spec.as_ref()?.pod_cidr.clone()
}

fn annotation(n: &Node, key: &str) -> Option<String> {
    n.metadata.annotations.as_ref()?.get(&format!("{ANN}{key}")).cloned()
}

/// `ip -d -j link show NAME` in `node`'s namespace.
fn link(bed: &ClusterBed, node: usize, name: &str) -> Value {
    let out = bed.nodes[node].run("ip", &["-d", "-j", "link", "show", name]);
    serde_json::from_str::<Value>(&out).expect("ip -j output")[0].clone()
}

/// The overlay state of `node` as iproute2 shows it: routes, neighbours and FDB entries of
/// `dev`, one string per line.
fn kernel_state(bed: &ClusterBed, node: usize, dev: &str) -> String {
    let n = &bed.nodes[node];
    let mut out = n.run("ip", &["route", "show", "dev", dev]);
    if dev == "flannel.1" {
        out += &n.run("ip", &["neigh", "show", "dev", dev]);
        out += &n.run("bridge", &["fdb", "show", "dev", dev]);
    }
    out
}

/// Waits up to 30 s for `check` to accept `node`'s [`kernel_state`] of `dev`; returns it.
async fn wait_kernel(bed: &ClusterBed, node: usize, dev: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let state = kernel_state(bed, node, dev);
        if check(&state) {
            return state;
        }
        if tokio::time::Instant::now() > until {
            panic!("timed out after 30s waiting for {what}; the kernel holds:\n{state}\n{}", bed.logs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vxlan_connects_pods_across_three_nodes() {
    let _one_bed = HEAVY.lock().await;
    let Some(mut t) = Bed::start(3, &[]).await else { return };
    let nodes = t.nodes().await.unwrap();
    let cidrs: std::collections::BTreeSet<String> = nodes.values().filter_map(pod_cidr).collect();
    assert_eq!(cidrs.len(), 3, "each node has its own podCIDR: {cidrs:?}");

    // Annotations and flannel.1 as flannel writes and makes them.
    let mut macs = BTreeMap::new();
    for (i, node) in t.bed.nodes.iter().enumerate() {
        let n = &nodes[&node.name];
        assert_eq!(annotation(n, "backend-type").as_deref(), Some("vxlan"));
        assert_eq!(annotation(n, "public-ip"), Some(node.ip.to_string()));
        assert_eq!(annotation(n, "kube-subnet-manager").as_deref(), Some("true"));
        let data: Value = serde_json::from_str(&annotation(n, "backend-data").unwrap()).unwrap();
        assert_eq!(data["VNI"], 1);
        let dev = link(&t.bed, i, "flannel.1");
        let info = &dev["linkinfo"]["info_data"];
        assert_eq!(dev["linkinfo"]["info_kind"], "vxlan");
        assert_eq!((info["id"].as_u64(), info["port"].as_u64()), (Some(1), Some(8472)), "VNI 1, UDP 8472: {dev}");
        assert_eq!(info["local"], node.ip.to_string());
        assert_eq!(info["learning"], false);
        assert_eq!(dev["mtu"], 1450, "uplink MTU 1500 - 50");
        assert_eq!(data["VtepMAC"], dev["address"], "the published VtepMAC is flannel.1's");
        let cidr: ipnetwork::Ipv4Network = pod_cidr(n).unwrap().parse().unwrap();
        let addr = node.run("ip", &["-4", "-o", "addr", "show", "dev", "flannel.1"]);
        assert!(addr.contains(&format!("{}/32", cidr.network())), "flannel.1 holds the podCIDR's network address: {addr}");
        macs.insert(node.name.clone(), (dev["address"].as_str().unwrap().to_string(), cidr));
    }

    // Each node holds a neighbour, FDB entry and route for each other node.
    for i in 0..3 {
        let bed = &t.bed;
        let want: Vec<String> = macs
            .iter()
            .filter(|(name, _)| **name != bed.nodes[i].name)
            .flat_map(|(name, (mac, cidr))| {
                let ip = bed.nodes.iter().find(|n| &n.name == name).unwrap().ip;
                [
                    format!("{cidr} via {} proto static onlink", cidr.network()),
                    format!("{} lladdr {mac} PERMANENT", cidr.network()),
                    format!("{mac} dst {ip} self permanent"),
                ]
            })
            .collect();
        wait_kernel(bed, i, "flannel.1", &format!("node{i}'s peers"), |state| want.iter().all(|w| state.contains(w.as_str()))).await;
    }

    // Pods reach each other across every node pair, and exec/logs work on agent nodes.
    let pods = t.echo_pods(3).await;
    t.assert_all_pairs(&pods).await;
    let (agent_pod, _) = &pods["node1"];
    let (ok, out, err) = t.kubectl(&["logs", agent_pod], None).await;
    assert!(ok && out.contains("serving on"), "kubectl logs of a pod on an agent node: {out}{err}");

    // An agent restart keeps its pods reachable.
    t.bed.nodes[1].stop();
    t.bed.restart(1);
    let (from, from_ip) = &pods["node0"];
    t.assert_reaches(from, from_ip, &pods["node1"].1).await;
    t.wait(Duration::from_secs(60), "node1 to log that its overlay is ready again", || async {
        (t.bed.nodes[1].log().matches("overlay ready").count() >= 2).then_some(())
    })
    .await;
    t.assert_reaches(from, from_ip, &pods["node1"].1).await;
    t.assert_reaches(&pods["node1"].0, &pods["node1"].1, &pods["node2"].1).await;

    // The server restarts; the agents' Node watches follow it back (the deletion below must
    // reach node1 through its watch).
    t.bed.nodes[0].stop();
    t.bed.restart(0);
    t.assert_reaches(&pods["node1"].0, &pods["node1"].1, &pods["node2"].1).await;

    // A deleted node's entries go from the others.
    t.bed.nodes[2].stop();
    t.wait(Duration::from_secs(60), "kubectl delete node node2 to succeed", || async {
        t.kubectl(&["delete", "node", "node2"], None).await.0.then_some(())
    })
    .await;
    let (gone_mac, gone_cidr) = macs["node2"].clone();
    for i in 0..2 {
        let bed = &t.bed;
        let gone_ip = gone_cidr.network().to_string();
        let state = wait_kernel(bed, i, "flannel.1", &format!("node2's entries to leave node{i}"), |state| {
            !state.contains(&gone_mac) && !state.contains(&gone_ip)
        })
        .await;
        assert!(state.contains(&macs[if i == 0 { "node1" } else { "node0" }].0), "the other peer stays: {state}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_gw_connects_pods_across_two_nodes() {
    let _one_bed = HEAVY.lock().await;
    let Some(t) = Bed::start(2, &["--flannel-backend=host-gw"]).await else { return };
    let nodes = t.nodes().await.unwrap();
    for (i, node) in t.bed.nodes.iter().enumerate() {
        assert_eq!(annotation(&nodes[&node.name], "backend-type").as_deref(), Some("host-gw"));
        assert_eq!(annotation(&nodes[&node.name], "backend-data").as_deref(), Some("null"));
        let other = &t.bed.nodes[1 - i];
        let cidr = pod_cidr(&nodes[&other.name]).unwrap();
        let want = format!("{cidr} via {}", other.ip);
        wait_kernel(&t.bed, i, "eth0", &format!("node{i}'s route {want}"), |state| state.contains(&want)).await;
        assert!(node.run("ip", &["link", "show"]).find("flannel.1").is_none(), "host-gw makes no VXLAN device");
    }
    let pods = t.echo_pods(2).await;
    t.assert_all_pairs(&pods).await;
}
