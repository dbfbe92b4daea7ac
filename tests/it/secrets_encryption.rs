//! Secrets encryption at rest (`--secrets-encryption`, `orch secrets-encrypt`): a raw scan of
//! every file of the data dir finds neither a Secret's value nor its base64 while kubectl reads
//! it back, also after `rotate-keys` (which moves the stored value to the new key) and a
//! restart; without encryption the same scan finds it (the scan works); a joining server
//! receives the key and reads what the first wrote (and rotations are refused there).

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use orch::store::{KeyRange, RangeRequest, Store, TxnRequest};

use crate::support::{kubectl, ready_server, start_cluster, wait_for, ServerProc, HEAVY};

const VALUE: &str = "orch-canary-5e1f0c7d-plaintext";
const KEY: &str = "/registry/core/secrets/default/canary";

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let (path, kind) = (entry.path(), entry.file_type().unwrap());
        if kind.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if kind.is_file() && std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
            found.push(path);
        }
    }
    found
}

/// Files holding the canary's value or its base64, once the store had time to flush.
async fn plaintext_files(server: &ServerProc) -> Vec<PathBuf> {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(VALUE);
    [VALUE.as_bytes(), b64.as_bytes()].iter().flat_map(|n| files_containing(&server.data_dir, n)).collect()
}

async fn create_canary(server: &ServerProc, home: &Path) {
    let literal = format!("--from-literal=password={VALUE}");
    let (ok, _, err) = kubectl(server, home, &["create", "secret", "generic", "canary", &literal], None).await;
    assert!(ok, "kubectl create secret: {err}");
}

async fn read_canary(server: &ServerProc, home: &Path) -> String {
    let (ok, out, err) = kubectl(server, home, &["get", "secret", "canary", "-o", "jsonpath={.data.password}"], None).await;
    assert!(ok, "kubectl get secret: {err}");
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(out.trim()).unwrap()).unwrap()
}

/// The canary's value as the store holds it.
async fn stored(server: &ServerProc) -> Vec<u8> {
    let resp = server.store().range(RangeRequest { range: KeyRange::single(KEY), ..Default::default() }).await.unwrap();
    resp.kvs[0].value.clone()
}

async fn secrets_encrypt(server: &ServerProc, args: &[&str]) -> String {
    let out = tokio::process::Command::new(crate::support::orch_binary())
        .arg("--data-dir")
        .arg(&server.data_dir)
        .args(["secrets-encrypt", "--server", &server.url()])
        .args(args)
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "orch secrets-encrypt {args:?}: {stdout}{stderr}");
    stdout.into_owned()
}

#[tokio::test]
async fn secrets_are_encrypted_at_rest_and_survive_rotate_keys() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let mut server = ready_server(dir.path(), &["--secrets-encryption".into()]).await;
    let config = server.data_dir.join("server/cred/encryption-config.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&config).unwrap().permissions()) & 0o777;
    assert_eq!(mode, 0o600);
    assert!(std::fs::read_to_string(&config).unwrap().contains(r#"{"aescbc":{"keys":[{"name":"aescbckey","secret":""#));

    create_canary(&server, &home).await;
    assert_eq!(read_canary(&server, &home).await, VALUE);
    assert!(stored(&server).await.starts_with(b"k8s:enc:aescbc:v1:aescbckey:"));
    assert_eq!(plaintext_files(&server).await, Vec::<PathBuf>::new(), "the Secret's value is on disk in plain text");
    let status = secrets_encrypt(&server, &["status"]).await;
    for line in [
        "Encryption Status: Enabled",
        "Current Rotation Stage: start",
        "Server Encryption Hashes: All hashes match",
        " *      AES-CBC   aescbckey",
    ] {
        assert!(status.contains(line), "{line:?} missing from:\n{status}");
    }

    assert_eq!(secrets_encrypt(&server, &["rotate-keys"]).await.trim(), "keys rotated, reencryption finished");
    assert_eq!(read_canary(&server, &home).await, VALUE);
    let value = stored(&server).await;
    assert!(value.starts_with(b"k8s:enc:aescbc:v1:aescbckey-"), "{}", String::from_utf8_lossy(&value[..40]));
    let status = secrets_encrypt(&server, &["status"]).await;
    assert!(status.contains("Current Rotation Stage: reencrypt_finished") && status.contains(" *      AES-CBC   aescbckey-"), "{status}");
    assert!(!status.contains("aescbckey\n"), "the old key is gone: {status}");
    assert_eq!(plaintext_files(&server).await, Vec::<PathBuf>::new(), "plain text on disk after rotate-keys");

    server.terminate(Duration::from_secs(10));
    server.restart();
    wait_for(Duration::from_secs(30), "the restarted server to read the Secret", || async {
        let (ok, out, _) = kubectl(&server, &home, &["get", "secret", "canary", "-o", "name"], None).await;
        (ok && out.contains("canary")).then_some(())
    })
    .await;
    assert_eq!(read_canary(&server, &home).await, VALUE);

    // A value sealed with a key the configuration does not have: kube-apiserver's error.
    server.store().txn(TxnRequest::put(KEY, b"k8s:enc:aescbc:v1:gone:0123456789abcdef0123456789abcdef".to_vec())).await.unwrap();
    let (ok, _, err) = kubectl(&server, &home, &["get", "secret", "canary"], None).await;
    assert!(!ok && err.contains("no matching key was found for the provided AES transformer"), "{err}");
}

#[tokio::test]
async fn without_encryption_the_scan_finds_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let server = ready_server(dir.path(), &[]).await;
    create_canary(&server, &home).await;
    assert_eq!(read_canary(&server, &home).await, VALUE);
    assert!(!plaintext_files(&server).await.is_empty(), "the scan must find an unencrypted Secret");
    assert!(secrets_encrypt(&server, &["status"]).await.contains("Encryption Status: Disabled, no configuration file found"));

    // Only cluster admins reach the encryption endpoints.
    let (ca, _) = orch::server::admin_credentials(&server.data_dir).unwrap();
    let anonymous = orch::rpc::HttpClient::new(orch::pki::client_config(&ca, None).unwrap());
    let url = format!("{}{}", server.url(), orch::server::ENCRYPT_STATUS_PATH);
    let req = http::Request::get(url).body(http_body_util::Full::default()).unwrap();
    let (status, _) = anonymous.fetch(req, Duration::from_secs(10)).await.unwrap();
    assert_eq!(status.as_u16(), 401);
}

#[tokio::test]
async fn a_joining_server_receives_the_key() {
    let _heavy = HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let servers = start_cluster(dir.path(), 2, &["--secrets-encryption".into()]).await;
    let config = |s: &ServerProc| std::fs::read(s.data_dir.join("server/cred/encryption-config.json")).unwrap();
    assert_eq!(config(&servers[0]), config(&servers[1]), "the joining server must use the cluster's key");
    wait_for(Duration::from_secs(30), "the default namespace", || async {
        kubectl(&servers[0], &home, &["get", "ns", "default"], None).await.0.then_some(())
    })
    .await;
    create_canary(&servers[0], &home).await;
    wait_for(Duration::from_secs(20), "the second server to read the Secret", || async {
        kubectl(&servers[1], &home, &["get", "secret", "canary"], None).await.0.then_some(())
    })
    .await;
    assert_eq!(read_canary(&servers[1], &home).await, VALUE);
    assert_eq!(plaintext_files(&servers[1]).await, Vec::<PathBuf>::new(), "plain text on the second server's disk");

    // A new key would reach one server only: refused until rotation travels between servers.
    let out = std::process::Command::new(crate::support::orch_binary())
        .arg("--data-dir")
        .arg(&servers[0].data_dir)
        .args(["secrets-encrypt", "--server", &servers[0].url(), "rotate-keys"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("this cluster has 2 servers"), "{err}");
}
