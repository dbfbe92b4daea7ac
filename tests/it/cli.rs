//! The binary's command line: help, version, config file and flag errors.

use std::process::Command;

fn orch(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_orch")).args(args).output().expect("running orch")
}

#[test]
fn help_and_version_work() {
    let help = orch(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for cmd in ["server", "agent", "version", "--data-dir", "--config", "--debug"] {
        assert!(text.contains(cmd), "orch --help should mention {cmd}:\n{text}");
    }
    let server = orch(&["server", "--help"]);
    assert!(server.status.success());
    assert!(String::from_utf8_lossy(&server.stdout).contains("--raft-election-timeout"));

    let version = orch(&["version"]);
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(version.status.success());
    assert!(text.contains("orch version v") && text.contains("v1.33."), "{text}");
}

#[test]
fn bad_flags_and_config_files_get_one_line_errors() {
    let bad = orch(&["server", "--raft-heartbeat-interval=soon"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("use e.g. 250ms"));

    let bad = orch(&["server", "--disable=traefik,servicelbb"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("unknown component \"servicelbb\": valid values are coredns, servicelb, traefik, local-storage, metrics-server"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, "- not\n- a mapping\n").unwrap();
    let out = orch(&["--config", cfg.to_str().unwrap(), "version"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("top level must be a mapping"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[tokio::test]
async fn config_file_flags_apply_and_command_line_wins() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let (file_port, cli_port) = (crate::support::free_port(), crate::support::free_port());
    let data = dir.path().join("data");
    std::fs::write(&cfg, format!("bind-address: 127.0.0.1\nhttps-listen-port: {file_port}\ndata-dir: {}\n", data.display())).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["--config", cfg.to_str().unwrap(), "server", &format!("--https-listen-port={cli_port}")])
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    crate::support::wait_for(std::time::Duration::from_secs(20), "server on the command-line port", || async {
        use orch::store::Store;
        let (ca, admin) = orch::server::admin_credentials(&data).ok()?;
        let http = orch::rpc::HttpClient::new(orch::pki::client_config(&ca, Some(&admin)).ok()?);
        orch::rpc::RemoteStore::new(format!("https://127.0.0.1:{cli_port}"), http).current_revision().await.ok()
    })
    .await;
    assert!(data.join("server").exists(), "data-dir from the config file is used");
    assert!(std::net::TcpStream::connect(("127.0.0.1", file_port)).is_err(), "the file's port was overridden");
    child.kill().await.unwrap();
}

/// A fake program `name` in `dir` that prints its environment of interest and arguments.
fn fake_program(dir: &std::path::Path, name: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(
        &path,
        "#!/bin/sh\necho \"KUBECONFIG=$KUBECONFIG ADDRESS=$CONTAINERD_ADDRESS NAMESPACE=$CONTAINERD_NAMESPACE ARGS=$*\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn kubectl_and_ctr_wrappers_run_the_system_programs_pointed_at_orch() {
    let dir = tempfile::tempdir().unwrap();
    let (bin, links, data, home) = (dir.path().join("bin"), dir.path().join("links"), dir.path().join("data"), dir.path().join("home"));
    for d in [&bin, &links, &data, &home] {
        std::fs::create_dir_all(d).unwrap();
    }
    fake_program(&bin, "kubectl");
    fake_program(&bin, "ctr");
    std::fs::write(data.join("orch.yaml"), "apiVersion: v1\n").unwrap();
    // The symlinks come first in PATH, as /usr/local/bin does: the wrapper must skip itself.
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_orch"), links.join("kubectl")).unwrap();
    let path = format!("{}:{}", links.display(), bin.display());
    let run = |program: &std::path::Path, args: &[&str]| {
        let out = Command::new(program).args(args).env("PATH", &path).env("HOME", &home).env_remove("KUBECONFIG").output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).trim().to_string(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let orch = std::path::Path::new(env!("CARGO_BIN_EXE_orch"));
    let data_flag = format!("--data-dir={}", data.display());

    let (code, out, err) = run(orch, &[&data_flag, "kubectl", "get", "pods", "-n", "x", "--help"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, format!("KUBECONFIG={} ADDRESS= NAMESPACE= ARGS=get pods -n x --help", data.join("orch.yaml").display()));

    let (_, out, _) = run(orch, &[&data_flag, "ctr", "images", "ls"]);
    let socket = data.join("agent/containerd/containerd.sock");
    assert_eq!(out, format!("KUBECONFIG= ADDRESS={} NAMESPACE=orch ARGS=images ls", socket.display()));

    // Invoked as `kubectl` through a symlink: the same wrapper, never itself again.
    let (code, out, err) = run(&links.join("kubectl"), &["version", "--client"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.ends_with("ARGS=version --client"), "{out}");

    // A user's own kubeconfig wins.
    std::fs::create_dir_all(home.join(".kube")).unwrap();
    std::fs::write(home.join(".kube/config"), "x").unwrap();
    let (_, out, _) = run(orch, &[&data_flag, "kubectl", "get", "nodes"]);
    assert!(out.starts_with("KUBECONFIG= "), "{out}");

    let (code, _, err) = run(orch, &["crictl", "ps"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no CRI") && err.contains("orch ctr"), "{err}");
    std::fs::remove_file(bin.join("kubectl")).unwrap();
    let (code, _, err) = run(orch, &["kubectl", "get", "pods"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("kubectl is not installed (install the kubectl package)"), "{err}");
}

#[test]
fn check_config_reports_every_check() {
    let out = orch(&["check-config"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for check in ["cgroups", "filesystem overlay", "kernel module vxlan", "program containerd", "program runc", "swap", "free disk"] {
        assert!(text.contains(check), "check-config should report {check}:\n{text}");
    }
    let verdict = text.lines().last().unwrap_or_default();
    assert_eq!(out.status.success(), verdict.contains("can run an orch node"), "{text}");
}

#[tokio::test]
async fn certificates_are_listed_and_a_rotated_admin_pair_is_signed_again_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = crate::support::ready_server(dir.path(), &[]).await;
    server.terminate(std::time::Duration::from_secs(10));
    let data = server.data_dir.to_str().unwrap().to_string();
    let check = orch(&["--data-dir", &data, "certificate", "check"]);
    let table = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{table}{}", String::from_utf8_lossy(&check.stderr));
    for row in ["server/tls/server-ca.crt", "orch-server-ca (CA)", "server/tls/client-admin.crt", "system:admin", "server/tls/serving.crt"]
    {
        assert!(table.contains(row), "{row} missing:\n{table}");
    }
    let admin_row = table.lines().find(|l| l.contains("client-admin.crt")).unwrap();
    assert!(
        (admin_row.contains(" 364 ") || admin_row.contains(" 365 ")) && admin_row.ends_with("ok"),
        "a fresh leaf has a year left: {admin_row}"
    );

    let admin = server.data_dir.join("server/tls/client-admin.crt");
    let before = std::fs::read_to_string(&admin).unwrap();
    let rotate = orch(&["--data-dir", &data, "certificate", "rotate", "--service", "admin"]);
    assert!(rotate.status.success() && !admin.exists(), "{}", String::from_utf8_lossy(&rotate.stderr));
    let bad = orch(&["--data-dir", &data, "certificate", "rotate", "--service", "etcd"]);
    assert_eq!(bad.status.code(), Some(2), "unknown services are refused");

    server.restart();
    server.wait_member(std::time::Duration::from_secs(20)).await;
    let after = std::fs::read_to_string(&admin).unwrap();
    assert_ne!(before, after, "a new admin pair is signed at start");
    let home = dir.path().join("home");
    let (ok, out, err) = crate::support::kubectl(&server, &home, &["get", "ns", "default", "-o", "name"], None).await;
    assert!(ok, "the rewritten kubeconfig works: {out}{err}");
}
