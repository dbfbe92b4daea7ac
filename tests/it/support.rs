//! Test helpers: the library's child-process cluster kit, bound to this build's `orch` binary.

use std::path::Path;
use std::time::Duration;

pub use orch::testkit::{free_port, wait_for, AgentProc, ServerProc};

/// Held by the tests that load the machine most (multi-node beds) and by those that time a
/// cluster's reactions (raft failover), so that neither runs beside another of them: the
/// timings hold on a small CI machine only without a bed's containerds next to them.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn orch_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_orch"))
}

pub fn start_server(data_dir: &Path, extra: &[String]) -> ServerProc {
    ServerProc::start(orch_binary(), data_dir, extra)
}

pub async fn start_cluster(root: &Path, n: usize, extra: &[String]) -> Vec<ServerProc> {
    orch::testkit::start_cluster(orch_binary(), root, n, extra).await
}

/// Runs kubectl against the server's kubeconfig with `stdin`, returning (success, stdout, stderr).
pub async fn kubectl(server: &ServerProc, home: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let (code, out, err) = kubectl_with(server, home, args, stdin, &[]).await;
    (code == Some(0), out, err)
}

/// Runs kubectl with `stdin` and extra environment `env`, returning (exit code, stdout, stderr).
pub async fn kubectl_with(
    server: &ServerProc,
    home: &Path,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    kubectl_at(&server.data_dir.join("orch.yaml"), home, args, stdin, env).await
}

/// Runs kubectl with `kubeconfig`, `stdin` and extra environment `env`, returning (exit code,
/// stdout, stderr).
pub async fn kubectl_at(
    kubeconfig: &Path,
    home: &Path,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env("HOME", home)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running kubectl");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or("").as_bytes()).await.unwrap();
    drop(pipe);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.expect("kubectl hung").unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A started single server (with `extra` flags) whose system namespaces exist (checked with kubectl, HOME = `dir/home`).
pub async fn ready_server(dir: &Path, extra: &[String]) -> ServerProc {
    let server = start_server(&dir.join("n0"), extra);
    server.wait_member(Duration::from_secs(20)).await;
    let home = dir.join("home");
    wait_for(Duration::from_secs(20), "the system namespaces", || async {
        let (ok, out, _) = kubectl(&server, &home, &["get", "ns", "-o", "name"], None).await;
        (ok && out.contains("namespace/kube-system") && out.contains("namespace/default")).then_some(())
    })
    .await;
    server
}

/// Starts a hollow node (`orch agent --runtime fake`) called `name` joining `server`, with its
/// state in `dir`; `extra` are more agent flags (e.g. `--node-lease-renew-interval=1s`).
pub fn start_hollow_node(server: &ServerProc, dir: &Path, name: &str, extra: &[String]) -> AgentProc {
    let mut flags = vec!["--runtime=fake".to_string()];
    flags.extend_from_slice(extra);
    AgentProc::start(orch_binary(), &server.url(), &server.agent_token(), dir, name, &flags)
}

/// A kube-rs client of `server` with the admin kubeconfig it wrote.
pub async fn kube_client(server: &ServerProc) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(server.data_dir.join("orch.yaml")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}

/// Whether a test of real containers must be skipped here: it needs root and the containerd,
/// runc and busybox binaries. Says why on stderr when it does.
pub fn skip_without_containers(what: &str) -> bool {
    let why = orch::testkit::node::containers_unavailable();
    if let Some(why) = &why {
        eprintln!("SKIPPED {what}: {why}");
    }
    why.is_some()
}
