//! Test helpers: the library's child-process cluster kit, bound to this build's `orch` binary.

use std::path::Path;

pub use orch::testkit::{free_port, wait_for, AgentProc, ServerProc};

pub fn orch_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_orch"))
}

pub fn start_server(data_dir: &Path, extra: &[String]) -> ServerProc {
    ServerProc::start(orch_binary(), data_dir, extra)
}

pub async fn start_cluster(root: &Path, n: usize, extra: &[String]) -> Vec<ServerProc> {
    orch::testkit::start_cluster(orch_binary(), root, n, extra).await
}

/// Starts a hollow node (`orch agent --runtime fake`) called `name` joining `server`, with its
/// state in `dir`; `extra` are more agent flags (e.g. `--node-lease-renew-interval=1s`).
pub fn start_hollow_node(server: &ServerProc, dir: &Path, name: &str, extra: &[String]) -> AgentProc {
    let mut flags = vec!["--runtime=fake".to_string()];
    flags.extend_from_slice(extra);
    AgentProc::start(orch_binary(), &server.url(), &server.token(), dir, name, &flags)
}

/// A kube-rs client with the admin kubeconfig `server` wrote.
pub async fn kube_client(server: &ServerProc) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(server.data_dir.join("orch.yaml")).expect("the server wrote its kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}
