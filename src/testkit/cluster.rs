//! A multi-node test bed on one machine (root only): N real nodes — one `orch server`, N−1
//! `orch agent --join` — each in a network namespace of its own with its own data dir and
//! supervised containerd, their `eth0`s joined by veths to bridge `br0` in one more "underlay"
//! namespace, addresses 192.0.2.1… (TEST-NET-1). Processes enter their namespace with `setns`
//! before `exec` (as `nsenter --net=` does; `ip netns exec` would hide the cgroup mounts from
//! runc). The test process reaches the API through a loopback forwarder whose connections are
//! made inside the server's namespace, so stock kubectl and kube-rs work unchanged. Nothing of
//! the host's interfaces, routes or firewall is touched; dropping the bed kills the processes
//! and removes namespaces, mounts, cgroups and files, also after a failed test.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::node::NodeSandbox;
use crate::net::netlink::Netlink;
use crate::net::netns::run_in;

/// The API port inside the server's namespace.
pub const API_PORT: u16 = 6443;
const UNDERLAY_MTU: u32 = 1500;

/// The underlay address of node `i` (0 = the server).
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, i as u8 + 1)
}

/// One node of the bed: its sandbox (namespace, data dir) and its `orch` process.
pub struct BedNode {
    pub name: String,
    pub ip: Ipv4Addr,
    command: Vec<String>,
    child: Option<Child>,
    sandbox: NodeSandbox,
}

impl BedNode {
    /// The node's network namespace (a bind mount `nsenter --net=` accepts).
    pub fn netns(&self) -> PathBuf {
        self.sandbox.netns()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.sandbox.root().join("node")
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir().with_extension("log")
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// (Re)starts the node's process inside its namespace.
    pub fn start(&mut self, binary: &Path) {
        assert!(self.child.is_none(), "node {} already running", self.name);
        let ns = std::fs::File::open(self.netns()).expect("opening the node's namespace");
        let mut command = Command::new(binary);
        command.args(&self.command).arg("--data-dir").arg(self.data_dir());
        let fd = ns.as_raw_fd();
        // SAFETY: only setns(2), async-signal-safe, runs between fork and exec; `ns` outlives
        // the spawn below.
        unsafe {
            command.pre_exec(move || match libc::setns(fd, libc::CLONE_NEWNET) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            });
        }
        self.child = Some(super::spawn_logged(&mut command, &self.log_path(), "info,openraft=error", "a bed node"));
        drop(ns);
    }

    /// Stops the process with SIGTERM (waiting up to 20 s); its containers keep running.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            super::terminate(child, Duration::from_secs(20));
        }
    }

    /// Runs `program args` inside the node's namespace (e.g. `ip -d link show`), returning
    /// its stdout; panics with its stderr when it fails.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let ns = format!("--net={}", self.netns().display());
        let out = Command::new("nsenter").arg(ns).arg("--").arg(program).args(args).output().expect("running nsenter");
        assert!(out.status.success(), "{program} {args:?} in {}: {}", self.name, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `f` on a thread inside the node's namespace (sockets it opens stay there).
    pub fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        run_in(Some(&self.netns()), f).expect("entering the node's namespace")
    }
}

impl Drop for BedNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Forwards connections to 127.0.0.1:`port` in this process's namespace to an address inside
/// another namespace; stops accepting on drop.
struct ApiForward {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl ApiForward {
    fn start(netns: PathBuf, target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let netns = netns.clone();
                        std::thread::spawn(move || forward(client, &netns, target));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
                    Err(_) => return,
                }
            }
        });
        Ok(Self { port, stop })
    }
}

fn forward(client: TcpStream, netns: &Path, target: SocketAddr) {
    let Ok(Ok(server)) = run_in(Some(netns), || TcpStream::connect_timeout(&target, Duration::from_secs(5))) else { return };
    let _ = client.set_nonblocking(false);
    let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else { return };
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut s2);
        let _ = s2.shutdown(std::net::Shutdown::Write);
    });
    let (mut s, mut c) = (server, client);
    let _ = std::io::copy(&mut s, &mut c);
    let _ = c.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}

impl Drop for ApiForward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The bed: the underlay, the nodes (0 is the server) and the API forwarder.
pub struct ClusterBed {
    binary: PathBuf,
    // Field order is drop order: processes (in the nodes) go before the underlay.
    pub nodes: Vec<BedNode>,
    forward: Option<ApiForward>,
    underlay: NodeSandbox,
}

/// What every node of a bed runs with besides its own flags.
fn common_flags(i: usize, netns: &Path) -> Vec<String> {
    vec![
        format!("--node-name=node{i}"),
        format!("--node-ip={}", node_ip(i)),
        format!("--netns={}", netns.display()),
        "--node-lease-renew-interval=2s".into(),
    ]
}

impl ClusterBed {
    /// Builds the underlay and `n` node namespaces and starts the server; the agents are
    /// started by [`ClusterBed::start_agents`] once the server has written its token. `extra`
    /// are flags for every node (e.g. `--flannel-backend=host-gw`).
    pub async fn new(binary: &Path, n: usize, extra: &[String]) -> std::io::Result<Self> {
        let underlay = NodeSandbox::new("orch-ul")?;
        let ul = Netlink::open(Some(&underlay.netns())).map_err(std::io::Error::other)?;
        let bridge = ul.ensure_bridge("br0", UNDERLAY_MTU).await.map_err(std::io::Error::other)?;
        ul.set_up(bridge).await.map_err(std::io::Error::other)?;
        let mut bed = Self { binary: binary.to_path_buf(), nodes: Vec::new(), forward: None, underlay };
        for i in 0..n {
            let sandbox = NodeSandbox::new(&format!("orch-n{i}"))?;
            let ns = std::fs::File::open(sandbox.netns())?;
            ul.add_veth_into(&format!("ul{i}"), Some(bridge), "eth0", ns.as_raw_fd(), UNDERLAY_MTU).await.map_err(std::io::Error::other)?;
            let node = Netlink::open(Some(&sandbox.netns())).map_err(std::io::Error::other)?;
            for link in ["lo", "eth0"] {
                let index = node.link_index(link).await.map_err(std::io::Error::other)?.ok_or(ErrorKind::NotFound)?;
                if link == "eth0" {
                    node.ensure_address(index, node_ip(i), 24).await.map_err(std::io::Error::other)?;
                }
                node.set_up(index).await.map_err(std::io::Error::other)?;
            }
            let data_dir = sandbox.root().join("node");
            let images = data_dir.join("agent/images");
            std::fs::create_dir_all(&images)?;
            super::images::busybox_oci_tar(&images.join("busybox.tar"))?;
            let mut command = if i == 0 {
                vec!["server".to_string(), format!("--advertise-address={}", node_ip(0)), format!("--https-listen-port={API_PORT}")]
            } else {
                vec!["agent".to_string(), format!("--join=https://{}:{API_PORT}", node_ip(0))]
            };
            command.extend(common_flags(i, &sandbox.netns()));
            command.extend(extra.iter().cloned());
            bed.nodes.push(BedNode { name: format!("node{i}"), ip: node_ip(i), command, child: None, sandbox });
        }
        bed.nodes[0].start(binary);
        bed.forward = Some(ApiForward::start(bed.nodes[0].netns(), SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), API_PORT))?);
        Ok(bed)
    }

    /// Starts every agent with the server's token, once the server has written it.
    pub async fn start_agents(&mut self) {
        let server_dir = self.nodes[0].data_dir();
        let token =
            super::wait_for(Duration::from_secs(30), "the server's token", || async { crate::server::read_token(&server_dir).ok() }).await;
        let binary = self.binary.clone();
        for node in self.nodes.iter_mut().skip(1) {
            node.command.push(format!("--token={token}"));
            node.start(&binary);
        }
    }

    /// A kubeconfig for the test process (the server's admin one, through the forwarder);
    /// waits for the server to write its own.
    pub async fn kubeconfig(&self) -> PathBuf {
        let theirs = self.nodes[0].data_dir().join("orch.yaml");
        let text =
            super::wait_for(Duration::from_secs(30), "the server's kubeconfig", || async { std::fs::read_to_string(&theirs).ok() }).await;
        let port = self.forward.as_ref().expect("the forwarder runs").port;
        let ours = self.underlay.root().join("kubeconfig");
        let text = text.replace(&format!("https://127.0.0.1:{API_PORT}"), &format!("https://127.0.0.1:{port}"));
        std::fs::write(&ours, text).expect("writing the bed's kubeconfig");
        ours
    }

    /// Restarts node `i`'s process (after [`BedNode::stop`]).
    pub fn restart(&mut self, i: usize) {
        let binary = self.binary.clone();
        self.nodes[i].start(&binary);
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes.iter().map(|n| format!("===== {} =====\n{}", n.name, n.log())).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for ClusterBed {
    fn drop(&mut self) {
        // Agents first, the server last, so none spends its grace period retrying the API.
        while let Some(mut node) = self.nodes.pop() {
            node.stop();
        }
    }
}
