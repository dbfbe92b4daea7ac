//! Snapshots and the way back (k3s's `etcd-snapshot` and `--cluster-reset`): a saved snapshot
//! restores with its content and revision, also on a machine that never ran the cluster; a
//! server left alone by a cluster that lost quorum becomes a new one-server cluster the others
//! re-join; scheduled snapshots appear; damaged files and a wrong token are refused.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use orch::store::{Store, TxnRequest};
use orch::testkit::ServerProc;

use crate::raft_cluster::get;
use crate::support::{orch_binary, start_cluster, start_server, wait_for};

/// Runs `orch ARGS` with the server's data dir; returns (success, stdout + stderr).
fn orch(data_dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(orch_binary()).arg("--data-dir").arg(data_dir).args(args).output().expect("running orch");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// `orch server --cluster-reset` on the data dir and port of `server` (stopped).
fn cluster_reset(server: &ServerProc, extra: &[&str]) -> (bool, String) {
    let port = format!("--https-listen-port={}", server.port);
    let mut args = vec!["server", "--bind-address=127.0.0.1", &port, "--disable-agent", "--cluster-reset"];
    args.extend(extra);
    orch(&server.data_dir, &args)
}

async fn put(store: &dyn Store, key: &str, value: &str) -> i64 {
    store.txn(TxnRequest::put(key, value.as_bytes().to_vec())).await.expect("write").revision
}

/// The path of the one snapshot `orch snapshot ls` lists whose name starts with `prefix`.
fn listed(data_dir: &Path, prefix: &str) -> Option<PathBuf> {
    let (ok, out) = orch(data_dir, &["snapshot", "ls"]);
    assert!(ok, "{out}");
    out.lines().filter(|l| l.starts_with(prefix)).find_map(|l| l.split_whitespace().nth(1)?.strip_prefix("file://").map(PathBuf::from))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_restores_here_and_on_another_machine() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--disable-controllers", "--snapshot-schedule-cron=* * * * *", "--snapshot-retention=1"].map(String::from);
    let mut a = start_server(&dir.path().join("a"), &flags);
    a.wait_member(Duration::from_secs(20)).await;
    for i in 0..50 {
        put(&a.store(), &format!("/kept/{i}"), "before").await;
    }
    let at_save = put(&a.store(), "/kept/last", "before").await;

    let (ok, out) = orch(&a.data_dir, &["snapshot", "save", "--server", &a.url(), "--name", "before"]);
    assert!(ok && out.contains(&format!("(revision {at_save},")), "{out}");
    let file = listed(&a.data_dir, "before-").expect("the snapshot is listed");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let raw = std::fs::read(&file).unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("BEGIN"), "the CA key travels sealed, never in the clear");

    put(&a.store(), "/later", "after").await;
    put(&a.store(), "/kept/0", "after").await;
    wait_for(Duration::from_secs(75), "a scheduled snapshot", || async { listed(&a.data_dir, "orch-snapshot-") }).await;
    a.terminate(Duration::from_secs(20));

    // Here: the store goes back to the snapshot, revision kept.
    let (ok, out) = cluster_reset(&a, &["--cluster-reset-restore-path", file.to_str().unwrap()]);
    assert!(ok && out.contains(&format!("revision {at_save}")), "{out}");
    a.restart();
    a.wait_member(Duration::from_secs(20)).await;
    assert_eq!(get(&a.store(), "/kept/0").await.as_deref(), Some(&b"before"[..]));
    assert_eq!(get(&a.store(), "/later").await, None);
    assert!(put(&a.store(), "/new", "x").await > at_save, "revisions continue after the snapshot's");
    a.terminate(Duration::from_secs(20));

    // Another machine: the credentials come from the snapshot, opened with the token only.
    let mut b = ServerProc::stopped(orch_binary(), &dir.path().join("b"), &flags);
    let restore = ["--cluster-reset-restore-path", file.to_str().unwrap()];
    let (ok, out) = cluster_reset(&b, &restore);
    assert!(!ok && out.contains("--token"), "{out}");
    let wrong = "--token=wrongsecret".to_string();
    let (ok, out) = cluster_reset(&b, &[restore[0], restore[1], &wrong]);
    assert!(!ok && out.contains("does not open"), "{out}");
    let token = format!("--token={}", a.token());
    let (ok, out) = cluster_reset(&b, &[restore[0], restore[1], &token]);
    assert!(ok, "{out}");
    let ca = "server/tls/server-ca.crt";
    assert_eq!(std::fs::read(b.data_dir.join(ca)).unwrap(), std::fs::read(a.data_dir.join(ca)).unwrap(), "the cluster's CA came along");
    b.restart();
    b.wait_member(Duration::from_secs(20)).await;
    assert_eq!(get(&b.store(), "/kept/last").await.as_deref(), Some(&b"before"[..]));

    // A damaged snapshot is refused before anything changes.
    let mut damaged = raw.clone();
    *damaged.last_mut().unwrap() ^= 1;
    let bad = dir.path().join("damaged");
    std::fs::write(&bad, damaged).unwrap();
    b.terminate(Duration::from_secs(20));
    let (ok, out) = cluster_reset(&b, &["--cluster-reset-restore-path", bad.to_str().unwrap()]);
    assert!(!ok && out.contains("is damaged"), "{out}");

    let name = file.file_name().unwrap().to_str().unwrap();
    let (ok, out) = orch(&a.data_dir, &["snapshot", "delete", name]);
    assert!(ok, "{out}");
    assert_eq!(listed(&a.data_dir, "before-"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_left_without_quorum_is_reset_and_the_others_rejoin() {
    let _alone = crate::support::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path(), 3, &["--disable-controllers".to_string()]).await;
    for i in 0..20 {
        put(&nodes[0].store(), &format!("/k/{i}"), "v").await;
    }
    nodes[1].kill();
    nodes[2].kill();
    nodes[0].terminate(Duration::from_secs(20));

    let (ok, out) = cluster_reset(&nodes[0], &[]);
    assert!(ok && out.contains("one-server cluster"), "{out}");
    nodes[0].restart();
    nodes[0].wait_member(Duration::from_secs(20)).await;
    assert_eq!(get(&nodes[0].store(), "/k/19").await.as_deref(), Some(&b"v"[..]));
    put(&nodes[0].store(), "/after-reset", "v").await;

    // A server of the old cluster re-joins with an empty store (its --join points at node 0).
    std::fs::remove_dir_all(nodes[1].data_dir.join("server/raft")).unwrap();
    nodes[1].restart();
    nodes[1].wait_member(Duration::from_secs(30)).await;
    wait_for(Duration::from_secs(20), "the re-joined server to serve the data", || async {
        get(&nodes[1].store(), "/after-reset").await.map(|_| ())
    })
    .await;
}
