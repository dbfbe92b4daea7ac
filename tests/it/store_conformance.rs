//! The store conformance suite on every implementation: the raft store in-process (one voter)
//! and a three-process raft cluster reached over RPC through a follower.

use std::sync::Arc;
use std::time::Duration;

use orch::pki::{self, CertSpec, ClusterCa};
use orch::raft::{RaftSettings, RaftStore};
use orch::rpc::HttpClient;
use orch::store::{conformance, Store};

use crate::support::start_cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_store_single_voter_in_process() {
    let dir = tempfile::tempdir().unwrap();
    // A single voter never calls its peers; its client still needs a cluster identity.
    let ca = ClusterCa::create("test-ca").unwrap();
    let peer = ca
        .sign(&CertSpec {
            common_name: "peer".into(),
            organizations: vec![pki::SERVERS_GROUP.into()],
            client_auth: true,
            ..Default::default()
        })
        .unwrap();
    let client = HttpClient::new(pki::client_config(&ca.pem().cert, Some(&peer)).unwrap());
    let store = RaftStore::open(dir.path(), RaftSettings::new("https://127.0.0.1:6443", client)).await.unwrap();
    store.bootstrap().await.unwrap();
    conformance::run(store.clone() as Arc<dyn Store>, "/conformance").await;
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_cluster_of_three_processes_through_a_follower() {
    let _alone = crate::support::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), 3, &["--disable-controllers".to_string()]).await;
    let leader = nodes[0].wait_member(Duration::from_secs(10)).await;
    let mut follower = None;
    for n in &nodes {
        if n.node_id().await != leader {
            follower = Some(n);
        }
    }
    let store: Arc<dyn Store> = Arc::new(follower.expect("a follower").store());
    conformance::run(store, "/conformance").await;
}
