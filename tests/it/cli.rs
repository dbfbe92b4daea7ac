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
