//! The same core flows through the official Python `kubernetes` client (installed by
//! `make deps`): CRUD, patch, conflict, selectors, validation errors and watch.

use std::time::Duration;

use orch::store::Store;

use crate::support::start_server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_core_flows() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("n0"), &[]);
    server.wait_member(Duration::from_secs(20)).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/core_flows.py");
    // The system namespaces are created just after the server becomes ready.
    crate::support::wait_for(Duration::from_secs(20), "the default namespace", || async {
        server
            .store()
            .range(orch::store::RangeRequest {
                range: orch::store::KeyRange::single("/registry/core/namespaces/default"),
                ..Default::default()
            })
            .await
            .ok()
            .filter(|r| !r.kvs.is_empty())
    })
    .await;
    let out = tokio::process::Command::new("python3").arg(script).arg(server.data_dir.join("orch.yaml")).output();
    let out = tokio::time::timeout(Duration::from_secs(120), out).await.expect("python client flows hung").expect("running python3");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        !stderr.contains("No module named 'kubernetes'"),
        "the Python kubernetes client is missing: run `make deps` (pip install kubernetes)"
    );
    assert!(out.status.success() && stdout.contains("python client flows: ok"), "python client flows failed:\n{stdout}\n{stderr}");
}
